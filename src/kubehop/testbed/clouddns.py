"""The testbed's "Cloud DNS": BIND 9 serving a private zone that takes TSIG-signed updates.

It stands for the paper's Cloud DNS private zone. It listens only on the host's bridge address,
answers only for its zone (no recursion), and accepts RFC 2136 dynamic updates signed with the
testbed's own TSIG key. The key is made per testbed, kept in a 0600 file and never printed.
"""

from __future__ import annotations

import base64
import os
import pwd
import secrets
import shutil
from pathlib import Path

from kubehop.adapters.dns import read_tsig_key
from kubehop.errors import PreconditionError
from kubehop.files import write_private
from kubehop.testbed import layout

DEFAULT_ZONE = "testnetwork.internal"
KEY_NAME = "kubehop-tsig"
KEY_ALGORITHM = "hmac-sha256"
DNS_PORT = 53


def dns_dir() -> Path:
    return layout.state_dir() / "clouddns"


def key_file() -> Path:
    """The TSIG key in BIND's format (``key "name" { algorithm ...; secret "..."; };``)."""
    return dns_dir() / "tsig.key"


def run_dir() -> Path:
    return dns_dir() / "run"


def write_key() -> None:
    """A fresh random HMAC-SHA256 key, readable only by its owner (root, and named's user)."""
    secret = base64.b64encode(secrets.token_bytes(32)).decode()
    text = f'key "{KEY_NAME}" {{\n\talgorithm {KEY_ALGORITHM};\n\tsecret "{secret}";\n}};\n'
    write_private(key_file(), text)


def read_key() -> tuple[str, str, str]:
    """(name, algorithm, base64 secret) of the testbed key."""
    return read_tsig_key(str(key_file()))


def write_config(zone: str = DEFAULT_ZONE) -> Path:
    """named.conf and the zone's first version; everything owned by named's user."""
    if shutil.which("named") is None:
        raise PreconditionError("BIND's 'named' is missing; install it: apt-get install bind9")
    try:
        bind_user = pwd.getpwnam("bind")
    except KeyError as exc:
        raise PreconditionError("user 'bind' is missing; install bind9") from exc
    base = dns_dir()
    (base / "zones").mkdir(parents=True, exist_ok=True)
    if not key_file().exists():
        write_key()
    host = layout.HOST_ADDRESS
    zone_file = base / "zones" / f"{zone}.zone"
    zone_file.write_text(
        f"$ORIGIN {zone}.\n$TTL 5\n"
        f"@ IN SOA ns.{zone}. hostmaster.{zone}. 1 60 30 600 5\n"
        f"@ IN NS ns.{zone}.\n"
        f"ns IN A {host}\n"
    )
    conf = base / "named.conf"
    conf.write_text(f"""include "{key_file()}";

options {{
    directory "{base}";
    pid-file none;
    session-keyfile "{base / 'session.key'}";
    managed-keys-directory "{base}";
    listen-on port {DNS_PORT} {{ {host}; }};
    listen-on-v6 {{ none; }};
    recursion no;
    allow-query {{ any; }};
    allow-transfer {{ none; }};
    dnssec-validation no;
    notify no;
}};

controls {{ }};

zone "{zone}" {{
    type primary;
    file "{zone_file}";
    allow-update {{ key "{KEY_NAME}"; }};
}};
""")
    for path in [base, *base.rglob("*")]:
        os.chown(path, bind_user.pw_uid, bind_user.pw_gid)
    return conf


def argv(conf: Path) -> list[str]:
    """named in the foreground, as user bind (it drops root after binding port 53)."""
    return ["named", "-g", "-u", "bind", "-c", str(conf)]

"""kubehop's volume mover: one script for both ends of copying a service's volumes.

The *receiver* runs in the target cluster: an rsync daemon on 127.0.0.1:8730 (module ``data``,
path ``MOVER_DATA``, run as root so owners and modes land as they were) behind a stunnel TLS
server on 0.0.0.0:8873. The *sender* runs in the source cluster: a stunnel TLS client on
127.0.0.1:8731 to ``MOVER_TARGET`` (the target's load balancer, which routes by ``MOVER_SNI``
with TLS passthrough), and runs rsync passes into it when the engine asks.

TLS uses a pre-shared key made for one migration (``MOVER_PSK_FILE``, stunnel's PSKsecrets
format ``identity:<64 hex>``), TLS 1.3 only: OpenSSL 1.1.1+ does external PSKs in TLS 1.3 and
stunnel (5.x) wires PSKsecrets into it, so no certificates have to be made and the older PSK
cipher suites stay off.

Environment: ``MOVER_ROLE`` (receiver|sender), ``MOVER_DATA`` (default /data, one subdirectory
per claim), ``MOVER_PSK_FILE`` (default /secret/psk), ``MOVER_TOKEN_FILE`` (default
/secret/token), ``MOVER_API_PORT`` (default 8080), ``MOVER_TARGET`` and ``MOVER_SNI``
(sender), ``MOVER_RSYNC_TIMEOUT`` (sender, seconds without I/O before a pass gives up, default
300), ``TMPDIR`` (its workdir: config files, the key's copy, the hash cache).

HTTP API (the engine reaches it through the API server's pod proxy). Every request but
``GET /healthz`` (200 once the daemons listen, else 503; nothing more) must carry the
migration's API token in ``X-Kubehop-Mover-Token`` (401 without, 403 with another):
``GET /manifest`` (NDJSON, see :mod:`mover_tree` and :func:`manifest_lines`), ``GET /usage``,
and on the sender ``POST /pass[?final=1]`` (200 with ``{"rc", "bytes", "files", "seconds",
"error"}`` whatever rsync's exit code: any rc other than 0 is a failed pass).

Standard library only (Python 3.11); neither the key nor the token is ever logged.
"""

from __future__ import annotations

import hmac
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

try:  # a module of the package kubehop.testbed.assets (unit tests, mypy)
    from .mover_tree import FORMAT, HashCache, manifest, usage
except ImportError:  # in the image: /mover.py runs as a script, /mover_tree.py next to it
    from mover_tree import (  # type: ignore[import-not-found,no-redef]
        FORMAT,
        HashCache,
        manifest,
        usage,
    )

RSYNC_PORT = 8730
TLS_PORT = 8873
CLIENT_PORT = 8731
_PSK = re.compile(r"^([^:\s]+):([0-9a-fA-F]{64})$")


def log(msg: str) -> None:
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} mover: {msg}", file=sys.stderr, flush=True)


class ConfigError(Exception):
    """Bad environment: the pod cannot work, so it exits with the reason."""


@dataclass(frozen=True)
class Config:
    role: str
    data: Path
    psk_file: Path
    token_file: Path
    api_port: int
    target: str
    sni: str
    rsync_timeout: int

    @staticmethod
    def from_env(env: dict[str, str]) -> Config:
        role = env.get("MOVER_ROLE", "")
        if role not in ("receiver", "sender"):
            raise ConfigError(f"MOVER_ROLE must be 'receiver' or 'sender', not {role!r}")
        data = Path(env.get("MOVER_DATA", "/data"))
        if not data.is_dir():
            raise ConfigError(f"MOVER_DATA {str(data)!r} is not a directory")
        try:
            api_port = int(env.get("MOVER_API_PORT", "8080"))
            rsync_timeout = int(env.get("MOVER_RSYNC_TIMEOUT", "300"))
        except ValueError as exc:
            raise ConfigError(f"MOVER_API_PORT, MOVER_RSYNC_TIMEOUT: not integers: {exc}") from exc
        target = env.get("MOVER_TARGET", "")
        sni = env.get("MOVER_SNI", "")
        if role == "sender":
            host, sep, port = target.rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ConfigError(f"MOVER_TARGET must be host:port, not {target!r}")
            if not sni:
                raise ConfigError("MOVER_SNI is required for the sender (the load balancer "
                                  "routes on it)")
        return Config(role, data, Path(env.get("MOVER_PSK_FILE", "/secret/psk")),
                      Path(env.get("MOVER_TOKEN_FILE", "/secret/token")), api_port,
                      target, sni, rsync_timeout)


def read_psk(path: Path) -> tuple[str, str]:
    """(identity, key) from a PSKsecrets file; errors never quote the key."""
    try:
        text = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read the PSK file {str(path)!r}: {exc.strerror}") from exc
    m = _PSK.match(text)
    if m is None:
        raise ConfigError(f"the PSK file {str(path)!r} must hold one line "
                          "'<identity>:<64 hex chars>'")
    return m.group(1), m.group(2)


# --- daemons -------------------------------------------------------------------------------


def _binary(*names: str) -> str:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    raise ConfigError(f"none of {names} is installed")


def receiver_configs(cfg: Config, workdir: Path, psk_path: Path) -> tuple[Path, Path]:
    """rsyncd.conf and stunnel.conf for the receiver, written into ``workdir``.

    ``use chroot = yes``: without a chroot an rsync daemon always sanitizes paths, which strips
    the leading ``/`` from every absolute symlink's target (``/etc/x`` arrives as ``etc/x``), so
    the copy would differ from the original. The chroot needs root, which the receiver is, and
    ``numeric ids`` means nothing has to be looked up inside it."""
    rsyncd = workdir / "rsyncd.conf"
    rsyncd.write_text(
        "pid file = \n"
        "reverse lookup = no\n"
        "log file = /dev/stderr\n"
        "[data]\n"
        f"    path = {cfg.data}\n"
        "    uid = 0\n"
        "    gid = 0\n"
        "    use chroot = yes\n"
        "    numeric ids = yes\n"
        "    read only = no\n"
        "    munge symlinks = no\n"
    )
    tunnel = workdir / "stunnel.conf"
    tunnel.write_text(
        "foreground = yes\n"
        "pid = \n"
        "debug = notice\n"
        "[rsync]\n"
        f"accept = 0.0.0.0:{TLS_PORT}\n"
        f"connect = 127.0.0.1:{RSYNC_PORT}\n"
        f"PSKsecrets = {psk_path}\n"
        "sslVersionMin = TLSv1.3\n"
    )
    return rsyncd, tunnel


def sender_config(cfg: Config, workdir: Path, psk_path: Path, identity: str) -> Path:
    tunnel = workdir / "stunnel.conf"
    tunnel.write_text(
        "foreground = yes\n"
        "pid = \n"
        "debug = notice\n"
        "[rsync]\n"
        "client = yes\n"
        f"accept = 127.0.0.1:{CLIENT_PORT}\n"
        f"connect = {cfg.target}\n"
        f"sni = {cfg.sni}\n"
        f"PSKsecrets = {psk_path}\n"
        f"PSKidentity = {identity}\n"
        "sslVersionMin = TLSv1.3\n"
    )
    return tunnel


def listening(port: int) -> bool:
    """Whether something in this network namespace listens on TCP ``port``. Read from /proc,
    not by connecting: a connect to the sender's tunnel would open a TLS session to the target."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 3 and fields[3] == "0A" and int(fields[1][-4:], 16) == port:
                return True
    return False


class Daemons:
    """The child processes; if one dies the mover exits so the pod shows it (never half up)."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.stopping = False

    def start(self, name: str, argv: list[str]) -> None:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, env={**os.environ, "LC_ALL": "C"})
        self.procs.append((name, proc))
        threading.Thread(target=self._watch, args=(name, proc), daemon=True).start()
        log(f"started {name} (pid {proc.pid})")

    def _watch(self, name: str, proc: subprocess.Popen[bytes]) -> None:
        rc = proc.wait()
        if not self.stopping:
            log(f"{name} exited with {rc}; stopping")
            self.stop()
            os._exit(1)

    def stop(self) -> None:
        self.stopping = True
        for _, proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for _, proc in self.procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()


# --- manifests ------------------------------------------------------------------------------


def manifest_lines(root: Path, cache: HashCache | None = None
                   ) -> Generator[bytes, None, None]:
    """The manifest as NDJSON: a format line, one line per entry, and an end line with the
    count, so a reader can tell a complete manifest from one cut short. A failure of the
    walk ends it with an error line instead."""
    yield json.dumps({"format": FORMAT}).encode() + b"\n"
    count = 0
    try:
        for entry in manifest(root, cache):
            count += 1
            yield json.dumps(entry, separators=(",", ":")).encode() + b"\n"
    except Exception as exc:  # the reader must learn it, not see a short list
        log(f"manifest failed after {count} entries: {exc!r}")
        yield json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode() + b"\n"
        return
    yield json.dumps({"end": True, "entries": count}).encode() + b"\n"


# --- passes ----------------------------------------------------------------------------------


XATTR_FILTERS = ("--filter=-x system.*", "--filter=-x security.selinux", "--filter=-x trusted.*")
"""Which xattrs ``-X`` leaves alone, copying none and deleting none on the receiver (with a
filter of its own rsync no longer skips ``system.*`` by itself): ``system.*`` (the POSIX ACLs
are ``-A``'s), the SELinux label (the target's cluster labels its volumes for its own pods;
setting the source's would fail or mislabel), ``trusted.*`` (only CAP_SYS_ADMIN sees it). What
is left is what mover_tree.compared_xattr lists."""


def _stat_number(stats: str, pattern: str) -> int:
    m = re.search(pattern + r":\s*([\d,.]+)", stats)
    return int(re.sub(r"[,.]", "", m.group(1))) if m else 0


def run_pass(cfg: Config, *, final: bool) -> dict[str, Any]:
    """One rsync pass of all of MOVER_DATA into the receiver. Files are compared by size and
    mtime to the nanosecond (``--modify-window=-1``; at whole seconds a database rewritten
    within the second at the same size would be skipped); ``final`` only marks the pass made
    with writes frozen. The checksum manifests compared afterwards catch anything missed."""
    argv = ["rsync", "-aHSAX", "--numeric-ids", "--delete", "--stats", "--modify-window=-1",
            f"--timeout={cfg.rsync_timeout}", *XATTR_FILTERS]
    argv += [f"{cfg.data}/", f"rsync://127.0.0.1:{CLIENT_PORT}/data/"]
    log(f"{'final pass' if final else 'pass'}: {' '.join(argv)}")
    start = time.monotonic()
    result = subprocess.run(argv, capture_output=True, text=True, errors="replace",
                            env={**os.environ, "LC_ALL": "C"}, check=False)
    seconds = round(time.monotonic() - start, 3)
    if result.stderr:
        sys.stderr.write(result.stderr)
    out = {
        "rc": result.returncode,
        "bytes": _stat_number(result.stdout, r"Total bytes sent"),
        "files": _stat_number(result.stdout, r"Number of (?:regular )?files transferred"),
        "seconds": seconds,
        "error": "" if result.returncode == 0 else
        (result.stderr.strip()[-2000:] or f"rsync exited with {result.returncode}"),
    }
    log(f"pass done: rc={out['rc']} bytes={out['bytes']} files={out['files']} in {seconds}s")
    return out


# --- HTTP API --------------------------------------------------------------------------------


TOKEN_HEADER = "X-Kubehop-Mover-Token"  # noqa: S105 (a header's name)
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{32,}$")


def read_token(path: Path) -> bytes:
    """The API token (kubehop's domain/mover.py puts it in the migration's Secret); errors
    never quote it."""
    try:
        text = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read the API token file {str(path)!r}: {exc.strerror}") from exc
    if not _TOKEN.match(text):
        raise ConfigError(f"the API token file {str(path)!r} must hold one token of at least 32 "
                          "URL-safe characters")
    return text.encode()


class Api(BaseHTTPRequestHandler):
    """Every path but ``/healthz`` (which says only whether the daemons listen) needs the
    migration's token in ``X-Kubehop-Mover-Token``: 401 without it, 403 with another one."""

    protocol_version = "HTTP/1.1"  # the manifest is sent chunked
    cfg: Config
    ready: Any  # () -> str ("" when healthy, else what is missing)
    token: bytes
    cache: HashCache | None = None
    pass_lock = threading.Lock()

    def _json(self, code: int, body: object, *, close: bool = False) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if close:  # said, so that a client does not send its next request on it
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self) -> bool:
        given = self.headers.get(TOKEN_HEADER)
        if given is not None and hmac.compare_digest(given.encode("utf-8", "replace"),
                                                     self.token):
            return True
        code, why = (401, "no token") if given is None else (403, "wrong token")
        log(f"refused {self.command} {urlsplit(self.path).path} from "
            f"{self.address_string()}: {why}")
        # The connection closes: a body the request may have had is not read.
        self._json(code, {"error": f"{why} in {TOKEN_HEADER}"}, close=True)
        return False

    def _stream(self, lines: Generator[bytes, None, None]) -> None:
        """200 with ``lines`` sent chunked as they come, in chunks of up to 64 KiB or what a
        second gathered. If the reader goes away, ``lines`` is closed at once (the walk ends
        and lets go of the hash cache)."""
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        buf, flushed = bytearray(), time.monotonic()
        try:
            for line in lines:
                buf += line
                if len(buf) >= 1 << 16 or time.monotonic() - flushed > 1:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(buf), bytes(buf)))
                    buf.clear()
                    flushed = time.monotonic()
        finally:
            lines.close()
        if buf:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(buf), bytes(buf)))
        self.wfile.write(b"0\r\n\r\n")

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/healthz":
            ok = not type(self).ready()
            self._json(200 if ok else 503, {"ok": ok})
        elif not self._authorized():
            return
        elif path == "/manifest":
            self._stream(manifest_lines(self.cfg.data, self.cache))
        elif path == "/usage":
            self._json(200, usage(self.cfg.data))
        else:
            self._json(404, {"error": f"no such endpoint: GET {path}"})

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        if not self._authorized():
            return
        if url.path != "/pass" or self.cfg.role != "sender":
            self._json(404, {"error": f"no such endpoint on the {self.cfg.role}: POST {url.path}"})
            return
        final = parse_qs(url.query).get("final", ["0"])[0] in ("1", "true", "yes")
        if not self.pass_lock.acquire(blocking=False):
            self._json(409, {"error": "a pass is already running"})
            return
        try:
            self._json(200, run_pass(self.cfg, final=final))
        finally:
            self.pass_lock.release()

    def log_message(self, format: str, *args: Any) -> None:
        if "/healthz" not in str(args[0] if args else ""):
            log(f"{self.address_string()} {format % args}")


def api(cfg: Config, *, token: bytes, ready: Callable[[], str],
        cache: HashCache | None) -> type[Api]:
    """The request handler of one mover."""
    return type("MoverApi", (Api,), {"cfg": cfg, "token": token, "cache": cache,
                                     "ready": staticmethod(_logged(ready))})


def _logged(ready: Callable[[], str]) -> Callable[[], str]:
    """``ready``, logging what is missing when that changes (``/healthz`` does not say it)."""
    last = [""]

    def check() -> str:
        missing = ready()
        if missing != last[0]:
            log(f"not ready: {missing}" if missing else "ready")
            last[0] = missing
        return missing

    return check


def _start_daemons(cfg: Config, workdir: Path, psk_path: Path, identity: str,
                   stunnel: str, rsync: str) -> tuple[Daemons, dict[int, str]]:
    """The role's daemons, and the ports they listen on (with their names)."""
    daemons = Daemons()
    if cfg.role == "receiver":
        rsyncd, tunnel = receiver_configs(cfg, workdir, psk_path)
        daemons.start("rsync daemon", [rsync, "--daemon", "--no-detach", f"--config={rsyncd}",
                                       "--address=127.0.0.1", f"--port={RSYNC_PORT}"])
        daemons.start("stunnel server", [stunnel, str(tunnel)])
        return daemons, {RSYNC_PORT: "rsync daemon", TLS_PORT: "stunnel server"}
    tunnel = sender_config(cfg, workdir, psk_path, identity)
    daemons.start("stunnel client", [stunnel, str(tunnel)])
    return daemons, {CLIENT_PORT: "stunnel client"}


def main() -> int:
    try:
        cfg = Config.from_env(dict(os.environ))
        identity, key = read_psk(cfg.psk_file)
        token = read_token(cfg.token_file)
        stunnel, rsync = _binary("stunnel4", "stunnel"), _binary("rsync")
    except ConfigError as exc:
        log(f"config error: {exc}")
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="mover-"))  # 0700, in TMPDIR (the pod's emptyDir)
    # stunnel reads its own copy: a private file whatever mode the Secret was mounted with.
    psk_path = workdir / "psk"
    fd = os.open(psk_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"{identity}:{key}\n")
    del key
    daemons, ports = _start_daemons(cfg, workdir, psk_path, identity, stunnel, rsync)

    def ready() -> str:
        down = [f"{name} not listening on {port}" for port, name in ports.items()
                if not listening(port)]
        return "; ".join(down)

    handler = api(cfg, token=token, ready=ready, cache=HashCache(workdir / "hashes"))
    server = ThreadingHTTPServer(("0.0.0.0", cfg.api_port), handler)  # noqa: S104 (pod proxy)
    server.daemon_threads = True

    def shutdown(signum: int, _frame: object) -> None:
        log(f"signal {signum}: stopping")
        daemons.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        os._exit(0)

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    log(f"{cfg.role} up: data {cfg.data}, API on :{cfg.api_port}"
        + (f", tunnel to {cfg.target} (sni {cfg.sni})" if cfg.role == "sender" else ""))
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())

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
per claim), ``MOVER_PSK_FILE`` (default /secret/psk), ``MOVER_API_PORT`` (default 8080),
``MOVER_TARGET`` and ``MOVER_SNI`` (sender), ``MOVER_RSYNC_TIMEOUT`` (sender, seconds without
I/O before a pass gives up, default 300).

HTTP API (the engine reaches it through the API server's pod proxy):
``GET /healthz`` (200 once the daemons listen), ``GET /manifest``, ``GET /usage``, and on the
sender ``POST /pass[?final=1]`` (200 with ``{"rc", "bytes", "files", "seconds", "error"}``
whatever rsync's exit code: any rc other than 0 is a failed pass).

Standard library only (Python 3.11); the key is never logged.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

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
        return Config(role, data, Path(env.get("MOVER_PSK_FILE", "/secret/psk")), api_port,
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


# --- what is on disk -------------------------------------------------------------------------


_HASHES: dict[str, tuple[tuple[int, ...], str]] = {}
"""path -> (identity, sha256): a file whose device, inode, size, mtime and ctime (which no
program can set back) are unchanged since it was hashed keeps its hash. kubehop asks for a
manifest after the pre-copy, so the one inside the freeze only reads what changed since."""


def _identity(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _cached_sha256(path: Path, st: os.stat_result) -> str:
    key = _identity(st)
    known = _HASHES.get(str(path))
    if known is not None and known[0] == key:
        return known[1]
    digest = _sha256(path)
    if _identity(path.lstat()) == key:  # not changed while it was read
        _HASHES[str(path)] = (key, digest)
    return digest


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def manifest(root: Path) -> list[dict[str, Any]]:
    """Every path under ``root`` (not root itself), sorted, symlinks not followed. Paths that
    vanish during the walk (a live service) are left out."""
    entries: list[dict[str, Any]] = []

    def walk(rel: str, path: Path) -> None:
        try:
            with os.scandir(path) as it:
                children = sorted(it, key=lambda e: e.name)
        except FileNotFoundError:
            return
        for child in children:
            crel = f"{rel}/{child.name}" if rel else child.name
            try:
                st = child.stat(follow_symlinks=False)
                entry: dict[str, Any] = {"path": crel, "uid": st.st_uid, "gid": st.st_gid,
                                         "mode": stat.S_IMODE(st.st_mode)}
                if stat.S_ISREG(st.st_mode):
                    entry.update(type="file", size=st.st_size,
                                 sha256=_cached_sha256(Path(child.path), st))
                elif stat.S_ISDIR(st.st_mode):
                    entry["type"] = "dir"
                elif stat.S_ISLNK(st.st_mode):
                    entry.update(type="symlink", target=str(Path(child.path).readlink()))
                else:
                    entry["type"] = "other"
            except FileNotFoundError:
                continue
            entries.append(entry)
            if entry["type"] == "dir":
                walk(crel, Path(child.path))

    walk("", root)
    entries.sort(key=lambda e: str(e["path"]))
    return entries


def usage(root: Path) -> dict[str, int]:
    """Regular files under ``root`` and their apparent size (a sparse file counts in full: it is
    what rsync has to read)."""
    total = files = 0
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            try:
                st = (Path(dirpath) / name).lstat()
            except FileNotFoundError:
                continue
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
                files += 1
    return {"bytes": total, "files": files}


# --- passes ----------------------------------------------------------------------------------


def _stat_number(stats: str, pattern: str) -> int:
    m = re.search(pattern + r":\s*([\d,.]+)", stats)
    return int(re.sub(r"[,.]", "", m.group(1))) if m else 0


def run_pass(cfg: Config, *, final: bool) -> dict[str, Any]:
    """One rsync pass of all of MOVER_DATA into the receiver. Files are compared by size and
    mtime to the nanosecond (``--modify-window=-1``; at whole seconds a database rewritten
    within the second at the same size would be skipped); ``final`` only marks the pass made
    with writes frozen. The checksum manifests compared afterwards catch anything missed."""
    argv = ["rsync", "-aHS", "--numeric-ids", "--delete", "--stats", "--modify-window=-1",
            f"--timeout={cfg.rsync_timeout}"]
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


class Api(BaseHTTPRequestHandler):
    cfg: Config
    ready: Any  # () -> str ("" when healthy, else what is missing)
    pass_lock = threading.Lock()

    def _json(self, code: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/healthz":
            missing = type(self).ready()
            if missing:
                self._json(503, {"ok": False, "error": missing})
            else:
                self._json(200, {"ok": True, "role": self.cfg.role})
        elif path == "/manifest":
            self._json(200, {"entries": manifest(self.cfg.data)})
        elif path == "/usage":
            self._json(200, usage(self.cfg.data))
        else:
            self._json(404, {"error": f"no such endpoint: GET {path}"})

    def do_POST(self) -> None:
        url = urlsplit(self.path)
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


def main() -> int:
    try:
        cfg = Config.from_env(dict(os.environ))
        identity, key = read_psk(cfg.psk_file)
        stunnel = _binary("stunnel4", "stunnel")
        rsync = _binary("rsync")
    except ConfigError as exc:
        log(f"config error: {exc}")
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="mover-"))  # 0700
    # stunnel reads its own copy: a private file whatever mode the Secret was mounted with.
    psk_path = workdir / "psk"
    fd = os.open(psk_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"{identity}:{key}\n")
    del key

    daemons = Daemons()
    if cfg.role == "receiver":
        rsyncd, tunnel = receiver_configs(cfg, workdir, psk_path)
        daemons.start("rsync daemon", [rsync, "--daemon", "--no-detach", f"--config={rsyncd}",
                                       "--address=127.0.0.1", f"--port={RSYNC_PORT}"])
        daemons.start("stunnel server", [stunnel, str(tunnel)])
        ports = {RSYNC_PORT: "rsync daemon", TLS_PORT: "stunnel server"}
    else:
        tunnel = sender_config(cfg, workdir, psk_path, identity)
        daemons.start("stunnel client", [stunnel, str(tunnel)])
        ports = {CLIENT_PORT: "stunnel client"}

    def ready() -> str:
        down = [f"{name} not listening on {port}" for port, name in ports.items()
                if not listening(port)]
        return "; ".join(down)

    Api.cfg = cfg
    Api.ready = staticmethod(ready)
    server = ThreadingHTTPServer(("0.0.0.0", cfg.api_port), Api)  # noqa: S104 (pod proxy)
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

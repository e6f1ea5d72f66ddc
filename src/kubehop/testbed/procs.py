"""Start, find and stop the testbed's long-running processes.

There is no systemd on these machines, and the processes must outlive ``kubehop testbed up``:
each one starts in its own session (so a Ctrl-C of the CLI does not reach it), inside its
cluster's network namespace through ``nsenter --net`` only (the kubelet's volume mounts must stay
visible to containerd and runc, so no private mount namespace), with its output in a log file and
its pid in a pid file.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

from kubehop.errors import TestbedError
from kubehop.waiting import WaitTimeoutError, wait_for


def spawn(
    name: str,
    argv: list[str],
    *,
    run_dir: Path,
    log_dir: Path,
    netns: str | None = None,
    env: dict[str, str] | None = None,
) -> int:
    """Start ``argv`` detached; return its pid. A live process of that name is left alone."""
    pidfile = run_dir / f"{name}.pid"
    existing = read_pid(pidfile)
    if existing is not None:
        return existing
    run_dir.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    full = ["nsenter", f"--net=/run/netns/{netns}", "--", *argv] if netns else list(argv)
    log = (log_dir / f"{name}.log").open("ab")
    try:
        proc = subprocess.Popen(
            full,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
            cwd="/",
        )
    except OSError as exc:
        raise TestbedError(f"cannot start {name} ({argv[0]}): {exc}") from exc
    finally:
        log.close()
    pidfile.write_text(f"{proc.pid}\n")
    return proc.pid


def read_pid(pidfile: Path) -> int | None:
    """The pid in ``pidfile`` if that process still runs (and is not a zombie), else None."""
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def stop_pids(pids: list[int], *, timeout: float = 10.0) -> None:
    """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL whatever is left (and wait up to
    5 s more; a process stuck in the kernel is left to the caller's leftover check)."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        with contextlib.suppress(WaitTimeoutError):
            wait_for(lambda: not any(pid_alive(p) for p in pids), timeout=wait, interval=0.1,
                     what="processes to exit")
            return


def stop(pidfile: Path, *, timeout: float = 10.0) -> None:
    pid = read_pid(pidfile)
    if pid is not None:
        stop_pids([pid], timeout=timeout)
    pidfile.unlink(missing_ok=True)


def pids_matching(fragment: str) -> Iterator[int]:
    """Pids whose command line contains ``fragment`` (to find containerd's shims)."""
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if fragment in cmdline:
            yield int(entry.name)


def pids_in_netns(netns: str) -> list[int]:
    """Every process whose network namespace is the named one (pods' own namespaces excluded)."""
    try:
        target = Path("/run/netns", netns).stat()
    except OSError:
        return []
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            st = (entry / "ns" / "net").stat()
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (target.st_dev, target.st_ino):
            found.append(int(entry.name))
    return found

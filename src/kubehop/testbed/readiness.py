"""Waiting for what the testbed starts to answer, and reporting progress to the user.

A process that dies while starting fails the wait at once with the last line of its log, so a
broken bring-up says why instead of running into its timeout.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from kubehop.errors import TestbedError
from kubehop.testbed import procs
from kubehop.waiting import NotYet, WaitTimeoutError, wait_for

Say = Callable[[str], None]
"""Where the testbed reports its progress, one line at a time (the CLI prints them)."""


def quiet(_: str) -> None:
    pass


def wait_ready(what: str, check: Callable[[], bool], *, timeout: float, log: Path | None,
               pidfile: Path | None = None) -> None:
    """Wait until ``check`` is true (an exception from it counts as not yet); fail at once if
    the process behind it has exited, and name its log either way."""

    def ready() -> bool:
        why = ""
        try:
            if check():
                return True
        except Exception as exc:
            why = str(exc)[:200]
        if pidfile is not None and procs.read_pid(pidfile) is None:
            last = last_line(log) if log else ""
            raise TestbedError(f"{what} exited while starting ({last}); see its log: {log}")
        raise NotYet(why)

    try:
        wait_for(ready, timeout=timeout, interval=0.5, what=what)
    except WaitTimeoutError as exc:
        where = f"; see its log: {log}" if log else ""
        raise TestbedError(f"{what} did not become ready within {timeout:.0f}s{where}") from exc


def last_line(log: Path) -> str:
    try:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines()]
    except OSError:
        return "no log"
    lines = [line for line in lines if line]
    return lines[-1][-200:] if lines else "empty log"


def succeeds(fn: Callable[[], bool]) -> bool:
    """``fn()``, with any exception counting as false: a status check reports, it never fails."""
    try:
        return fn()
    except Exception:
        return False

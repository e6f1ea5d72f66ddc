"""kubehop's one way to wait and to retry, built on tenacity.

Every "until X or give up" in kubehop goes through :func:`wait_for`, and every "this call may
fail for a moment while the cluster catches up" through :func:`retry`, so timeouts read the same
everywhere and a slow machine only makes things slower, never wrong. No fixed sleeps: a wait
checks the condition it is waiting for.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

import tenacity

from kubehop.errors import KubehopError

T = TypeVar("T")


class NotYet(Exception):  # noqa: N818 - reads as "not yet (because ...)" at the raise site
    """Raised by a check to say the condition does not hold yet, and why (for the timeout)."""


class WaitTimeoutError(KubehopError):
    """A condition did not hold in time; the message says what was awaited and the last reason."""


Interval = float | Callable[[], float]
"""Seconds between attempts, or a function giving them at each attempt (a shared budget)."""


def wait_for(check: Callable[[], T | None], *, timeout: float, what: str,
             interval: Interval = 0.1,
             error: type[KubehopError] = WaitTimeoutError) -> T:
    """Call ``check`` every ``interval`` seconds until it returns something other than ``None``
    or ``False`` (returned), for at most ``timeout`` seconds.

    ``check`` raises :class:`NotYet` to say why not yet; any other exception ends the wait at
    once (a failure that will not fix itself, like an image that cannot be pulled). On timeout,
    ``error`` is raised: "timed out after Ns waiting for WHAT (last reason)".
    """
    def attempt() -> T:
        result = check()
        if result is None or result is False:
            raise NotYet("")
        return result

    try:
        return retry(attempt, timeout=timeout, interval=interval, on=(NotYet,))
    except NotYet as exc:
        reason = f" ({exc})" if str(exc) else ""
        raise error(f"timed out after {timeout:g}s waiting for {what}{reason}") from None


def retry(call: Callable[[], T], *, timeout: float = 10, interval: Interval = 0.05,
          on: tuple[type[BaseException], ...] = (KubehopError,)) -> T:
    """Call ``call`` until it stops raising one of ``on`` (for at most ``timeout`` seconds),
    then re-raise the last error: for API calls that fail only until the cluster catches up,
    such as re-using a ClusterIP that is still being released."""
    for trial in tenacity.Retrying(
            stop=tenacity.stop_after_delay(timeout),
            wait=(tenacity.wait_fixed(interval) if isinstance(interval, (int, float))
                  else lambda _state: interval()),
            retry=tenacity.retry_if_exception_type(on),
            reraise=True):
        with trial:
            return call()
    raise AssertionError("unreachable: tenacity re-raises or returns")  # pragma: no cover


class PollBudget:
    """Waits of one kind in this process share a polling budget: each polls every ``base``
    seconds times the number of such waits in progress, so 64 migrations waiting at once make
    as many requests a second as one does. (At a fixed 0.05 s, 16 migrations polling spent the
    process's CPU on parsing answers and starved the ones still copying.)"""

    def __init__(self, base: float) -> None:
        self.base = base
        self.lock = threading.Lock()
        self.active = 0

    @contextlib.contextmanager
    def waiting(self) -> Iterator[None]:
        with self.lock:
            self.active += 1
        try:
            yield
        finally:
            with self.lock:
                self.active -= 1

    def interval(self) -> float:
        return self.base * max(1, self.active)

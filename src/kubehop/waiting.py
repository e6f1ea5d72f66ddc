"""kubehop's one way to wait and to retry, built on tenacity.

Every "until X or give up" in kubehop goes through :func:`wait_for`, and every "this call may
fail for a moment while the cluster catches up" through :func:`retry`, so timeouts read the same
everywhere and a slow machine only makes things slower, never wrong. No fixed sleeps: a wait
checks the condition it is waiting for.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import tenacity

from kubehop.errors import KubehopError

T = TypeVar("T")


class NotYet(Exception):  # noqa: N818 - reads as "not yet (because ...)" at the raise site
    """Raised by a check to say the condition does not hold yet, and why (for the timeout)."""


class WaitTimeoutError(KubehopError):
    """A condition did not hold in time; the message says what was awaited and the last reason."""


def wait_for(check: Callable[[], T | None], *, timeout: float, what: str,
             interval: float = 0.1,
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


def retry(call: Callable[[], T], *, timeout: float = 10, interval: float = 0.05,
          on: tuple[type[BaseException], ...] = (KubehopError,)) -> T:
    """Call ``call`` until it stops raising one of ``on`` (for at most ``timeout`` seconds),
    then re-raise the last error: for API calls that fail only until the cluster catches up,
    such as re-using a ClusterIP that is still being released."""
    for trial in tenacity.Retrying(
            stop=tenacity.stop_after_delay(timeout),
            wait=tenacity.wait_fixed(interval),
            retry=tenacity.retry_if_exception_type(on),
            reraise=True):
        with trial:
            return call()
    raise AssertionError("unreachable: tenacity re-raises or returns")  # pragma: no cover

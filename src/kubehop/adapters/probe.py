"""Plain HTTP requests through a load balancer, as a client of the service would send them:
the migration's proof that the new path answers before anyone is sent down it."""

from __future__ import annotations

import httpx

from kubehop.errors import KubehopError


class ProbeError(KubehopError):
    """A probe request got no HTTP answer (refused, reset, timed out)."""


def http_get(url: str, host: str, *, timeout: float = 3) -> tuple[int, str]:
    """(status, body) of a GET of ``url`` with that Host header."""
    try:
        reply = httpx.get(url, headers={"Host": host}, timeout=timeout)
    except httpx.HTTPError as exc:
        raise ProbeError(f"{url} (Host {host}): {type(exc).__name__}") from exc
    return reply.status_code, reply.text

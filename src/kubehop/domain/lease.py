"""Leader election on a ``coordination.k8s.io/v1`` Lease: the pure decisions.

Two controller replicas must never both act (two migrations of one service at once would fight
over its Service and DNS record). The Lease is the arbiter, the way client-go's leaderelection
uses it: whoever holds it renews ``renewTime``; a lease not renewed for ``leaseDurationSeconds``
is expired and may be taken, and every change of holder counts one ``leaseTransitions``. Who
wins a simultaneous take is not decided here but by the API server's optimistic concurrency
(an update names the ``resourceVersion`` it read; the second writer gets 409 Conflict).

Expiry compares the lease's ``renewTime`` (the holder's clock) with the reader's clock, so the
replicas' clocks must agree to well within the lease time (NTP; in a cluster the nodes' clocks).
The time comes in as an argument: nothing here reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

Decision = Literal["renew", "take", "wait"]


@dataclass(frozen=True)
class LeaseRecord:
    """What a Lease's ``spec`` says, times as seconds since the epoch."""

    holder: str
    """``holderIdentity``; empty when nobody holds it (released, or never held)."""
    duration_s: float
    acquire_time: float | None = None
    renew_time: float | None = None
    transitions: int = 0


def format_micro(t: float) -> str:
    """A Kubernetes ``MicroTime``: RFC 3339 in UTC with microseconds."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_micro(text: str | None) -> float | None:
    """Seconds since the epoch of a ``MicroTime`` (or a plain RFC 3339 time); None if absent
    or unreadable (a lease whose renew time cannot be read counts as never renewed)."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def from_spec(spec: dict[str, Any] | None, default_duration_s: float) -> LeaseRecord:
    spec = spec or {}
    return LeaseRecord(
        holder=str(spec.get("holderIdentity") or ""),
        duration_s=float(spec.get("leaseDurationSeconds") or default_duration_s),
        acquire_time=parse_micro(spec.get("acquireTime")),
        renew_time=parse_micro(spec.get("renewTime")),
        transitions=int(spec.get("leaseTransitions") or 0))


def to_spec(record: LeaseRecord) -> dict[str, Any]:
    spec: dict[str, Any] = {"holderIdentity": record.holder,
                            "leaseDurationSeconds": max(1, round(record.duration_s)),
                            "leaseTransitions": record.transitions}
    if record.acquire_time is not None:
        spec["acquireTime"] = format_micro(record.acquire_time)
    if record.renew_time is not None:
        spec["renewTime"] = format_micro(record.renew_time)
    return spec


def expired(record: LeaseRecord, now: float) -> bool:
    """Nobody holds it, or its holder has not renewed it for its whole duration."""
    if not record.holder or record.renew_time is None:
        return True
    return record.renew_time + record.duration_s < now


def decide(record: LeaseRecord | None, identity: str, now: float) -> Decision:
    """What ``identity`` may do with the lease: renew its own, take an absent or expired one,
    or wait while another holds it. A holder renews even a lease it let expire: nobody else
    took it (that would have changed its holder), and the write's resourceVersion check catches
    one taken in between."""
    if record is None:
        return "take"
    if record.holder == identity:
        return "renew"
    return "take" if expired(record, now) else "wait"


def claim(record: LeaseRecord | None, identity: str, now: float,
          duration_s: float) -> LeaseRecord:
    """The record to write to renew or take the lease at ``now``: a renewal moves only
    ``renewTime``; a change of holder sets ``acquireTime`` and counts one transition."""
    if record is None:
        return LeaseRecord(identity, duration_s, now, now, 0)
    if record.holder == identity:
        return replace(record, duration_s=duration_s, renew_time=now,
                       acquire_time=record.acquire_time or now)
    return LeaseRecord(identity, duration_s, now, now, record.transitions + 1)


def released(record: LeaseRecord) -> LeaseRecord:
    """The record a holder writes when it steps down on purpose, so a standby may take the
    lease at once instead of waiting out its duration."""
    return replace(record, holder="", renew_time=None, acquire_time=None)

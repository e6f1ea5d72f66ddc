"""Leader election on a ``coordination.k8s.io/v1`` Lease, for controller replicas.

One :class:`LeaderElector` per replica tries, every ``renew_every`` seconds, to take or renew
the Lease (decisions in :mod:`kubehop.domain.lease`). Every write names the
``resourceVersion`` it read, so of two replicas that both saw the lease expire exactly one
write succeeds; the other gets 409 Conflict and stays a follower.

A leader counts itself the leader only until ``lease_seconds - renew_every`` after the start of
its last successful renewal (its *deadline*), measured on the monotonic clock. Another replica
may take the lease only ``lease_seconds`` after that renewal, so a leader that cannot reach the
API server (or hangs) has stopped acting a whole ``renew_every`` before anyone else starts.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from kubehop.adapters.kube import KubeCluster, KubeConflictError, KubeError, Manifest
from kubehop.domain import lease as decide
from kubehop.errors import UsageError

log = logging.getLogger(__name__)

Outcome = Literal["acquired", "renewed", "held", "conflict", "error"]
"""What one attempt did: took the lease, renewed our own, found it held by another (still
valid), lost a race for it (409), or could not reach the API server."""


def default_identity() -> str:
    """Unique per process: the pod's name (``HOSTNAME`` in a pod) and a random suffix, so a
    restarted replica with the same name does not believe it still holds the lease."""
    host = os.environ.get("HOSTNAME") or socket.gethostname()
    return f"{host}_{uuid.uuid4().hex[:8]}"


@dataclass
class _Held:
    """The last lease object we wrote or read (its resourceVersion is our next write's)."""

    manifest: Manifest
    record: decide.LeaseRecord


class LeaderElector:
    """Campaigns for the Lease ``namespace/name`` in ``kube`` as ``identity``."""

    def __init__(self, kube: KubeCluster, name: str, namespace: str, identity: str, *,
                 lease_seconds: float = 15.0, renew_every: float | None = None) -> None:
        every = lease_seconds / 3 if renew_every is None else renew_every
        if lease_seconds < 1 or not 0 < every < lease_seconds / 2:
            raise UsageError(f"lease of {lease_seconds:g}s renewed every {every:g}s: the lease "
                             "must be at least 1 s and renewed more than twice within it")
        if not identity:
            raise UsageError("a leader election identity must not be empty")
        self.kube = kube
        self.name = name
        self.namespace = namespace
        self.identity = identity
        self.lease_seconds = lease_seconds
        self.renew_every = every
        self.last_outcome: Outcome | None = None
        self.last_error = ""
        self._held: _Held | None = None
        self._deadline = 0.0  # monotonic; we lead until then
        self._lock = threading.Lock()

    @property
    def _timeout(self) -> float:
        """One API call may take at most this: a renewal that hangs longer would run past the
        deadline anyway."""
        return max(1.0, self.renew_every)

    def is_leader(self) -> bool:
        """True while we hold the lease and our last renewal is recent enough (see the
        module's docstring): safe to act."""
        with self._lock:
            return self._held is not None and time.monotonic() < self._deadline

    def holder(self) -> str:
        """Who holds the lease as far as we last saw ('' if nobody or unknown)."""
        with self._lock:
            return self._held.record.holder if self._held else ""

    def try_acquire_or_renew(self) -> Outcome:
        """One attempt: read the lease, then take or renew it if the rules allow."""
        started = time.monotonic()
        outcome: Outcome
        try:
            current = self._read()
            record = (None if current is None
                      else decide.from_spec(current.get("spec"), self.lease_seconds))
            action = decide.decide(record, self.identity, time.time())
            if action == "wait":
                self._lost()
                outcome = "held"
                self.last_error = f"held by {record.holder if record else '?'}"
            else:
                new = decide.claim(record, self.identity, time.time(), self.lease_seconds)
                written = self._write(current, new)
                with self._lock:
                    self._held = _Held(written, new)
                    self._deadline = started + self.lease_seconds - self.renew_every
                outcome = "renewed" if action == "renew" else "acquired"
                self.last_error = ""
        except KubeConflictError as exc:
            self._lost()
            outcome, self.last_error = "conflict", str(exc)
        except KubeError as exc:
            # Not reachable: keep what we hold until the deadline passes (is_leader says so).
            outcome, self.last_error = "error", str(exc)
        self.last_outcome = outcome
        return outcome

    def _read(self) -> Manifest | None:
        return self.kube.get_lease(self.name, self.namespace, timeout=self._timeout)

    def _write(self, current: Manifest | None, record: decide.LeaseRecord) -> Manifest:
        if current is None:
            return self.kube.create_lease({
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace,
                             "labels": {"app.kubernetes.io/managed-by": "kubehop"}},
                "spec": decide.to_spec(record)}, timeout=self._timeout)
        manifest = {**current, "spec": decide.to_spec(record)}
        return self.kube.update_lease(manifest, timeout=self._timeout)

    def _lost(self) -> None:
        with self._lock:
            self._held = None
            self._deadline = 0.0

    def release(self) -> bool:
        """Step down on purpose (a clean shutdown): write the lease as held by nobody, so a
        standby takes it at its next attempt instead of after the lease time. True if done."""
        with self._lock:
            held, self._held, self._deadline = self._held, None, 0.0
        if held is None:
            return False
        try:
            self.kube.update_lease({**held.manifest,
                                    "spec": decide.to_spec(decide.released(held.record))},
                                   timeout=self._timeout)
        except KubeError as exc:  # taken meanwhile, or unreachable: it expires by itself
            log.warning("could not release lease %s/%s: %s", self.namespace, self.name, exc)
            return False
        return True

    def run(self, stop: threading.Event, on_started_leading: Callable[[], None],
            on_stopped_leading: Callable[[], None], *, release_on_stop: bool = False) -> None:
        """Campaign until ``stop`` is set: calls ``on_started_leading`` when this replica
        becomes the leader and ``on_stopped_leading`` the moment it is not any more (lost a
        race, or could not renew before its deadline). Both run in this thread; keep them
        short. Once it returns, :meth:`is_leader` is False; with ``release_on_stop`` the lease is
        released on the way out, else it stays held until it expires."""
        leading = False
        try:
            while not stop.is_set():
                self.try_acquire_or_renew()
                now_leader = self.is_leader()
                if now_leader and not leading:
                    leading = True
                    on_started_leading()
                elif leading and not now_leader:
                    leading = False
                    on_stopped_leading()
                # A leader wakes at its deadline too, so losing it is noticed at once even
                # when renewals fail.
                wait = self.renew_every
                if leading:
                    with self._lock:
                        wait = min(wait, max(0.0, self._deadline - time.monotonic()))
                stop.wait(wait)
                if leading and not self.is_leader():
                    leading = False
                    on_stopped_leading()
        finally:
            # Stopped: no longer acting, whatever the lease says; without a release the lease
            # stays ours on the API server until it expires (as if this replica had died).
            if release_on_stop:
                self.release()
            self._lost()
            if leading:
                on_stopped_leading()

"""The lifecycle of ``kubehop controller run``: its options checked, what it opens, how a replica
waits for the Lease, what it does once it leads, and how everything is closed again.

Kept apart from :mod:`kubehop.cli.controller` so that the command reads as its options and the
few steps it takes, each named here for what it does. Everything prints through the ``say``
it is given, so the command's console stays the one place output goes.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kubehop.adapters import inventory as inv_file
from kubehop.adapters.kube import KubeCluster
from kubehop.adapters.lease import LeaderElector
from kubehop.adapters.prometheus import Prometheus
from kubehop.adapters.store import Store, default_url
from kubehop.controller import probes, resources
from kubehop.controller.loop import Controller, CycleReport
from kubehop.controller.metrics import ControllerMetrics
from kubehop.controller.observe import Observer
from kubehop.controller.policy_source import FilePolicy, PolicySource, ResourcePolicy
from kubehop.domain.model import Inventory
from kubehop.engine.context import Adapters
from kubehop.engine.executor import Executor
from kubehop.errors import UsageError
from kubehop.web import api

Say = Callable[[str], None]
Health = Callable[[], tuple[bool, str]]


def check_policy_options(policy: Path | None, policy_resource: str | None,
                         interval: float | None) -> FilePolicy | None:
    """The file policy when ``--policy`` is given; refuses both or neither source, and a
    non-positive ``--interval``, before anything is opened."""
    if (policy is None) == (policy_resource is None):
        raise UsageError("give exactly one of --policy FILE and --policy-resource NAME")
    file_source = FilePolicy(policy) if policy is not None else None
    if interval is not None and interval <= 0:
        raise UsageError("--interval must be more than 0 seconds")
    return file_source


def load_run_inventory(inventory: str | None, cluster: str, *,
                       needs_management: bool) -> tuple[Inventory, str]:
    """The inventory and its Prometheus URL, refused with a one-line fix when it lacks the
    management cluster (only when something needs it) or the Prometheus every observation
    reads."""
    inv = inv_file.load(inventory)
    if needs_management and cluster not in inv.clusters:
        raise UsageError(f"--cluster {cluster!r} is not in the inventory (it has "
                         f"{', '.join(sorted(inv.clusters))}); name the management cluster")
    if not inv.prometheus:
        raise UsageError("the inventory names no prometheus URL; add 'prometheus: http://...' "
                         "(the Prometheus that scrapes every cluster)")
    return inv, inv.prometheus


@dataclass
class RunParts:
    """What ``controller run`` opened; :meth:`close` closes it whatever happened."""

    clusters: dict[str, KubeCluster]
    store: Store
    metrics: ControllerMetrics
    prometheus: Prometheus
    controller: Controller
    server: api.Server | None = None

    def close(self) -> None:
        if self.server:
            self.server.stop()
        self.controller.close()
        self.prometheus.close()
        for kube in self.clusters.values():
            kube.close()


def open_parts(inv: Inventory, prometheus_url: str, file_source: FilePolicy | None, *,
               cluster: str, policy_resource: str | None, db: str | None, dry_run: bool,
               say: Say) -> RunParts:
    """Connect to every cluster, read the policy once, open the store and build the controller.
    A policy source that cannot be built closes the clusters it would have used."""
    clusters = {name: KubeCluster(kubeconfig=inv.kubeconfig, context=c.context, name=name)
                for name, c in inv.clusters.items()}
    try:
        source: PolicySource = file_source or ResourcePolicy(
            clusters[cluster], policy_resource or "", say=say)
    except BaseException:
        for kube in clusters.values():
            kube.close()
        raise
    pol = source.refresh()
    store = Store(db or default_url())
    metrics = ControllerMetrics()
    prometheus = Prometheus(prometheus_url)
    controller = Controller(
        inventory=inv, policy=pol, store=store,
        observer=Observer(inv, clusters, prometheus, max_age=pol.placement.max_data_age),
        clusters=clusters, executor=lambda: Executor(store, connect=Adapters()),
        dry_run=dry_run, say=say, metrics=metrics, source=source)
    return RunParts(clusters, store, metrics, prometheus, controller)


def health_check(parts: RunParts, elector: LeaderElector | None,
                 interval: float | None) -> Health:
    """``/healthz`` of ``controller run``: a leader is healthy while its cycles keep ending, a
    standby while it can read the Lease."""
    def health() -> tuple[bool, str]:
        if elector is not None and not elector.is_leader():
            # A standby is healthy while it can read the Lease (so it could take over).
            if elector.last_outcome in ("held", "conflict"):
                return True, f"ok: standby, the leader is {elector.holder() or 'elsewhere'}"
            return False, f"standby cannot reach the lease: {elector.last_error or 'not yet'}"
        last = parts.metrics.last_cycle_at
        every = interval or parts.controller.policy.interval  # the policy's may change
        if last is not None and time.time() - last <= 3 * every + 30:
            return True, f"ok: last cycle {time.time() - last:.1f}s ago"
        return False, "no cycle has ended recently"
    return health


def start_api(parts: RunParts, inv: Inventory, host: str, port: int, health: Health,
              say: Say) -> api.Server | None:
    """The API and dashboard server, started; none when ``--listen ''`` asked for none."""
    server = api.Server(api.create_app(parts.store, parts.metrics.registry, health,
                                       prometheus=inv.prometheus), host, port) \
        if host else None
    if server:
        server.start()
        say(f"controller API on http://{host}:{port} (/healthz, /metrics, /api/v1, "
            "and the dashboard at /)")
    return server


def print_cycle(report: CycleReport, say: Say) -> None:
    for line in report.missing:
        say(f"missing data: {line}")
    for ev in report.evaluations:
        say(f"rule {ev.rule} on {ev.subject}: {ev.detail}")
    for d in report.decisions:
        say(f"{d.action:8} {d.service}: {d.explanation}")


@dataclass(frozen=True)
class RunMode:
    """How ``controller run`` acts once it leads."""

    interval: float | None
    once: bool
    dry_run: bool
    lease_seconds: float
    reconcile_in: KubeCluster | None
    """The management cluster whose Migrations it also runs (``--reconcile``), if any."""


def serve(parts: RunParts, inv: Inventory, elector: LeaderElector | None, *, host: str,
          port: int, mode: RunMode, say: Say) -> None:
    """Serve the API, wait for the Lease (with ``--leader-elect``), act, and close everything
    on the way out, SIGTERM and Ctrl-C included."""
    period = mode.interval or parts.controller.policy.interval
    stop = threading.Event()
    if elector is not None:
        parts.controller.acting = elector.is_leader
    parts.server = start_api(parts, inv, host, port, health_check(parts, elector, mode.interval),
                             say)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    campaign = None
    try:
        if elector is not None:
            campaign = Campaign(elector, stop, parts.metrics, say)
            if not campaign.wait_leading():
                return
        act(parts, inv, stop, mode=mode, period=period, say=say)
    finally:
        stop.set()
        if campaign is not None:
            campaign.thread.join(timeout=2 * mode.lease_seconds)
        parts.close()


def act(parts: RunParts, inv: Inventory, stop: threading.Event, *, mode: RunMode,
        period: float, say: Say) -> None:
    """The leader's work: probes in place, what an earlier leader left finished, then cycles
    (one with ``--once``) until ``stop``."""
    controller = parts.controller
    probes.ensure(inv, parts.clusters)  # the leader's job: a standby changes nothing
    controller.recover()
    if mode.reconcile_in is not None:
        reconciler = resources.MigrationReconciler(mode.reconcile_in, inv, parts.store, say=say)
        threading.Thread(target=reconciler.run, args=(stop,), name="kubehop-reconcile",
                         daemon=True).start()
    if mode.once:
        print_cycle(controller.cycle(), say)
        controller.wait_idle()
        return
    say(f"controller running: every {period:g}s"
        + (" (dry run: nothing moves)" if mode.dry_run else ""))
    controller.run(stop, interval=mode.interval)
    controller.wait_idle()


class Campaign:
    """The elector's loop in a thread; the main thread waits until this replica leads."""

    def __init__(self, elector: LeaderElector, stop: threading.Event,
                 metrics: ControllerMetrics, say: Say) -> None:
        self.elector = elector
        self.metrics = metrics
        self.say = say
        metrics.leader.set(0)
        self.stop = stop
        self.leading = threading.Event()
        self.thread = threading.Thread(target=self._run, name="kubehop-leader-election",
                                       daemon=True)

    def _run(self) -> None:
        self.elector.run(self.stop, self._started, self._stopped, release_on_stop=True)

    def _started(self) -> None:
        self.say(f"leading as {self.elector.identity} (lease {self.elector.namespace}/"
                 f"{self.elector.name}): finishing what an earlier leader left, then acting")
        self.metrics.leader.set(1)
        self.leading.set()

    def _stopped(self) -> None:
        self.metrics.leader.set(0)
        if self.stop.is_set():
            self.say("stepped down (lease released)")
            return
        # Lost the lease while running (another replica took it, or it could not be renewed in
        # time): stop acting at once. Migrations in flight die with the process; the new leader
        # finishes or rolls them back from the store (Controller.recover).
        self.say(f"lost the lease: {self.elector.last_error or 'not renewed in time'}; "
                 "exiting so the new leader alone acts")
        sys.stdout.flush()
        os._exit(3)

    def wait_leading(self) -> bool:
        """Block until this replica leads (True) or is stopped first (False)."""
        self.say(f"standing by as {self.elector.identity} for lease "
                 f"{self.elector.namespace}/{self.elector.name} in {self.elector.kube.name}")
        self.thread.start()
        reported = ""
        while not self.stop.is_set():
            if self.leading.wait(1.0):
                return True
            problem = self.elector.last_error if self.elector.last_outcome == "error" else ""
            if problem and problem != reported:
                self.say(f"cannot campaign for the lease yet: {problem}")
            reported = problem
        return False

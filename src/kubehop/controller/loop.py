"""The controller: monitor, analyse, discover, plan, execute — one cycle every ``interval``.

Each cycle takes a :class:`~kubehop.controller.observe.Snapshot`, evaluates the policy's rules
(their pending/firing state lives in the store, so a restart does not reset a ``for:``), asks the
pure placement function where each managed service should run, records every decision with its
candidate table, and starts the migrations it decided on (at most ``maxConcurrent`` at once,
never two for one service). Nothing is decided on missing data: a cycle that lacks a fact the
decision needs records a ``no-data`` decision naming what is missing.

Anti-flap, in order: a rule must hold ``for:`` before it fires and keeps firing
``keepFiringFor`` after; a move must gain ``minGain`` unless the service's cluster is excluded
by a firing rule (a forced move); a voluntary move waits until the service has dwelt
``minDwell`` where it is; no move of a service within ``cooldown`` of its last attempt; a failed
migration doubles that wait each time (backoff), so nothing is retried in a tight loop.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kubehop.adapters.kube import KubeCluster
from kubehop.adapters.prometheus import MonitoringError
from kubehop.adapters.store import Store
from kubehop.controller import events
from kubehop.controller.metrics import ControllerMetrics
from kubehop.controller.observe import Observer, ServiceFacts, Snapshot, Wanted
from kubehop.domain import placement, rules
from kubehop.domain.model import Inventory, MigrationRequest, Status
from kubehop.domain.policy import Policy, Rule
from kubehop.engine.executor import Executor
from kubehop.engine.report import Report
from kubehop.errors import KubehopError

if TYPE_CHECKING:
    from kubehop.controller.policy_source import PolicySource

HEARTBEAT_S = 60.0
"""An unchanged decision is recorded again at most this often (a steady 'stay' is not news)."""
MAX_BACKOFF_S = 3600.0

Say = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


@dataclass
class CycleReport:
    """What one cycle saw and did (for ``--once``, the tests and the log)."""

    at: float
    missing: list[str] = field(default_factory=list)
    evaluations: list[rules.Evaluation] = field(default_factory=list)
    decisions: list[placement.Decision] = field(default_factory=list)
    started: list[str] = field(default_factory=list)
    """Migration ids started by this cycle."""
    recorded: list[placement.Decision] = field(default_factory=list)
    """The decisions stored (news, or a heartbeat): what is published where the policy
    lives. A steady 'stay' every cycle is not, or a 2 s interval would flood the Events."""


class Controller:
    """One controller over one inventory, policy and store."""

    def __init__(self, *, inventory: Inventory, policy: Policy, store: Store, observer: Observer,
                 clusters: dict[str, KubeCluster], executor: Callable[[], Executor],
                 dry_run: bool = False, say: Say = _quiet,
                 metrics: ControllerMetrics | None = None,
                 acting: Callable[[], bool] | None = None,
                 source: PolicySource | None = None) -> None:
        self.inventory = inventory
        self.policy = policy
        self.source = source
        """Asked for the policy at the start of every cycle and told the recorded decisions
        after (a PlacementPolicy object); None: ``policy`` for good."""
        self.store = store
        self.observer = observer
        self.kube = clusters
        self.new_executor = executor
        self.dry_run = dry_run
        self.say = say
        self.metrics = metrics or ControllerMetrics()
        self.acting = acting or (lambda: True)
        """May this replica act now (is it the leader)? Checked before every cycle and again
        before every migration it starts, so one that lost its lease mid-cycle starts none."""
        self.pool_size = policy.placement.max_concurrent
        self.pool = ThreadPoolExecutor(max_workers=self.pool_size,
                                       thread_name_prefix="kubehop-migration")
        self.active: dict[str, Future[Report]] = {}
        self.lock = threading.Lock()
        self.failures: dict[str, int] = {}
        self.last_attempt: dict[str, float] = {}
        self.last_recorded: dict[str, tuple[str, str | None, float]] = {}
        self.fired_at: dict[str, float] = {}
        self._learn_history()

    # -- start-up -------------------------------------------------------------------------

    def _learn_history(self) -> None:
        """Cooldowns and backoffs survive a restart: they are read back from the store's
        migrations (the last attempt per service, and how many failed in a row). Read again
        by :meth:`recover`: a standby that takes over learns what the leader did meanwhile."""
        self.last_attempt.clear()
        self.failures.clear()
        for row in self.store.list():
            key = f"{row.request.get('namespace')}/{row.request.get('service')}"
            self.last_attempt[key] = max(self.last_attempt.get(key, 0.0), row.updated)
            if row.status in (Status.FAILED, Status.ROLLED_BACK):
                self.failures[key] = self.failures.get(key, 0) + 1
            elif row.status == Status.SUCCEEDED:
                self.failures.pop(key, None)

    def recover(self) -> list[Report]:
        """Finish what a killed controller left half-done: every migration it started that is
        still running or rolling back is resumed from the store (finished, or its rollback
        finished), before any new decision is taken. Also how a standby takes over from a
        leader (``--leader-elect``): it first learns the cooldowns and backoffs the leader
        left in the store."""
        self._learn_history()
        reports = []
        mine = {d.migration_id for d in self.store.decisions(limit=10_000) if d.migration_id}
        for row in self.store.list():
            if row.id in mine and row.status in (Status.RUNNING, Status.ROLLING_BACK):
                self.say(f"resuming migration {row.id} ({row.status}) left by an earlier run")
                report = self.new_executor().resume(self.inventory, row.id)
                self._finished(row.request.get("namespace", ""), row.request.get("service", ""),
                               report)
                reports.append(report)
        return reports

    # -- the cycle --------------------------------------------------------------------------

    def wanted(self) -> list[Wanted]:
        return [Wanted(s.namespace, s.name, cpu=s.cpu, mem=s.memory,
                       clients=tuple((c.cluster, c.weight) for c in s.clients))
                for s in self.policy.services]

    def _use(self, policy: Policy) -> None:
        """Follow a new version of the policy from the next cycle on: its rules, services and
        settings are read through ``self.policy``; only the data age and the pool size were
        taken from it at start."""
        if policy is self.policy:
            return
        self.policy = policy
        self.observer.max_age = policy.placement.max_data_age
        if policy.placement.max_concurrent > self.pool_size:
            # Running migrations finish in the old pool (its threads are not cancelled).
            self.pool.shutdown(wait=False)
            self.pool_size = policy.placement.max_concurrent
            self.pool = ThreadPoolExecutor(max_workers=self.pool_size,
                                           thread_name_prefix="kubehop-migration")

    def cycle(self) -> CycleReport:
        if self.source is not None:
            self._use(self.source.refresh())
        snap = self.observer.snapshot(self.wanted())
        report = CycleReport(at=snap.at, missing=list(snap.missing))
        self._record_topology(snap)
        report.missing += self._analyse(snap, report)
        for key, svc in sorted(snap.services.items()):
            decision = self._plan(snap, svc, report)
            if decision.action == "move" and not self._may_start(key):
                decision.action = "hold"
                decision.explanation = (f"waiting: at most {self.policy.placement.max_concurrent}"
                                        f" migrations at once; {decision.explanation}")
            report.decisions.append(decision)
            did = self._record(key, svc, decision, snap.at)
            if did is not None:
                report.recorded.append(decision)
            if decision.action == "move" and not self.dry_run and did is not None:
                if not self.acting():
                    self.say(f"not the leader any more: migration of {key} not started")
                    continue
                report.started.append(self._execute(svc, decision, did))
        self.metrics.cycle_done(snap.at, bool(report.missing))
        if self.source is not None and report.recorded:
            try:
                self.source.publish(report.recorded, snap.at)
            except KubehopError as exc:  # the store has them; showing them is a courtesy
                self.say(f"decisions not published: {exc}")
        return report

    def _record_topology(self, snap: Snapshot) -> None:
        for c in snap.clusters.values():
            if c.cpu_allocatable is not None:
                self.store.upsert_cluster(
                    c.name, c.tier, cpu_capacity=c.cpu_capacity or 0.0,
                    cpu_allocatable=c.cpu_allocatable, mem_capacity=c.mem_capacity or 0.0,
                    mem_allocatable=c.mem_allocatable or 0.0, load_balancer=c.load_balancer,
                    seen=snap.at)
        for (a, b), ms in snap.rtt_ms.items():
            if a < b:
                self.store.add_link_sample(a, b, ms, snap.at)
        for key, svc in snap.services.items():
            spec = {"cpu": svc.cpu, "memory": svc.mem, "clients": [list(c) for c in svc.clients],
                    "source": svc.source, "running_in": list(svc.running_in)}
            self.store.upsert_service(svc.namespace, svc.name,
                                      cluster=",".join(svc.running_in), spec=spec, seen=snap.at)
            if len(svc.running_in) == 1 and key not in self.active:
                here = svc.running_in[0]
                current = self.store.current_placement(svc.namespace, svc.name)
                if current is None or current.cluster != here:
                    # First seen, or moved by someone else: its dwell time starts now.
                    self.store.record_placement(svc.namespace, svc.name, here, snap.at, None)

    def _values(self, rule: Rule, snap: Snapshot) -> dict[str, float | None]:
        """The rule's value per subject; None where it is not known this cycle."""
        if rule.scope == "cluster":
            subjects = [c for c in snap.clusters if not rule.clusters or c in rule.clusters]
        else:
            subjects = sorted(snap.services)
        if rule.expr in ("cpu_headroom", "memory_headroom"):
            return {s: getattr(snap.clusters[s], rule.expr) for s in subjects}
        if rule.expr == "service_latency_ms":
            return {s: self._latency(snap, snap.services[s]) for s in subjects}
        values: dict[str, float | None] = dict.fromkeys(subjects)
        try:
            samples = self.observer.query(rule.expr)
        except MonitoringError:
            return values
        for sample in samples:
            if rule.scope == "cluster":
                subject = sample.labels.get("cluster", "")
            else:
                subject = f"{sample.labels.get('namespace', '')}/{sample.labels.get('service', '')}"
            if subject in values:
                values[subject] = sample.value
        return values

    def _latency(self, snap: Snapshot, svc: ServiceFacts) -> float | None:
        """``service_latency_ms``: what its clients see where it runs now, by the same model
        placement scores (client-weighted RTT to its cluster plus its own service time); None
        while it is not in exactly one cluster or a link is not measured."""
        if len(svc.running_in) != 1:
            return None
        spec = self.policy.service(svc.namespace, svc.name)
        clients = svc.clients or ((svc.running_in[0], 1.0),)
        total = weight = 0.0
        for cluster, w in clients:
            rtt = placement.rtt_between(snap.rtt_ms, cluster, svc.running_in[0])
            if rtt is None:
                return None
            total, weight = total + w * rtt, weight + w
        return total / weight + (spec.service_time_ms if spec else 0.0)

    def _analyse(self, snap: Snapshot, report: CycleReport) -> list[str]:
        """Evaluate every rule on every subject (the state is read from and written back to
        the store only when it changes); the rules whose data is missing, with why."""
        states = self.store.rule_states()
        missing: list[str] = []
        for rule in self.policy.rules:
            for subject, value in self._values(rule, snap).items():
                before = rules.RuleState.from_dict(states.get((rule.name, subject), {}))
                state, ev = rules.evaluate(rule, before, value, snap.at, subject)
                report.evaluations.append(ev)
                self.metrics.evaluated(rule.name, ev.state)
                if state != before:
                    self.store.save_rule_state(rule.name, subject, state.to_dict())
                    self.store.add_evaluation(snap.at, rule.name, subject, value, ev.state,
                                              ev.detail)
                if state.state == "missing":
                    missing.append(f"rule {rule.name} on {subject}: no data")
                if state.state == "firing":
                    self.fired_at.setdefault(subject, state.active_since or snap.at)
                else:
                    self.fired_at.pop(subject, None)
        return missing

    def _plan(self, snap: Snapshot, svc: ServiceFacts,
              report: CycleReport) -> placement.Decision:
        key = svc.key
        spec = self.policy.service(svc.namespace, svc.name)
        if key in self.active:
            return placement.hold(key, svc.running_in, "a migration of it is running")
        if len(svc.running_in) != 1:
            where = ", ".join(svc.running_in) or "no cluster"
            return placement.hold(key, svc.running_in,
                                  f"ready pods in {where}: not exactly one cluster")
        if report.missing:
            # Conservative on purpose: one unknown fact (a cluster's load, a link, a rule)
            # can change the winner, so nothing is judged until the picture is whole.
            return placement.no_data(key, svc.running_in[0], report.missing)
        views = [placement.ClusterView(
            name=c.name, tier=c.tier, cpu_allocatable=c.cpu_allocatable or 0.0,
            mem_allocatable=c.mem_allocatable or 0.0, cpu_used=c.cpu_used or 0.0,
            mem_used=c.mem_used or 0.0) for c in snap.clusters.values()]
        clients = svc.clients or ((svc.running_in[0], 1.0),)
        view = placement.ServiceView(
            namespace=svc.namespace, name=svc.name, cluster=svc.running_in[0], cpu=svc.cpu,
            mem=svc.mem, clients=clients,
            service_time_ms=spec.service_time_ms if spec else 0.0,
            allowed_tiers=tuple(spec.allowed_tiers) if spec else ("edge", "fog", "cloud"),
            max_latency_ms=spec.max_latency_ms if spec else None)
        excluded = rules.exclusions(report.evaluations, service=key,
                                    cluster=svc.running_in[0])
        for cluster, why in arrival_exclusions(self.policy.rules, views, view).items():
            excluded.setdefault(cluster, why)
        current = self.store.current_placement(svc.namespace, svc.name)
        settings = self.policy.placement
        last = self.last_attempt.get(key)
        # Each failure in a row doubles the wait (the first failure waits one cooldown).
        cooldown = settings.cooldown * 2 ** max(0, self.failures.get(key, 0) - 1)
        return placement.decide(
            view, views, snap.rtt_ms, excluded,
            placement.PlacementSettings(weight_headroom=settings.weights.headroom,
                                        weight_latency=settings.weights.latency,
                                        min_gain=settings.min_gain),
            now=snap.at, last_move=last, since=current.since if current else snap.at,
            cooldown=min(cooldown, MAX_BACKOFF_S), min_dwell=settings.min_dwell)

    def _record(self, key: str, svc: ServiceFacts, decision: placement.Decision,
                at: float) -> int | None:
        """Store the decision when it is news (another action or target, or a move), or as a
        heartbeat; post an Event for a move and for a change into no-data. Its id, if stored."""
        self.metrics.decided(decision.action)
        before = self.last_recorded.get(key)
        news = (before is None or (before[0], before[1]) != (decision.action, decision.target)
                or decision.action == "move")
        if not news and before is not None and at - before[2] < HEARTBEAT_S:
            return None
        did = self.store.add_decision(at, svc.namespace, svc.name, decision.action,
                                      decision.source, decision.target, decision.explanation,
                                      dict(decision.table))
        self.last_recorded[key] = (decision.action, decision.target, at)
        if news and decision.action in ("move", "no-data"):
            self.say(f"decision {did}: {decision.explanation}")
            clusters = [self.kube[c] for c in {decision.source, decision.target}
                        if c and c in self.kube]
            events.post(clusters, events.event(
                svc.namespace, svc.name, reason="KubehopDecision" if decision.action == "move"
                else "KubehopNoData", message=decision.explanation,
                warning=decision.action != "move", at=at))
        return did

    # -- execute ----------------------------------------------------------------------------

    def _may_start(self, key: str) -> bool:
        with self.lock:
            return (key not in self.active
                    and len(self.active) < self.policy.placement.max_concurrent)

    def _execute(self, svc: ServiceFacts, decision: placement.Decision, did: int) -> str:
        """Start the migration in a worker thread. Its id is linked to the decision *before*
        anything happens, so a controller killed at any point finds it on restart."""
        key = svc.key
        request = MigrationRequest(service=svc.name, namespace=svc.namespace,
                                   source=decision.source, target=decision.target or "",
                                   target_namespace=svc.namespace)
        executor = self.new_executor()
        migration_id = executor.new_id()
        decision.migration_id = migration_id
        self.store.set_decision_migration(did, migration_id)
        trigger = self.fired_at.get(decision.source) or self.fired_at.get(key)
        with self.lock:
            self.last_attempt[key] = time.time()
            self.active[key] = self.pool.submit(self._migrate, executor, request, migration_id,
                                                trigger)
        self.say(f"migration {migration_id}: {key} {decision.source} -> {decision.target}")
        return migration_id

    def _migrate(self, executor: Executor, request: MigrationRequest, migration_id: str,
                 trigger: float | None) -> Report:
        if trigger is not None:
            self.metrics.reacted(time.time() - trigger)
        try:
            report = executor.start(self.inventory, request, migration_id=migration_id)
        except Exception as exc:  # reported and backed off; the loop goes on
            self.say(f"migration {migration_id} could not start: {type(exc).__name__}: {exc}")
            report = Report(id=migration_id, service=request.service,
                            namespace=request.namespace, source=request.source,
                            target=request.target, target_namespace=request.target_namespace,
                            strategy=str(request.strategy), status=Status.FAILED, error=str(exc))
        self._finished(request.namespace, request.service, report)
        return report

    def _finished(self, namespace: str, service: str, report: Report) -> None:
        key = f"{namespace}/{service}"
        now = time.time()
        with self.lock:
            self.active.pop(key, None)
            self.last_attempt[key] = now
        ok = report.status == Status.SUCCEEDED
        self.metrics.migrated(report.status, report.total_seconds)
        if ok:
            self.failures.pop(key, None)
            self.store.record_placement(namespace, service, report.target, now, report.id)
        else:
            self.failures[key] = self.failures.get(key, 0) + 1
        message = (f"migration {report.id} {report.source} -> {report.target}: {report.status}"
                   f" in {report.total_seconds:.1f}s"
                   + (f"; {report.error}" if report.error else ""))
        self.say(message)
        clusters = [self.kube[c] for c in {report.source, report.target} if c in self.kube]
        events.post(clusters, events.event(namespace, service,
                                           reason="KubehopMigrated" if ok
                                           else "KubehopMigrationFailed",
                                           message=message, warning=not ok, at=now))

    def wait_idle(self, timeout: float | None = None) -> None:
        """Wait for the running migrations (``--once``, tests, shutdown)."""
        for future in list(self.active.values()):
            future.result(timeout=timeout)

    def run(self, stop: threading.Event, *, interval: float | None = None) -> None:
        """Cycle until ``stop`` is set, while :attr:`acting`; a cycle that fails is reported
        and the next one runs."""
        while not stop.is_set():
            period = interval or self.policy.interval  # the policy may change between cycles
            begun = time.monotonic()
            if not self.acting():  # a standby, or a leader that lost its lease: hands off
                stop.wait(min(period, 1.0))
                continue
            try:
                self.cycle()
            except Exception as exc:  # a cycle must never take the controller down
                self.metrics.cycle_failed()
                self.say(f"cycle failed: {type(exc).__name__}: {exc}")
            stop.wait(max(0.0, period - (time.monotonic() - begun)))

    def close(self) -> None:
        self.pool.shutdown(wait=True)


def arrival_exclusions(policy_rules: tuple[Rule, ...], clusters: list[placement.ClusterView],
                       service: placement.ServiceView) -> dict[str, str]:
    """Clusters the service must not go to because its arrival would make a headroom rule hold
    there (``cpu_headroom`` / ``memory_headroom`` below the threshold once its requests are
    added). Without this, a service that left an overloaded cluster could be sent back the
    moment its own departure brought the cluster under the threshold, and leave again at the
    next evaluation: a ping-pong driven by the service's own load."""
    out: dict[str, str] = {}
    for rule in policy_rules:
        if rule.expr not in ("cpu_headroom", "memory_headroom") or rule.below is None:
            continue
        for c in clusters:
            if c.name == service.cluster or not rule.applies_to(c.name):
                continue
            if rule.expr == "cpu_headroom":
                alloc, used, need = c.cpu_allocatable, c.cpu_used, service.cpu
            else:
                alloc, used, need = c.mem_allocatable, c.mem_used, service.mem
            if alloc <= 0:
                continue
            after = max(0.0, 1.0 - (used + need) / alloc)
            if after < rule.below:
                out.setdefault(c.name, f"{rule.name} would fire on arrival: {rule.expr} after "
                                       f"the move {after:.2f} below {rule.below:g}")
    return out


def what_would_move(table: dict[str, Any], rules_text: list[str]) -> list[str]:
    """From a stored decision's candidate table: what would have to change for the service to
    move (the score each other candidate lacks, with the latency that would close the gap, or
    why it is filtered out), and which rules would force a move by firing."""
    rows = [c for c in table.get("candidates", []) if isinstance(c, dict)]
    current = next((c for c in rows if c.get("cluster") == table.get("current")), None)
    weights = table.get("weights") or {}
    lines = []
    for c in rows:
        if c is current:
            continue
        if c.get("filtered"):
            lines.append(f"{c['cluster']}: cannot be chosen while {c['filtered']}")
        elif current is not None and current.get("score") is not None:
            lack = float(current["score"]) + float(table.get("minGain", 0)) - float(c["score"])
            if lack <= 0:
                lines.append(f"{c['cluster']}: already ahead by {-lack:.3f} beyond the margin "
                             "(waiting for the dwell time or cooldown)")
                continue
            scale = float(table.get("latencyScaleMs") or 0)
            per_ms = float(weights.get("latency", 0)) / scale if scale else 0.0
            per_headroom = float(weights.get("headroom", 1)) or 1.0
            ms = f", or {lack / per_ms:.1f} ms less latency from there" if per_ms else ""
            lines.append(f"{c['cluster']}: needs {lack:.3f} more score: "
                         f"{lack / per_headroom:.3f} more headroom after the move{ms}")
    if current is not None and not current.get("filtered"):
        lines += [f"{table.get('current')}: a firing rule would force a move ({r})"
                  for r in rules_text]
    return lines

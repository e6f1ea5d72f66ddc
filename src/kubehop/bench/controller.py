"""The placement controller's reaction time, measured on the testbed.

Reaction time is from the first Prometheus sample of the trigger rule's expression over its
threshold to the first write of the migration the controller starts for it: the ``created``
time of the migration's journal row. The engine writes that row after its discovery reads
(which change nothing) and before its first change, so the figure covers everything the
controller does to react (waiting for its next cycle, the snapshot, the rule, the decision,
discovery) and nothing of the migration itself, whose own time is recorded beside it.

Why the sample's timestamp and not the time the load started: the load only exists for the
controller once Prometheus has scraped it, so the scrape interval is a property of the
monitoring, not of the controller. Both are reported (``from_stress_s`` adds that wait).

Each run, on the testbed's edge, fog and cloud:

1. reset: no stress, a fresh sample (orc8r and agw) in edge;
2. a fresh controller process (``kubehop controller run``) with an empty SQLite store of its
   own and :data:`POLICY`: nothing it learnt in one run (cooldowns, dwell times, rule states)
   can change the next, and the one-hour cooldown and minDwell keep anything from moving back
   during a run;
3. once it has recorded a ``stay`` (its data is complete), CPU stress on edge pushes the rule's
   expression over the threshold; wait for the ``move`` and for its migration to end;
4. from Prometheus's raw samples (not a range query, which evaluates at step points and
   cannot say when a value first appeared): the timestamps of every scrape of edge's node
   figures in the window, the expression evaluated at each, the first one over the threshold;
   it must be the first sample of the stress pod's request (the stress is what pushed it
   over), else the run is marked not verified.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from kubehop.adapters.prometheus import MonitoringError, Prometheus
from kubehop.adapters.store import DecisionRecord, Store
from kubehop.bench.stats import spread, tail_of
from kubehop.domain.policy import parse_duration
from kubehop.errors import KubehopError, TestbedError
from kubehop.testbed import monitoring, sample, stress
from kubehop.testbed import testbed as tb
from kubehop.testbed.layout import ClusterLayout
from kubehop.waiting import NotYet, wait_for

Say = Callable[[str], None]
NS = sample.ORC8R_NAMESPACE
SERVICE = "orc8r"
CLUSTER = "edge"
RULE = "cpu-requested"
EXPR = ('sum by (cluster) (kube_pod_container_resource_requests{resource="cpu"}) / on (cluster) '
        'sum by (cluster) (kube_node_status_allocatable{resource="cpu"})')
"""Requested CPU over allocatable, per cluster: both published by the testbed's cluster
exporter, so every change of it carries the timestamp of one exporter scrape."""
THRESHOLD = 0.75
STRESS_CPU_MILLIS = 600
"""Edge has 1 CPU allocatable; its system pods and the sample request about 0.26, so 0.6 more
takes the ratio from about 0.26 to 0.86: over 0.75 in one step."""
CYCLE_S = 1.0
EXPORTER_JOB = "kubehop-nodes"
STRESS_SERIES = (f'kube_pod_container_resource_requests{{cluster="{CLUSTER}",'
                 f'namespace="{stress.NAMESPACE}",resource="cpu"}}')
SCRAPES_SERIES = f'kube_node_status_allocatable{{cluster="{CLUSTER}",resource="cpu"}}'
LOOKBACK_S = 10.0
"""The window searched for the first sample over the threshold starts this long before the
stress is started (the ratio must be seen under the threshold there first)."""

POLICY = f"""\
apiVersion: kubehop.io/v1alpha1
kind: PlacementPolicy
interval: {CYCLE_S:g}s
rules:
  - name: {RULE}
    scope: cluster
    expr: '{EXPR}'
    above: {THRESHOLD}
    for: 0s
    clusters: [{CLUSTER}]
placement:
  weights: {{headroom: 1.0, latency: 2.0}}
  minGain: 0.05
  cooldown: 1h
  minDwell: 1h
  maxConcurrent: 1
  maxDataAge: 20s
services:
  - name: {SERVICE}
    namespace: {NS}
    clients: [{{cluster: {CLUSTER}, weight: 1}}]
    serviceTimeMs: 2
    maxLatencyMs: 50
"""


# -- pure parts ----------------------------------------------------------------------------

def first_crossing(points: Iterable[tuple[float, float]], threshold: float) -> float | None:
    """The time of the first point over ``threshold`` (strictly, as the rule compares) that
    follows one that is not; None if there is no such crossing: never over, or already over
    at the first point (then when it went over is not in the data)."""
    seen_under = False
    for at, value in sorted(points):
        if value > threshold:
            if seen_under:
                return at
            return None
        seen_under = True
    return None


def first_point(points: Iterable[tuple[float, float]], *, after: float) -> float | None:
    """The earliest timestamp later than ``after`` (None if none)."""
    times = [at for at, _ in points if at > after]
    return min(times) if times else None


def scrape_interval(config: dict[str, Any], job: str) -> float:
    """Seconds between scrapes of ``job`` in Prometheus's running configuration: the job's
    own ``scrape_interval``, else the global one, else Prometheus's default (1m)."""
    for scrape in config.get("scrape_configs") or []:
        if scrape.get("job_name") == job and scrape.get("scrape_interval"):
            return parse_duration(str(scrape["scrape_interval"]))
    glob = config.get("global") or {}
    return parse_duration(str(glob.get("scrape_interval") or "1m"))


def summarize(runs: Sequence[dict[str, Any]], *, cycle_s: float,
              scrape_s: float) -> dict[str, Any]:
    """Percentiles of the reaction over the verified runs (:func:`~kubehop.bench.stats.spread`
    with p90 and p99 where the runs are enough to name them, plus min and mean), and whether its
    tail (p99 over >= 100 runs, else the max: ``target_tail``) meets the target of one cycle
    plus one scrape interval."""
    good = [r for r in runs if r.get("ok") and r.get("verified")
            and r.get("reaction_s") is not None]
    reactions = [float(r["reaction_s"]) for r in good]
    target = cycle_s + scrape_s

    def stats(values: list[float]) -> dict[str, Any]:
        return spread(values, quantiles=(0.9, 0.99)) | {
            "min": round(min(values), 3) if values else None,
            "mean": round(sum(values) / len(values), 3) if values else None}

    reaction = stats(reactions)
    label, top = tail_of(reaction)
    return {
        "runs": len(runs), "verified": len(good),
        "reaction_s": reaction,
        "from_stress_s": stats([float(r["from_stress_s"]) for r in good
                                if r.get("from_stress_s") is not None]),
        "migration_s": stats([float(r["migration_s"]) for r in good
                              if r.get("migration_s") is not None]),
        "agw_failed": sum(int(r.get("agw_failed") or 0) for r in runs),
        "target_s": target,
        "target_tail": label,
        "target_met": top is not None and top <= target and len(good) == len(runs),
    }


# -- the runs ------------------------------------------------------------------------------

@dataclass
class ControllerRun:
    """One run; times are Unix seconds, durations seconds."""

    index: int
    ok: bool = False
    verified: bool = False
    error: str = ""
    stress_called: float | None = None
    stress_running: float | None = None
    stress_first_sample: float | None = None
    """The first raw sample of the stress pod's CPU request (an exporter scrape)."""
    first_over: float | None = None
    """The first sample of the rule's expression over the threshold."""
    value_before: float | None = None
    value_at: float | None = None
    fired_at: float | None = None
    """The controller's first cycle that found the rule firing (that cycle's start)."""
    decision_id: int | None = None
    decision_at: float | None = None
    """The start of the cycle that decided the move (its snapshot time: it can precede the
    sample, which that cycle's Prometheus query, made later in the cycle, already saw)."""
    target: str | None = None
    migration_id: str | None = None
    created: float | None = None
    status: str | None = None
    migration_s: float | None = None
    reaction_s: float | None = None
    from_stress_s: float | None = None
    decision_to_row_s: float | None = None
    cycle_period_s: float | None = None
    """Measured: seconds between the controller's cycles during the run."""
    controller_reaction_s: float | None = None
    """The controller's own histogram: first evaluation that held to the migration's start."""
    agw_ok: int | None = None
    agw_failed: int | None = None
    agw_errors: list[Any] = field(default_factory=list)
    agw_failures: list[list[Any]] = field(default_factory=list)
    """The failed requests (first 50): [seconds from the journal row, error, cluster]."""
    steps: list[list[Any]] = field(default_factory=list)
    """The migration's steps: [name, state, start and end in seconds from the journal row]."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ControllerProcess:
    """``kubehop controller run`` in its own process, as users run it, on its own store."""

    def __init__(self, workdir: Path, index: int) -> None:
        self.policy = workdir / "policy.yaml"
        self.policy.write_text(POLICY)
        self.db = f"sqlite:///{workdir / f'run{index}.db'}"
        self.log = workdir / f"controller{index}.log"
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "KUBEHOP_INVENTORY": str(tb.inventory_file())}
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "kubehop.cli.main", "controller", "run",
                 "--policy", str(self.policy), "--db", self.db,
                 "--listen", f"127.0.0.1:{self.port}"],
                stdout=log, stderr=subprocess.STDOUT, env=env)

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise TestbedError(f"the controller exited ({self.proc.returncode}): "
                               f"{self.log.read_text()[-1500:]}")

    def metrics(self) -> dict[str, float]:
        """Its /metrics as {name: value}, counters and histogram parts summed over labels."""
        text = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5).text
        values: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                values[s.name] = values.get(s.name, 0.0) + float(s.value)
        return values

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=300)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)


def _decision(store: Store, ctl: ControllerProcess, action: str, *, since: float,
              timeout: float) -> DecisionRecord:
    def found() -> DecisionRecord:
        ctl.check_alive()
        rows = store.decisions(limit=200, namespace=NS, service=SERVICE)
        for d in reversed(rows):
            if d.action == action and d.at >= since:
                return d
        raise NotYet(f"decisions so far: {[(d.action, d.target) for d in rows[:5]]}")

    return wait_for(found, timeout=timeout, interval=0.2, what=f"a {action} decision")


def _migration_of(store: Store, ctl: ControllerProcess, decision_id: int) -> str:
    def linked() -> str | None:
        ctl.check_alive()
        return store.decision(decision_id).migration_id

    return wait_for(linked, timeout=30, interval=0.1, what=f"decision {decision_id}'s migration")


def _finished(store: Store, ctl: ControllerProcess, migration_id: str) -> None:
    def done() -> bool:
        ctl.check_alive()
        try:
            row = store.get(migration_id)
        except KubehopError as exc:
            raise NotYet(str(exc)) from exc
        if row.status in ("running", "rolling-back"):
            raise NotYet(row.status)
        return True

    wait_for(done, timeout=300, interval=0.5, what=f"migration {migration_id}")


def _cycles(ctl: ControllerProcess) -> tuple[float, float]:
    """(now, cycles the controller has run)."""
    values = ctl.metrics()
    return time.time(), sum(v for k, v in values.items()
                            if k == "kubehop_controller_cycles_total")


def locate_crossing(prom: Prometheus, run: ControllerRun, *, until: float) -> float:
    """The first sample over the threshold, from Prometheus's raw samples; also fills in the
    run's stress pod's first sample, which must be the same scrape (``verified``)."""
    since = (run.stress_called or until) - LOOKBACK_S
    scrapes = sorted({at for s in prom.raw_samples(SCRAPES_SERIES, since=since, until=until)
                      for at, _ in s.points})
    points = []
    for at in scrapes:
        values = [s.value for s in prom.query(EXPR, at=at) if s.labels.get("cluster") == CLUSTER]
        if values:
            points.append((at, values[0]))
    run.first_over = first_crossing(points, THRESHOLD)
    before = [v for at, v in points if run.first_over is not None and at < run.first_over]
    run.value_before = before[-1] if before else None
    run.value_at = next((v for at, v in points if at == run.first_over), None)
    run.stress_first_sample = first_point(
        (p for s in prom.raw_samples(STRESS_SERIES, since=since, until=until) for p in s.points),
        after=since)
    run.verified = (run.first_over is not None and run.stress_first_sample is not None
                    and abs(run.first_over - run.stress_first_sample) < 0.001)
    if run.first_over is None:
        raise MonitoringError(f"no crossing of {THRESHOLD} in {len(points)} samples of the rule's "
                              f"expression on {CLUSTER}: {points}")
    return run.first_over


def one_run(index: int, workdir: Path, prom: Prometheus, say: Say, *,
            interval_ms: float = 10) -> ControllerRun:
    run = ControllerRun(index=index)
    stress.stop()
    sample.deploy(CLUSTER, interval_ms=interval_ms)
    edge = sample.cluster_layout(CLUSTER)
    ctl = ControllerProcess(workdir, index)
    store = Store(ctl.db)
    ctl.start()
    try:
        calm = _decision(store, ctl, "stay", since=0, timeout=180)
        if calm.source != CLUSTER:
            raise TestbedError(f"{SERVICE} stays in {calm.source}, not {CLUSTER}")
        t0, c0 = _cycles(ctl)
        since = time.time()
        run.stress_called = time.time()
        stress.start(CLUSTER, cpu_millis=STRESS_CPU_MILLIS)
        run.stress_running = time.time()
        move = _decision(store, ctl, "move", since=run.stress_called - 5, timeout=120)
        run.decision_id, run.decision_at, run.target = move.id, move.at, move.target
        run.migration_id = _migration_of(store, ctl, move.id)
        _finished(store, ctl, run.migration_id)
        t1, c1 = _cycles(ctl)
        run.cycle_period_s = round((t1 - t0) / (c1 - c0), 3) if c1 > c0 else None
        hist = ctl.metrics()
        if hist.get("kubehop_controller_reaction_seconds_count"):
            run.controller_reaction_s = round(hist["kubehop_controller_reaction_seconds_sum"], 3)
        row = store.get(run.migration_id)
        run.created, run.status = row.created, row.status
        run.migration_s = round(row.updated - row.created, 3)
        run.fired_at = next((e.at for e in store.evaluations(since=run.stress_called - 5)
                             if e.rule == RULE and e.subject == CLUSTER
                             and e.state == "firing"), None)
        run.reaction_s = round(row.created - locate_crossing(prom, run, until=row.created), 3)
        run.from_stress_s = round(row.created - run.stress_called, 3)
        run.decision_to_row_s = round(row.created - move.at, 3)
        run.steps = [[st.name, st.state, round(st.started - row.created, 3),
                      None if st.ended is None else round(st.ended - row.created, 3)]
                     for st in row.steps]
        _record_agw(run, edge, since=since, created=row.created)
        run.ok = run.status == "succeeded"
        if not run.ok:
            run.error = f"migration {run.migration_id} ended {run.status}"
    except (KubehopError, httpx.HTTPError) as exc:
        run.error = f"{type(exc).__name__}: {exc}"
    finally:
        ctl.stop()
        store.close()
    say(_run_line(index, run))
    return run


def _record_agw(run: ControllerRun, edge: ClusterLayout, *, since: float,
                created: float) -> None:
    """What agw saw during the run: requests served and failed, the first few distinct errors,
    and the failures' times from the journal row (the move's start)."""
    rows = sample.agw_record(edge, since=since, until=time.time(), raw=True)["rows"]
    failed = [r for r in rows if not r[2]]
    run.agw_ok, run.agw_failed = len(rows) - len(failed), len(failed)
    run.agw_errors = sorted({str(r[3]) for r in failed})[:5]
    run.agw_failures = [[round(r[0] - created, 3), r[3], r[4]] for r in failed[:50]]


def _run_line(index: int, run: ControllerRun) -> str:
    """The run's progress line: its reaction and migration, or why it failed."""
    return f"run {index + 1}: " + (
        f"reaction {run.reaction_s:.3f}s (sample {run.first_over:.3f} -> journal row "
        f"{run.created:.3f}), move to {run.target}, migration {run.migration_s:.1f}s "
        f"{run.status}, agw failed {run.agw_failed}"
        + ("" if run.verified else " [NOT VERIFIED: the first sample over the threshold is "
                                   "not the stress pod's first]")
        if run.ok and run.reaction_s is not None and run.first_over is not None
        and run.created is not None and run.migration_s is not None
        else f"FAILED: {run.error}")


def run_bench(*, runs: int, say: Say, interval_ms: float = 10) -> dict[str, Any]:
    """``runs`` runs, then the testbed as it was: no stress, no sample."""
    prom = Prometheus(monitoring.prometheus_url())
    try:
        scrape_s = scrape_interval(prom.config(), EXPORTER_JOB)
        all_runs: list[ControllerRun] = []
        with tempfile.TemporaryDirectory(prefix="kubehop-bench-controller-") as tmp:
            try:
                for i in range(runs):
                    all_runs.append(one_run(i, Path(tmp), prom, say, interval_ms=interval_ms))
            finally:
                stress.stop()
                sample.remove()
    finally:
        prom.close()
    rows = [asdict(r) for r in all_runs]
    return {
        "scenario": "controller",
        "definition": "reaction_s = created time of the migration's journal row (written after "
                      "the engine's discovery reads, before its first change) - timestamp of "
                      "the first Prometheus sample of the rule's expression over the threshold",
        "rule": {"name": RULE, "expr": EXPR, "above": THRESHOLD, "for_s": 0.0,
                 "cluster": CLUSTER},
        "policy": POLICY,
        "stress_cpu_millis": STRESS_CPU_MILLIS,
        "agw_interval_ms": interval_ms,
        "cycle_interval_s": CYCLE_S,
        "scrape_interval_s": scrape_s,
        "scrape_job": EXPORTER_JOB,
        "runs": rows,
        "summary": summarize(rows, cycle_s=CYCLE_S, scrape_s=scrape_s),
    }


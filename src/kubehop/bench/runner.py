"""One benchmark run per strategy, interleaved, on the testbed.

Strategies:

- ``endpoints``, ``externalname``: kubehop's engine, as ``kubehop migrate`` runs it.
- ``paper``: the paper's four steps done literally and in its order: copy the service to the
  target, add the IngressRoute, add the DNS record and turn the old Service into an ExternalName,
  delete the old instance. No readiness wait, no verification, no drain.
- ``naive``: what a backup/restore tool gives: delete the source, then create the target and
  repoint the name.

Before each run orc8r is reset to run in edge only (agw keeps running and recording); the run's
window of agw's record (from 2 s before to 3 s after the migration) gives failures, the longest
gap between successful answers, latency before/during/after, and when the target first answered.
"""

from __future__ import annotations

import itertools
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kubehop.adapters.store import DB_FILE, Store
from kubehop.domain.model import MigrationRequest, Strategy
from kubehop.engine.migrate import BASELINES, Executor
from kubehop.errors import KubehopError
from kubehop.testbed import images, layout, sample
from kubehop.testbed import testbed as tb

STRATEGIES = ("endpoints", "externalname", "paper", "naive")
NS = sample.ORC8R_NAMESPACE
Say = Callable[[str], None]


@dataclass
class Run:
    strategy: str
    index: int
    ok: bool
    start: float
    end: float
    phases: list[dict[str, float | str]] = field(default_factory=list)
    error: str = ""
    requests: int = 0
    failed: int = 0
    longest_gap_ms: float | None = None
    to_target_s: float | None = None
    latency_ms: dict[str, dict[str, float | None]] = field(default_factory=dict)
    samples: list[list[Any]] = field(default_factory=list)

    @property
    def total_s(self) -> float:
        return self.end - self.start


def _edge() -> layout.ClusterLayout:
    return next(c for c in layout.layouts(tb.recorded_clusters()) if c.name == "edge")


def _cloud() -> layout.ClusterLayout:
    return next(c for c in layout.layouts(tb.recorded_clusters()) if c.name == "cloud")


def reset(say: Say) -> None:
    """orc8r in edge only, nothing kubehop made anywhere; agw keeps running (and recording)."""
    edge, cloud = _edge(), _cloud()
    agw_ns = sample.AGW_NAMESPACE
    # agw restarts after orc8r is back (see agw.wait_for_orc8r); the objects a run leaves are
    # deleted, the namespaces kept (deleting them takes far longer).
    with tb.kube(edge) as ke, tb.kube(cloud) as kc:
        for k in (ke, kc):  # an earlier user of the sample may still be deleting it
            for ns in (NS, agw_ns):
                k.settle_namespace(ns, timeout=180)
        has_agw = ke.get("Deployment", "agw", agw_ns) is not None
        if has_agw:
            ke.scale("Deployment", "agw", agw_ns, 0)
        for k in (ke, kc):
            if k.get("Namespace", NS) is not None:
                k.delete_all(("Deployment", "Service", "IngressRoute", "EndpointSlice"), NS,
                             timeout=180)
        if not has_agw:
            sample.deploy("edge")
        else:
            ke.apply_yaml(sample.manifests(edge, interval_ms=10, only_namespace=NS))
            ke.wait_rollout("Deployment", "orc8r", NS, timeout=180)
            ke.scale("Deployment", "agw", agw_ns, 1)
            ke.wait_rollout("Deployment", "agw", agw_ns, timeout=180)
    try:
        sample.wait_agw_clean(edge, timeout=60)
    except KubehopError:
        say("warning: agw not yet clean after reset")


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None}
    values = sorted(values)

    def pick(q: float) -> float:
        return round(values[min(len(values) - 1, round(q * (len(values) - 1)))] * 1000, 2)

    return {"p50": pick(0.5), "p99": pick(0.99)}


def _measure(run: Run) -> None:
    rows = sample.agw_record(_edge(), since=run.start - 2, until=run.end + 3, raw=True)["rows"]
    run.samples = rows
    run.requests = len(rows)
    run.failed = sum(1 for r in rows if not r[2])
    done = sorted(r[0] + r[1] for r in rows if r[2])
    gaps = [b - a for a, b in itertools.pairwise(done)]
    run.longest_gap_ms = round(max(gaps) * 1000, 2) if gaps else None
    first_target = [r[0] for r in rows if r[2] and r[4] == "cloud" and r[0] >= run.start]
    run.to_target_s = round(min(first_target) - run.start, 3) if first_target else None
    for name, lo, hi in (("before", run.start - 2, run.start), ("during", run.start, run.end),
                         ("after", run.end, run.end + 3)):
        run.latency_ms[name] = _percentiles([r[1] for r in rows if r[2] and lo <= r[0] < hi])


def _request(strategy: Strategy) -> MigrationRequest:
    return MigrationRequest(service="orc8r", namespace=NS, source="edge", target="cloud",
                            target_namespace=NS, strategy=strategy, drain_seconds=2.0)


def run_plan(strategy: str, journal: Store) -> list[dict[str, float | str]]:
    """kubehop's own strategies, or a baseline plan, all through the engine's public interface
    (baselines use the paper's ExternalName switch, so their request says ``externalname``)."""
    if strategy in BASELINES:
        report = Executor(journal).start(tb.inventory(), _request(Strategy.EXTERNALNAME),
                                         plan=BASELINES[strategy])
    else:
        report = Executor(journal).start(tb.inventory(), _request(Strategy(strategy)))
    return [{"name": p.name, "start": p.start, "end": p.end} for p in report.phases]


def one_run(strategy: str, index: int, journal: Store, say: Say) -> Run:
    reset(say)
    time.sleep(2)  # a steady "before" window
    start = time.time()
    run = Run(strategy=strategy, index=index, ok=True, start=start, end=start)
    try:
        run.phases = run_plan(strategy, journal)
    except KubehopError as exc:
        run.ok, run.error = False, str(exc)
    run.end = time.time()
    time.sleep(3)  # the "after" window
    _measure(run)
    say(f"{strategy} #{index + 1}: {'ok' if run.ok else 'FAILED'} total {run.total_s:.2f}s, "
        f"failed {run.failed}/{run.requests}, longest gap {run.longest_gap_ms} ms")
    return run


def scale_run(count: int, journal: Store, say: Say) -> dict[str, Any]:
    """``count`` independent copies of a small service migrated edge -> cloud at once."""
    edge, cloud = _edge(), _cloud()
    ns = "kh-scale"
    for c in (edge, cloud):
        with tb.kube(c) as k:
            k.delete_namespaces(ns, timeout=180)
    docs = [f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}"]
    image = images.httpd_image().ref()
    for i in range(count):
        docs.append(f"""apiVersion: apps/v1
kind: Deployment
metadata: {{name: svc{i}, namespace: {ns}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: svc{i}}}}}
  template:
    metadata: {{labels: {{app: svc{i}}}}}
    spec:
      containers:
      - name: web
        image: {image}
        readinessProbe: {{httpGet: {{path: /healthz, port: 8080}}, periodSeconds: 1}}
        resources: {{requests: {{cpu: 10m, memory: 16Mi}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: svc{i}, namespace: {ns}}}
spec:
  selector: {{app: svc{i}}}
  ports: [{{name: http, port: 80, targetPort: 8080}}]""")
    with tb.kube(edge) as k:
        k.apply_yaml("\n---\n".join(docs))
        for i in range(count):
            k.wait_rollout("Deployment", f"svc{i}", ns, timeout=300)
    results: list[str | None] = [None] * count

    def migrate_one(i: int) -> None:
        request = MigrationRequest(service=f"svc{i}", namespace=ns, source="edge",
                                   target="cloud", target_namespace=ns, drain_seconds=1.0,
                                   ready_timeout=300)
        try:
            Executor(journal).start(tb.inventory(), request)  # the store is thread-safe
        except KubehopError as exc:
            results[i] = str(exc)

    start = time.time()
    threads = [threading.Thread(target=migrate_one, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = time.time() - start
    failures = [r for r in results if r]
    for c in (edge, cloud):
        with tb.kube(c) as k:
            k.delete_namespaces(ns, timeout=None)
    say(f"scale {count}: {total:.2f}s, {len(failures)} failed")
    return {"services": count, "total_s": round(total, 3), "failed": len(failures),
            "errors": failures[:3]}


def summarize(runs: list[Run]) -> list[dict[str, Any]]:
    rows = []
    for strategy in STRATEGIES:
        rs = [r for r in runs if r.strategy == strategy]
        if not rs:
            continue
        ok = [r for r in rs if r.ok]

        def med_max(values: list[float]) -> tuple[float | None, float | None]:
            return (round(statistics.median(values), 3), round(max(values), 3)) if values \
                else (None, None)

        rows.append({
            "strategy": strategy, "runs": len(rs), "completed": len(ok),
            "failed_requests": med_max([float(r.failed) for r in rs]),
            "longest_gap_ms": med_max([r.longest_gap_ms or 0.0 for r in rs]),
            "total_s": med_max([r.total_s for r in ok]),
            "to_target_s": med_max([r.to_target_s for r in ok if r.to_target_s is not None]),
            "p99_during_ms": med_max([r.latency_ms["during"]["p99"] or 0.0 for r in ok]),
        })
    return rows


def run_bench(*, runs: int, strategies: list[str], scale: list[int], out: Path,
              say: Say) -> dict[str, Any]:
    journal = Store(f"sqlite:///{(out / DB_FILE).resolve()}")
    all_runs: list[Run] = []
    for i in range(runs):
        for strategy in strategies:
            all_runs.append(one_run(strategy, i, journal, say))
    reset(say)
    scales = [scale_run(n, journal, say) for n in scale]
    return {"runs": [asdict(r) | {"total_s": r.total_s} for r in all_runs],
            "summary": summarize(all_runs), "scale": scales}

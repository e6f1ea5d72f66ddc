"""One benchmark run per strategy, interleaved, on the testbed.

Strategies:

- ``endpoints``, ``externalname``: kubehop's engine, as ``kubehop migrate`` runs it.
- ``paper``: the paper's four steps done literally and in its order: copy the service to the
  target, add the IngressRoute, add the DNS record and turn the old Service into an ExternalName,
  delete the old instance. No readiness wait, no verification, no drain.
- ``naive``: what a backup/restore tool gives: delete the source, then create the target and
  repoint the name.

Before each run orc8r is reset to run in edge only (agw keeps running and recording); the run's
window of agw's record gives failures, the longest gap between successful answers, latency
before/during/after, and when the target first answered. The window starts 2 s before the
migration and ends once its outage is over (:func:`outage_end`): 2 s of successful answers after
the last failure, at least 3 s after the migration, at most the DNS TTL + 30 s after it; so a
baseline's failure count is complete, not cut off while its clients still fail.

After each run of kubehop's own strategies, :func:`ingress_overhead` compares a call straight
to a target pod with the same call through the alias's last hop (the target's Traefik).

``scale_run`` migrates many small independent services at once and keeps every migration's
phases, so the phase that slows down at scale shows.
"""

from __future__ import annotations

import http.client
import itertools
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kubehop.adapters.store import DB_FILE, Store
from kubehop.bench.stats import common_tail, pick, spread, tail_of
from kubehop.domain import manifests as mf
from kubehop.domain.model import BASELINES, MigrationRequest, Strategy
from kubehop.domain.pods import pod_is_ready
from kubehop.engine.executor import Executor
from kubehop.errors import KubehopError, TestbedError
from kubehop.testbed import images, layout, sample
from kubehop.testbed import testbed as tb
from kubehop.waiting import NotYet, wait_for

STRATEGIES = ("endpoints", "externalname", "paper", "naive")
OWN = ("endpoints", "externalname")
"""kubehop's own strategies: the ones that leave the source's Service aliased to the target."""
NS = sample.ORC8R_NAMESPACE
Say = Callable[[str], None]
Row = Sequence[Any]
"""One request of agw's raw record: t (scheduled), latency, ok, error, cluster, seq, retried."""

BEFORE_S = 2.0
"""The window starts this long before the migration: agw's steady state to compare with."""
AFTER_MIN_S = 3.0
"""The window lasts at least this long after the migration."""
QUIET_S = 2.0
"""The outage is over once agw has answered successfully for this long after its last failure."""
CAP_AFTER_TTL_S = 30.0
"""How long past the DNS TTL (after the migration) the window may run while clients still fail:
a client that caches the old answer for the TTL has stopped failing by then, or never will."""
INGRESS_CALLS = 300
INGRESS_PATH = "/readyz"
"""orc8r's cheapest answer: the calls measure the path, not orc8r's database."""
SCALE_NS = "kh-scale"
MAX_SCALE = 100
"""The most services scale_run moves at once: the kubelet's maxPods (110) less edge's own."""


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
    switch_gap_ms: float | None = None
    """The longest gap between answers that overlaps the switch phase: what the switch itself
    costs clients, apart from gaps the machine's load makes at other moments of the run."""
    to_target_s: float | None = None
    latency_ms: dict[str, dict[str, Any]] = field(default_factory=dict)
    """agw's answered latency (ms) before, during and after the migration: a
    :func:`~kubehop.bench.stats.spread` each (n, p50, max; p99 only over >= 100 answers)."""
    window_end: float = 0.0
    """The end of the window measured (unix time): see :func:`outage_end`."""
    outage_ended: bool = True
    """False if agw still failed when the window hit its cap: the failures are a lower bound."""
    ingress: dict[str, Any] = field(default_factory=dict)
    """Direct call vs through the target's Traefik (:func:`ingress_overhead`); own strategies."""
    samples: list[list[Any]] = field(default_factory=list)

    @property
    def total_s(self) -> float:
        return self.end - self.start


def _edge() -> layout.ClusterLayout:
    return next(c for c in layout.layouts(tb.recorded_clusters()) if c.name == "edge")


def _cloud() -> layout.ClusterLayout:
    return next(c for c in layout.layouts(tb.recorded_clusters()) if c.name == "cloud")


def agw_interval_ms(deployment: dict[str, Any]) -> float | None:
    """The AGW_INTERVAL_MS agw's Deployment runs with (None if unset or not a number)."""
    for container in deployment["spec"]["template"]["spec"]["containers"]:
        for env in container.get("env") or []:
            if env.get("name") == "AGW_INTERVAL_MS":
                try:
                    return float(env.get("value", ""))
                except ValueError:
                    return None
    return None


def reset(say: Say, *, interval_ms: float = 10) -> None:
    """orc8r in edge only, nothing kubehop made anywhere; agw keeps running (and recording)
    at ``interval_ms``: an agw left running at another interval gets it (and restarts)."""
    edge, cloud = _edge(), _cloud()
    agw_ns = sample.AGW_NAMESPACE
    # agw restarts after orc8r is back (see agw.wait_for_orc8r); the objects a run leaves are
    # deleted, the namespaces kept (deleting them takes far longer).
    with tb.kube(edge) as ke, tb.kube(cloud) as kc:
        for k in (ke, kc):  # an earlier user of the sample may still be deleting it
            for ns in (NS, agw_ns):
                k.settle_namespace(ns, timeout=180)
        agw = ke.get("Deployment", "agw", agw_ns)
        has_agw = agw is not None
        if agw is not None:
            ke.scale("Deployment", "agw", agw_ns, 0)
            if agw_interval_ms(agw) != interval_ms:
                say(f"agw: interval {agw_interval_ms(agw)} -> {interval_ms:g} ms")
                ke.apply_yaml(sample.manifests(edge, interval_ms=interval_ms,
                                               only_namespace=agw_ns))
                ke.scale("Deployment", "agw", agw_ns, 0)  # back up once orc8r serves
        for k in (ke, kc):
            if k.get("Namespace", NS) is not None:
                k.delete_all(("Deployment", "Service", "IngressRoute", "EndpointSlice"), NS,
                             timeout=180)
        if not has_agw:
            sample.deploy("edge", interval_ms=interval_ms)
        else:
            ke.apply_yaml(sample.manifests(edge, interval_ms=interval_ms, only_namespace=NS))
            ke.wait_rollout("Deployment", "orc8r", NS, timeout=180)
            ke.scale("Deployment", "agw", agw_ns, 1)
            ke.wait_rollout("Deployment", "agw", agw_ns, timeout=180)
    try:
        sample.wait_agw_clean(edge, timeout=60)
    except KubehopError:
        say("warning: agw not yet clean after reset")


def latest(rows: Sequence[Row]) -> tuple[float | None, float | None]:
    """(scheduled time of the last failed request, of the last successful one) in ``rows``."""
    fails = [float(r[0]) for r in rows if not r[2]]
    oks = [float(r[0]) for r in rows if r[2]]
    return (max(fails) if fails else None), (max(oks) if oks else None)


def outage_end(last_fail: float | None, last_ok: float | None, *, not_before: float,
               quiet: float = QUIET_S) -> float | None:
    """When the window may end: ``quiet`` s after the last failure (and not before
    ``not_before``), once a success has been seen that late; None while that is not so.

    agw records a request when it ends, so a request still in flight may yet fail: the caller
    confirms the end on the complete record (:func:`window_clean`)."""
    end = not_before if last_fail is None else max(not_before, last_fail + quiet)
    return end if last_ok is not None and last_ok >= end else None


def window_clean(rows: Sequence[Row], end: float, quiet: float = QUIET_S) -> bool:
    """Whether the window ending at ``end`` ends with its outage over: requests in its last
    ``quiet`` seconds, every one answered."""
    tail = [r for r in rows if end - quiet < float(r[0]) <= end]
    return bool(tail) and all(r[2] for r in tail)


def _later(a: float | None, b: float | None) -> float | None:
    return b if a is None else (a if b is None else max(a, b))


def window_cap(run: Run, dns_ttl: float) -> float:
    return run.end + dns_ttl + CAP_AFTER_TTL_S


def wait_outage_over(run: Run, *, cap: float, say: Say) -> tuple[float, bool, list[list[Any]]]:
    """(window end, outage over, the window's complete record): polls agw's record until
    :func:`outage_end` says so, confirms it on the complete record (a request sent before the
    end may still be in flight and fail), and gives up at ``cap``."""
    edge = _edge()
    since = run.start - BEFORE_S
    last_fail: float | None = None
    last_ok: float | None = None
    cursor = since
    while True:
        polled = time.time()
        fresh = sample.agw_record(edge, since=cursor, raw=True, complete=False)["rows"]
        fail, ok = latest(fresh)
        last_fail, last_ok = _later(last_fail, fail), _later(last_ok, ok)
        # requests ending now were sent at most agw's timeout ago: fetch from there on
        cursor = max(cursor, polled - sample.AGW_TIMEOUT_S - 1)
        end = outage_end(last_fail, last_ok, not_before=run.end + AFTER_MIN_S)
        if end is None and polled < cap:
            time.sleep(0.5)
            continue
        end = cap if end is None else min(end, cap)
        rows: list[list[Any]] = sample.agw_record(edge, since=since, until=end,
                                                  raw=True)["rows"]
        if window_clean(rows, end) or end >= cap:
            return end, window_clean(rows, end), rows
        # a request still in flight at the poll failed after all: the outage goes on
        fail, _ = latest(rows)
        last_fail = fail
        say(f"{run.strategy} #{run.index + 1}: a late failure at "
            f"{(fail or 0) - run.end:+.2f} s from the end; waiting on")


def measure(run: Run, rows: list[list[Any]], window_end: float) -> None:
    """The run's figures from agw's record of its window (``rows``, up to ``window_end``)."""
    run.samples = rows
    run.window_end = window_end
    run.requests = len(rows)
    run.failed = sum(1 for r in rows if not r[2])
    done = sorted(r[0] + r[1] for r in rows if r[2])
    gaps = [b - a for a, b in itertools.pairwise(done)]
    run.longest_gap_ms = round(max(gaps) * 1000, 2) if gaps else None
    run.switch_gap_ms = phase_gap_ms(done, run.phases, "switch")
    first_target = [r[0] for r in rows if r[2] and r[4] == "cloud" and r[0] >= run.start]
    run.to_target_s = round(min(first_target) - run.start, 3) if first_target else None
    for name, lo, hi in (("before", run.start - BEFORE_S, run.start),
                         ("during", run.start, run.end),
                         ("after", run.end, run.end + AFTER_MIN_S)):
        run.latency_ms[name] = spread([r[1] * 1000 for r in rows if r[2] and lo <= r[0] < hi],
                                      digits=2)


def phase_gap_ms(done: Sequence[float], phases: Sequence[dict[str, Any]],
                 name: str) -> float | None:
    """The longest gap (ms) between consecutive answers (``done``: sorted answer times) that
    overlaps phase ``name``; None without that phase or answers around it."""
    phase = next((p for p in phases if p["name"] == name), None)
    if phase is None:
        return None
    lo, hi = float(phase["start"]), float(phase["end"])
    gaps = [b - a for a, b in itertools.pairwise(done) if b >= lo and a <= hi]
    return round(max(gaps) * 1000, 2) if gaps else None


def timed_call(address: str, port: int, host: str, path: str = INGRESS_PATH,
               timeout: float = 5.0) -> float | None:
    """Seconds for one GET on a new connection (connect to body read, as agw's requests), or
    None if it failed or was not answered 200."""
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": host, "Connection": "close"})
        resp = conn.getresponse()
        resp.read()
        ok = resp.status == 200
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()
    return time.perf_counter() - t0 if ok else None


def overhead(direct: Sequence[float | None], alias: Sequence[float | None]) -> dict[str, Any]:
    """p50, max and (over >= 100 answers) p99 in ms of the direct and the aliased calls
    (answered ones), and the alias's extra: alias minus direct, per figure both have."""
    def pcts(values: Sequence[float | None]) -> dict[str, Any]:
        return spread([v * 1000 for v in values if v is not None])

    d, a = pcts(direct), pcts(alias)
    extra: dict[str, Any] = {"n": min(d["n"], a["n"])}
    for q in ("p50", "p99", "max"):
        dq, aq = d.get(q), a.get(q)
        if q in d or q in a:
            extra[q] = None if dq is None or aq is None else round(aq - dq, 3)
    return {"calls": len(direct), "direct_ms": d, "alias_ms": a, "overhead_ms": extra,
            "direct_failed": sum(1 for v in direct if v is None),
            "alias_failed": sum(1 for v in alias if v is None)}


def ingress_overhead(calls: int) -> dict[str, Any]:
    """``calls`` alternating pairs from the host, each on a new connection: straight to one of
    orc8r's pods in cloud (the host routes every cluster's pod network via its node, as a VM on
    the WAN would), and to cloud's load balancer with the Service's cluster name as Host, the
    last hop of the alias the source's Service now points at. Both cross the same bridge, so
    the difference is Traefik's."""
    cloud = _cloud()
    info = tb.inventory().clusters[cloud.name]
    with tb.kube(cloud) as k:
        pods = [p for p in k.find("Pod", NS, {"app": "orc8r"})
                if (p.get("status") or {}).get("podIP")
                and pod_is_ready(p)]
    if not pods:
        return {"error": f"no ready orc8r pod in {cloud.name}"}
    pod_ip = str(pods[0]["status"]["podIP"])
    host = mf.host_names("orc8r", NS, info.cluster_domain)[-1]
    direct: list[float | None] = []
    alias: list[float | None] = []
    for _ in range(calls):
        direct.append(timed_call(pod_ip, 8080, host))
        alias.append(timed_call(info.load_balancer, 80, host))
    return overhead(direct, alias) | {"pod": f"{pod_ip}:8080",
                                      "alias": f"{info.load_balancer}:80", "host": host,
                                      "path": INGRESS_PATH}


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


def one_run(strategy: str, index: int, journal: Store, say: Say, *, interval_ms: float = 10,
            ingress_calls: int = INGRESS_CALLS) -> Run:
    reset(say, interval_ms=interval_ms)
    time.sleep(BEFORE_S)  # a steady "before" window
    start = time.time()
    run = Run(strategy=strategy, index=index, ok=True, start=start, end=start)
    try:
        run.phases = run_plan(strategy, journal)
    except KubehopError as exc:
        run.ok, run.error = False, str(exc)
    run.end = time.time()
    end, run.outage_ended, rows = wait_outage_over(
        run, cap=window_cap(run, _request(Strategy.EXTERNALNAME).dns_ttl), say=say)
    measure(run, rows, end)
    say(f"{strategy} #{index + 1}: {'ok' if run.ok else 'FAILED'} total {run.total_s:.2f}s, "
        f"failed {run.failed}/{run.requests}{'' if run.outage_ended else ' (still failing)'}"
        f" in a window to +{end - run.end:.1f} s, longest gap {run.longest_gap_ms} ms")
    if run.ok and strategy in OWN and ingress_calls > 0:
        try:
            run.ingress = ingress_overhead(ingress_calls)
        except KubehopError as exc:  # a side measurement: the run's own figures stand
            run.ingress = {"error": str(exc)}
        o = run.ingress.get("overhead_ms") or {}
        label, top = tail_of(o)
        say(f"{strategy} #{index + 1}: ingress overhead p50 {o.get('p50')} ms, {label} "
            f"{top} ms {run.ingress.get('error', '')}".rstrip())
    return run


def scale_manifests(count: int, image: str, ns: str = SCALE_NS) -> str:
    """``count`` one-pod web services in ``ns``. 5m of CPU each: edge's node has 1000m and the
    sample and the system pods ask 310m of it, so 64 at 10m would leave no room for a mover or
    a stray pod. A short grace period keeps the namespace's deletion quick."""
    docs = [f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}"]
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
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: {image}
        readinessProbe: {{httpGet: {{path: /healthz, port: 8080}}, periodSeconds: 1}}
        resources: {{requests: {{cpu: 5m, memory: 16Mi}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: svc{i}, namespace: {ns}}}
spec:
  selector: {{app: svc{i}}}
  ports: [{{name: http, port: 80, targetPort: 8080}}]""")
    return "\n---\n".join(docs)


def rollout_pending(deployments: Sequence[dict[str, Any]], count: int) -> str | None:
    """Why ``count`` one-replica Deployments are not all ready yet, or None if they are."""
    ready = sum(1 for d in deployments if int((d.get("status") or {}).get("readyReplicas") or 0)
                >= int(d["spec"].get("replicas", 1)))
    return None if ready >= count else f"{ready}/{count} ready"


def phase_stats(migrations: Sequence[Sequence[dict[str, Any]]]) -> dict[str, dict[str, float]]:
    """Per phase name (in the order phases run), the median and max of its duration (s) over
    the migrations that went through it."""
    seconds: dict[str, list[float]] = {}
    for phases in migrations:
        for p in phases:
            seconds.setdefault(str(p["name"]), []).append(float(p["end"]) - float(p["start"]))
    return {name: {"median": round(statistics.median(v), 3), "max": round(max(v), 3)}
            for name, v in seconds.items()}


def slowest_phase(stats: dict[str, dict[str, float]]) -> str | None:
    """The phase with the largest median duration: where a typical migration spends its time."""
    return max(stats, key=lambda name: stats[name]["median"]) if stats else None


def scale_run(count: int, journal: Store, say: Say) -> dict[str, Any]:
    """``count`` independent copies of a small service migrated edge -> cloud at once; every
    migration's phases are kept, so the phase that grows with the count shows."""
    edge, cloud = _edge(), _cloud()
    ns = SCALE_NS
    for c in (edge, cloud):
        with tb.kube(c) as k:
            k.delete_namespaces(ns, timeout=180)
    t0 = time.time()
    with tb.kube(edge) as k:
        k.apply_yaml(scale_manifests(count, images.httpd_image().ref(), ns))

        def ready() -> bool:
            why = rollout_pending(k.find("Deployment", ns), count)
            if why:
                raise NotYet(why)
            return True

        wait_for(ready, timeout=300, interval=1, error=TestbedError,
                 what=f"{count} Deployments in {ns} in edge to become ready")
    deploy_s = time.time() - t0
    results: list[str | None] = [None] * count
    phases: list[list[dict[str, Any]]] = [[] for _ in range(count)]

    def migrate_one(i: int) -> None:
        request = MigrationRequest(service=f"svc{i}", namespace=ns, source="edge",
                                   target="cloud", target_namespace=ns, drain_seconds=1.0,
                                   ready_timeout=300)
        try:
            report = Executor(journal).start(tb.inventory(), request)  # the store is thread-safe
        except KubehopError as exc:
            results[i] = str(exc)
            return
        phases[i] = [{"name": p.name, "start": p.start, "end": p.end} for p in report.phases]

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
    stats = phase_stats([p for p in phases if p])
    slowest = slowest_phase(stats)
    say(f"scale {count}: {total:.2f}s, {len(failures)} failed, slowest phase {slowest} "
        f"(median {stats[slowest]['median'] if slowest else '-'} s), deployed in "
        f"{deploy_s:.1f}s")
    return {"services": count, "total_s": round(total, 3), "failed": len(failures),
            "errors": failures[:3], "deploy_s": round(deploy_s, 3), "phases": stats,
            "slowest_phase": slowest}


def _med_max(values: list[float]) -> tuple[float | None, float | None]:
    return (round(statistics.median(values), 3), round(max(values), 3)) if values \
        else (None, None)


def phase_seconds(phases: Sequence[dict[str, Any]], name: str) -> float:
    """How long the phase ``name`` took (0 if the run has no such phase)."""
    return sum(float(p["end"]) - float(p["start"]) for p in phases if p["name"] == name)


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 3) if present else None


def ingress_summary(runs: Sequence[Run]) -> dict[str, Any] | None:
    """Medians over the runs of each ingress figure: p50 and the tail every run can name
    (``tail``: p99, or max when some run answered fewer than 100 calls); None if no run
    measured it."""
    measured = [r.ingress for r in runs if r.ingress.get("direct_ms")]
    if not measured:
        return None
    label = common_tail(m[k] for m in measured for k in ("direct_ms", "alias_ms"))
    return {"runs": len(measured), "tail": label, **{
        key: {q: _median([pick(m[key], q) for m in measured]) for q in ("p50", label)}
        for key in ("direct_ms", "alias_ms", "overhead_ms")}}


def latency_columns(ok: Sequence[Run]) -> dict[str, Any]:
    """agw's latency tail in each run's windows, as one label for the row (p99 only if every
    window with answers had >= 100 of them, else max): median / max over the runs during the
    migration, medians before and after it."""
    windows = [r.latency_ms.get(w) for r in ok for w in ("before", "during", "after")]
    label = common_tail(w for w in windows if w and w.get("n"))

    def tails(name: str) -> list[float | None]:
        return [pick(r.latency_ms.get(name), label) for r in ok]

    return {"latency_tail": label,
            "latency_during_ms": _med_max([v for v in tails("during") if v is not None]),
            "latency_before_ms": _median(tails("before")),
            "latency_after_ms": _median(tails("after"))}


def summarize(runs: list[Run]) -> list[dict[str, Any]]:
    rows = []
    for strategy in STRATEGIES:
        rs = [r for r in runs if r.strategy == strategy]
        if not rs:
            continue
        ok = [r for r in rs if r.ok]
        rows.append({
            "strategy": strategy, "runs": len(rs), "completed": len(ok),
            "failed_requests": _med_max([float(r.failed) for r in rs]),
            "outage_unended": sum(1 for r in rs if not r.outage_ended),
            "longest_gap_ms": _med_max([r.longest_gap_ms or 0.0 for r in rs]),
            "switch_gap_ms": _med_max([r.switch_gap_ms for r in ok if r.switch_gap_ms is not None]),
            "total_s": _med_max([r.total_s for r in ok]),
            "drain_s": _med_max([phase_seconds(r.phases, "drain") for r in ok]),
            "to_target_s": _med_max([r.to_target_s for r in ok if r.to_target_s is not None]),
            **latency_columns(ok),
            "window_after_s": _med_max([r.window_end - r.end for r in rs]),
            "ingress": ingress_summary(ok),
        })
    return rows


def run_bench(*, runs: int, strategies: list[str], scale: list[int], out: Path,
              say: Say, interval_ms: float = 10,
              ingress_calls: int = INGRESS_CALLS) -> dict[str, Any]:
    journal = Store(f"sqlite:///{(out / DB_FILE).resolve()}")
    all_runs: list[Run] = []
    for i in range(runs):
        for strategy in strategies:
            all_runs.append(one_run(strategy, i, journal, say, interval_ms=interval_ms,
                                    ingress_calls=ingress_calls))
    reset(say, interval_ms=interval_ms)
    scales = [scale_run(n, journal, say) for n in scale]
    return {"runs": [asdict(r) | {"total_s": r.total_s} for r in all_runs],
            "summary": summarize(all_runs), "scale": scales, "interval_ms": interval_ms,
            "window": {"before_s": BEFORE_S, "after_min_s": AFTER_MIN_S, "quiet_s": QUIET_S,
                       "cap_after_ttl_s": CAP_AFTER_TTL_S,
                       "dns_ttl_s": _request(Strategy.EXTERNALNAME).dns_ttl},
            "ingress_calls": ingress_calls}

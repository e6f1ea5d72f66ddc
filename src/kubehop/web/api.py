"""The controller's read-only HTTP face (FastAPI): health, its Prometheus metrics, the store's
topology, decisions and migrations as JSON for dashboards and scripts, a fixed set of named
Prometheus series for charts, and the dashboard's static pages (``/``).

Nothing here writes: a dashboard with a bug, or a user with a browser, cannot change where a
service runs. The browser can only name a series, never send PromQL, so the page cannot be
used to run arbitrary (or expensive) queries against Prometheus. It listens on loopback
unless told otherwise.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Annotated, Any

import uvicorn
from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import FileResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from kubehop.adapters.prometheus import MonitoringError, Prometheus
from kubehop.adapters.store import Store
from kubehop.errors import UsageError

STATIC = Path(__file__).with_name("static")
"""The dashboard's page, script, style and vendored chart library (package data)."""


@dataclass(frozen=True)
class NamedQuery:
    """A chart the dashboard may ask for: fixed PromQL (``{w}`` is the rate window in
    seconds), what it shows, its unit, the labels that name a line, and a factor to the unit."""

    title: str
    unit: str
    expr: str
    legend: tuple[str, ...]
    scale: float = 1.0


SERIES: dict[str, NamedQuery] = {
    # kubelet's resource metrics: CPU of every pod, summed per cluster (cAdvisor in the testbed
    # reports only the root cgroup, so it cannot split CPU by pod).
    "cpu": NamedQuery("CPU use of the pods", "cores",
                      "sum by (cluster) (rate(pod_cpu_usage_seconds_total[{w}s]))",
                      ("cluster",)),
    # cAdvisor's block-device sectors (512 bytes) read and written, root cgroup per node.
    "io": NamedQuery("Storage I/O of the cluster's node", "bytes/s",
                     "sum by (cluster) (rate(container_fs_sector_reads_total{{id=\"/\"}}[{w}s])"
                     " + rate(container_fs_sector_writes_total{{id=\"/\"}}[{w}s])) * 512",
                     ("cluster",)),
    # agw, the managed service's client: its latency histogram and failed check-ins.
    "latency": NamedQuery("Client latency (p99)", "ms",
                          "histogram_quantile(0.99, sum by (le, cluster, namespace, app) "
                          "(rate(agw_request_latency_seconds_bucket[{w}s])))",
                          ("namespace", "app", "cluster"), scale=1000.0),
    # ``or ... * 0``: a client that never failed has no failed series; draw it at 0.
    "failed": NamedQuery("Failed client requests", "req/s",
                         "sum by (cluster, namespace, app) "
                         "(rate(agw_requests_total{{outcome=\"failed\"}}[{w}s])) "
                         "or sum by (cluster, namespace, app) "
                         "(rate(agw_requests_total[{w}s])) * 0",
                         ("namespace", "app", "cluster")),
}
MIN_RANGE, MAX_RANGE = 60, 86400
POINTS = 240
"""About this many points per line: enough for a chart, few enough to poll every second."""
SCRAPE_SECONDS = 5
"""The testbed's scrape interval: a rate window shorter than a few scrapes has no data."""


def plain(value: Any) -> Any:
    """Dataclasses (the store's records) as JSON-able dicts."""
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def topology(store: Store) -> dict[str, Any]:
    """Clusters, the latest RTT of every link, and where each managed service runs: the one
    shape the CLI (``controller topology``) and the API share."""
    links = [{"source": a, "target": b, "rtt_ms": round(s.rtt_ms, 3), "at": s.at}
             for (a, b), s in sorted(store.latest_links().items())]
    services = []
    for s in store.services():
        here = store.current_placement(s.namespace, s.name)
        services.append({"namespace": s.namespace, "name": s.name, "cluster": s.cluster,
                         "since": here.since if here else None, "spec": s.spec,
                         "seen": s.seen})
    return {"clusters": plain(store.clusters()), "links": links, "services": services}


def series(prometheus: Prometheus | None, name: str | None, seconds: int,
           now: float | None = None) -> dict[str, Any]:
    """The named query over the last ``seconds``, as lines of (t, value) points. Bad input
    (an unknown name, a range out of bounds) raises UsageError; Prometheus missing or failing
    is an answer with ``error`` set and no lines, which the page shows in the chart's place."""
    if name not in SERIES:
        raise UsageError(f"unknown series {name!r}; ask for one of {', '.join(SERIES)}")
    if not MIN_RANGE <= seconds <= MAX_RANGE:
        raise UsageError(f"range {seconds} is out of bounds; use {MIN_RANGE} to {MAX_RANGE} "
                         "seconds")
    q = SERIES[name]
    end = time.time() if now is None else now
    step = max(1.0, seconds / POINTS)
    window = max(4 * SCRAPE_SECONDS, int(2 * step))
    answer: dict[str, Any] = {"query": name, "title": q.title, "unit": q.unit,
                              "start": end - seconds, "end": end, "step": step,
                              "series": [], "error": None}
    if prometheus is None:
        answer["error"] = ("no Prometheus configured: start the dashboard with --prometheus "
                           "URL (or an inventory naming one)")
        return answer
    try:
        found = prometheus.query_range(q.expr.format(w=window), start=end - seconds, end=end,
                                       step=step)
    except MonitoringError as exc:
        answer["error"] = str(exc)
        return answer
    lines = []
    for s in found:
        label = " ".join(s.labels.get(k, "") for k in q.legend if s.labels.get(k)) or name
        lines.append({"name": label, "labels": s.labels,
                      "points": [[t, v * q.scale] for t, v in s.points]})
    answer["series"] = sorted(lines, key=lambda line: str(line["name"]))
    return answer


def create_app(store: Store, registry: CollectorRegistry,
               health: Callable[[], tuple[bool, str]], *,
               prometheus: str | None = None) -> FastAPI:
    """The API and the dashboard. ``prometheus`` (a URL) feeds ``/api/v1/series``; without
    it the charts say so instead of drawing."""
    client = Prometheus(prometheus, timeout=3.0) if prometheus else None

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if client is not None:
            client.close()

    app = FastAPI(title="kubehop controller", version="v1alpha1", docs_url=None,
                  redoc_url=None, lifespan=lifespan)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    _add_process_routes(app, registry, health)
    _add_store_routes(app, store)
    _add_series_route(app, client)
    return app


def _add_process_routes(app: FastAPI, registry: CollectorRegistry,
                        health: Callable[[], tuple[bool, str]]) -> None:
    """The dashboard's page, ``/healthz`` and ``/metrics``: what the process itself answers."""

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/healthz", response_class=PlainTextResponse)
    def healthz() -> Response:
        ok, why = health()
        return PlainTextResponse(why, status_code=200 if ok else 503)

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def _add_store_routes(app: FastAPI, store: Store) -> None:
    """The read-only API over the store: topology, decisions and migrations (404 if unknown)."""

    @app.get("/api/v1/topology")
    def get_topology() -> dict[str, Any]:
        return topology(store)

    @app.get("/api/v1/decisions")
    def get_decisions(limit: int = 50, namespace: str | None = None,
                      service: str | None = None) -> list[Any]:
        return list(plain(store.decisions(limit=min(limit, 1000), namespace=namespace,
                                          service=service)))

    @app.get("/api/v1/decisions/{decision_id}")
    def get_decision(decision_id: int) -> Any:
        try:
            return plain(store.decision(decision_id))
        except UsageError as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from exc

    @app.get("/api/v1/migrations")
    def get_migrations() -> list[Any]:
        return list(plain(store.list()))

    @app.get("/api/v1/migrations/{migration_id}")
    def get_migration(migration_id: str) -> Any:
        try:
            return plain(store.get(migration_id))
        except UsageError as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from exc


def _add_series_route(app: FastAPI, client: Prometheus | None) -> None:
    """``/api/v1/series``: the dashboard's charts, read from Prometheus (400 on a bad query)."""

    @app.get("/api/v1/series")
    def get_series(query: str | None = None,
                   seconds: Annotated[int, Query(alias="range")] = 900) -> dict[str, Any]:
        try:
            return series(client, query, seconds)
        except UsageError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from exc


class Server:
    """uvicorn in a thread of the controller's process, stopped with it."""

    def __init__(self, app: FastAPI, host: str, port: int,
                 hint: str = "pick another with --listen HOST:PORT") -> None:
        self.hint = hint
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=port,
                                                    log_level="warning", access_log=False))
        self.thread = threading.Thread(target=self.server.run, name="kubehop-api",
                                       daemon=True)

    def start(self, timeout: float = 10.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise UsageError(f"the HTTP server could not listen on "
                                 f"{self.server.config.host}:{self.server.config.port}; "
                                 f"{self.hint}")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)

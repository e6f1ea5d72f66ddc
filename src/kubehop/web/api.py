"""The controller's read-only HTTP face (FastAPI): health, its Prometheus metrics, and the
store's topology, decisions and migrations as JSON for dashboards and scripts.

Nothing here writes: a dashboard with a bug, or a user with a browser, cannot change where a
service runs. It listens on loopback unless told otherwise.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from typing import Any

import uvicorn
from fastapi import FastAPI, HTTPException
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from kubehop.adapters.store import Store
from kubehop.errors import UsageError


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


def create_app(store: Store, registry: CollectorRegistry,
               health: Callable[[], tuple[bool, str]]) -> FastAPI:
    app = FastAPI(title="kubehop controller", version="v1alpha1", docs_url=None,
                  redoc_url=None)

    @app.get("/healthz", response_class=PlainTextResponse)
    def healthz() -> Response:
        ok, why = health()
        return PlainTextResponse(why, status_code=200 if ok else 503)

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

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

    return app


class Server:
    """uvicorn in a thread of the controller's process, stopped with it."""

    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=port,
                                                    log_level="warning", access_log=False))
        self.thread = threading.Thread(target=self.server.run, name="kubehop-api",
                                       daemon=True)

    def start(self, timeout: float = 10.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise UsageError(f"the controller's HTTP server could not listen on "
                                 f"{self.server.config.host}:{self.server.config.port}; "
                                 "pick another with --listen HOST:PORT")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)

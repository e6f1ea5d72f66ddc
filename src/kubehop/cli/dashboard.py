"""``kubehop dashboard``: the web pages over the store and Prometheus, without a controller.

The same app the controller serves on its ``--listen`` address, so a user who runs no
controller (or one elsewhere, writing to a shared PostgreSQL store) still sees the topology,
migrations, decisions and charts.
"""

from __future__ import annotations

import signal
import threading
from typing import Annotated
from urllib.parse import urlsplit

import typer
from prometheus_client import CollectorRegistry
from rich.console import Console

from kubehop.adapters import inventory as inv_file
from kubehop.adapters.store import Store, default_url
from kubehop.cli.controller import DbOption
from kubehop.errors import UsageError
from kubehop.web import api

out = Console(highlight=False, soft_wrap=True)
DEFAULT_PORT = 8765


def default_prometheus() -> str | None:
    """The inventory's Prometheus when there is an inventory (the testbed writes one); none
    otherwise: the charts then say how to name one."""
    try:
        where = inv_file.locate(None)
    except UsageError:
        return None
    return inv_file.load(str(where)).prometheus


def shown_url(url: str) -> str:
    """``url`` without any user:password in it (printed, so never with a secret)."""
    parts = urlsplit(url)
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()


def dashboard(
    port: Annotated[int, typer.Option(help="TCP port to listen on.")] = DEFAULT_PORT,
    listen: Annotated[str, typer.Option(help="Address to listen on (loopback by default: "
                                        "the pages show the cluster layout).")] = "127.0.0.1",
    db: DbOption = None,
    prometheus: Annotated[str | None, typer.Option(
        help="Prometheus URL for the charts (default: the inventory's).")] = None,
) -> None:
    """Serve the dashboard: topology, live migrations, decisions and per-cluster charts."""
    if not 0 < port < 65536:
        raise UsageError(f"--port {port} is out of range; use 1 to 65535")
    if not listen:
        raise UsageError("--listen is empty; give an address such as 127.0.0.1 or 0.0.0.0")
    store = Store(db or default_url())
    prom = prometheus or default_prometheus()
    app = api.create_app(store, CollectorRegistry(), lambda: (True, "ok: dashboard"),
                         prometheus=prom)
    server = api.Server(app, listen, port, hint="pick another with --port N (or --listen)")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server.start()
    shown = f"[{listen}]" if ":" in listen else listen
    out.print(f"dashboard on http://{shown}:{port}/ (store {store.shown}; "
              + (f"Prometheus {shown_url(prom)})" if prom else "no Prometheus: charts disabled)"),
              markup=False)
    try:
        stop.wait()
    finally:
        server.stop()
        store.close()

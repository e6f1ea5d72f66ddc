"""orc8r: a small stand-in for Magma's orchestrator, the network function kubehop migrates.

A REST API for networks, gateways and subscribers (IMSIs), a gateway check-in endpoint (what the
access gateway calls all the time), health and readiness endpoints and Prometheus metrics. Its
state lives in one JSON file on a volume (``ORC8R_STATE_DIR``), written atomically on every
change, so the service can be run stateful and its state carried along by a migration.

Every answer names the pod and cluster that served it, so a client can tell when it moved.
Standard library plus prometheus_client (copied into the image).
"""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

POD = socket.gethostname()
# The node name comes from the downward API, so a copy of this Deployment in another cluster
# still tells where it runs (testbed nodes are named <cluster>-node).
CLUSTER = os.environ.get("KUBEHOP_CLUSTER") or os.environ.get("NODE_NAME", "").removesuffix(
    "-node")
STATE_DIR = Path(os.environ.get("ORC8R_STATE_DIR", "/var/lib/orc8r"))

REQUESTS = Counter("orc8r_requests_total", "HTTP requests served.", ["method", "route", "code"])
LATENCY = Histogram("orc8r_request_seconds", "Time to serve a request.", ["route"],
                    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1))
CHECKINS = Counter("orc8r_checkins_total", "Gateway check-ins.", ["network"])
GATEWAYS = Gauge("orc8r_gateways", "Registered gateways.")
SUBSCRIBERS = Gauge("orc8r_subscribers", "Provisioned subscribers (IMSIs).")


class Store:
    """The orchestrator's state: networks -> gateways and subscribers; one JSON file."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "state.json"
        self.lock = threading.Lock()
        directory.mkdir(parents=True, exist_ok=True)
        self.data: dict[str, Any] = {"networks": {}}
        if self.path.exists():
            self.data = json.loads(self.path.read_text())
        self._gauges()

    def _gauges(self) -> None:
        nets = self.data["networks"].values()
        GATEWAYS.set(sum(len(n["gateways"]) for n in nets))
        SUBSCRIBERS.set(sum(len(n["subscribers"]) for n in nets))

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data))
        tmp.replace(self.path)
        self._gauges()

    def network(self, net_id: str) -> dict[str, Any] | None:
        net: dict[str, Any] | None = self.data["networks"].get(net_id)
        return net

    def ensure_network(self, net_id: str) -> dict[str, Any]:
        nets: dict[str, dict[str, Any]] = self.data["networks"]
        return nets.setdefault(
            net_id, {"id": net_id, "name": net_id, "gateways": {}, "subscribers": {}}
        )


def _served() -> dict[str, str]:
    return {"pod": POD, "cluster": CLUSTER}


ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("GET", re.compile(r"^/$"), "info"),
    ("GET", re.compile(r"^/healthz$"), "healthz"),
    ("GET", re.compile(r"^/readyz$"), "healthz"),
    ("GET", re.compile(r"^/metrics$"), "metrics"),
    ("GET", re.compile(r"^/networks$"), "list_networks"),
    ("POST", re.compile(r"^/networks$"), "create_network"),
    ("GET", re.compile(r"^/networks/([\w.-]+)$"), "get_network"),
    ("GET", re.compile(r"^/networks/([\w.-]+)/gateways$"), "list_gateways"),
    ("POST", re.compile(r"^/networks/([\w.-]+)/gateways$"), "create_gateway"),
    ("POST", re.compile(r"^/networks/([\w.-]+)/gateways/([\w.-]+)/checkin$"), "checkin"),
    ("GET", re.compile(r"^/networks/([\w.-]+)/subscribers$"), "list_subscribers"),
    ("POST", re.compile(r"^/networks/([\w.-]+)/subscribers$"), "create_subscriber"),
]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; on a kept-alive connection (Traefik's to its
    # backends) Nagle holds the body until the headers are ACKed, and the peer delays that ACK
    # by 40 ms: TCP_NODELAY sends both at once (docs/latency.md).
    disable_nagle_algorithm = True
    store: Store
    raw_body = b""

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _reply(self, code: int, body: Any, route: str) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        REQUESTS.labels(self.command, route, str(code)).inc()

    def _body(self) -> dict[str, Any]:
        value = json.loads(self.raw_body or b"{}")
        return value if isinstance(value, dict) else {}

    def _dispatch(self) -> None:
        start = time.perf_counter()
        # Read the whole body first, used or not: on a kept-alive connection (a proxy's) left-over
        # bytes would otherwise be parsed as the next request.
        length = int(self.headers.get("Content-Length") or 0)
        self.raw_body = self.rfile.read(length) if length else b""
        path = self.path.split("?", 1)[0]
        for method, pattern, route in ROUTES:
            m = pattern.match(path)
            if m and method == self.command:
                try:
                    getattr(self, route)(*m.groups())
                except (ValueError, KeyError) as exc:
                    self._reply(400, {"error": str(exc)}, route)
                LATENCY.labels(route).observe(time.perf_counter() - start)
                return
        self._reply(404, {"error": f"no route {self.command} {path}"}, "unknown")

    do_GET = _dispatch  # noqa: N815
    do_POST = _dispatch  # noqa: N815

    def info(self) -> None:
        self._reply(200, {"service": "orc8r", **_served()}, "info")

    def healthz(self) -> None:
        self._reply(200, {"ok": True, **_served()}, "healthz")

    def metrics(self) -> None:
        data = generate_latest()
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE_LATEST)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def list_networks(self) -> None:
        with self.store.lock:
            nets = [{"id": n["id"], "name": n["name"]}
                    for n in self.store.data["networks"].values()]
        self._reply(200, nets, "networks")

    def create_network(self) -> None:
        body = self._body()
        net_id = str(body["id"])
        with self.store.lock:
            net = self.store.ensure_network(net_id)
            net["name"] = str(body.get("name", net_id))
            self.store.save()
        self._reply(201, {"id": net_id, **_served()}, "networks")

    def get_network(self, net_id: str) -> None:
        with self.store.lock:
            net = self.store.network(net_id)
        if net is None:
            self._reply(404, {"error": f"no network {net_id}"}, "network")
        else:
            self._reply(200, {"id": net_id, "name": net["name"],
                              "gateways": len(net["gateways"]),
                              "subscribers": len(net["subscribers"])}, "network")

    def list_gateways(self, net_id: str) -> None:
        with self.store.lock:
            net = self.store.network(net_id)
            gws = list(net["gateways"].values()) if net else None
        if gws is None:
            self._reply(404, {"error": f"no network {net_id}"}, "gateways")
        else:
            self._reply(200, gws, "gateways")

    def create_gateway(self, net_id: str) -> None:
        body = self._body()
        gw_id = str(body["id"])
        with self.store.lock:
            net = self.store.ensure_network(net_id)
            net["gateways"].setdefault(gw_id, {"id": gw_id, "checkins": 0, "last_checkin": None})
            self.store.save()
        self._reply(201, {"id": gw_id, **_served()}, "gateways")

    def checkin(self, net_id: str, gw_id: str) -> None:
        """A gateway reports in. An unknown one is registered, as Magma's bootstrapper would."""
        with self.store.lock:
            net = self.store.ensure_network(net_id)
            gw = net["gateways"].setdefault(gw_id, {"id": gw_id, "checkins": 0,
                                                    "last_checkin": None})
            gw["checkins"] += 1
            gw["last_checkin"] = time.time()
            count = gw["checkins"]
            # Check-ins are frequent; persist them in batches, registration at once.
            if count == 1 or count % 100 == 0:
                self.store.save()
        CHECKINS.labels(net_id).inc()
        self._reply(200, {"gateway": gw_id, "checkins": count, **_served()}, "checkin")

    def list_subscribers(self, net_id: str) -> None:
        with self.store.lock:
            net = self.store.network(net_id)
            subs = sorted(net["subscribers"]) if net else None
        if subs is None:
            self._reply(404, {"error": f"no network {net_id}"}, "subscribers")
        else:
            self._reply(200, subs, "subscribers")

    def create_subscriber(self, net_id: str) -> None:
        imsi = str(self._body()["imsi"])
        if not re.fullmatch(r"IMSI\d{6,15}", imsi):
            raise ValueError(f"bad IMSI {imsi!r}: want IMSI followed by 6-15 digits")
        with self.store.lock:
            net = self.store.ensure_network(net_id)
            net["subscribers"][imsi] = {"imsi": imsi}
            self.store.save()
        self._reply(201, {"imsi": imsi, **_served()}, "subscribers")


class Server(ThreadingHTTPServer):
    """socketserver's listen backlog is 5. agw opens a connection every 10 ms; when the node is
    starved for a moment (another cluster on the same machine starting pods) more than five
    wait to be accepted, the kernel answers the overflow with SYN cookies, and the client's
    data then meets no socket: a reset (agw saw bursts of ConnectionResetError). Real servers
    listen with the kernel's maximum (Go: somaxconn)."""

    request_queue_size = 4096


def main() -> None:
    Handler.store = Store(STATE_DIR)
    port = int(os.environ.get("PORT", "8080"))
    server = Server(("", port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()

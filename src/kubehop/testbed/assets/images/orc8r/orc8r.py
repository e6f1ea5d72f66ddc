"""orc8r: a small stand-in for Magma's orchestrator, the network function kubehop migrates.

A REST API for networks, gateways and subscribers (IMSIs), a gateway check-in endpoint (what the
access gateway calls all the time), health and readiness endpoints and Prometheus metrics. Its
state lives in one SQLite database on a volume (``$ORC8R_STATE_DIR/orc8r.db``) that every
replica opens, so any replica reads what any other committed, and a migration can carry the
volume along: ``POST /admin/freeze`` holds writes and waits for the one in progress, so the file
can be copied consistently; ``POST /admin/thaw`` lets the held writes go on.

Every answer names the pod and cluster that served it, so a client can tell when it moved.
Standard library plus prometheus_client (copied into the image).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator
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
FREEZE_HOLD_S = float(os.environ.get("ORC8R_FREEZE_HOLD_S", "2"))

REQUESTS = Counter("orc8r_requests_total", "HTTP requests served.", ["method", "route", "code"])
LATENCY = Histogram("orc8r_request_seconds", "Time to serve a request.", ["route"],
                    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1))
CHECKINS = Counter("orc8r_checkins_total", "Gateway check-ins.", ["network"])
GATEWAYS = Gauge("orc8r_gateways", "Registered gateways.")
SUBSCRIBERS = Gauge("orc8r_subscribers", "Provisioned subscribers (IMSIs).")
FROZEN = Gauge("orc8r_frozen", "1 while this pod holds writes (between freeze and thaw).")

SCHEMA = """
CREATE TABLE IF NOT EXISTS networks (id TEXT PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS gateways (
    network TEXT NOT NULL, id TEXT NOT NULL, checkins INTEGER NOT NULL DEFAULT 0,
    last_checkin REAL, PRIMARY KEY (network, id));
CREATE TABLE IF NOT EXISTS subscribers (
    network TEXT NOT NULL, imsi TEXT NOT NULL, PRIMARY KEY (network, imsi));
CREATE TABLE IF NOT EXISTS checkins (
    network TEXT NOT NULL, gateway TEXT NOT NULL, seq INTEGER, at REAL NOT NULL,
    cluster TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS checkins_by_gateway ON checkins (network, gateway, seq);
"""
TABLES = {"networks", "gateways", "subscribers", "checkins"}


class Store:
    """The orchestrator's state in one SQLite file shared by every replica.

    Connections are in autocommit mode: no transaction stays open between requests, so each
    read sees what any process has committed. Reads open one per request; writes, which this
    process serializes anyway, share one kept open (opening one costs more than the check-in's
    SQL, and agw can send 1000 check-ins a second). The journal mode is TRUNCATE, not WAL:
    after a freeze the database is the one file (a WAL would keep committed pages in a side
    file that a copy could miss); TRUNCATE empties the journal at commit instead of deleting
    it, one file operation less per check-in, and an empty journal is never replayed.
    """

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / "orc8r.db"
        self.write_lock = threading.Lock()
        self.writer: sqlite3.Connection | None = None
        self.schema_ready = False
        try:
            self.ensure_schema()
        except sqlite3.DatabaseError as exc:
            # A pod started on a volume whose copy is still arriving (a migration's pre-copy
            # took the file mid-write) reads a torn database; crashing would put the pod in a
            # crash loop that outlasts the final, consistent copy. Serve, and check again at
            # the first write (after the migration's thaw, on the final copy).
            print(f"orc8r: database not readable yet ({exc}); checking again at the first "
                  "write", file=sys.stderr, flush=True)

    def ensure_schema(self) -> None:
        """Only a new database is written at start: a replica joining (or a pod started on a
        copied volume) must not touch a file another process or a copy relies on."""
        with contextlib.closing(self.connect()) as db:
            tables = {row[0] for row in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
            if not TABLES.issubset(tables):
                db.executescript(f"BEGIN IMMEDIATE; {SCHEMA} COMMIT;")
        self.schema_ready = True

    def connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=5, isolation_level=None,
                             check_same_thread=False)
        db.execute("PRAGMA busy_timeout = 5000")
        if db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "truncate":
            db.execute("PRAGMA journal_mode = TRUNCATE")
        # No fsync: a crash of the process loses nothing (its writes are in the kernel's page
        # cache, which outlives it); only a crash of the node could, and the sample's state is
        # not worth an fsync per check-in.
        db.execute("PRAGMA synchronous = OFF")
        return db

    @contextlib.contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        with contextlib.closing(self.connect()) as db:
            yield db

    def reopen_writer(self) -> None:
        """The next write opens the database file anew (see ``admin_thaw``)."""
        with self.write_lock:
            if self.writer is not None:
                self.writer.close()
                self.writer = None

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A transaction that takes the write lock at once (no upgrade deadlock between two
        replicas' readers-turned-writers) and commits, or rolls back on an error.

        This process's writers queue on a thread lock first, so only one of them at a time
        waits on SQLite's: SQLite's busy handler polls with sleeps of up to 100 ms, and at
        1000 check-ins a second dozens of threads polling it let the lock sit idle between
        polls (orc8r served 300 a second, the rest "database is locked" after busy_timeout).
        """
        with self.write_lock:
            if not self.schema_ready:
                self.ensure_schema()
            db = self.writer = self.writer or self.connect()
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    yield db
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
            except sqlite3.Error:
                # Whatever state it is in, the next write starts on a new connection.
                self.writer = None
                db.close()
                raise


class FrozenError(Exception):
    """A write was held by a freeze for longer than ORC8R_FREEZE_HOLD_S."""


class Freezer:
    """This pod's write gate: while frozen, writes wait (and give up after ``hold_s``).

    ``freeze`` returns once no write is in progress, so the database file then holds every
    acknowledged write and no half-done one; the caller copies it and then thaws.
    """

    def __init__(self, hold_s: float) -> None:
        self.hold_s = hold_s
        self.cond = threading.Condition()
        self.frozen = False
        self.writing = 0

    def freeze(self) -> None:
        with self.cond:
            self.frozen = True
            FROZEN.set(1)
            while self.writing:
                self.cond.wait()

    def thaw(self) -> None:
        with self.cond:
            self.frozen = False
            FROZEN.set(0)
            self.cond.notify_all()

    @contextlib.contextmanager
    def writing_allowed(self) -> Iterator[None]:
        """Hold while frozen; raise FrozenError (nothing written) after ``hold_s``."""
        deadline = time.monotonic() + self.hold_s
        with self.cond:
            while self.frozen:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise FrozenError
                self.cond.wait(left)
            self.writing += 1
        try:
            yield
        finally:
            with self.cond:
                self.writing -= 1
                self.cond.notify_all()


def _served() -> dict[str, str]:
    return {"pod": POD, "cluster": CLUSTER}


ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("GET", re.compile(r"^/$"), "info"),
    ("GET", re.compile(r"^/healthz$"), "healthz"),
    ("GET", re.compile(r"^/readyz$"), "healthz"),
    ("GET", re.compile(r"^/metrics$"), "metrics"),
    ("GET", re.compile(r"^/admin/state$"), "admin_state"),
    ("POST", re.compile(r"^/admin/freeze$"), "admin_freeze"),
    ("POST", re.compile(r"^/admin/thaw$"), "admin_thaw"),
    ("GET", re.compile(r"^/networks$"), "list_networks"),
    ("POST", re.compile(r"^/networks$"), "create_network"),
    ("GET", re.compile(r"^/networks/([\w.-]+)$"), "get_network"),
    ("GET", re.compile(r"^/networks/([\w.-]+)/gateways$"), "list_gateways"),
    ("POST", re.compile(r"^/networks/([\w.-]+)/gateways$"), "create_gateway"),
    ("POST", re.compile(r"^/networks/([\w.-]+)/gateways/([\w.-]+)/checkin$"), "checkin"),
    ("GET", re.compile(r"^/networks/([\w.-]+)/gateways/([\w.-]+)/checkins$"), "list_checkins"),
    ("GET", re.compile(r"^/networks/([\w.-]+)/subscribers$"), "list_subscribers"),
    ("POST", re.compile(r"^/networks/([\w.-]+)/subscribers$"), "create_subscriber"),
]
WRITES = {"create_network", "create_gateway", "checkin", "create_subscriber"}
"""Routes that change state: the ones a freeze holds."""


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; on a kept-alive connection (Traefik's to its
    # backends) Nagle holds the body until the headers are ACKed, and the peer delays that ACK
    # by 40 ms: TCP_NODELAY sends both at once (docs/latency.md).
    disable_nagle_algorithm = True
    store: Store
    freezer: Freezer
    raw_body = b""

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _reply(self, code: int, body: Any, route: str,
               headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
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
                    if route in WRITES:
                        with self.freezer.writing_allowed():
                            getattr(self, route)(*m.groups())
                    else:
                        getattr(self, route)(*m.groups())
                except FrozenError:
                    self._reply(503, {"error": "frozen"}, route, {"Retry-After": "0"})
                except (ValueError, KeyError) as exc:
                    self._reply(400, {"error": str(exc)}, route)
                except sqlite3.OperationalError as exc:
                    # Locked for longer than busy_timeout (or the like): a moment's trouble.
                    self._reply(503, {"error": f"database: {exc}"}, route)
                except sqlite3.DatabaseError as exc:
                    # Not a database (yet): a copy still arriving. An answer, not a reset.
                    self._reply(500, {"error": f"database: {exc}"}, route)
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
        # Another replica changes the database too: count at scrape time.
        with self.store.read() as db:
            GATEWAYS.set(db.execute("SELECT count(*) FROM gateways").fetchone()[0])
            SUBSCRIBERS.set(db.execute("SELECT count(*) FROM subscribers").fetchone()[0])
        data = generate_latest()
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE_LATEST)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def admin_state(self) -> None:
        self._reply(200, {"frozen": self.freezer.frozen, **_served()}, "admin")

    def admin_freeze(self) -> None:
        self.freezer.freeze()
        self._reply(200, {"frozen": True, **_served()}, "admin")

    def admin_thaw(self) -> None:
        # The file may have been replaced while frozen (a migration's copy lands by rename):
        # writes after the thaw go to the file at the path, not to one kept open before.
        self.store.reopen_writer()
        self.freezer.thaw()
        self._reply(200, {"frozen": False, **_served()}, "admin")

    def list_networks(self) -> None:
        with self.store.read() as db:
            nets = [{"id": i, "name": n}
                    for i, n in db.execute("SELECT id, name FROM networks ORDER BY rowid")]
        self._reply(200, nets, "networks")

    def create_network(self) -> None:
        body = self._body()
        net_id = str(body["id"])
        with self.store.write() as db:
            db.execute("INSERT INTO networks (id, name) VALUES (?, ?) "
                       "ON CONFLICT (id) DO UPDATE SET name = excluded.name",
                       (net_id, str(body.get("name", net_id))))
        self._reply(201, {"id": net_id, **_served()}, "networks")

    def get_network(self, net_id: str) -> None:
        with self.store.read() as db:
            row = db.execute(
                "SELECT name, (SELECT count(*) FROM gateways WHERE network = :n), "
                "(SELECT count(*) FROM subscribers WHERE network = :n) "
                "FROM networks WHERE id = :n", {"n": net_id}).fetchone()
        if row is None:
            self._reply(404, {"error": f"no network {net_id}"}, "network")
        else:
            self._reply(200, {"id": net_id, "name": row[0], "gateways": row[1],
                              "subscribers": row[2]}, "network")

    def _has_network(self, db: sqlite3.Connection, net_id: str) -> bool:
        return db.execute("SELECT 1 FROM networks WHERE id = ?", (net_id,)).fetchone() is not None

    def list_gateways(self, net_id: str) -> None:
        with self.store.read() as db:
            gws = [{"id": i, "checkins": c, "last_checkin": t} for i, c, t in db.execute(
                "SELECT id, checkins, last_checkin FROM gateways WHERE network = ? "
                "ORDER BY rowid", (net_id,))] if self._has_network(db, net_id) else None
        if gws is None:
            self._reply(404, {"error": f"no network {net_id}"}, "gateways")
        else:
            self._reply(200, gws, "gateways")

    @staticmethod
    def _ensure_network(db: sqlite3.Connection, net_id: str) -> None:
        db.execute("INSERT OR IGNORE INTO networks (id, name) VALUES (?, ?)", (net_id, net_id))

    def create_gateway(self, net_id: str) -> None:
        body = self._body()
        gw_id = str(body["id"])
        with self.store.write() as db:
            self._ensure_network(db, net_id)
            db.execute("INSERT OR IGNORE INTO gateways (network, id) VALUES (?, ?)",
                       (net_id, gw_id))
        self._reply(201, {"id": gw_id, **_served()}, "gateways")

    def checkin(self, net_id: str, gw_id: str) -> None:
        """A gateway reports in. An unknown one is registered, as Magma's bootstrapper would.

        With ``{"seq": N}`` the check-in is kept by number, so a client can tell which of the
        check-ins orc8r acknowledged survived a migration.
        """
        seq = self._body().get("seq")
        if seq is not None and (isinstance(seq, bool) or not isinstance(seq, int)):
            raise ValueError(f"bad seq {seq!r}: want an integer")
        now = time.time()
        with self.store.write() as db:
            self._ensure_network(db, net_id)
            db.execute("INSERT INTO gateways (network, id, checkins, last_checkin) "
                       "VALUES (?, ?, 1, ?) ON CONFLICT (network, id) DO UPDATE SET "
                       "checkins = checkins + 1, last_checkin = excluded.last_checkin",
                       (net_id, gw_id, now))
            count = db.execute("SELECT checkins FROM gateways WHERE network = ? AND id = ?",
                               (net_id, gw_id)).fetchone()[0]
            db.execute("INSERT INTO checkins (network, gateway, seq, at, cluster) "
                       "VALUES (?, ?, ?, ?, ?)", (net_id, gw_id, seq, now, CLUSTER))
        CHECKINS.labels(net_id).inc()
        answer: dict[str, Any] = {"gateway": gw_id, "checkins": count, **_served()}
        if seq is not None:
            answer["seq"] = seq
        self._reply(200, answer, "checkin")

    def list_checkins(self, net_id: str, gw_id: str) -> None:
        with self.store.read() as db:
            seqs = [row[0] for row in db.execute(
                "SELECT DISTINCT seq FROM checkins WHERE network = ? AND gateway = ? "
                "AND seq IS NOT NULL ORDER BY seq", (net_id, gw_id))]
        self._reply(200, {"seqs": seqs}, "checkins")

    def list_subscribers(self, net_id: str) -> None:
        with self.store.read() as db:
            subs = [row[0] for row in db.execute(
                "SELECT imsi FROM subscribers WHERE network = ? ORDER BY imsi", (net_id,))
                    ] if self._has_network(db, net_id) else None
        if subs is None:
            self._reply(404, {"error": f"no network {net_id}"}, "subscribers")
        else:
            self._reply(200, subs, "subscribers")

    def create_subscriber(self, net_id: str) -> None:
        imsi = str(self._body()["imsi"])
        if not re.fullmatch(r"IMSI\d{6,15}", imsi):
            raise ValueError(f"bad IMSI {imsi!r}: want IMSI followed by 6-15 digits")
        with self.store.write() as db:
            self._ensure_network(db, net_id)
            db.execute("INSERT OR IGNORE INTO subscribers (network, imsi) VALUES (?, ?)",
                       (net_id, imsi))
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
    Handler.freezer = Freezer(FREEZE_HOLD_S)
    port = int(os.environ.get("PORT", "8080"))
    server = Server(("", port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()

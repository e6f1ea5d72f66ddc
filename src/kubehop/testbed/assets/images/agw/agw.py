"""agw: a stand-in for Magma's access gateway, and kubehop's downtime probe.

It checks in with orc8r at a fixed open-loop rate (default every 10 ms): each request is sent at
its scheduled time whether or not earlier ones have answered, on a new connection, after
resolving orc8r's name as an ordinary client does (the C library resolver, through the pod's
/etc/resolv.conf). Latency is measured from the scheduled time, so a stalled service shows up as
latency and failures instead of silently thinning the load.

It keeps every request's record (scheduled time, outcome, latency, who answered) and serves:

- ``GET /record[?since=T&until=T]``: count, failed, longest gap between successful responses,
  latency percentiles, errors, who served, and a per-second timeline;
- ``GET /record/raw[?since=T&until=T]``: the requests themselves;
- ``GET /acked[?since=T&until=T]``: the sequence numbers orc8r acknowledged (HTTP 200);
- ``POST /reset``: start a new record;
- ``GET /metrics``: the same as Prometheus metrics.

Each check-in carries its schedule index as ``{"seq": k}`` (unique for the life of the process,
across resets), so after a migration that carried orc8r's data one can check that every
acknowledged check-in is still stored. A 503 (orc8r frozen while its data is copied) is retried
with the same seq every 20 ms until the request's timeout; only the final outcome is recorded.

The client is asyncio with HTTP/1.1 written by hand on its streams, not http.client in threads:
at a 1 ms interval (the resolution that can show a 10 ms gap) a thread per check-in cannot keep
pace on a 2-core node. Each record also says how late its request actually started (``lag``),
so a run can show the client kept to its schedule.
"""

from __future__ import annotations

import asyncio
import collections
import http.client
import itertools
import json
import os
import threading
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

TARGET = os.environ.get("AGW_TARGET", "http://orc8r.orc8r-ns")
INTERVAL = float(os.environ.get("AGW_INTERVAL_MS", "10")) / 1000
TIMEOUT = float(os.environ.get("AGW_TIMEOUT_S", "5"))
NETWORK = os.environ.get("AGW_NETWORK", "testnet")
GATEWAY = os.environ.get("AGW_GATEWAY_ID", os.environ.get("HOSTNAME", "agw-1"))
KEEP = int(os.environ.get("AGW_KEEP", "720000"))
MODE = os.environ.get("AGW_MODE", "checkin")
"""``checkin``: numbered check-ins orc8r stores; ``probe``: ``GET /healthz`` (nothing stored),
for intervals too short for orc8r to store every check-in (the bench's 1 ms mode)."""
RETRY_S = 0.02
"""Pause between retries of a check-in answered 503."""
RESOLVER_THREADS = 64
"""Threads for getaddrinfo (asyncio resolves in its default executor): enough that a slow DNS
answer shows as latency of the check-ins waiting on it, not as a queue delaying later ones."""
EOF_WAIT_S = 1.0
"""How long a finished exchange waits for the server to close first (see ``_close``)."""

SENT = Counter("agw_requests_total", "Check-ins sent, by outcome.", ["outcome"])
LAT = Histogram("agw_request_latency_seconds", "Check-in latency from its scheduled time.",
                buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
GAP = Gauge("agw_longest_gap_seconds", "Longest gap between successful check-ins since reset.")


@dataclass(frozen=True, slots=True)  # slots: up to KEEP (720 000) are kept in memory
class Sample:
    t: float  # scheduled send time (unix seconds)
    latency: float  # seconds from scheduled time to answer or failure
    ok: bool
    error: str  # "" when ok; else status code or exception name
    cluster: str  # cluster that answered ("" when failed)
    seq: int | None = None  # the check-in's schedule index (None: not a scheduled one)
    retried: bool = False  # it was answered 503 at least once and sent again
    lag: float = 0.0  # seconds from scheduled time to when the client started the request


class Recorder:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.samples: collections.deque[Sample] = collections.deque(maxlen=KEEP)
        self.last_ok_done = 0.0
        self.longest_gap = 0.0

    def add(self, s: Sample) -> None:
        with self.lock:
            self.samples.append(s)
            if s.ok:
                done = s.t + s.latency
                if self.last_ok_done and done > self.last_ok_done:
                    self.longest_gap = max(self.longest_gap, done - self.last_ok_done)
                self.last_ok_done = max(self.last_ok_done, done)
        SENT.labels("ok" if s.ok else "failed").inc()
        if s.ok:
            LAT.observe(s.latency)
        GAP.set(self.longest_gap)

    def reset(self) -> None:
        with self.lock:
            self.samples.clear()
            self.last_ok_done = 0.0
            self.longest_gap = 0.0

    def window(self, since: float, until: float) -> list[Sample]:
        # Copy under the lock, filter outside it: the event loop adds a sample every
        # millisecond and must not wait while a reader walks 720 000 of them.
        with self.lock:
            samples = list(self.samples)
        return [s for s in samples if since <= s.t <= until]


def acked(samples: list[Sample]) -> list[int]:
    """The seqs orc8r acknowledged: what it must still hold after a migration."""
    return sorted({s.seq for s in samples if s.ok and s.seq is not None})


def percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


def summarize(samples: list[Sample]) -> dict[str, Any]:
    """The record over a window: what the migration tests and benchmarks read."""
    ok = [s for s in samples if s.ok]
    lat = sorted(s.latency for s in ok)
    lag = sorted(s.lag for s in samples)
    done = sorted(s.t + s.latency for s in ok)
    gaps = [b - a for a, b in itertools.pairwise(done)]
    errors: dict[str, int] = collections.Counter(s.error for s in samples if not s.ok)
    served: dict[str, int] = collections.Counter(s.cluster for s in ok)
    timeline: dict[int, dict[str, Any]] = {}
    for s in samples:
        sec = timeline.setdefault(int(s.t), {"t": int(s.t), "ok": 0, "failed": 0, "lat": [],
                                             "served_by": collections.Counter()})
        if s.ok:
            sec["ok"] += 1
            sec["lat"].append(s.latency)
            sec["served_by"][s.cluster] += 1
        else:
            sec["failed"] += 1
    rows = []
    for sec in sorted(timeline.values(), key=lambda r: r["t"]):
        values = sorted(sec.pop("lat"))
        sec["p50_ms"] = _ms(percentile(values, 0.5))
        sec["p99_ms"] = _ms(percentile(values, 0.99))
        sec["served_by"] = dict(sec["served_by"])
        rows.append(sec)
    return {
        "target": TARGET,
        "interval_ms": INTERVAL * 1000,
        "count": len(samples),
        "ok": len(ok),
        "failed": len(samples) - len(ok),
        "retried": sum(1 for s in samples if s.retried),
        "longest_gap_ms": _ms(max(gaps)) if gaps else None,
        "latency_ms": {"p50": _ms(percentile(lat, 0.5)), "p90": _ms(percentile(lat, 0.9)),
                       "p99": _ms(percentile(lat, 0.99)), "max": _ms(lat[-1] if lat else None)},
        "send_lag_ms": {"p50": _ms(percentile(lag, 0.5)), "p99": _ms(percentile(lag, 0.99)),
                        "max": _ms(lag[-1] if lag else None)},
        "errors": dict(errors),
        "served_by": dict(served),
        "first": samples[0].t if samples else None,
        "last": samples[-1].t if samples else None,
        "timeline": rows,
    }


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 3)


RECORDER = Recorder()


Send = Callable[[int | None, float], Awaitable[tuple[int, bytes]]]
"""One check-in request: (seq, timeout) -> (HTTP status, body); raises on a failed exchange."""

_closing: set[asyncio.Task[None]] = set()
"""Connections waiting for the server's close (the loop keeps only weak references to tasks)."""


async def post_checkin(seq: int | None, timeout: float, target: str = TARGET) -> tuple[int, bytes]:
    """One check-in on a new connection, as a gateway that does not keep connections.

    HTTP/1.1 by hand on asyncio streams: one request with ``Connection: close`` and a
    Content-Length answer is all this needs, and http.client is blocking (a thread per
    request). ``open_connection`` resolves the name on every call through loop.getaddrinfo,
    the C library resolver, as an ordinary client does.
    """
    url = urllib.parse.urlsplit(target)
    host, port = url.hostname or "", url.port or 80
    # An absolute name (trailing dot) is resolved as given; the Host header names it without.
    netloc = f"{host.rstrip('.')}:{url.port}" if url.port else host.rstrip(".")
    if MODE == "probe":
        body = b""
        head = (f"GET /healthz HTTP/1.1\r\nHost: {netloc}\r\n"
                "Connection: close\r\n\r\n").encode()
    else:
        path = f"/networks/{NETWORK}/gateways/{GATEWAY}/checkin"
        body = b"{}" if seq is None else json.dumps({"seq": seq}).encode()
        head = (f"POST {path} HTTP/1.1\r\nHost: {netloc}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n").encode()
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(head + body)  # one write, one segment
            status, answer = await read_response(reader)
        except BaseException:
            writer.close()
            raise
    task = asyncio.create_task(_close(reader, writer))
    _closing.add(task)
    task.add_done_callback(_closing.discard)
    return status, answer


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """Status and body of an HTTP/1.x answer: the status line, headers up to the blank line,
    then Content-Length bytes (or everything up to the close, when there is no length).
    Errors are http.client's, so the record names them as it did with http.client."""
    line = await reader.readline()
    if not line:
        raise http.client.RemoteDisconnected("closed before answering")
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise http.client.BadStatusLine(line.decode("latin-1"))
    length: int | None = None
    while (header := await reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = header.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    try:
        body = await reader.read() if length is None else await reader.readexactly(length)
    except asyncio.IncompleteReadError as exc:
        raise http.client.IncompleteRead(exc.partial, exc.expected) from None
    return int(parts[1]), body


async def _close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Close after the server has: whoever closes first keeps the connection in TIME_WAIT for
    60 s, and 1000 a second toward one address would use up the client's ~28 000 ephemeral
    ports (the kernel reuses them early only on loopback). Servers close first on
    ``Connection: close``; one that does not is closed after EOF_WAIT_S."""
    try:
        async with asyncio.timeout(EOF_WAIT_S):
            while await reader.read(65536):
                pass
    except (OSError, TimeoutError):
        pass
    finally:
        writer.close()


async def attempt(scheduled: float, seq: int | None, *, send: Send = post_checkin,
                  now: Callable[[], float] = time.time,
                  sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> Sample:
    """The outcome of one scheduled check-in: sent, and sent again while orc8r answers 503
    (frozen for a migration), until TIMEOUT from its scheduled time. Its lag is how late it
    started: the open loop's own delay, which must stay small for the latencies to mean much."""
    lag = now() - scheduled
    deadline = scheduled + TIMEOUT
    retried = False
    while True:
        try:
            status, body = await send(seq, max(0.001, deadline - now()))
        except (OSError, EOFError, ValueError, http.client.HTTPException) as exc:
            return Sample(scheduled, now() - scheduled, False, type(exc).__name__, "", seq,
                          retried, lag)
        latency = now() - scheduled
        if status == 503 and now() + RETRY_S < deadline:
            retried = True
            await sleep(RETRY_S)
            continue
        if status != 200:
            return Sample(scheduled, latency, False, f"http {status}", "", seq, retried, lag)
        try:
            cluster = str(json.loads(body).get("cluster", ""))
        except (ValueError, AttributeError) as exc:
            return Sample(scheduled, latency, False, type(exc).__name__, "", seq, retried, lag)
        return Sample(scheduled, latency, True, "", cluster, seq, retried, lag)


async def check_in(scheduled: float, seq: int | None = None, *, send: Send = post_checkin,
                   recorder: Recorder = RECORDER) -> Sample:
    sample = await attempt(scheduled, seq, send=send)
    recorder.add(sample)
    return sample


async def wait_for_orc8r(limit: float = 120.0) -> None:
    """Register like a gateway does: one successful check-in before the steady load starts.

    Connection attempts to a Service IP that kube-proxy has not programmed yet would leave
    un-NATed conntrack entries behind (for minutes), which a later connection reusing the same
    source port would hit; starting once orc8r answers avoids measuring that start-up artefact.
    """
    deadline = time.time() + limit
    while time.time() < deadline:
        if (await check_in(time.time())).ok:
            break
        await asyncio.sleep(0.5)
    RECORDER.reset()


async def load_loop(*, interval: float = INTERVAL, send: Send = post_checkin,
                    recorder: Recorder = RECORDER, duration: float | None = None) -> None:
    """Open loop: start check-in k at t0 + k*interval, never waiting for answers; a late start
    (a busy loop) sends at once, so the schedule catches up. With ``duration``, stop scheduling
    after that long and wait for the check-ins in flight (tests); else run forever."""
    in_flight: set[asyncio.Task[Sample]] = set()
    start = time.time()
    k = 0
    while duration is None or k * interval < duration:
        scheduled = start + k * interval
        delay = scheduled - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(check_in(scheduled, k, send=send, recorder=recorder))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
        k += 1
    if in_flight:
        await asyncio.wait(in_flight)


async def probe() -> None:
    """The pod's probe: register, then the steady load."""
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=RESOLVER_THREADS, thread_name_prefix="resolve"))
    await wait_for_orc8r()
    await load_loop()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; on a kept-alive connection (Traefik's to its
    # backends) Nagle holds the body until the headers are ACKed, and the peer delays that ACK
    # by 40 ms: TCP_NODELAY sends both at once (docs/latency.md).
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, code: int, data: bytes, ctype: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _window(self) -> list[Sample]:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        since = float(query.get("since", ["0"])[0])
        until = float(query.get("until", [str(time.time() + 3600)])[0])
        return RECORDER.window(since, until)

    def do_GET(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        if path == "/record":
            self._send(200, json.dumps(summarize(self._window())).encode())
        elif path == "/record/raw":
            # New columns go at the end: readers index rows by position.
            rows = [[s.t, round(s.latency, 6), s.ok, s.error, s.cluster, s.seq, s.retried,
                     round(s.lag, 6)] for s in self._window()]
            self._send(200, json.dumps({"columns": ["t", "latency", "ok", "error", "cluster",
                                                    "seq", "retried", "lag"],
                                        "rows": rows}).encode())
        elif path == "/acked":
            self._send(200, json.dumps({"seqs": acked(self._window())}).encode())
        elif path == "/metrics":
            self._send(200, generate_latest(), CONTENT_TYPE_LATEST)
        elif path == "/healthz":
            self._send(200, b'{"ok": true}')
        else:
            self._send(404, b'{"error": "not found"}')

    def do_POST(self) -> None:
        if urllib.parse.urlsplit(self.path).path == "/reset":
            RECORDER.reset()
            self._send(200, b'{"reset": true}')
        else:
            self._send(404, b'{"error": "not found"}')


def main() -> None:
    threading.Thread(target=asyncio.run, args=(probe(),), daemon=True, name="load").start()
    server = ThreadingHTTPServer(("", int(os.environ.get("PORT", "8081"))), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()

"""The sample services' own logic: agw's record (the downtime probe)."""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import ModuleType

import pytest

from kubehop.testbed import images


def _load(name: str) -> ModuleType:
    path = images.asset("images", name, f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"sample_{name}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def agw() -> ModuleType:
    return _load("agw")


def test_record_counts_failures_and_longest_gap(agw: ModuleType) -> None:
    s = agw.Sample
    samples = [
        s(100.00, 0.002, True, "", "edge"),
        s(100.01, 0.002, True, "", "edge"),
        s(100.02, 1.000, False, "ConnectionRefusedError", ""),
        s(100.03, 1.000, False, "ConnectionRefusedError", ""),
        s(100.04, 0.003, True, "", "cloud"),
    ]
    record = agw.summarize(samples)
    assert record["count"] == 5
    assert record["failed"] == 2
    assert record["errors"] == {"ConnectionRefusedError": 2}
    assert record["served_by"] == {"edge": 2, "cloud": 1}
    # successes completed at 100.002, 100.012, 100.043 -> longest gap 31 ms
    assert record["longest_gap_ms"] == pytest.approx(31.0, abs=0.01)
    assert record["latency_ms"]["max"] == pytest.approx(3.0)
    assert [row["t"] for row in record["timeline"]] == [100]


def test_empty_record_has_no_percentiles(agw: ModuleType) -> None:
    record = agw.summarize([])
    assert record["count"] == 0 and record["longest_gap_ms"] is None
    assert record["latency_ms"]["p50"] is None


def test_recorder_tracks_the_longest_gap_since_reset(agw: ModuleType) -> None:
    rec = agw.Recorder()
    rec.add(agw.Sample(10.0, 0.001, True, "", "edge"))
    rec.add(agw.Sample(10.5, 0.001, True, "", "edge"))
    assert rec.longest_gap == pytest.approx(0.5)
    rec.reset()
    assert rec.longest_gap == 0 and not rec.window(0, 100)


class _Clock:
    """Time that moves only when the code under test sleeps or a request takes time."""

    def __init__(self, start: float) -> None:
        self.t = start

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += seconds


def test_a_checkin_answered_503_is_retried_with_its_seq_until_ok(agw: ModuleType) -> None:
    clock = _Clock(100.0)
    answers = [(503, b'{"error": "frozen"}'), (503, b'{"error": "frozen"}'),
               (200, b'{"cluster": "cloud", "seq": 42}')]
    sent: list[int | None] = []

    async def send(seq: int | None, timeout: float) -> tuple[int, bytes]:
        sent.append(seq)
        clock.t += 0.5  # each answer takes half a second (held by the freeze)
        return answers.pop(0)

    s = asyncio.run(agw.attempt(100.0, 42, send=send, now=clock.now, sleep=clock.sleep))
    assert sent == [42, 42, 42]
    assert s.ok and s.retried and s.seq == 42 and s.cluster == "cloud"
    # Latency from the scheduled time, across the retries: 3 x 0.5 s + 2 x 20 ms.
    assert s.latency == pytest.approx(1.54)


def test_a_checkin_still_refused_at_its_timeout_fails(agw: ModuleType) -> None:
    clock = _Clock(100.0)
    calls = 0

    async def send(seq: int | None, timeout: float) -> tuple[int, bytes]:
        nonlocal calls
        calls += 1
        assert timeout > 0
        if timeout < 0.2:  # as a socket would: the answer comes after the timeout
            clock.t += timeout
            raise TimeoutError
        clock.t += 0.2
        return 503, b'{"error": "frozen"}'

    s = asyncio.run(agw.attempt(100.0, 9, send=send, now=clock.now, sleep=clock.sleep))
    assert not s.ok and s.retried and s.error in {"http 503", "TimeoutError"}
    assert agw.TIMEOUT - 0.25 <= s.latency <= agw.TIMEOUT + 1e-9
    assert calls == pytest.approx(agw.TIMEOUT / 0.22, abs=1)


def test_other_errors_are_not_retried(agw: ModuleType) -> None:
    clock = _Clock(100.0)

    async def refused(seq: int | None, timeout: float) -> tuple[int, bytes]:
        raise ConnectionRefusedError

    async def broken(seq: int | None, timeout: float) -> tuple[int, bytes]:
        return 500, b"{}"

    s = asyncio.run(agw.attempt(100.0, 1, send=refused, now=clock.now, sleep=clock.sleep))
    assert not s.ok and not s.retried and s.error == "ConnectionRefusedError"
    s = asyncio.run(agw.attempt(100.0, 2, send=broken, now=clock.now, sleep=clock.sleep))
    assert not s.ok and not s.retried and s.error == "http 500"


def test_a_checkin_records_how_late_it_started(agw: ModuleType) -> None:
    clock = _Clock(100.25)  # the loop got to the check-in scheduled at 100.0 a quarter late

    async def send(seq: int | None, timeout: float) -> tuple[int, bytes]:
        clock.t += 0.01
        return 200, b'{"cluster": "edge"}'

    s = asyncio.run(agw.attempt(100.0, 3, send=send, now=clock.now, sleep=clock.sleep))
    assert s.ok and s.lag == pytest.approx(0.25) and s.latency == pytest.approx(0.26)
    lag = agw.summarize([s, agw.Sample(101.0, 0.01, True, "", "edge", 4, False, 0.001)])[
        "send_lag_ms"]
    assert lag == {"p50": pytest.approx(1.0), "p99": pytest.approx(250.0),
                   "max": pytest.approx(250.0)}


def test_acked_and_retried_in_the_record(agw: ModuleType) -> None:
    s = agw.Sample
    samples = [
        s(100.00, 0.002, True, "", "edge", 0),
        s(100.01, 0.900, True, "", "cloud", 1, True),
        s(100.02, 5.000, False, "http 503", "", 2, True),
        s(100.03, 0.002, True, "", "cloud", 3),
        s(100.04, 0.002, True, "", "cloud", None),  # the registration check-in: no seq
    ]
    assert agw.acked(list(reversed(samples))) == [0, 1, 3]
    assert agw.summarize(samples)["retried"] == 2


class _Orc8r(BaseHTTPRequestHandler):
    """A check-in endpoint on a real socket: 503 for the first ``refuse`` check-ins of each
    seq, then 200 naming cluster x, as orc8r answers; it records the seqs it saw."""

    protocol_version = "HTTP/1.1"
    refuse = 0
    seen: list[int | None]
    lock = threading.Lock()

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        """The probe mode's request: nothing stored, the answer names the cluster."""
        with self.lock:
            self.seen.append(None)
        data = b'{"ok": true, "cluster": "x"}' if self.path == "/healthz" else b"{}"
        self.send_response(200 if self.path == "/healthz" else 404)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        seq = json.loads(self.rfile.read(int(self.headers["Content-Length"]))).get("seq")
        with self.lock:
            self.seen.append(seq)
            refused = self.seen.count(seq) <= self.refuse
        code, data = (503, b'{"error": "frozen"}') if refused else (200, b'{"cluster": "x"}')
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    request_queue_size = 1024  # the default 5 would overflow at 1000 connections a second
    daemon_threads = True


def _serve(refuse: int) -> Iterator[tuple[str, type[_Orc8r]]]:
    handler = type("Handler", (_Orc8r,), {"refuse": refuse, "seen": []})
    server = _Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        # "localhost": the client resolves the name on every request, as in the pod.
        yield f"http://localhost:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def orc8r() -> Iterator[tuple[str, type[_Orc8r]]]:
    yield from _serve(refuse=0)


@pytest.fixture
def frozen_once() -> Iterator[tuple[str, type[_Orc8r]]]:
    yield from _serve(refuse=1)


def test_the_open_loop_at_1_ms_against_a_real_server(
        agw: ModuleType, orc8r: tuple[str, type[_Orc8r]]) -> None:
    url, handler = orc8r
    rec = agw.Recorder()
    send = functools.partial(agw.post_checkin, target=url)
    asyncio.run(agw.load_loop(interval=0.001, send=send, recorder=rec, duration=1.0))
    samples = rec.window(0, time.time() + 60)
    assert len(samples) >= 900
    assert [s.error for s in samples if not s.ok] == []
    assert {s.cluster for s in samples} == {"x"}
    seqs = sorted(s.seq for s in samples)
    assert seqs == list(range(len(samples)))  # unique and consecutive, from 0
    assert sorted(handler.seen) == seqs  # each sent once, with its own seq
    assert all(s.lag >= 0 for s in samples)


def test_the_probe_mode_gets_healthz_and_stores_nothing(
        agw: ModuleType, orc8r: tuple[str, type[_Orc8r]], monkeypatch: pytest.MonkeyPatch) -> None:
    url, handler = orc8r
    monkeypatch.setattr(agw, "MODE", "probe")
    s = asyncio.run(agw.attempt(time.time(), 3, send=functools.partial(agw.post_checkin,
                                                                       target=url)))
    assert s.ok and s.cluster == "x"
    assert handler.seen == [None]  # one GET, no check-in posted


def test_a_real_503_is_retried_with_the_same_seq(
        agw: ModuleType, frozen_once: tuple[str, type[_Orc8r]]) -> None:
    url, handler = frozen_once
    send = functools.partial(agw.post_checkin, target=url)
    s = asyncio.run(agw.attempt(time.time(), 7, send=send))
    assert s.ok and s.retried and s.seq == 7 and s.cluster == "x"
    assert handler.seen == [7, 7]


def test_a_closed_port_fails_with_the_error_named(agw: ModuleType) -> None:
    with socket.socket() as sock:  # a port nobody listens on: bound, never listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        send = functools.partial(agw.post_checkin, target=f"http://127.0.0.1:{port}")
        s = asyncio.run(agw.attempt(time.time(), 1, send=send))
    assert not s.ok and not s.retried and s.error == "ConnectionRefusedError"
    assert s.cluster == "" and s.seq == 1


def test_a_server_closing_without_an_answer_is_named_as_http_client_names_it(
        agw: ModuleType) -> None:
    async def run() -> tuple[int, bytes] | str:
        async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.close()

        server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            try:
                return await agw.post_checkin(1, 5.0, target=f"http://127.0.0.1:{port}")
            except Exception as exc:
                return type(exc).__name__

    assert asyncio.run(run()) == "RemoteDisconnected"


def test_read_response_takes_the_content_length_body(agw: ModuleType) -> None:
    async def parse(raw: bytes) -> tuple[int, bytes]:
        reader = asyncio.StreamReader()
        reader.feed_data(raw)
        reader.feed_eof()
        return await agw.read_response(reader)

    answer = b'HTTP/1.0 200 OK\r\nContent-Length: 17\r\n\r\n{"cluster": "x"}\n'
    assert asyncio.run(parse(answer)) == (200, b'{"cluster": "x"}\n')
    assert asyncio.run(parse(b"HTTP/1.1 503 Busy\r\n\r\nfrozen")) == (503, b"frozen")
    with pytest.raises(agw.http.client.IncompleteRead):
        asyncio.run(parse(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort"))
    with pytest.raises(agw.http.client.BadStatusLine):
        asyncio.run(parse(b"SSH-2.0-OpenSSH\r\n"))


def test_agw_probes_instead_of_checking_in_below_5_ms() -> None:
    from kubehop.testbed import sample
    assert [sample.agw_mode(ms) for ms in (1, 4.9, 5, 10)] == ["probe", "probe", "checkin",
                                                               "checkin"]

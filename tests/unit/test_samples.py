"""The sample services' own logic: agw's record (the downtime probe)."""

from __future__ import annotations

import importlib.util
import sys
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

    def sleep(self, seconds: float) -> None:
        self.t += seconds


def test_a_checkin_answered_503_is_retried_with_its_seq_until_ok(agw: ModuleType) -> None:
    clock = _Clock(100.0)
    answers = [(503, b'{"error": "frozen"}'), (503, b'{"error": "frozen"}'),
               (200, b'{"cluster": "cloud", "seq": 42}')]
    sent: list[int | None] = []

    def send(seq: int | None, timeout: float) -> tuple[int, bytes]:
        sent.append(seq)
        clock.t += 0.5  # each answer takes half a second (held by the freeze)
        return answers.pop(0)

    s = agw.attempt(100.0, 42, send=send, now=clock.now, sleep=clock.sleep)
    assert sent == [42, 42, 42]
    assert s.ok and s.retried and s.seq == 42 and s.cluster == "cloud"
    # Latency from the scheduled time, across the retries: 3 x 0.5 s + 2 x 20 ms.
    assert s.latency == pytest.approx(1.54)


def test_a_checkin_still_refused_at_its_timeout_fails(agw: ModuleType) -> None:
    clock = _Clock(100.0)
    calls = 0

    def send(seq: int | None, timeout: float) -> tuple[int, bytes]:
        nonlocal calls
        calls += 1
        assert timeout > 0
        if timeout < 0.2:  # as a socket would: the answer comes after the timeout
            clock.t += timeout
            raise TimeoutError
        clock.t += 0.2
        return 503, b'{"error": "frozen"}'

    s = agw.attempt(100.0, 9, send=send, now=clock.now, sleep=clock.sleep)
    assert not s.ok and s.retried and s.error in {"http 503", "TimeoutError"}
    assert agw.TIMEOUT - 0.25 <= s.latency <= agw.TIMEOUT + 1e-9
    assert calls == pytest.approx(agw.TIMEOUT / 0.22, abs=1)


def test_other_errors_are_not_retried(agw: ModuleType) -> None:
    clock = _Clock(100.0)

    def refused(seq: int | None, timeout: float) -> tuple[int, bytes]:
        raise ConnectionRefusedError

    s = agw.attempt(100.0, 1, send=refused, now=clock.now, sleep=clock.sleep)
    assert not s.ok and not s.retried and s.error == "ConnectionRefusedError"
    s = agw.attempt(100.0, 2, send=lambda seq, t: (500, b"{}"), now=clock.now, sleep=clock.sleep)
    assert not s.ok and not s.retried and s.error == "http 500"


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

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

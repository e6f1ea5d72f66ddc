"""``kubehop bench --quick`` runs each strategy it is given once and writes its files (no timing is
asserted: the benchmark reports, tests check behaviour)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import kubehop

pytestmark = pytest.mark.usefixtures("testbed")


def test_quick_bench_writes_runs_summary_and_plots(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    # externalname is kubehop's own strategy like endpoints, moved under load in test_migrate;
    # the bench's runs of it would repeat that at 50 s.
    result = kubehop("bench", "--quick", "--strategies", "endpoints,paper,naive",
                     "--out", str(out))
    assert result.returncode == 0, result.stderr
    data = json.loads((out / "runs.json").read_text())
    strategies = [r["strategy"] for r in data["runs"]]
    assert strategies == ["endpoints", "paper", "naive"]
    for run in data["runs"]:
        assert run["requests"] > 0
        assert run["phases"], run["strategy"]
    # the baselines really cut the service off; kubehop's default strategy does not
    by = {r["strategy"]: r for r in data["runs"]}
    assert by["endpoints"]["failed"] == 0
    assert by["naive"]["failed"] > 0
    assert [s["services"] for s in data["scale"]] == [1]
    assert data["scale"][0]["failed"] == 0
    summary = (out / "summary.md").read_text()
    for name in strategies:
        assert f"| {name} |" in summary
    for png in ["comparison.png", *(f"timeline-{s}.png" for s in strategies)]:
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    assert "Kubernetes v1.34" in summary
    assert data["wan"]["links"][0]["configured_rtt_ms"] > 0, "the WAN the runs crossed"
    assert "WAN profile" in summary


def test_bad_bench_input_is_one_line() -> None:
    from tests.conftest import assert_one_line_error

    assert_one_line_error(kubehop("bench", "--strategies", "warp"), "unknown strategy")
    assert_one_line_error(kubehop("bench", "--interval", "0"), "--interval")
    assert_one_line_error(kubehop("bench", "--wan", "/nonexistent.yaml"), "WAN profile")

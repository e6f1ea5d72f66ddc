"""The pure parts of the controller benchmark: where the threshold was first crossed, the
percentiles and the summary, the scrape interval read from Prometheus's configuration."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kubehop.bench.controller import (
    POLICY,
    THRESHOLD,
    first_crossing,
    first_point,
    scrape_interval,
    summarize,
)
from kubehop.bench.stats import percentile
from kubehop.domain.policy import parse_policy


def test_first_crossing_is_the_first_sample_over_after_one_under() -> None:
    points = [(100.0, 0.26), (105.0, 0.26), (110.001, 0.86), (115.0, 0.86)]
    assert first_crossing(points, 0.75) == 110.001
    # Order of the input does not matter: samples are taken in time order.
    assert first_crossing(list(reversed(points)), 0.75) == 110.001


def test_first_crossing_is_strict_like_the_rule() -> None:
    assert first_crossing([(1.0, 0.5), (2.0, 0.75), (3.0, 0.76)], 0.75) == 3.0


def test_no_crossing_when_never_over_or_already_over_at_the_start() -> None:
    assert first_crossing([(1.0, 0.2), (2.0, 0.3)], 0.75) is None
    # Over from the first sample: when it went over is not in the data.
    assert first_crossing([(1.0, 0.9), (2.0, 0.2), (3.0, 0.9)], 0.75) is None
    assert first_crossing([], 0.75) is None


def test_first_point_after_a_time() -> None:
    points = [(12.0, 0.6), (7.0, 0.6), (17.0, 0.6)]
    assert first_point(points, after=8.0) == 12.0
    assert first_point(points, after=0.0) == 7.0
    assert first_point(points, after=17.0) is None


def test_percentile_interpolates_like_numpy() -> None:
    values = [float(v) for v in range(1, 11)]  # 1..10
    assert percentile(values, 0.5) == pytest.approx(5.5)
    assert percentile(values, 0.9) == pytest.approx(9.1)
    assert percentile(values, 0.99) == pytest.approx(9.91)
    assert percentile(values, 1.0) == 10.0
    assert percentile([3.0], 0.99) == 3.0
    with pytest.raises(ValueError):
        percentile([], 0.5)
    with pytest.raises(ValueError):
        percentile([1.0], 1.5)


def _run(i: int, reaction: float | None, *, ok: bool = True, verified: bool = True,
         failed: int = 0) -> dict[str, Any]:
    return {"index": i, "ok": ok, "verified": verified, "reaction_s": reaction,
            "from_stress_s": None if reaction is None else reaction + 3,
            "migration_s": 6.0, "agw_failed": failed}


def test_summary_uses_verified_runs_and_checks_the_target() -> None:
    runs = [_run(i, 0.5 + i / 10) for i in range(10)]  # 0.5 .. 1.4
    s = summarize(runs, cycle_s=1.0, scrape_s=5.0)
    assert s["verified"] == s["runs"] == 10
    assert s["reaction_s"]["p50"] == pytest.approx(0.95)
    assert s["reaction_s"]["max"] == pytest.approx(1.4)
    assert s["reaction_s"]["p90"] == pytest.approx(1.31)  # 10 runs name a p90
    assert "p99" not in s["reaction_s"]  # but not a p99: the target is checked on the max
    assert s["target_tail"] == "max"
    assert s["from_stress_s"]["p50"] == pytest.approx(3.95)
    assert s["target_s"] == 6.0
    assert s["target_met"] is True
    assert s["agw_failed"] == 0


def test_summary_target_not_met_when_slow_or_a_run_failed() -> None:
    slow = [_run(0, 0.4), _run(1, 7.0)]
    assert summarize(slow, cycle_s=1.0, scrape_s=5.0)["target_met"] is False
    # one slow run of ten fails the target: with ten runs the tail is the max, not a p99
    # (which numpy would put at 6.5 s, under the target)
    tenth = [_run(i, 0.5) for i in range(9)] + [_run(9, 7.0)]
    assert summarize(tenth, cycle_s=1.0, scrape_s=5.0)["target_met"] is False
    # with 100 runs one slow run is above the p99: the target is met
    hundred = [_run(i, 0.5) for i in range(99)] + [_run(99, 7.0)]
    s = summarize(hundred, cycle_s=1.0, scrape_s=5.0)
    assert s["target_tail"] == "p99" and s["target_met"] is True
    failed = [_run(0, 0.4), _run(1, None, ok=False)]
    s = summarize(failed, cycle_s=1.0, scrape_s=5.0)
    assert s["verified"] == 1 and s["runs"] == 2
    assert s["reaction_s"]["max"] == 0.4
    assert s["target_met"] is False
    unverified = summarize([_run(0, 0.4, verified=False)], cycle_s=1.0, scrape_s=5.0)
    assert unverified["reaction_s"]["p50"] is None
    assert unverified["target_met"] is False


def test_summary_counts_failed_requests_of_every_run() -> None:
    s = summarize([_run(0, 0.4, failed=2), _run(1, 0.6, failed=1)], cycle_s=1.0, scrape_s=5.0)
    assert s["agw_failed"] == 3


def test_scrape_interval_of_the_job_else_global() -> None:
    config = {"global": {"scrape_interval": "5s"},
              "scrape_configs": [{"job_name": "kubehop-nodes"},
                                 {"job_name": "fast", "scrape_interval": "500ms"}]}
    assert scrape_interval(config, "kubehop-nodes") == 5.0
    assert scrape_interval(config, "fast") == 0.5
    assert scrape_interval({}, "any") == 60.0  # Prometheus's default


def test_bench_policy_is_a_valid_policy_with_the_promql_rule() -> None:
    policy = parse_policy(POLICY, "bench")
    assert policy.interval == 1.0
    (rule,) = policy.rules
    assert rule.above == THRESHOLD and rule.for_seconds == 0
    assert rule.clusters == ("edge",)
    assert "kube_pod_container_resource_requests" in rule.expr
    assert policy.placement.cooldown >= 3600 and policy.placement.min_dwell >= 3600


def _data() -> dict[str, Any]:
    runs = [{**_run(i, 0.6 + i / 10), "first_over": 1000.0 + 60 * i,
             "created": 1000.6 + 60 * i + i / 10, "decision_to_row_s": 0.2,
             "cycle_period_s": 1.05, "target": "fog", "error": ""} for i in range(3)]
    runs[0]["agw_failures"] = [[7.2, "ConnectionResetError", None],
                               [7.5, "ConnectionResetError", None]]
    runs[0]["steps"] = [["copy", "done", 0.01, 1.0], ["cleanup", "done", 7.1, 7.4]]
    runs.append({**_run(3, None, ok=False), "first_over": None, "created": None,
                 "decision_to_row_s": None, "cycle_period_s": None, "target": None,
                 "migration_s": None, "agw_failed": None,
                 "error": "WaitTimeoutError: timed out after 120s waiting for a move decision"})
    return {"rule": {"name": "cpu-requested", "expr": "x / y", "above": 0.75, "cluster": "edge"},
            "stress_cpu_millis": 600, "cycle_interval_s": 1.0, "scrape_interval_s": 5.0,
            "scrape_job": "kubehop-nodes", "runs": runs,
            "summary": summarize(runs, cycle_s=1.0, scrape_s=5.0)}


def test_summary_markdown_has_the_figures_every_run_and_the_failures() -> None:
    from kubehop.bench.report import controller_markdown

    text = controller_markdown(_data(), "kubehop bench --scenario controller")
    assert "| 3/4 | 0.700 | - | max 0.800 |" in text  # p50 of 0.6, 0.7, 0.8; no p90 of 3
    assert "checked on the reaction's max: **NOT met**" in text  # one run failed
    assert "p99" not in text.split("| runs verified / n |")[1].split("\n\n")[0]
    assert "| 4 | - | - | - |" in text and "waiting for a move decision" in text
    assert text.count("| fog |") == 3
    assert ("agw failed +7.2 to +7.5 s from the journal row (ConnectionResetError); steps start "
            "at: copy 0.0, cleanup 7.1") in text


def test_the_controller_results_file_of_the_older_bench_says_max() -> None:
    """results/bench-controller/runs.json (10 runs) was written with a p99 in its summary; the
    markdown recomputes from the runs and says max."""
    from kubehop.bench.report import controller_markdown

    root = Path(__file__).resolve().parents[2]
    data = json.loads((root / "results" / "bench-controller" / "runs.json").read_text())
    assert "p99" in data["summary"]["reaction_s"]  # the old summary
    text = controller_markdown(data, data["command"])
    row = text.split("| runs verified / n |")[1].splitlines()[2]
    assert row.startswith("| 10/10 | ") and "| max 1.2" in row
    assert "checked on the reaction's max: **met**" in text


def test_reaction_plot_is_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from kubehop.bench.report import write_controller

    files = write_controller(_data(), tmp_path, "kubehop bench --scenario controller")
    assert [f.name for f in files] == ["runs.json", "summary.md", "reaction.png"]
    assert (tmp_path / "reaction.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "runs.json").read_text())["command"].startswith("kubehop")

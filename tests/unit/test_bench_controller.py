"""The pure parts of the controller benchmark: where the threshold was first crossed, the
percentiles and the summary, the scrape interval read from Prometheus's configuration."""

from __future__ import annotations

from typing import Any

import pytest

from kubehop.bench.controller import (
    POLICY,
    THRESHOLD,
    first_crossing,
    first_point,
    percentile,
    scrape_interval,
    summarize,
)
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
    assert s["reaction_s"]["p99"] == pytest.approx(1.391)
    assert s["from_stress_s"]["p50"] == pytest.approx(3.95)
    assert s["target_s"] == 6.0
    assert s["target_met"] is True
    assert s["agw_failed"] == 0


def test_summary_target_not_met_when_slow_or_a_run_failed() -> None:
    slow = [_run(0, 0.4), _run(1, 7.0)]
    assert summarize(slow, cycle_s=1.0, scrape_s=5.0)["target_met"] is False
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

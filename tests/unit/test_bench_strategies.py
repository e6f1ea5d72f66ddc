"""The pure parts of the strategies benchmark: where a run's window ends (its outage over), the
run's figures from agw's record, the ingress overhead, the per-phase figures at scale, the
summary and its markdown; and the CLI's checks of --scale."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubehop.bench import report, runner
from kubehop.bench.runner import (
    Run,
    agw_interval_ms,
    ingress_summary,
    latest,
    measure,
    outage_end,
    overhead,
    phase_seconds,
    phase_stats,
    rollout_pending,
    scale_manifests,
    slowest_phase,
    summarize,
    window_cap,
    window_clean,
)
from tests.conftest import assert_one_line_error


def row(t: float, ok: bool = True, *, latency: float = 0.004, cluster: str = "edge"
        ) -> list[Any]:
    """One request of agw's raw record: t, latency, ok, error, cluster, seq, retried."""
    return [t, latency, ok, "" if ok else "ConnectionRefusedError", cluster if ok else "",
            int(t * 100), False]


def steady(lo: float, hi: float, ok: bool = True, step: float = 0.01, cluster: str = "edge"
           ) -> list[list[Any]]:
    n = round((hi - lo) / step)
    return [row(round(lo + i * step, 3), ok, cluster=cluster) for i in range(n)]


# -- the window ------------------------------------------------------------------------------

def test_latest_failure_and_success() -> None:
    assert latest([row(1.0), row(2.0, False), row(3.0), row(2.5, False)]) == (2.5, 3.0)
    assert latest([row(1.0)]) == (None, 1.0)
    assert latest([]) == (None, None)


def test_outage_end_without_failures_is_the_minimum_once_reached() -> None:
    assert outage_end(None, 13.0, not_before=13.0) == 13.0
    assert outage_end(None, 12.9, not_before=13.0) is None  # not seen that late yet


def test_outage_end_is_quiet_seconds_after_the_last_failure() -> None:
    # failures up to 40 s (a DNS TTL's worth): the window runs to 42, not to the minimum 13
    assert outage_end(40.0, 41.5, not_before=13.0) is None
    assert outage_end(40.0, 42.0, not_before=13.0) == 42.0
    # an early failure does not shorten the minimum
    assert outage_end(5.0, 20.0, not_before=13.0) == 13.0
    assert outage_end(40.0, 45.0, not_before=13.0, quiet=3.0) == 43.0


def test_outage_end_none_while_no_success_after_the_failures() -> None:
    assert outage_end(40.0, None, not_before=13.0) is None
    assert outage_end(40.0, 39.0, not_before=13.0) is None


def test_window_clean_needs_requests_in_the_tail_all_answered() -> None:
    rows = steady(0, 10) + steady(10, 20, ok=False) + steady(20, 23)
    assert window_clean(rows, 23.0)
    assert not window_clean(rows, 21.0)  # failures within 2 s of the end
    assert not window_clean(rows, 30.0)  # no requests at all in its last 2 s
    late = [*rows, row(22.5, False)]  # a request in flight at the poll failed after all
    assert not window_clean(late, 23.0)


def test_window_cap_is_the_dns_ttl_plus_30_after_the_run() -> None:
    run = Run(strategy="naive", index=0, ok=True, start=100.0, end=103.0)
    assert window_cap(run, 30.0) == 163.0


def test_measure_counts_the_whole_window_and_splits_latency() -> None:
    run = Run(strategy="naive", index=0, ok=True, start=10.0, end=13.0)
    rows = (steady(8, 11) + steady(11, 40, ok=False)
            + [row(t, latency=0.05, cluster="cloud") for t in (40.0, 41.0, 42.0)])
    measure(run, rows, window_end=42.0)
    assert run.window_end == 42.0
    assert run.requests == len(rows)
    assert run.failed == 2900  # every failure up to the end of the outage, not 3 s' worth
    assert run.to_target_s == 30.0
    assert run.longest_gap_ms is not None and run.longest_gap_ms == pytest.approx(
        (40.05 - 10.994) * 1000, abs=1)
    assert run.latency_ms["before"] == {"n": 200, "p50": 4.0, "p99": 4.0, "max": 4.0}
    # only failures right after the run: nothing to summarize
    assert run.latency_ms["after"] == {"n": 0, "p50": None, "max": None}


def test_a_window_of_fewer_than_100_answers_has_no_p99() -> None:
    run = Run(strategy="endpoints", index=0, ok=True, start=10.0, end=10.5)
    rows = steady(9.5, 10.0, step=0.01) + [row(10.0 + i / 10, latency=0.001 * (i + 1))
                                           for i in range(5)]
    measure(run, rows, window_end=11.0)
    assert run.latency_ms["before"]["n"] == 50 and "p99" not in run.latency_ms["before"]
    assert run.latency_ms["during"] == {"n": 5, "p50": 3.0, "max": 5.0}


# -- ingress ---------------------------------------------------------------------------------

def test_overhead_is_alias_minus_direct_per_percentile() -> None:
    direct = [0.001] * 99 + [0.002]
    alias = [0.0015] * 98 + [0.004, 0.006, None]
    o = overhead(direct, alias)
    assert o["calls"] == 100 and o["alias_failed"] == 1 and o["direct_failed"] == 0
    assert o["alias_ms"]["n"] == 100 and o["overhead_ms"]["n"] == 100
    assert o["direct_ms"]["p50"] == 1.0 and o["alias_ms"]["p50"] == 1.5
    assert o["overhead_ms"]["p50"] == 0.5
    assert o["overhead_ms"]["p99"] == pytest.approx(o["alias_ms"]["p99"] - o["direct_ms"]["p99"],
                                                    abs=0.001)
    assert o["direct_ms"]["p99"] == pytest.approx(1.01)  # interpolated, as stats.percentile


def test_overhead_over_fewer_than_100_answers_names_no_p99() -> None:
    o = overhead([0.001] * 100, [0.0015] * 98 + [None, None])
    assert o["alias_ms"]["n"] == 98 and "p99" not in o["alias_ms"]
    assert o["direct_ms"]["p99"] == 1.0
    assert o["overhead_ms"]["p99"] is None  # the alias has no p99 to subtract from
    assert o["overhead_ms"]["max"] == pytest.approx(0.5)


def test_overhead_with_no_answers_has_no_figures() -> None:
    o = overhead([None, None], [0.001, 0.001])
    assert o["direct_ms"] == {"n": 0, "p50": None, "max": None}
    assert o["overhead_ms"] == {"n": 0, "p50": None, "max": None}


# -- scale -----------------------------------------------------------------------------------

PHASES = [
    [{"name": "copy", "start": 0.0, "end": 0.2}, {"name": "ready", "start": 0.2, "end": 3.2},
     {"name": "switch", "start": 3.2, "end": 4.2}],
    [{"name": "copy", "start": 0.0, "end": 0.4}, {"name": "ready", "start": 0.4, "end": 2.4},
     {"name": "switch", "start": 2.4, "end": 7.4}],
    [{"name": "copy", "start": 0.0, "end": 0.3}, {"name": "ready", "start": 0.3, "end": 4.3},
     {"name": "switch", "start": 4.3, "end": 5.3}],
]


def test_phase_stats_median_and_max_in_run_order() -> None:
    stats = phase_stats(PHASES)
    assert list(stats) == ["copy", "ready", "switch"]
    assert stats["copy"] == {"median": 0.3, "max": 0.4}
    assert stats["ready"] == {"median": 3.0, "max": 4.0}
    assert stats["switch"] == {"median": 1.0, "max": 5.0}
    assert slowest_phase(stats) == "ready"  # by median: one slow switch does not make it
    assert slowest_phase({}) is None


def test_rollout_pending_by_listing() -> None:
    def dep(ready: int) -> dict[str, Any]:
        return {"spec": {"replicas": 1}, "status": {"readyReplicas": ready} if ready else {}}

    assert rollout_pending([dep(1), dep(1)], 2) is None
    assert rollout_pending([dep(1), dep(0)], 2) == "1/2 ready"
    assert rollout_pending([dep(1)], 2) == "1/2 ready"  # one not even listed yet


def test_scale_manifests_are_count_services_with_small_requests() -> None:
    docs = [d for d in yaml.safe_load_all(scale_manifests(64, "reg/httpd:1")) if d]
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    assert len(deployments) == 64 and sum(d["kind"] == "Service" for d in docs) == 64
    assert docs[0]["kind"] == "Namespace"
    spec = deployments[63]["spec"]["template"]["spec"]
    assert spec["containers"][0]["resources"]["requests"]["cpu"] == "5m"
    assert spec["terminationGracePeriodSeconds"] == 1
    assert deployments[63]["metadata"]["name"] == "svc63"


def test_agw_interval_from_the_deployment() -> None:
    def agw(value: str | None) -> dict[str, Any]:
        env = [{"name": "AGW_TARGET", "value": "http://orc8r.orc8r-ns"}]
        if value is not None:
            env.append({"name": "AGW_INTERVAL_MS", "value": value})
        return {"spec": {"template": {"spec": {"containers": [{"name": "agw", "env": env}]}}}}

    assert agw_interval_ms(agw("1.0")) == 1.0
    assert agw_interval_ms(agw("10")) == 10.0
    assert agw_interval_ms(agw(None)) is None
    assert agw_interval_ms(agw("fast")) is None


# -- summary ---------------------------------------------------------------------------------

def make_run(strategy: str, index: int, *, failed: int, drain: float | None,
             ended: bool = True, ingress: tuple[float, float] | None = None) -> Run:
    phases: list[dict[str, float | str]] = [{"name": "copy", "start": 0.0, "end": 1.0}]
    if drain is not None:
        phases.append({"name": "drain", "start": 1.0, "end": 1.0 + drain})
    run = Run(strategy=strategy, index=index, ok=True, start=0.0, end=float(phases[-1]["end"]),
              phases=phases, failed=failed, requests=1000, longest_gap_ms=50.0,
              to_target_s=0.5, window_end=float(phases[-1]["end"]) + 3 + failed / 100,
              outage_ended=ended)
    run.latency_ms = {"before": {"n": 200, "p50": 2.0, "p99": 4.0 + index, "max": 5.0},
                      "during": {"n": 300, "p50": 3.0, "p99": 9.0, "max": 10.0},
                      "after": {"n": 300, "p50": 2.5, "p99": 6.0 + index, "max": 7.0}}
    if ingress is not None:
        run.ingress = overhead([ingress[0]] * 10, [ingress[1]] * 10)
    return run


RUNS = [
    make_run("endpoints", 0, failed=0, drain=2.0, ingress=(0.001, 0.0014)),
    make_run("naive", 0, failed=3000, drain=None),
    make_run("endpoints", 1, failed=0, drain=2.2, ingress=(0.001, 0.0018)),
    make_run("naive", 1, failed=3200, drain=None, ended=False),
]


def test_phase_seconds_is_zero_without_the_phase() -> None:
    assert phase_seconds(RUNS[0].phases, "drain") == 2.0
    assert phase_seconds(RUNS[1].phases, "drain") == 0.0


def test_summary_rows_drain_latency_and_unended_outages() -> None:
    rows = {r["strategy"]: r for r in summarize(RUNS)}
    assert list(rows) == ["endpoints", "naive"]  # STRATEGIES order
    e, n = rows["endpoints"], rows["naive"]
    assert e["drain_s"] == (2.1, 2.2) and n["drain_s"] == (0.0, 0.0)
    assert n["failed_requests"] == (3100.0, 3200.0)
    assert n["outage_unended"] == 1 and e["outage_unended"] == 0
    assert e["latency_tail"] == "p99"
    assert e["latency_before_ms"] == 4.5 and e["latency_after_ms"] == 6.5
    assert e["latency_during_ms"] == (9.0, 9.0)
    assert n["ingress"] is None
    assert e["ingress"]["runs"] == 2
    assert e["ingress"]["overhead_ms"]["p50"] == pytest.approx(0.6)


def test_summary_latency_is_max_when_a_window_had_fewer_than_100_answers() -> None:
    short = make_run("endpoints", 2, failed=0, drain=2.0)
    short.latency_ms["before"] = {"n": 20, "p50": 2.0, "max": 8.0}
    row = summarize([RUNS[0], short])[0]
    assert row["latency_tail"] == "max"
    assert row["latency_before_ms"] == 6.5  # median of the maxima 5.0 and 8.0
    assert row["latency_during_ms"] == (10.0, 10.0)
    md = report.summary_markdown(bench_data() | {"summary": [row]}, "kubehop bench")
    assert "| max 10.0 / 10.0 | max 6.5 → 7.0 |" in md
    assert "p99" not in md.split("| strategy |")[1].split("\n\n")[0]


def test_ingress_summary_skips_runs_without_figures() -> None:
    broken = make_run("endpoints", 2, failed=0, drain=2.0)
    broken.ingress = {"error": "no ready orc8r pod in cloud"}
    s = ingress_summary([RUNS[0], broken])
    assert s is not None and s["runs"] == 1
    assert s["direct_ms"]["p50"] == 1.0 and s["alias_ms"]["p50"] == 1.4
    assert s["tail"] == "max" and s["alias_ms"]["max"] == 1.4  # 10 calls: no p99
    assert ingress_summary([broken]) is None


def bench_data(interval: float = 1) -> dict[str, Any]:
    return {"runs": [], "summary": summarize(RUNS), "interval_ms": interval,
            "ingress_calls": 300,
            "window": {"before_s": 2.0, "after_min_s": 3.0, "quiet_s": 2.0,
                       "cap_after_ttl_s": 30.0, "dns_ttl_s": 30.0},
            "scale": [{"services": 16, "total_s": 20.5, "failed": 0, "errors": [],
                       "phases": phase_stats(PHASES), "slowest_phase": "ready"},
                      {"services": 64, "total_s": 80.25, "failed": 1, "errors": ["x"],
                       "phases": {"copy": {"median": 1.0, "max": 2.0}},
                       "slowest_phase": "copy"}]}


def test_markdown_has_the_interval_drain_before_after_ingress_and_scale() -> None:
    md = report.summary_markdown(bench_data(), "kubehop bench --interval 1")
    assert "agw calls orc8r every 1 ms" in md and "every 10 ms" not in md
    assert "| drain (s) |" in md and "| agw latency before → after (ms) |" in md
    assert "| strategy | ok / n |" in md
    assert "| endpoints | 2/2 | 0 / 0 | 50 / 50 | - | 3.10 / 3.20 | 2.10 / 2.20 |" in md
    assert "| p99 9.0 / 9.0 | p99 4.5 → 6.5 |" in md
    assert "3100 / 3200 (>=; 1 still failing)" in md
    assert "ends 2 s after the last failure" in md
    assert "Ingress overhead (direct pod vs through the target's Traefik)" in md
    assert "| endpoints | 2 | 1.00 / max 1.00 | 1.60 / max 1.60 | 0.60 / max 0.60 | yes |" in md
    assert "| services (n) | total time (s) | failed migrations | slowest phase | copy | ready | "\
           "switch |" in md
    assert "| 16 | 20.50 | 0 | ready | 0.30 / 0.40 | 3.00 / 4.00 | 1.00 / 5.00 |" in md
    assert "| 64 | 80.25 | 1 | copy | 1.00 / 2.00 | - | - |" in md
    header = next(line for line in md.splitlines() if line.startswith("| strategy | ok / n |"))
    separator = md.splitlines()[md.splitlines().index(header) + 1]
    assert header.count("|") == separator.count("|")


def test_markdown_of_an_older_runs_json_still_renders() -> None:
    data = bench_data(10)
    for key in ("window", "ingress_calls"):
        del data[key]
    for r in data["summary"]:
        for key in ("drain_s", "latency_tail", "latency_before_ms", "latency_after_ms",
                    "latency_during_ms", "outage_unended", "ingress"):
            del r[key]
    md = report.summary_markdown(data, "kubehop bench")
    assert "every 10 ms" in md and "Ingress overhead" not in md
    assert "| endpoints | 2/2 | 0 / 0 | 50 / 50 | - | 3.10 / 3.20 | - | 0.50 / 0.50 | \u2014 | "\
           "\u2014 |" in md


def test_the_strategies_results_files_of_the_older_bench_still_render() -> None:
    """results/bench*/runs.json were written before the tail rule: their latency and ingress
    tails (a "p99" over an unrecorded number of samples) show as em dashes, beside n."""
    root = Path(__file__).resolve().parents[2] / "results"
    data = json.loads((root / "bench" / "runs.json").read_text())
    md = report.summary_markdown(data, "kubehop bench")
    table = md.split("| strategy | ok / n |")[1].split("\n\n")[0]
    assert "| endpoints | 3/3 |" in table and "| naive | 3/3 |" in table
    assert table.count("| \u2014 | \u2014 |") == 4
    assert "p99" not in table
    ingress = md.split("| strategy | runs (n) |")[1].split("\n\n")[0]
    assert "/ \u2014 |" in ingress and "p99" not in ingress


def test_runs_json_round_trips_the_new_keys(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from dataclasses import asdict

    data = bench_data() | {"runs": [asdict(r) | {"total_s": r.total_s} for r in RUNS[:2]]}
    for r in data["runs"]:
        r["samples"] = [row(0.5), row(1.5, False)]
    report.write(data, tmp_path, "kubehop bench")
    back = json.loads((tmp_path / "runs.json").read_text())
    assert back["runs"][0]["ingress"]["overhead_ms"]["p50"] == pytest.approx(0.4)
    assert back["runs"][0]["outage_ended"] is True and "window_end" in back["runs"][0]
    assert back["scale"][0]["slowest_phase"] == "ready"


@pytest.mark.parametrize(("args", "words"), [
    (["--scale", "0"], ("--scale", "1 to 100")),
    (["--scale", "1,500"], ("--scale", "1 to 100")),
    (["--scale", "many"], ("--scale", "1,16,64")),
])
def test_bad_scale_is_a_one_line_error(args: list[str], words: tuple[str, ...]) -> None:
    result = subprocess.run([sys.executable, "-m", "kubehop.cli.main", "bench", *args],
                            capture_output=True, text=True, timeout=60, check=False)
    assert_one_line_error(result, *words)


def test_the_switch_gap_is_the_longest_gap_overlapping_the_switch() -> None:
    done = [0.0, 0.01, 0.02, 0.10, 0.11, 0.12, 0.30, 0.31]
    phases = [{"name": "verify", "start": 0.0, "end": 0.05},
              {"name": "switch", "start": 0.105, "end": 0.125}]
    # 0.12 -> 0.30 starts inside the switch; 0.02 -> 0.10 ends before it began
    assert runner.phase_gap_ms(done, phases, "switch") == 180.0
    assert runner.phase_gap_ms(done, phases, "drain") is None
    assert runner.phase_gap_ms([], phases, "switch") is None

"""The pure parts of the stateful benchmark: sizes, the first pass's throughput, lost writes,
the summary's rows per (mode, WAN, size), the link's rate from the WAN record and the issue's
targets; a migration report read into a run; and that the markdown and the plot are written
from the runs, today's and those an older bench wrote."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kubehop.bench import stateful_report
from kubehop.bench.stateful import (
    StatefulRun,
    first_pass_partial,
    is_flat,
    link_rate_bit,
    lost_writes,
    parse_sizes,
    pass_bytes_medians,
    row_keys,
    summarize,
    summarize_size,
    tables,
    take_report,
    targets,
    throughput_mbps,
    wan_name,
)
from kubehop.engine.report import PhaseTiming, Report
from tests.conftest import assert_one_line_error

RESULTS = Path(__file__).resolve().parents[2] / "results"


def run(size: int = 100, *, ok: bool = True, total: float = 3.0, freeze: float = 0.1,
        passes: list[tuple[int, float]] | None = None, lost: int | None = 0,
        failed: int = 0, retried: int | None = 2, gap: float | None = 120.0,
        **extra: Any) -> dict[str, Any]:
    ps = [{"bytes": b, "files": 2, "seconds": s, "final": False}
          for b, s in (passes or [(size * 10**6, 1.0), (4096, 0.1)])]
    ps[-1]["final"] = True
    return {"size_mb": size, "ok": ok, "total_s": total if ok else None, "to_target_s": 2.0,
            "freeze_s": freeze if ok else None, "precopy_s": 1.5, "verify_s": 0.2,
            "passes": ps if ok else [], "first_pass_mbps": throughput_mbps(ps) if ok else None,
            "bytes": size * 10**6 if ok else None, "lost": lost, "agw_failed": failed,
            "agw_retried": retried,
            "longest_gap_ms": gap} | extra


def test_parse_sizes_keeps_order_and_drops_repeats() -> None:
    assert parse_sizes("10,100, 1000") == [10, 100, 1000]
    assert parse_sizes("100,10,100") == [100, 10]
    for bad in ("", "ten", "0", "10,-1"):
        with pytest.raises(ValueError, match="--sizes"):
            parse_sizes(bad)


def test_throughput_is_the_first_pass_in_decimal_megabytes_per_second() -> None:
    passes = [{"bytes": 250_000_000, "seconds": 2.0}, {"bytes": 10, "seconds": 0.0001}]
    assert throughput_mbps(passes) == 125.0
    assert throughput_mbps([]) is None
    assert throughput_mbps([{"bytes": 5, "seconds": 0}]) is None
    # A first pass that carried a fraction of the volume (a retried attempt moved the rest).
    assert throughput_mbps([{"bytes": 33_059, "seconds": 0.5}], 100_339_968) is None
    assert throughput_mbps(passes, 250_000_100) == 125.0
    assert first_pass_partial([{"bytes": 33_059}], 100_339_968)
    assert not first_pass_partial([{"bytes": 100_139_351}], 100_147_456)
    assert not first_pass_partial([], 10)


def test_lost_writes_are_acked_seqs_not_stored() -> None:
    assert lost_writes([1, 2, 3, 5, 5], [1, 2, 3, 4]) == [5]
    assert lost_writes([7, 3], []) == [3, 7]
    assert lost_writes([1, 2], [0, 1, 2, 3]) == []


def test_pass_bytes_are_medians_per_index_over_runs_with_that_pass() -> None:
    runs = [run(passes=[(100, 1), (30, 1), (5, 1)]), run(passes=[(110, 1), (10, 1)]),
            run(passes=[(90, 1), (20, 1)])]
    assert pass_bytes_medians(runs) == [100.0, 20.0, 5.0]
    assert pass_bytes_medians([]) == []


def test_summary_percentiles_over_ok_runs_and_totals_over_all() -> None:
    runs = [run(total=2.0, freeze=0.080, failed=1), run(total=3.0, freeze=0.100),
            run(total=4.0, freeze=0.300, lost=2, retried=None),
            run(ok=False, lost=None, failed=40, gap=5000.0)]
    row = summarize_size(100, runs, rate_bit=1_000_000_000)
    assert (row["runs"], row["ok"]) == (4, 3)
    assert row["total_s"] == {"n": 3, "p50": 3.0, "max": 4.0}  # 3 runs name no p99
    assert row["freeze_ms"] == {"n": 3, "p50": 100.0, "max": 300.0}
    assert row["throughput_mbps"]["p50"] == 100.0  # 100 MB in 1 s
    assert row["link_rate_mbps"] == 125.0
    assert (row["lost"], row["lost_unknown"]) == (2, 1)
    assert row["agw_failed"] == 41
    assert row["agw_retried"] == 6  # the run without the figure does not count
    assert row["longest_gap_ms"] == 5000.0
    assert row["pass_bytes"] == [100e6, 4096.0]


def test_summary_without_a_successful_run_has_no_percentiles() -> None:
    row = summarize_size(10, [run(10, ok=False, retried=None)], rate_bit=None)
    assert row["total_s"] == {"n": 0, "p50": None, "max": None}
    assert row["link_rate_mbps"] is None and row["agw_retried"] is None
    assert row["passes_retried"] is None  # no run recorded its first pass's attempts
    assert row["pass_bytes"] == []


def test_summary_has_a_row_per_size_in_run_order() -> None:
    rows = summarize([run(100), run(10), run(100)], rate_bit=None)
    assert [(r["size_mb"], r["runs"]) for r in rows] == [(100, 2), (10, 1)]


WAN = {"profile": {"name": "default"}, "links": [
    {"a": "edge", "b": "fog", "delay_ms": 5.0, "jitter_ms": 0.0, "rate_bit": 10**8},
    {"a": "edge", "b": "cloud", "delay_ms": 20.0, "jitter_ms": 0.0, "rate_bit": 10**9,
     "delay": "20ms", "rate": "1gbit", "measured_rtt_ms": {"edge->cloud": 40.6}}]}


def test_link_rate_and_flatness_from_the_wan_record() -> None:
    assert link_rate_bit(WAN, "cloud", "edge") == 10**9
    assert link_rate_bit(WAN, "fog", "cloud") is None
    assert link_rate_bit(None, "edge", "cloud") is None
    assert not is_flat(WAN)
    assert is_flat({"links": [{"a": "edge", "b": "cloud", "delay_ms": 0.0, "jitter_ms": 0.0,
                               "rate_bit": None}]})
    assert not is_flat(None)


def flat(rows: list[dict[str, Any]]) -> dict[str, Any]:
    (t,) = targets(rows)
    return t


def test_targets_are_checked_on_the_max_below_100_runs() -> None:
    good = summarize([run(total=3.0, freeze=0.1), run(total=3.5, freeze=0.12)], rate_bit=None,
                     wan="flat")
    assert flat(good) == {
        "mode": None, "wan": "flat", "flat": True, "size_mb": 100, "freeze_p99_ms": 150.0,
        "total_s": 4.0, "tail": "max", "n": 2, "freeze_met": True, "total_met": True}
    # the p50 over the target: the p99 is too, whatever the number of runs
    slow = summarize([run(total=4.2, freeze=0.2), run(total=4.5, freeze=0.2)], rate_bit=None)
    assert (flat(slow)["freeze_met"], flat(slow)["total_met"]) == (False, False)
    # only the max over the target, 20 runs: a p99 cannot be named, so it is not decided
    mixed = summarize([run(freeze=0.1)] * 19 + [run(freeze=0.2)], rate_bit=None)
    assert flat(mixed)["freeze_met"] is None and flat(mixed)["tail"] == "max"
    # 100 runs, one slow: the p99 is named and within the target
    hundred = summarize([run(freeze=0.1)] * 99 + [run(freeze=0.9)], rate_bit=None)
    assert flat(hundred)["tail"] == "p99" and flat(hundred)["freeze_met"] is True


def test_targets_need_every_run_and_nothing_lost() -> None:
    lossy = summarize([run(lost=1)], rate_bit=None)
    assert flat(lossy)["freeze_met"] is False
    failed = summarize([run(), run(ok=False)], rate_bit=None)
    assert flat(failed)["total_met"] is False
    assert targets(summarize([run(10)], rate_bit=None)) == []  # 100 MB not run


def test_targets_per_mode_prefer_the_flat_row() -> None:
    rows = summarize([run(mode="files", wan="default", freeze=0.9),
                      run(mode="files", wan="flat", freeze=0.1),
                      run(mode="postgresql", wan="default", freeze=0.1)], rate_bit=None)
    got = {(t["mode"], t["wan"]): t["freeze_met"] for t in targets(rows)}
    assert got == {("files", "flat"): True, ("postgresql", "default"): True}
    assert [t["flat"] for t in targets(rows)] == [True, False]


def test_summary_and_plot_are_written(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    runs = [run(100) | {"index": 0, "source": "edge", "target": "cloud", "acked": 400,
                        "error": ""},
            run(100, ok=False) | {"index": 1, "source": "cloud", "target": "edge",
                                  "acked": None, "error": "MigrationError: a | b\nc"}]
    wan = WAN | {"links": WAN["links"][1:]}
    data = {"runs": runs, "wan": wan, **tables(runs, wan)}
    files = stateful_report.write(data, tmp_path, "kubehop bench --scenario stateful")
    assert [f.name for f in files] == ["runs.json", "summary.md", "freeze.png"]
    md = (tmp_path / "summary.md").read_text()
    assert "| \u2014 | default | 100 | 1/2 | 3.00 / max 3.00 |" in md
    assert "**NOT met**" in md and "indicative only" in md
    assert "MigrationError: a / b c |" in md
    assert json.loads((tmp_path / "runs.json").read_text())["command"].endswith("stateful")
    assert (tmp_path / "freeze.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(("args", "words"), [
    (["--scenario", "stateful", "--sizes", "ten"], ("--sizes", "10,100,1000")),
    (["--scenario", "stateful", "--runs", "0"], ("--runs",)),
    (["--scenario", "controller", "--sizes", "10"], ("--sizes", "stateful")),
    (["--scenario", "stateful", "--scale", "1"], ("--scale", "strategies")),
])
def test_bad_stateful_options_are_one_line_errors(args: list[str], words: tuple[str, ...]
                                                  ) -> None:
    result = subprocess.run([sys.executable, "-m", "kubehop.cli.main", "bench", *args],
                            capture_output=True, text=True, timeout=60, check=False)
    assert_one_line_error(result, *words)


# -- rows keyed by what the runs recorded; the columns beside the freeze ---------------------

def test_wan_name_is_flat_or_the_profile() -> None:
    assert wan_name(WAN) == "default"
    assert wan_name({"profile": {"name": "flat"}, "links": [
        {"a": "edge", "b": "cloud", "delay_ms": 0.0, "jitter_ms": 0.0, "rate_bit": None}]}) \
        == "flat"
    assert wan_name(None) is None


def test_rows_are_keyed_by_mode_wan_and_size_as_the_runs_recorded() -> None:
    runs = [run(mode="files", wan="default"), run(mode="files", wan="flat"),
            run(mode="postgresql", wan="flat"), run(mode="files", wan="default"),
            run(ok=False, wan="flat", mode=None),  # failed before its data moved: no mode
            run(10)]  # an older bench: no mode, no WAN of its own
    keys = row_keys(runs, "default")
    assert keys[4] == (None, "flat", 100)  # flat 100 MB has two modes: it cannot join one
    assert keys[5] == (None, "default", 10)  # takes the file's WAN
    rows = summarize(runs, rate_bit=None, wan="default")
    assert [(r["mode"], r["wan"], r["size_mb"], r["runs"]) for r in rows] == [
        ("files", "default", 100, 2), ("files", "flat", 100, 1), ("postgresql", "flat", 100, 1),
        (None, "flat", 100, 1), (None, "default", 10, 1)]
    # with one mode recorded for its WAN and size, a run without one joins it
    joined = row_keys([run(mode="files", wan="flat"), run(ok=False, wan="flat")])
    assert joined == [("files", "flat", 100), ("files", "flat", 100)]


def synthetic_runs() -> list[dict[str, Any]]:
    """A runs.json's runs as today's bench writes them: mode, WAN, agw's retried requests and
    longest gap, the first pass's failed attempts, acknowledged writes lost."""
    base = {"source": "edge", "target": "cloud", "error": "", "acked": 1500, "mode": "files",
            "wan": "flat"}
    runs = [run(retried=10 + i, gap=300.0 + i, freeze=0.4 + i / 100, lost=0,
                failed_attempts=[], index=i, **base) for i in range(20)]
    runs[3]["failed_attempts"] = ["connection refused", "connection refused"]
    runs[7]["failed_attempts"] = ["no route to host"]
    runs[9] |= {"lost": 2, "longest_gap_ms": 2500.0}
    runs[12] |= {"agw_retried": None}  # agw's record could not be read in that run
    return runs


def test_the_new_columns_from_a_synthetic_runs_json() -> None:
    runs = synthetic_runs()
    (row,) = summarize(runs, rate_bit=None)
    assert (row["mode"], row["wan"], row["runs"], row["ok"]) == ("files", "flat", 20, 20)
    assert row["agw_retried"] == sum(10 + i for i in range(20)) - 22
    assert row["longest_gap_ms"] == 2500.0
    assert row["passes_retried"] == {"attempts": 3, "runs": 2}
    assert (row["lost"], row["lost_unknown"]) == (2, 0)
    assert row["freeze_ms"] == {"n": 20, "p50": 495.0, "max": 590.0}
    md = stateful_report.markdown({"runs": runs, "wan": None}, "kubehop bench")
    line = next(x for x in md.splitlines() if x.startswith("| files | flat | 100 | 20/20 |"))
    assert line.startswith("| files | flat | 100 | 20/20 | 3.00 / max 3.00 | 2.00 | "
                           "495 / max 590 | 368 | 2500 | 3 (in 2 runs) | 2 | 0 |")
    assert "| files | flat | 100 | 4 | edge -> cloud |" in md  # the run with two retries
    run4 = next(x for x in md.splitlines() if x.startswith("| files | flat | 100 | 4 |"))
    assert run4.split(" | ")[15] == "2"  # its passes retried
    assert "p99" not in line
    assert "**NOT met** (" not in md and "freeze <= 150 ms at p99: **NOT met**" in md


def test_a_row_of_100_runs_says_p99() -> None:
    runs = [run(freeze=0.1 + i / 1000, mode="files", wan="flat", index=i, source="edge",
                target="cloud", error="", acked=10) for i in range(100)]
    md = stateful_report.markdown({"runs": runs, "wan": None}, "kubehop bench")
    # freeze 100..199 ms: p50 149.5 (shown 150), p99 198.01 between the two largest
    assert "| files | flat | 100 | 100/100 | 3.00 / p99 3.00 | 2.00 | 150 / p99 198 |" in md
    assert "Checked on the p99 of 100 runs" in md


@pytest.mark.parametrize("folder", ["bench-stateful", "bench-stateful-flat"])
def test_the_results_files_of_the_older_bench_still_render(folder: str) -> None:
    """results/bench-stateful*/runs.json were written before the mode and the tail rule: the
    summary is recomputed from their runs; no mode (em dash), 3 runs (max, not p99)."""
    data = json.loads((RESULTS / folder / "runs.json").read_text())
    assert "p99" in data["summary"][0]["freeze_ms"]  # what the older bench stored
    md = stateful_report.markdown(data, data["command"])
    table = md.split("| mode | WAN | size (MB) | runs ok / n |")[1].split("\n\n")[0]
    rows = table.splitlines()[2:]
    assert len(rows) == len(data["sizes_mb"])
    wan = "flat" if folder.endswith("flat") else "default"
    assert all(r.startswith(f"| \u2014 | {wan} | ") and " | 3/3 | " in r for r in rows)
    assert "p99" not in table and table.count("/ max ") == 2 * len(rows)
    assert "Checked on the max of 3 runs" in md


def test_the_older_file_s_figures_beside_the_freeze() -> None:
    data = json.loads((RESULTS / "bench-stateful-flat" / "runs.json").read_text())
    md = stateful_report.markdown(data, data["command"])
    assert ("| \u2014 | flat | 100 | 3/3 | 13.40 / max 13.45 | 10.93 | 431 / max 483 | 250 | "
            "440 | 1 (in 1 run) | 0 | 0 |") in md


def test_a_migration_report_gives_the_run_its_mode_and_retried_passes() -> None:
    report = Report(id="m1", service="orc8r", namespace="ns", source="edge", target="cloud",
                    target_namespace="ns", strategy="endpoints", status="succeeded",
                    phases=[PhaseTiming("copy", 10.0, 11.0), PhaseTiming("switch", 11.0, 12.5),
                            PhaseTiming("cleanup", 12.5, 13.0)],
                    data={"engine": "files", "failed_attempts": ["refused"],
                          "passes": [{"bytes": 10**8, "files": 2, "seconds": 2.0,
                                      "final": False},
                                     {"bytes": 10, "files": 1, "seconds": 0.1, "final": True}],
                          "bytes": 10**8, "freeze_seconds": 0.4})
    r = StatefulRun(size_mb=100, index=0, source="edge", target="cloud", wan="flat")
    take_report(r, report)
    assert (r.mode, r.ok, r.failed_attempts) == ("files", True, ["refused"])
    assert (r.total_s, r.to_target_s, r.freeze_s) == (3.0, 2.5, 0.4)
    assert r.first_pass_mbps == 50.0


def test_the_stateful_scenario_runs_20_per_row_by_default(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    from kubehop.cli import bench as cli

    asked: list[dict[str, Any]] = []
    monkeypatch.setattr(cli, "_stateful", lambda **kw: asked.append(kw))
    common = {"strategies": None, "scale": None, "sizes": None, "interval": 10, "out": None,
              "wan": None}
    cli.bench(scenario=cli.Scenario.stateful, runs=None, quick=False, **common)
    cli.bench(scenario=cli.Scenario.stateful, runs=5, quick=False, **common)
    cli.bench(scenario=cli.Scenario.stateful, runs=None, quick=True, **common)
    assert [(a["runs"], a["sizes"]) for a in asked] == [(20, "10,100,1000"),
                                                        (5, "10,100,1000"), (1, "10")]

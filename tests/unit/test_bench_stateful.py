"""The pure parts of the stateful benchmark: sizes, the first pass's throughput, lost writes,
the per-size summary, the link's rate from the WAN record and the issue's targets; and that
the markdown and the plot are written from a summary."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kubehop.bench import report
from kubehop.bench.stateful import (
    first_pass_partial,
    is_flat,
    link_rate_bit,
    lost_writes,
    parse_sizes,
    pass_bytes_medians,
    summarize,
    summarize_size,
    targets,
    throughput_mbps,
)
from tests.conftest import assert_one_line_error


def run(size: int = 100, *, ok: bool = True, total: float = 3.0, freeze: float = 0.1,
        passes: list[tuple[int, float]] | None = None, lost: int | None = 0,
        failed: int = 0, retried: int | None = 2, gap: float | None = 120.0) -> dict[str, Any]:
    ps = [{"bytes": b, "files": 2, "seconds": s, "final": False}
          for b, s in (passes or [(size * 10**6, 1.0), (4096, 0.1)])]
    ps[-1]["final"] = True
    return {"size_mb": size, "ok": ok, "total_s": total if ok else None, "to_target_s": 2.0,
            "freeze_s": freeze if ok else None, "precopy_s": 1.5, "verify_s": 0.2,
            "passes": ps if ok else [], "first_pass_mbps": throughput_mbps(ps) if ok else None,
            "bytes": size * 10**6 if ok else None, "lost": lost, "agw_failed": failed,
            "agw_retried": retried,
            "longest_gap_ms": gap}


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
    assert row["total_s"] == {"p50": 3.0, "p99": pytest.approx(3.98)}
    assert row["freeze_ms"]["p50"] == 100.0
    assert row["freeze_ms"]["p99"] == pytest.approx(296.0)
    assert row["throughput_mbps"]["p50"] == 100.0  # 100 MB in 1 s
    assert row["link_rate_mbps"] == 125.0
    assert (row["lost"], row["lost_unknown"]) == (2, 1)
    assert row["agw_failed"] == 41
    assert row["agw_retried"] == 6  # the run without the figure does not count
    assert row["longest_gap_ms"] == 5000.0
    assert row["pass_bytes"] == [100e6, 4096.0]


def test_summary_without_a_successful_run_has_no_percentiles() -> None:
    row = summarize_size(10, [run(10, ok=False, retried=None)], rate_bit=None)
    assert row["total_s"] == {"p50": None, "p99": None}
    assert row["link_rate_mbps"] is None and row["agw_retried"] is None
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


def test_targets_need_the_p99s_every_run_and_nothing_lost() -> None:
    good = summarize([run(total=3.0, freeze=0.1), run(total=3.5, freeze=0.12)], rate_bit=None)
    assert targets(good, flat=True) == {
        "size_mb": 100, "flat": True, "freeze_p99_ms": 150.0, "total_s": 4.0,
        "freeze_met": True, "total_met": True}
    slow = summarize([run(total=3.0, freeze=0.1), run(total=4.5, freeze=0.2)], rate_bit=None)
    assert (targets(slow, flat=True)["freeze_met"], targets(slow, flat=True)["total_met"]) == \
        (False, False)
    lossy = summarize([run(lost=1)], rate_bit=None)
    assert targets(lossy, flat=True)["freeze_met"] is False
    failed = summarize([run(), run(ok=False)], rate_bit=None)
    assert targets(failed, flat=True)["total_met"] is False
    assert targets(summarize([run(10)], rate_bit=None), flat=True)["freeze_met"] is None


def test_summary_and_plot_are_written(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    runs = [run(100) | {"index": 0, "source": "edge", "target": "cloud", "acked": 400,
                        "error": ""},
            run(100, ok=False) | {"index": 1, "source": "cloud", "target": "edge",
                                  "acked": None, "error": "MigrationError: a | b\nc"}]
    rows = summarize(runs, rate_bit=10**9)
    data = {"runs": runs, "summary": rows, "wan": WAN | {"links": WAN["links"][1:]},
            "targets": targets(rows, flat=False)}
    files = report.write_stateful(data, tmp_path, "kubehop bench --scenario stateful")
    assert [f.name for f in files] == ["runs.json", "summary.md", "freeze.png"]
    md = (tmp_path / "summary.md").read_text()
    assert "| 100 | 1/2 | 3.00 / 3.00 |" in md
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

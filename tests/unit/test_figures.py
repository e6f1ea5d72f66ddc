"""The measured figures in README.md and docs/*.md agree with the results files they cite
(scripts/figures.py; docs/figures.md). No cluster needed."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("figures", ROOT / "scripts" / "figures.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["figures"] = module
    spec.loader.exec_module(module)
    return module


figures = _load()


def _copy_docs(tmp: Path) -> None:
    """README.md and docs/*.md copied into ``tmp`` (to be edited there)."""
    (tmp / "docs").mkdir()
    for doc in figures.documents(ROOT):
        (tmp / doc).write_text((ROOT / doc).read_text())


def _link_results(tmp: Path, *, without: str = "") -> None:
    """tmp/results: a symlink to every results file of the repository but ``without``."""
    for f in (ROOT / "results").rglob("*"):
        rel = f.relative_to(ROOT).as_posix()
        if f.is_file() and rel != without:
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp / rel).symlink_to(f)


def test_every_figure_agrees_with_the_file_it_cites() -> None:
    problems = figures.check(ROOT)
    assert not problems, "\n".join(problems)


def test_a_figure_edited_by_hand_is_reported(tmp_path: Path) -> None:
    _copy_docs(tmp_path)
    _link_results(tmp_path)
    assert figures.check(tmp_path) == []
    readme = tmp_path / "README.md"
    text = readme.read_text()
    assert text.count("0 failed of 9,585 requests") == 1
    readme.write_text(text.replace("0 failed of 9,585 requests", "0 failed of 9,287 requests"))
    problems = figures.check(tmp_path)
    assert len(problems) == 1
    assert problems[0].startswith("controller (README.md): differs from its results file (doc ")
    assert "9,287" in problems[0] and "9,585" in problems[0]
    assert figures.main(["--check", "--root", str(tmp_path)]) == 1
    figures.write(tmp_path)
    assert "0 failed of 9,585 requests" in readme.read_text()
    assert figures.check(tmp_path) == []


def test_a_missing_results_file_is_named(tmp_path: Path) -> None:
    _copy_docs(tmp_path)
    _link_results(tmp_path, without="results/demo/make-demo.log")
    problems = figures.check(tmp_path)
    assert "README.md: cited file missing: results/demo/make-demo.log" in problems
    assert ("controller (README.md): cited file missing: results/demo/make-demo.log"
            in problems)


def test_markers_that_went_missing_are_reported(tmp_path: Path) -> None:
    _copy_docs(tmp_path)
    _link_results(tmp_path)
    wan = tmp_path / "docs" / "wan.md"
    wan.write_text(wan.read_text().replace("<!-- figures:wan-udp end -->", ""))
    assert [p for p in figures.check(tmp_path) if p.startswith("wan-udp")] == [
        "wan-udp (docs/wan.md): expected one pair of markers "
        "'<!-- figures:wan-udp begin/end -->', found 0"]


@pytest.mark.parametrize(("n", "label"), [(3, "max"), (99, "max"), (100, "p99"), (300, "p99")])
def test_p99_only_with_100_samples_else_max(n: int, label: str) -> None:
    values = [float(i) for i in range(n)]
    got, value = figures.tail(values)
    assert got == label
    if label == "max":
        assert value == n - 1
    else:
        assert value == pytest.approx(0.99 * (n - 1))


def test_no_generated_figure_calls_fewer_than_100_runs_a_p99() -> None:
    """The controller's reaction time has 10 runs: max, not p99."""
    src = figures.Sources(ROOT)
    assert "p99" not in figures.readme_controller(src)
    assert "p99" not in figures.readme_stateful(src)


def test_a_plot_with_no_run_behind_it_is_reported(tmp_path: Path) -> None:
    _copy_docs(tmp_path)
    _link_results(tmp_path)
    (tmp_path / "results" / "bench-flat" / "timeline-naive.png").write_bytes(b"")
    assert figures.check(tmp_path) == [
        "results/bench-flat/timeline-naive.png: no naive run in results/bench-flat/runs.json"]


def test_a_figure_in_prose_edited_by_hand_is_reported(tmp_path: Path) -> None:
    _copy_docs(tmp_path)
    _link_results(tmp_path)
    wan = tmp_path / "docs" / "wan.md"
    text = wan.read_text()
    assert text.count("52% at 5.6 Gbit/s") == 1
    wan.write_text(text.replace("52% at 5.6 Gbit/s", "42% at 5.6 Gbit/s"))
    assert figures.check(tmp_path) == [
        "wan-prose (docs/wan.md): not as its results file says: '52% at 5.6 Gbit/s'"]

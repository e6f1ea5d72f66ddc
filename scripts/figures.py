"""Figures that cannot drift: every table of measured figures in README.md and docs/*.md is
rendered here from the results file it cites (docs/figures.md says how and why).

Usage:

    python scripts/figures.py --check   # exit 1, naming each figure that differs from its file
    python scripts/figures.py --write   # regenerate every figure in place

In a document each generated figure sits between ``<!-- figures:NAME begin -->`` and
``<!-- figures:NAME end -->``: a table on lines of its own, or a short figure inside a sentence.
Nothing here needs a cluster; tests/unit/test_figures.py runs the check.

Percentiles: a figure is called p99 only with at least 100 samples behind it; with fewer, the
largest value is given and called max. The rule, and the percentile itself, are the bench's own
(``kubehop.bench.stats``: ``tail``, ``tail_label``), imported from this checkout's ``src``.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # this checkout's kubehop, not another installed one

from kubehop.bench.stats import tail, tail_label  # noqa: E402

DASH = "\u2013"  # the en dash of a range, "0.52\u20130.56"


class MissingFileError(Exception):
    """A results file a figure cites does not exist."""

    def __init__(self, path: str) -> None:
        super().__init__(f"cited file missing: {path}")
        self.path = path


_PARSED: dict[tuple[str, int], Any] = {}  # results files parsed (path, mtime): read-only


class Sources:
    """Reads results files relative to a repository root, naming a missing one."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._json: dict[str, Any] = {}

    def path(self, rel: str) -> Path:
        p = self.root / rel
        if not p.exists():
            raise MissingFileError(rel)
        return p

    def text(self, rel: str) -> str:
        return self.path(rel).read_text()

    def json(self, rel: str) -> Any:
        if rel not in self._json:
            p = self.path(rel).resolve()
            key = (str(p), p.stat().st_mtime_ns)
            if key not in _PARSED:
                _PARSED[key] = json.loads(p.read_text())
            self._json[rel] = _PARSED[key]
        return self._json[rel]


@dataclass(frozen=True)
class Figure:
    name: str
    doc: str
    render: Callable[[Sources], str]
    block: bool = True  # a table on lines of its own; False: a phrase inside a sentence


# --- numbers --------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def fmt(v: float | None, digits: int) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def count(v: float) -> str:
    """A count, or a median of counts (which may end in .5)."""
    return f"{v:.0f}" if float(v).is_integer() else f"{v:.1f}"


def med_max(values: Sequence[float | None], digits: int) -> str:
    present = [v for v in values if v is not None]
    if not present:
        return "-"
    return f"{fmt(median(present), digits)} / {fmt(max(present), digits)}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def summary_command(src: Sources, folder: str) -> str:
    """The command line a bench summary.md records (``Command: `...` ``)."""
    m = re.search(r"^Command: `(.+)`", src.text(f"{folder}/summary.md"), re.M)
    if not m:
        raise ValueError(f"{folder}/summary.md names no command")
    return m.group(1)


def short_command(first: str, cmd: str) -> str:
    """``cmd`` with the options it shares with ``first`` elided (``… --wan default ...``)."""
    a, b = first.split(), cmd.split()
    if a == b:
        return cmd
    i = 0
    while i < min(len(a), len(b)) and a[i] == b[i]:
        i += 1
    while i > 0 and not b[i].startswith("--"):
        i -= 1
    return " ".join(b) if i == 0 else "… " + " ".join(b[i:])


def rtt(wan: dict[str, Any], a: str, b: str) -> float:
    """The measured RTT a -> b (ms) of a bench's WAN record."""
    return float(wan["matrix"]["measured_rtt_ms"][a][b])


def wan_label(wan: dict[str, Any], with_rtt: bool) -> str:
    name = str(wan["profile"]["name"])
    if with_rtt and name != "flat":
        return f"{name} (edge↔cloud RTT {rtt(wan, 'edge', 'cloud'):.1f} ms)"
    return name


# --- README: the testbed --------------------------------------------------------------------

JUNIT = "results/test/junit.xml"
# What a failure in the junit file was, once understood (keyed by the failing test's id).
_STALE_JUNIT = ("the README compared with the results/test/junit.xml an earlier run had left, "
                "uncommitted, in the working tree (a clean clone holds the committed pair)")
FAILURE_NOTES = {
    "tests.unit.test_resources::test_status_of_a_rollback_names_the_error_and_the_undone_steps":
        "a regression of this change (a stateless move's `start` listed as undone), fixed, "
        "the unit tests rerun",
    "tests.unit.test_figures::test_a_figure_in_prose_edited_by_hand_is_reported": _STALE_JUNIT,
    "tests.unit.test_figures::test_a_plot_with_no_run_behind_it_is_reported": _STALE_JUNIT,
    "tests.unit.test_figures::test_every_figure_agrees_with_the_file_it_cites": _STALE_JUNIT,
    "tests.unit.test_figures::test_a_figure_edited_by_hand_is_reported": _STALE_JUNIT,
    "tests.testbed.test_dashboard::test_page_shows_the_testbed_by_tier_and_draws_charts_with_no_"
    "console_error":
        "the storage I/O chart read before its own first poll; the test now waits for it, "
        "rerun alone",
}


def junit_result(src: Sources) -> str:
    suite = ET.parse(src.path(JUNIT)).getroot()  # noqa: S314 (our own results file)
    if suite.tag == "testsuites":
        suite = suite[0]
    tests, failures, errors, skipped = (int(suite.get(k, "0"))
                                        for k in ("tests", "failures", "errors", "skipped"))
    seconds = float(suite.get("time", "0"))
    passed = tests - failures - errors - skipped
    parts = [f"{passed} passed"]
    parts += [f"{n} {what}" for n, what in ((failures, "failed"), (errors, "errors"),
                                            (skipped, "skipped")) if n]
    text = f"{', '.join(parts)} in {seconds:.1f} s ({seconds / 60:.1f} min)"
    failed = [f"{c.get('classname')}::{c.get('name')}" for c in suite.iter("testcase")
              if c.find("failure") is not None or c.find("error") is not None]
    every = [FAILURE_NOTES.get(t, f"`{t}`") for t in failed]
    notes = [f"{n} tests: {note}" if (n := every.count(note)) > 1 else note
             for note in dict.fromkeys(every)]
    if notes:
        text += "; the failure" + ("s" if len(notes) > 1 else "") + ": " + "; ".join(notes)
    return text


def measure_command(clusters: list[str]) -> str:
    extra = "" if clusters == ["edge", "cloud"] else f" --clusters {','.join(clusters)}"
    return f"`python scripts/measure_testbed.py{extra}`"


def readme_testbed(src: Sources) -> str:
    rows: list[list[str]] = []
    for n in (2, 3):
        up = src.json(f"results/testbed/up-{n}clusters.json")
        idle = src.json(f"results/testbed/idle-{n}clusters.json")
        cores = idle["machine"]["cores"]
        warm = " (everything cached, from a testbed that was down)" if n == 2 else ""
        rows.append([f"warm `up`, {len(up['clusters'])} clusters{warm}",
                     measure_command(up["clusters"]), f"{up['seconds']:.1f} s",
                     f"`results/testbed/up-{n}clusters.json`"])
        settle = f" ({idle['seconds']:g} s, after 30 s settling)" if n == 2 else ""
        rows.append([f"idle testbed, {len(idle['clusters'])} clusters{settle}", "the same run",
                     f"{idle['cpu_cores']:.2f} cores of {cores}; "
                     f"{idle['pss_bytes'] / 2**30:.2f} GiB (PSS of {idle['processes']} "
                     "processes)", f"`results/testbed/idle-{n}clusters.json`"])
    rows.append(["`make test`'s pytest stage (unit and real-cluster tests, shuffled modules, "
                 "two workers each on its own testbed slot of three clusters), builds cached",
                 "`make test`",
                 junit_result(src), f"`{JUNIT}` (tests, failures, time)"])
    return table(["what", "command", "result", "file"], rows)


# --- README: the controller -----------------------------------------------------------------

CONTROLLER = "results/bench-controller"
DEMO_LOG = "results/demo/make-demo.log"


def step_at(steps: list[list[Any]], t: float) -> str | None:
    """The migration step running ``t`` s after the journal row (steps: name, state, s, e)."""
    return next((str(s[0]) for s in steps if float(s[2]) <= t <= float(s[3])), None)


def demo_facts(src: Sources) -> dict[str, str]:
    log = src.text(DEMO_LOG)
    part_two = log.split("=== part two", 1)[-1]
    moves = re.findall(r"^decision \d+: move \S+ (\w+) -> (\w+): (.*)$", part_two, re.M)
    agw = re.findall(r"^--- agw over the scenario: requests (\d+), failed (\d+)", log, re.M)
    if len(moves) != 2 or not agw:
        raise ValueError(f"{DEMO_LOG}: expected two moves and agw's record in part two")
    (a1, b1, why1), (a2, b2, why2) = moves
    excluded = re.search(r"excluded by ([\w-]+) firing", why1)
    gain = re.search(r"gain ([+-][\d.]+)", why2)
    if not excluded or not gain:
        raise ValueError(f"{DEMO_LOG}: no exclusion or gain in the decisions")
    requests, failed = (int(x) for x in agw[-1])
    return {"first": f"{a1} → {b1}", "second": f"{a2} → {b2}", "rule": excluded.group(1),
            "gain": f"{float(gain.group(1)):+.2f}", "winner": b1,
            "agw": f"{failed} failed of {requests:,} requests"}


def readme_controller(src: Sources) -> str:
    data = src.json(f"{CONTROLLER}/runs.json")
    runs = data["runs"]
    ok = [r for r in runs if r.get("verified")]
    reaction = [float(r["reaction_s"]) for r in ok]
    label, worst = tail(reaction)
    target = data["cycle_interval_s"] + data["scrape_interval_s"]
    moves = sorted({f"{data['rule']['cluster']} → {r['target']}" for r in ok})
    moves_text = f"every move {moves[0]}" if len(moves) == 1 else "moves " + ", ".join(moves)
    result = (f"p50 {median(reaction):.2f} s, {label} {worst:.2f} s over {len(ok)}/{len(runs)} "
              f"verified runs (target: {label} ≤ {data['cycle_interval_s']:g} s + one scrape = "
              f"{target:g} s: {'met' if worst <= target else 'not met'}); {moves_text}, "
              f"migration p50 {median([float(r['migration_s']) for r in ok]):.1f} s")
    failed = sum(int(r["agw_failed"]) for r in runs)
    causes: list[str] = []
    for r in runs:
        switch = next((float(s[2]) for s in r["steps"] if s[0] == "switch"), math.inf)
        for t, err, _ in r.get("agw_failures", []):
            step = step_at(r["steps"], float(t))
            when = f" during the `{step}` step" if step else ""
            causes.append(f"`{err}`{when}" + (", before the switch" if t < switch else ""))
    agw = str(failed) + (f" ({'; '.join(causes)})" if causes else "")
    demo = demo_facts(src)
    cmd = data["command"].replace(f" --out {CONTROLLER}", "")
    rows = [
        [f"reaction time: first Prometheus sample over the threshold → the migration's first "
         f"write ({len(runs)} runs, cycle {data['cycle_interval_s']:g} s, scrape "
         f"{data['scrape_interval_s']:g} s)", f"`{cmd}`", result,
         f"`{CONTROLLER}/summary.md`, `runs.json`, `reaction.png`"],
        ["`make demo`, part two: edge's memory loaded, then unloaded (policy "
         "`policies/paper.yaml`)", "`make demo`",
         f"the controller moved orc8r {demo['first']} (edge excluded by `{demo['rule']}`; "
         f"{demo['winner']} beat cloud on latency), then {demo['second']} once the load was gone "
         f"(gain {demo['gain']} on latency); agw: {demo['agw']}", f"`{DEMO_LOG}`"],
        [f"agw's failed requests over those {len(runs)} runs (CPU load of "
         f"{data['stress_cpu_millis'] / 1000:g} cores on edge)", "the same run", agw,
         f"`{CONTROLLER}/runs.json`"],
    ]
    return table(["what", "command", "result", "file"], rows)


# --- README: stateful moves ----------------------------------------------------------------

STATEFUL = ("results/bench-stateful", "results/bench-stateful-flat")


def size_label(mb: int) -> str:
    return f"{mb // 1000} GB" if mb >= 1000 else f"{mb} MB"


def readme_stateful(src: Sources) -> str:
    rows: list[list[str]] = []
    first_cmd = ""
    for folder in STATEFUL:
        data = src.json(f"{folder}/runs.json")
        cmd = data["command"]
        first_cmd = first_cmd or cmd
        for i, size in enumerate(data["sizes_mb"]):
            runs = [r for r in data["runs"] if r["size_mb"] == size]
            ok = [r for r in runs if r["ok"]]
            finals = [float(p["seconds"]) for r in ok for p in r["passes"] if p["final"]]
            wan = wan_label(data["wan"], with_rtt=i == 0)
            if i == 0:
                where = f"`{short_command(first_cmd, cmd)}`"
                where += "" if f"--out {folder}" in cmd else f" → `{folder}/`"
            else:
                where = "the same"
            rows.append([
                size_label(size), wan, f"{len(ok)}/{len(runs)}",
                med_max([1000 * float(r["freeze_s"]) for r in ok], 0),
                span(finals, 2, "s").removesuffix(" s"),
                fmt(median([float(r["to_target_s"]) for r in ok]), 1),
                med_max([float(r["total_s"]) for r in ok], 1),
                fmt(median([float(r["first_pass_mbps"]) for r in ok]), 1),
                str(sum(int(r["lost"]) for r in runs)),
                str(sum(int(r["agw_failed"]) for r in runs)), where])
    return table(["volume", "WAN", "runs ok", "freeze (ms)", "of which final delta (s)",
                  "clients on target (s, p50)", "total (s)", "first pass (MB/s, p50)",
                  "acknowledged writes lost", "agw failed", "command / file"], rows)


def stateful_runs(src: Sources) -> list[dict[str, Any]]:
    return [r for f in STATEFUL for r in src.json(f"{f}/runs.json")["runs"] if r["ok"]]


def span(values: Sequence[float], digits: int, unit: str) -> str:
    return f"{min(values):.{digits}f}{DASH}{max(values):.{digits}f} {unit}"


def readme_stateful_stop(src: Sources) -> str:
    """Where the freeze goes: stopping writes, over every stateful run."""
    return span([1000 * float(r["stop_writes_s"]) for r in stateful_runs(src)], 0, "ms")


def readme_stateful_verify(src: Sources) -> str:
    return span([1000 * float(r["verify_s"]) for r in stateful_runs(src)], 0, "ms")


def readme_stateful_rest(src: Sources) -> str:
    """The freeze less stopping writes, the final pass and verification: the target's freeze,
    the switch and the thaw."""
    rest = [float(r["freeze_s"]) - float(r["stop_writes_s"]) - float(r["verify_s"])
            - sum(float(p["seconds"]) for p in r["passes"] if p["final"])
            for r in stateful_runs(src)]
    return span(rest, 2, "s")


def readme_stateful_precopy(src: Sources) -> str:
    """The pre-copy below 1 GB."""
    return span([float(r["precopy_s"]) for r in stateful_runs(src) if r["size_mb"] < 1000],
                1, "s")


# --- README: speed of a move, strategies, scale ---------------------------------------------

SPEED = ("results/bench-flat", "results/bench-wan", "results/bench-flat-1ms")


def window(run: dict[str, Any], name: str) -> list[float]:
    """agw's answered latencies (ms) in the window ``name`` of a run, from its samples (as the
    bench cuts them: 2 s before the migration, 3 s after it)."""
    lo, hi = {"before": (run["start"] - 2.0, run["start"]),
              "after": (run["end"], run["end"] + 3.0)}[name]
    return [1000 * s[1] for s in run["samples"] if s[2] and lo <= s[0] < hi]


def before_after(runs: Sequence[dict[str, Any]]) -> tuple[str, str]:
    """(label, "b → a"): per run the tail of each window from agw's samples, median over the
    runs; label p99 only if every window held enough samples."""
    labels: set[str] = set()
    out: list[str] = []
    for name in ("before", "after"):
        per_run: list[float] = []
        for r in runs:
            lat = window(r, name)
            if lat:
                label, v = tail(lat)
                labels.add(label)
                per_run.append(v)
        out.append(fmt(median(per_run), 1) if per_run else "-")
    return ("p99" if labels == {"p99"} else "max"), " → ".join(out)


def ingress(runs: Sequence[dict[str, Any]]) -> tuple[str, str]:
    """(label, "p50 / tail"): medians over the runs of each run's ingress overhead."""
    measured = [r["ingress"] for r in runs if r.get("ingress", {}).get("overhead_ms")]
    label = "p99" if all(tail_label(int(i["calls"])) == "p99" for i in measured) else "max"
    if label != "p99":
        raise ValueError("ingress overhead: fewer calls than a p99 needs; the file has no max")
    p50 = median([float(i["overhead_ms"]["p50"]) for i in measured])
    p99 = median([float(i["overhead_ms"]["p99"]) for i in measured])
    return label, f"{p50:.2f} / {p99:.2f}"


def phase_s(run: dict[str, Any], name: str) -> float:
    return sum(float(p["end"]) - float(p["start"]) for p in run["phases"] if p["name"] == name)


def readme_speed(src: Sources) -> str:
    rows: list[list[str]] = []
    first = summary_command(src, SPEED[0])
    labels: set[str] = set()
    for folder in SPEED:
        data = src.json(f"{folder}/runs.json")
        runs = [r for r in data["runs"] if r["ok"]]
        interval = float(data["interval_ms"])
        wan = wan_label(data["wan"], with_rtt=True)
        if interval != 10:
            wan += f", agw every **{interval:g} ms** (`GET /healthz`)"
        lat_label, lat = before_after(runs)
        ing_label, ing = ingress(runs)
        labels |= {lat_label, ing_label}
        to_target = med_max([r["to_target_s"] for r in runs], 2)
        if interval == 10:
            to_target = f"**{to_target}**"
        cmd = summary_command(src, folder)
        rows.append([wan, f"{len(runs)}/{len(data['runs'])}",
                     med_max([r["failed"] for r in runs], 0), to_target,
                     med_max([r["longest_gap_ms"] for r in runs], 0),
                     med_max([r["switch_gap_ms"] for r in runs], 0), lat, ing,
                     f"`{short_command(first, cmd) if cmd != first else cmd}`"
                     f"{'' if f'--out {folder}' in cmd else f' → `{folder}`'}"])
    tl = "p99" if labels == {"p99"} else "max"
    return table(["WAN", "runs ok", "failed requests", "clients on the target (s)",
                  "longest gap (ms)", "longest gap overlapping the switch (ms)",
                  f"agw {tl} before → after (ms)", f"ingress overhead p50 / {tl} (ms)",
                  "command → file"], rows)


def readme_speed_phases(src: Sources) -> str:
    runs = [r for r in src.json(f"{SPEED[0]}/runs.json")["runs"] if r["ok"]]

    def phase(name: str) -> str:
        return f"{name} {med_max([phase_s(r, name) for r in runs], 2)} s"

    return ", ".join(phase(n) for n in ("copy", "route", "start", "ready", "dns", "verify",
                                        "switch"))


def readme_speed_phases_runs(src: Sources) -> str:
    runs = [r for r in src.json(f"{SPEED[0]}/runs.json")["runs"] if r["ok"]]
    return f"flat, median / max of {len(runs)} runs"


def readme_speed_switch_gap(src: Sources) -> str:
    runs = [r for r in src.json(f"{SPEED[0]}/runs.json")["runs"] if r["ok"]]
    gaps = [float(r["switch_gap_ms"]) for r in runs if r["switch_gap_ms"] is not None]
    return f"{median(gaps):.0f} ms median"


def readme_speed_lag(src: Sources) -> str:
    """agw's send lag (how late each request started: sample field 7) in the 1 ms runs."""
    data = src.json(f"{SPEED[2]}/runs.json")
    labels: set[str] = set()
    values: list[float] = []
    for r in data["runs"]:
        label, v = tail([1000 * float(s[7]) for s in r["samples"]])
        labels.add(label)
        values.append(v)
    label = "p99" if labels == {"p99"} else "max"
    return f"a {label} of {span(values, 0, 'ms')} per run"


STRATEGIES = "results/bench"


def readme_baselines(src: Sources) -> str:
    """The baselines' outage: clients on the target, failed requests, over every run."""
    runs = [r for r in src.json(f"{STRATEGIES}/runs.json")["runs"]
            if r["ok"] and r["strategy"] in ("paper", "naive")]
    failed = [int(r["failed"]) for r in runs]
    return (f"{span([float(r['to_target_s']) for r in runs], 1, 's')} and "
            f"{min(failed):,}{DASH}{max(failed):,} failed requests")


def readme_strategies(src: Sources) -> str:
    data = src.json(f"{STRATEGIES}/runs.json")
    order = list(dict.fromkeys(r["strategy"] for r in data["runs"]))
    rows: list[list[str]] = []
    labels: set[str] = set()
    for s in order:
        every = [r for r in data["runs"] if r["strategy"] == s]
        runs = [r for r in every if r["ok"]]
        label, lat = before_after(runs)
        labels.add(label)
        rows.append([s, f"{len(runs)}/{len(every)}", med_max([r["failed"] for r in runs], 0),
                     med_max([r["longest_gap_ms"] for r in runs], 0),
                     med_max([r["switch_gap_ms"] for r in runs], 0),
                     med_max([r["total_s"] for r in runs], 2),
                     fmt(median([phase_s(r, "drain") for r in runs]), 2),
                     med_max([r["to_target_s"] for r in runs], 2), lat])
    tl = "p99" if labels == {"p99"} else "max"
    return table(["strategy", "runs ok", "failed requests", "longest gap (ms)",
                  "gap overlapping the switch (ms)", "total (s)", "drain (s, median)",
                  "clients on target after (s)", f"{tl} before → after (ms)"], rows)


SCALE = "results/bench-scale"


def readme_scale(src: Sources) -> str:
    rows: list[list[str]] = []
    for s in src.json(f"{SCALE}/runs.json")["scale"]:
        ph = s["phases"]

        def cell(name: str, ph: dict[str, Any] = ph, n: int = s["services"]) -> str:
            med, top = ph[name]["median"], ph[name]["max"]
            return f"{med:.2f}" if n == 1 else f"{med:.2f} / {top:.2f}"

        rows.append([str(s["services"]), f"{s['total_s']:.2f}", str(s["failed"]),
                     cell("start"), cell("ready"), cell("copy"), f"{s['deploy_s']:.1f}"])
    return table(["services", "total (s)", "failed", "start, median / max (s)",
                  "ready (s)", "copy (s)",
                  "the bench creating as many Deployments in edge, until ready (s)"], rows)


def readme_scale_deploy(src: Sources) -> str:
    scale = {int(s["services"]): float(s["deploy_s"])
             for s in src.json(f"{SCALE}/runs.json")["scale"]}
    return " and ".join(f"{n} pods in about {scale[n]:.0f} s" for n in sorted(scale) if n > 1)


# --- README and docs/controller.md: the in-cluster takeover ---------------------------------

TAKEOVER = "results/incluster/takeover.txt"


def takeover(src: Sources) -> dict[str, str]:
    text = src.text(TAKEOVER)
    m = re.search(r"led ([\d.]+) s later \(lease ([\d.]+) s\).*agw (\d+) ok, (\d+) failed", text)
    if not m:
        raise ValueError(f"{TAKEOVER}: no takeover line")
    led, lease, ok, failed = m.groups()
    return {"led": led, "lease": lease, "requests": f"{int(ok) + int(failed)}", "failed": failed}


def readme_takeover(src: Sources) -> str:
    t = takeover(src)
    return (f"took the Lease {t['led']} s later (the lease is {t['lease']} s, counted from the "
            f"leader's last renewal), resumed the same journal entry from the shared PostgreSQL "
            f"and finished the migration; agw: {t['requests']} requests, {t['failed']} failed")


def controller_takeover(src: Sources) -> str:
    t = takeover(src)
    return (f"with the installed controller's {t['lease']} s lease, a new leader took over "
            f"{t['led']} s after the leader was SIGKILLed in the middle of a migration, "
            f"finished it, and agw saw {t['failed']} failed of {t['requests']} requests")


# --- docs/wan.md ---------------------------------------------------------------------------

WAN = "results/wan"


def wan_matrix(src: Sources) -> str:
    """Measured (configured) RTT per pair; the header says how many probes each median is of."""
    data = src.json(f"{WAN}/show_3tier_default.json")
    m = data["matrix"]
    names = list(m["configured_rtt_ms"])
    rows = []
    for a in names:
        cells = [a]
        for b in [*names, "host"]:
            if a == b:
                cells.append("-")
            else:
                cells.append(f"{m['measured_rtt_ms'][a][b]:g} "
                             f"(set {m['configured_rtt_ms'][a][b]:g})")
        rows.append(cells)
    n = re.search(r"median of (\d+)", str(data.get("probe") or ""))
    return table([f"probe from \\ to ({f'median of {n.group(1)}' if n else 'n not recorded'})",
                  *names, "host"], rows)


def wan_set(src: Sources) -> str:
    links = src.json(f"{WAN}/show_3tier_fog_cloud_40ms.json")["links"]
    link = next(x for x in links if {x["a"], x["b"]} == {"fog", "cloud"})
    ms = link["measured_rtt_ms"]
    return (f"fog <-> cloud measured {ms['fog->cloud']:.2f} / {ms['cloud->fog']:.2f} ms "
            f"(set {link['configured_rtt_ms']:g})")


def wan_accuracy(src: Sources) -> str:
    acc = src.json(f"{WAN}/accuracy.json")
    rows = []
    for r in acc["rows"]:
        n = min(int(r["rtt_ms"]["n"]), int(r["error_ms"]["n"]))
        if tail_label(n) != "p99":
            raise ValueError(f"{WAN}/accuracy.json: a p99 over {n} probes")
        within = r.get("within_issue_tolerance")
        rows.append([r["probe"], f"{r['one_way_delay_ms']:g} ms", str(r["rtt_ms"]["p50"]),
                     str(r["error_ms"]["p50"]), str(r["error_ms"]["p99"]),
                     str(r.get("abs_error_ms", {}).get("p99", "-")),
                     "-" if within is None else f"{100 * within:.1f}%"])
    probes = {int(r["rtt_ms"]["n"]) for r in acc["rows"]}
    head = (f"Accuracy ({acc['measured_at']}; {'/'.join(map(str, sorted(probes)))} probes each; "
            "error = measured RTT - 2 x one-way delay, ms):\n\n")
    lines = [head + table(["probe", "one way", "RTT p50", "error p50", "error p99",
                           "abs error p99", "within 20%/1ms"], rows), ""]
    for key, what, tail_text in (
            ("delayer_release_lateness_us", "Delayer's own release lateness (due time -> "
             "verdict sent), all packets of the accuracy run", ""),
            ("delayer_arrival_to_read_us", "Packet arrival on the bridge (kernel stamp) -> "
             "notice read by the delayer", " (the delay counts from the arrival)")):
        d = acc[key]
        if tail_label(int(d["samples"])) != "p99":
            raise ValueError(f"{WAN}/accuracy.json: {key}: a p99 over {d['samples']} samples")
        count_text = f" ({d['samples']} packets)" if not tail_text else ""
        lines.append(f"{what}: p50 {d['p50']:.0f} us, p99 {d['p99']:.0f} us, max "
                     f"{d['max']:.0f} us{count_text}{tail_text}.")
    return "\n".join(lines)


def wan_throughput(src: Sources) -> str:
    thr = src.json(f"{WAN}/throughput.json")
    rows = [[r["case"], str(r["goodput_mbit_per_s"]), str(r.get("goodput_over_rate", "-")),
             str(r["delayer_cpu_percent_of_one_core"]), str(r["machine_busy_percent_all_cores"])]
            for r in thr["tcp_bulk_edge_to_cloud"]]
    return (f"Bulk TCP edge -> cloud, one flow ({thr['measured_at']}):\n\n"
            + table(["case", "goodput Mbit/s", "of the rate", "delayer CPU (% of a core)",
                     "machine busy (% of 2 cores)"], rows))


def wan_udp(src: Sources) -> str:
    thr = src.json(f"{WAN}/throughput.json")
    rows = []
    for r in thr["udp_small_packets"]:
        drops = sum(q["queue_dropped"] + q["user_dropped"] for q in r["nfqueue"])
        rows.append([r["case"], f"{r['sent']['pps']:.0f}", str(r["delivered_pps"]),
                     f"{100 * r['delivered_ratio']:.1f}%",
                     str(r["delayer_cpu_percent_of_one_core"]), str(drops)])
    return table(["case", "sent pps", "delivered pps", "delivered", "delayer CPU (% of a core)",
                  "nfqueue drops"], rows)


def wan_idle(src: Sources) -> str:
    idle = src.json(f"{WAN}/cpu_idle.json")
    return (f"Idle ({idle['measured_at']}, {idle['profile']} profile, {idle['seconds']} s): "
            f"delayer {idle['delayer_cpu_percent_of_one_core']}% of a core; the whole idle "
            f"testbed {idle['machine_busy_percent_all_cores (whole testbed idle)']}% of 2 cores.")


def wan_prose(src: Sources) -> list[str]:
    """The figures docs/wan.md's "In short" quotes in its prose, each as it is written there."""
    acc = src.json(f"{WAN}/accuracy.json")["rows"]
    thr = src.json(f"{WAN}/throughput.json")
    idle = src.json(f"{WAN}/cpu_idle.json")
    late = src.json(f"{WAN}/accuracy.json")["delayer_release_lateness_us"]
    tcp = [r for r in acc if r["probe"].startswith("TCP") and r["one_way_delay_ms"] > 0]
    flat = next(r for r in acc if r["probe"].startswith("TCP") and r["one_way_delay_ms"] == 0)
    e50 = [float(r["error_ms"]["p50"]) for r in tcp]
    e99 = [float(r["error_ms"]["p99"]) for r in tcp]
    within = [100 * float(r["within_issue_tolerance"]) for r in tcp]
    bulk = {r["case"]: r for r in thr["tcp_bulk_edge_to_cloud"]}
    cpu20 = [float(r["delayer_cpu_percent_of_one_core"]) for c, r in bulk.items()
             if "delay 20ms" in c and "buffers" not in c]
    rated = [float(r["goodput_over_rate"]) for c, r in bulk.items()
             if "goodput_over_rate" in r and not c.startswith("default")]
    fast1 = bulk["delay 1ms, unlimited"]
    big = bulk["delay 20ms, unlimited, 64 MiB TCP buffers"]
    big_rated = bulk["default: delay 20ms, 1gbit, 64 MiB TCP buffers"]
    udp = next(r for r in thr["udp_small_packets"] if "delay 20ms" in r["case"])
    return [
        f"plus {min(e50):.2f}-{max(e50):.2f} ms at the median",
        f"(p99: +{min(e99):.2f} to +{max(e99):.1f} ms, "
        f"{min(r['one_way_delay_ms'] for r in tcp):g}-{max(r['one_way_delay_ms'] for r in tcp):g}"
        " ms one way)",
        f"{min(within):.1f}-{max(within):.0f}% of probes are within the issue's 20%/1 ms",
        f"p50 {late['p50']:.0f} us late per direction, p99 {late['p99']:.0f} us",
        f"{flat['rtt_ms']['p50']:.2f} ms RTT with no WAN at all",
        f"Idle: {idle['delayer_cpu_percent_of_one_core']:.1f}%",
        f"about {min(cpu20):.0f}-{max(cpu20):.0f}% of one core",
        f"{big['delayer_cpu_percent_of_one_core']:.0f}% at "
        f"{big['goodput_mbit_per_s'] / 1000:.1f} Gbit/s",
        f"{fast1['delayer_cpu_percent_of_one_core']:.0f}% at "
        f"{fast1['goodput_mbit_per_s'] / 1000:.1f} Gbit/s (1 ms delay)",
        f"{udp['delayer_cpu_percent_of_one_core']:.0f}% for "
        f"{udp['delivered_pps'] / 1000:.0f}k small UDP datagrams per second",
        f"bulk TCP: {fast1['goodput_mbit_per_s'] / 1000:.1f} Gbit/s with 1 ms delay, "
        f"{big['goodput_mbit_per_s'] / 1000:.1f} Gbit/s at 40 ms RTT with large socket buffers",
        f"reaches ~{round(bulk['delay 20ms, unlimited']['goodput_mbit_per_s'], -1):.0f} Mbit/s",
        f"carries {big_rated['goodput_mbit_per_s']:.0f} Mbit/s of goodput",
        f"sender's {udp['sent']['pps'] / 1000:.0f}k datagrams/s passed with no drop in the "
        "queues" if not any(q["queue_dropped"] + q["user_dropped"] for q in udp["nfqueue"])
        else "(dropped in the queues)",
        f"the {100 * (1 - float(udp['delivered_ratio'])):.1f}% lost",
        f"from {udp['delivered_pps'] / 1000:.0f}k/s at "
        f"{udp['delayer_cpu_percent_of_one_core']:.0f}%",
        f"Goodput of the rate-limited test links is {100 * min(rated):.0f}-{100 * max(rated):.0f}% "
        "of the configured rate",
    ]


def readme_kubectl(src: Sources) -> str:
    """The `kubectl get migrations` transcript the resources test saved."""
    return "```\n" + src.text("results/resources/kubectl-get-migrations.txt").rstrip("\n") + "\n```"


def readme_commands(src: Sources) -> list[str]:
    """The bench commands the README's prose names for the tables without a command column."""
    return [f"`{summary_command(src, f)}`" for f in (SCALE, STRATEGIES)]


# --- the registry --------------------------------------------------------------------------

FIGURES: tuple[Figure, ...] = (
    Figure("testbed", "README.md", readme_testbed),
    Figure("controller", "README.md", readme_controller),
    Figure("kubectl-migrations", "README.md", readme_kubectl),
    Figure("incluster-takeover", "README.md", readme_takeover, block=False),
    Figure("stateful", "README.md", readme_stateful),
    Figure("stateful-stop", "README.md", readme_stateful_stop, block=False),
    Figure("stateful-verify", "README.md", readme_stateful_verify, block=False),
    Figure("stateful-rest", "README.md", readme_stateful_rest, block=False),
    Figure("stateful-precopy", "README.md", readme_stateful_precopy, block=False),
    Figure("speed", "README.md", readme_speed),
    Figure("speed-phases-runs", "README.md", readme_speed_phases_runs, block=False),
    Figure("speed-phases", "README.md", readme_speed_phases, block=False),
    Figure("speed-switch-gap", "README.md", readme_speed_switch_gap, block=False),
    Figure("speed-lag", "README.md", readme_speed_lag, block=False),
    Figure("scale", "README.md", readme_scale),
    Figure("scale-deploy", "README.md", readme_scale_deploy, block=False),
    Figure("strategies", "README.md", readme_strategies),
    Figure("baselines", "README.md", readme_baselines, block=False),
    Figure("lease-takeover", "docs/controller.md", controller_takeover, block=False),
    Figure("wan-matrix", "docs/wan.md", wan_matrix),
    Figure("wan-set", "docs/wan.md", wan_set, block=False),
    Figure("wan-accuracy", "docs/wan.md", wan_accuracy),
    Figure("wan-throughput", "docs/wan.md", wan_throughput),
    Figure("wan-udp", "docs/wan.md", wan_udp),
    Figure("wan-idle", "docs/wan.md", wan_idle, block=False),
)


@dataclass(frozen=True)
class Phrases:
    """Figures quoted in prose, checked rather than generated: each phrase rendered from the
    file must appear in the document (line breaks and indentation do not count)."""

    name: str
    doc: str
    render: Callable[[Sources], list[str]]


PHRASES: tuple[Phrases, ...] = (
    Phrases("readme-commands", "README.md", readme_commands),
    Phrases("wan-prose", "docs/wan.md", wan_prose),
)


def flat_text(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def markers(name: str) -> re.Pattern[str]:
    return re.compile(rf"(<!-- figures:{re.escape(name)} begin -->)(.*?)"
                      rf"(<!-- figures:{re.escape(name)} end -->)", re.S)


def rendered(fig: Figure, src: Sources) -> str:
    text = fig.render(src)
    return f"\n{text}\n" if fig.block else text


# A path under results/ named in a document (stops at a quote, space or closing bracket).
CITED = re.compile(r"results/[\w.\-/]*[\w\-]")


def cited_files(doc_text: str) -> set[str]:
    return set(CITED.findall(doc_text))


def orphan_plots(src: Sources) -> list[str]:
    """A bench's timeline-STRATEGY.png with no run of STRATEGY in its folder's runs.json (a plot
    left by an older bench, with nothing behind it)."""
    problems: list[str] = []
    for plot in sorted((src.root / "results").glob("*/timeline-*.png")):
        runs = (plot.parent / "runs.json").relative_to(src.root).as_posix()
        strategy = plot.stem.removeprefix("timeline-")
        have = ({r.get("strategy") for r in src.json(runs).get("runs", [])}
                if (src.root / runs).exists() else set())
        if strategy not in have:
            rel = plot.relative_to(src.root).as_posix()
            problems.append(f"{rel}: no {strategy} run in {runs}")
    return problems


def first_difference(have: str, want: str, context: int = 30) -> str:
    """Where the document's text first departs from the file's: 'doc "…" vs file "…"'."""
    i = next((k for k, (a, b) in enumerate(zip(have, want, strict=False)) if a != b),
             min(len(have), len(want)))
    lo = max(0, i - context)
    return (f"doc {have[lo:i + context]!r} vs file {want[lo:i + context]!r}")


def documents(root: Path) -> list[str]:
    """README.md and docs/*.md: the documents whose cited files must exist."""
    return ["README.md", *(f"docs/{p.name}" for p in sorted((root / "docs").glob("*.md")))]


def check(root: Path = ROOT) -> list[str]:
    """Each problem, one line each: a figure that differs from its file, a cited file that is
    missing, markers that are missing. Empty when every figure agrees with its file."""
    src = Sources(root)
    docs = documents(root)
    problems: list[str] = []
    texts: dict[str, str] = {}
    for doc in docs:
        p = root / doc
        if p.exists():
            texts[doc] = p.read_text()
    for doc, text in texts.items():
        problems += [f"{doc}: cited file missing: {c}" for c in sorted(cited_files(text))
                     if not (root / c).exists()]
    problems += orphan_plots(src)
    for fig in FIGURES:
        doc_text = texts.get(fig.doc)
        if doc_text is None:
            problems.append(f"{fig.name}: document missing: {fig.doc}")
            continue
        found = markers(fig.name).findall(doc_text)
        if len(found) != 1:
            problems.append(f"{fig.name} ({fig.doc}): expected one pair of markers "
                            f"'<!-- figures:{fig.name} begin/end -->', found {len(found)}")
            continue
        try:
            want = rendered(fig, src)
        except MissingFileError as e:
            problems.append(f"{fig.name} ({fig.doc}): {e}")
            continue
        if found[0][1] != want:
            problems.append(f"{fig.name} ({fig.doc}): differs from its results file "
                            f"({first_difference(found[0][1], want)}); "
                            "run python scripts/figures.py --write")
    for ph in PHRASES:
        doc_text = texts.get(ph.doc)
        if doc_text is None:
            problems.append(f"{ph.name}: document missing: {ph.doc}")
            continue
        try:
            wanted = ph.render(src)
        except MissingFileError as e:
            problems.append(f"{ph.name} ({ph.doc}): {e}")
            continue
        flat = flat_text(doc_text)
        problems += [f"{ph.name} ({ph.doc}): not as its results file says: '{w}'"
                     for w in wanted if w not in flat]
    return problems


def write(root: Path = ROOT) -> list[str]:
    """Regenerates every figure in place; returns the documents changed."""
    src = Sources(root)
    changed: list[str] = []
    for doc in dict.fromkeys(f.doc for f in FIGURES):
        p = root / doc
        text = p.read_text()
        new = text
        for fig in (f for f in FIGURES if f.doc == doc):
            body = rendered(fig, src)

            def put(m: re.Match[str], body: str = body) -> str:
                return m.group(1) + body + m.group(3)

            new, n = markers(fig.name).subn(put, new)
            if n != 1:
                raise SystemExit(f"{fig.name} ({doc}): expected one pair of markers, found {n}")
        if new != text:
            p.write_text(new)
            changed.append(doc)
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = ap.add_mutually_exclusive_group(required=True)
    group.add_argument("--check", action="store_true", help="exit 1 if a figure has drifted")
    group.add_argument("--write", action="store_true", help="regenerate the figures in place")
    ap.add_argument("--root", type=Path, default=ROOT, help="repository root")
    args = ap.parse_args(argv)
    if args.write:
        for doc in write(args.root):
            print(f"wrote {doc}")
        return 0
    problems = check(args.root)
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

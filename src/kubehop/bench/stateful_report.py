"""The stateful scenario's files: its runs as JSON, a markdown summary with a row per (mode,
WAN, size) and every run, and the freeze plot.

The summary and the targets are recomputed from the runs (:func:`kubehop.bench.stateful.tables`)
each time, so a results file an older bench wrote reads by today's rules: its "p99" over three
runs shows as the max it is, and what it did not record (the mode) shows as an em dash.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

from kubehop.bench import stateful
from kubehop.bench.report import UNRECORDED, cpus, pyplot, wan_line, write_results
from kubehop.bench.stats import common_tail, tail_of
from kubehop.testbed import layout


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _mb(value: float) -> str:
    return f"{value / 1e6:.4g}" if value >= 1e5 else f"{value / 1e3:.3g} kB"


def _or_unrecorded(value: Any) -> str:
    return UNRECORDED if value is None else str(value)


def p50_tail(summary: dict[str, Any], digits: int) -> str:
    """A spread's p50 and tail as one cell: "835 / max 947" (p99 over >= 100 runs)."""
    label, top = tail_of(summary)
    if summary.get("p50") is None or top is None:
        return "-"
    return f"{summary['p50']:.{digits}f} / {label} {top:.{digits}f}"


def _passes_retried(value: dict[str, int] | None) -> str:
    if value is None:
        return UNRECORDED
    runs = value["runs"]
    return f"{value['attempts']}" + (f" (in {runs} run{'s' if runs > 1 else ''})" if runs
                                     else "")


def _verdict(met: bool | None) -> str:
    if met is None:
        return ("**undecided** (the max is over the target and the p50 within it: a p99 "
                "needs 100 runs)")
    return "**met**" if met else "**NOT met**"


def markdown(data: dict[str, Any], command: str) -> str:
    """The stateful scenario's summary: a row per (mode, WAN, size), the issue's targets,
    every run."""
    derived = stateful.tables(data["runs"], data.get("wan"))
    lines = [
        "# kubehop bench: stateful migration", "",
        f"Command: `{command}`  ",
        f"Machine: {platform.node()} {platform.machine()}, {cpus()} cores, Linux "
        f"{platform.release()}; Kubernetes v{layout.KUBERNETES_VERSION}.  ",
        wan_line(data.get("wan")), "",
        "orc8r (2 replicas, one SQLite database on PVC orc8r-state, freeze/thaw hooks) moved "
        "edge <-> cloud, alternating, while agw checks in every 10 ms; the volume holds a "
        "padding file of the given size (MB = 10^6 bytes) of random bytes. Each run first "
        "deletes the state PVC a previous move left in its target, so the first pass copies "
        "the whole volume. A row per mode (the data engine that moved the volume), WAN and "
        "size, as the runs recorded them.", "",
        "| mode | WAN | size (MB) | runs ok / n | total p50 / tail (s) | clients on target p50 "
        "(s) | freeze p50 / tail (ms) | agw retried | longest gap, max (ms) | data passes "
        "retried | acknowledged writes lost | agw failed | precopy p50 (s) | verify p50 (s) | "
        "MB per pass (median) | first pass p50 (MB/s) | link rate (MB/s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [_row(r) for r in derived["summary"]]
    lines += ["", *_target_lines(derived["targets"]), "", *_definitions(), "",
              "| mode | WAN | size (MB) | run | move | total (s) | on target (s) | precopy (s) | "
              "freeze (ms) | verify (s) | passes: MB in s | first pass (MB/s) | agw failed | "
              "agw retried | longest gap (ms) | passes retried | acked | lost | error |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    keys = stateful.row_keys(data["runs"], stateful.wan_name(data.get("wan")))
    lines += [_run_row(run, key) for run, key in zip(data["runs"], keys, strict=True)]
    return "\n".join(lines) + "\n"


def _definitions() -> list[str]:
    return [
        "Cells: p50 and tail over the runs that succeeded (numpy's linear interpolation); the "
        "tail is the p99 when a row has at least 100 such runs, else the largest value, called "
        "max. Counted over every run: agw retried (requests agw sent again after a 503 while "
        "orc8r was frozen), acknowledged writes lost (check-ins agw saw acknowledged during "
        "the run that are not in orc8r's database afterwards), agw failed; longest gap: the "
        "longest time "
        "between two successful check-ins, the max over the runs; data passes retried: first "
        "pass attempts that failed and were retried (the migration report's failed_attempts; "
        "one may have moved data). "
        f"{UNRECORDED}: not recorded in this file (an older bench); -: no value."]


def _target_lines(targets: list[dict[str, Any]]) -> list[str]:
    """The issue's targets, one sentence per mode that ran 100 MB."""
    if not targets:
        return [f"The issue's targets are stated at {stateful.TARGET_SIZE_MB} MB on the flat "
                "bridge: not run here."]
    lines = []
    for t in targets:
        where = ("these runs crossed the flat bridge" if t["flat"] else
                 f"these runs crossed the {t['wan'] or 'unrecorded'} WAN, so the comparison "
                 "is indicative only")
        lines.append(
            f"The issue's targets, mode {t['mode'] or UNRECORDED}, at {t['size_mb']} MB on the "
            f"flat bridge ({where}): freeze <= {t['freeze_p99_ms']:g} ms at p99: "
            f"{_verdict(t['freeze_met'])}; total <= {t['total_s']:g} s at p99: "
            f"{_verdict(t['total_met'])}. Checked on the {t['tail']} of {t['n']} runs: met "
            "means that tail is within the target (a max within it holds the p99 too), every "
            "run succeeded and no acknowledged write was lost.")
    return lines


def _row(r: dict[str, Any]) -> str:
    """One (mode, WAN, size) row of the summary table."""
    rate = r["link_rate_mbps"]
    lost = f"{r['lost']}" + (f" ({r['lost_unknown']} runs unknown)" if r["lost_unknown"]
                             else "")
    return (
        f"| {_or_unrecorded(r['mode'])} | {_or_unrecorded(r['wan'])} | {r['size_mb']} | "
        f"{r['ok']}/{r['runs']} | {p50_tail(r['total_s'], 2)} | "
        f"{_num(r['to_target_s']['p50'], 2)} | {p50_tail(r['freeze_ms'], 0)} | "
        f"{_or_unrecorded(r['agw_retried'])} | {_num(r['longest_gap_ms'], 0)} | "
        f"{_passes_retried(r['passes_retried'])} | {lost} | {r['agw_failed']} | "
        f"{_num(r['precopy_s']['p50'], 2)} | {_num(r['verify_s']['p50'], 2)} | "
        f"{' + '.join(_mb(b) for b in r['pass_bytes']) or '-'} | "
        f"{_num(r['throughput_mbps']['p50'], 1)} | "
        f"{'unlimited' if rate is None else f'{rate:g}'} |")


def _run_row(run: dict[str, Any], key: tuple[str | None, str | None, int]) -> str:
    """One run's row; a first pass that an earlier, retried attempt cut short is said in its
    note, since its throughput is left out of the figures."""
    passes = ", ".join(f"{_mb(p['bytes'])} in {p['seconds']:.2f}"
                       + (" (final)" if p["final"] else "") for p in run["passes"])
    freeze = None if run["freeze_s"] is None else run["freeze_s"] * 1000
    note = " ".join(run["error"].replace("|", "/").split())
    if stateful.first_pass_partial(run["passes"], run.get("bytes")):
        note = (f"first pass sent {_mb(run['passes'][0]['bytes'])} of "
                f"{_mb(run['bytes'])} MB: an earlier, retried attempt moved the rest and is "
                "not in the figures (throughput left out) " + note).strip()
    retried = run.get("failed_attempts")
    return (
        f"| {_or_unrecorded(run.get('mode'))} | {_or_unrecorded(key[1])} | {run['size_mb']} | "
        f"{run['index'] + 1} | {run['source']} -> {run['target']} | "
        f"{_num(run['total_s'], 2)} | {_num(run['to_target_s'], 2)} | "
        f"{_num(run['precopy_s'], 2)} | {_num(freeze, 0)} | {_num(run['verify_s'], 2)} | "
        f"{passes or '-'} | {_num(run['first_pass_mbps'], 1)} | "
        f"{_or_unrecorded(run.get('agw_failed'))} | {_or_unrecorded(run.get('agw_retried'))} | "
        f"{_num(run.get('longest_gap_ms'), 0)} | "
        f"{UNRECORDED if retried is None else len(retried)} | "
        f"{_or_unrecorded(run.get('acked'))} | {_or_unrecorded(run.get('lost'))} | {note} |")


def freeze_png(data: dict[str, Any], path: Path) -> None:
    """Freeze (ms) and total time (s) per row: p50 bars, tail ticks (p99 or max, as the runs
    allow), the targets as lines."""
    rows = stateful.tables(data["runs"], data.get("wan"))["summary"]
    several = len({(r["mode"], r["wan"]) for r in rows}) > 1
    labels = [f"{r['size_mb']} MB" + (f"\n{r['mode'] or '?'}, {r['wan'] or '?'}" if several
                                       else "") for r in rows]
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, key, unit, target in (
            (axes[0], "freeze_ms", "ms", stateful.TARGET_FREEZE_P99_MS),
            (axes[1], "total_s", "s", stateful.TARGET_TOTAL_S)):
        p50 = [r[key]["p50"] or 0 for r in rows]
        tops = [tail_of(r[key])[1] or 0 for r in rows]
        ax.bar(labels, p50, color="tab:blue", width=0.5, label="p50")
        ax.scatter(labels, tops, color="black", marker="_", s=300, zorder=3,
                   label=common_tail(r[key] for r in rows))
        ax.axhline(target, color="tab:red", linestyle="--", linewidth=1,
                   label=f"target at {stateful.TARGET_SIZE_MB} MB (flat): {target:g} {unit}")
        ax.set_ylim(0, max([target, *p50, *tops]) * 1.4)  # room for the legend
        ax.set_ylabel(unit)
        ax.set_title(("freeze (writes held)" if key == "freeze_ms" else "total migration time"),
                     fontsize=10)
        ax.legend(fontsize=7, loc="upper left")
    profile = ((data.get("wan") or {}).get("profile") or {}).get("name", "?")
    fig.suptitle(f"kubehop stateful migration by volume size (WAN {profile})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(data: dict[str, Any], out: Path, command: str) -> list[Path]:
    return write_results(data, out, command, markdown=markdown, plot=freeze_png,
                         plot_name="freeze.png")

"""The benchmark's files: every run as JSON, a markdown summary, and PNG plots.

matplotlib is in the ``kubehop[bench]`` extra, not in kubehop's own dependencies: it is imported
here only when plotting (:func:`pyplot`), so the rest of kubehop works without it.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubehop.bench import controller
from kubehop.bench.stats import tail_of
from kubehop.errors import PreconditionError
from kubehop.testbed import layout

COLORS = {"endpoints": "tab:green", "externalname": "tab:blue", "paper": "tab:orange",
          "naive": "tab:red"}
UNRECORDED = "\u2014"
"""A figure the results file does not have (written by an older bench): an em dash, apart
from "-" (measured, but there was nothing: no switch phase, no answer)."""


def pyplot() -> Any:
    """matplotlib's pyplot (drawing to files only), or a one-line error saying how to get it.
    Called before the benchmark starts, so a missing matplotlib fails in a second, not after
    the runs."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise PreconditionError("kubehop bench draws its plots with matplotlib, which is not "
                                "installed; install it with: pip install 'kubehop[bench]'"
                                ) from exc
    return plt


def _cell(pair: list[float | None] | tuple[float | None, float | None], digits: int = 2) -> str:
    med, top = pair
    if med is None or top is None:
        return "-"
    return f"{med:.{digits}f} / {top:.{digits}f}"


def wan_line(wan: dict[str, Any] | None) -> str:
    """The WAN the runs crossed: each link's one-way delay, rate and the RTT measured before."""
    if not wan:
        return "WAN: not recorded.  "
    links = [f"{x['a']}<->{x['b']} {x['delay']} one way, {x['rate']}, RTT measured "
             + "/".join(f"{v:.1f}" if v is not None else "?" for v in x["measured_rtt_ms"].values())
             + " ms" for x in wan["links"]]
    return f"WAN profile {wan['profile']['name']}: " + "; ".join(links) + ".  "


def _num_or_dash(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _failed_cell(row: dict[str, Any]) -> str:
    """Failed requests; marked as a lower bound when some run's window hit its cap with agw
    still failing."""
    cell = _cell(row["failed_requests"], 0)
    unended = row.get("outage_unended") or 0
    return cell if not unended or cell == "-" else f"{cell} (>=; {unended} still failing)"


def _latency_cells(row: dict[str, Any]) -> tuple[str, str]:
    """agw's latency tail during the migration (median / max over the runs) and before → after
    (medians), each cell saying its label (p99 or max); em dashes for an older file's row."""
    label = row.get("latency_tail")
    if label is None:
        return UNRECORDED, UNRECORDED
    before, after = row.get("latency_before_ms"), row.get("latency_after_ms")
    during = _cell(row.get("latency_during_ms") or (None, None), 1)
    around = ("-" if before is None and after is None else
              f"{_num_or_dash(before, 1)} → {_num_or_dash(after, 1)}")
    return f"{label} {during}", f"{label} {around}"


def _window_note(data: dict[str, Any]) -> str:
    w = data.get("window")
    if not w:
        return ""
    return (f"Each run's window of agw's record starts {w['before_s']:g} s before the migration "
            f"and ends {w['quiet_s']:g} s after the last failure (once agw has answered "
            f"successfully that long), at least {w['after_min_s']:g} s and at most DNS TTL "
            f"{w['dns_ttl_s']:g} + {w['cap_after_ttl_s']:g} s after the migration: failure "
            "counts are complete unless marked >=. agw latency: each run's tail of its "
            "answers' latency in a window (p99 when every window of the row held at least 100 "
            "answers, else max; the cell says which), during the migration median / max over "
            f"the runs; before → after: the {w['before_s']:g} s before the migration and the "
            f"{w['after_min_s']:g} s after it (medians over the runs). drain: the engine's drain "
            "phase (0 if the plan has none).")


def _ingress_lines(data: dict[str, Any]) -> list[str]:
    rows = [r for r in data["summary"] if r.get("ingress")]
    if not rows:
        return []
    profile = ((data.get("wan") or {}).get("profile") or {}).get("name", "?")
    lines = ["", "Ingress overhead (direct pod vs through the target's Traefik):", "",
             f"After each run of kubehop's strategies (orc8r in cloud, edge's Service aliased to"
             f" cloud's load balancer), {data.get('ingress_calls', '?')} alternating calls from "
             "the host, each on a new connection: GET /readyz straight to one orc8r pod "
             "(IP:8080; the host routes every cluster's pod network via its node) and through "
             "cloud's load balancer (port 80) with Host orc8r.orc8r-ns.svc.cluster.local, the "
             "alias's last hop. Medians over the runs of each run's p50 and tail (p99 over at "
             "least 100 answered calls, else max: the cell says which). Target: at most 1 ms "
             "p50 and 5 ms p99 over the direct call on the flat bridge (WAN profile here: "
             f"{profile}).", "",
             "| strategy | runs (n) | direct p50 / tail (ms) | through Traefik p50 / tail (ms) "
             "| overhead p50 / tail (ms) | within 1 / 5 ms |",
             "|---|---|---|---|---|---|"]
    return lines + [_ingress_row(row) for row in rows]


def _ingress_row(row: dict[str, Any]) -> str:
    """One strategy's ingress figures; its tail cells em dashes for an older file's row (which
    did not record how many calls each percentile was over)."""
    ing = row["ingress"]
    label = ing.get("tail") or "-"

    def pair(key: str) -> str:
        d = ing[key]
        if label == "-":
            return f"{_num_or_dash(d.get('p50'), 2)} / {UNRECORDED}"
        return f"{_num_or_dash(d.get('p50'), 2)} / {label} {_num_or_dash(d.get(label), 2)}"

    o = ing["overhead_ms"]
    p50, top = o.get("p50"), o.get(label)
    met = "-" if p50 is None or top is None else ("yes" if p50 <= 1 and top <= 5 else "no")
    if met == "no" and label == "max" and p50 <= 1:
        met = f"unknown (max {top:.2f}: too few calls for a p99)"
    return (f"| {row['strategy']} | {ing['runs']} | {pair('direct_ms')} | {pair('alias_ms')} | "
            f"{pair('overhead_ms')} | {met} |")


def _scale_lines(scales: list[dict[str, Any]]) -> list[str]:
    """One row per count: total, failures, the slowest phase, each phase's median / max."""
    names: list[str] = []
    for sc in scales:
        names += [n for n in (sc.get("phases") or {}) if n not in names]
    lines = ["", "Independent services migrated at once (edge -> cloud, endpoints); phases: "
             "median / max (s) over the migrations; slowest phase: the largest median:", "",
             "| services (n) | total time (s) | failed migrations | slowest phase | "
             + " | ".join(names) + (" |" if names else "|"),
             "|---|---|---|---|" + "---|" * len(names)]
    for sc in scales:
        phases = sc.get("phases") or {}
        cells = [f"{phases[n]['median']:.2f} / {phases[n]['max']:.2f}" if n in phases else "-"
                 for n in names]
        lines.append(f"| {sc['services']} | {sc['total_s']:.2f} | {sc['failed']} | "
                     f"{sc.get('slowest_phase') or '-'} | " + " | ".join(cells)
                     + (" |" if cells else "|"))
    return lines


def summary_markdown(data: dict[str, Any], command: str) -> str:
    interval = float(data.get("interval_ms", 10))
    lines = [
        "# kubehop bench",
        "",
        f"Command: `{command}`  ",
        f"Machine: {platform.node()} {platform.machine()}, {cpus()} cores, Linux "
        f"{platform.release()}; Kubernetes v{layout.KUBERNETES_VERSION}, Traefik "
        f"{layout.TRAEFIK_VERSION}, CoreDNS {layout.COREDNS_VERSION}.  ",
        wan_line(data.get("wan")),
        f"agw calls orc8r every {interval:g} ms (open loop); each cell is median / max over "
        "the runs: failed requests and gaps over all n runs, times and latency over the ok "
        f"ones; {UNRECORDED}: not recorded in this file.",
        "",
        "| strategy | ok / n | failed requests | longest gap (ms) | longest gap in the switch (ms)"
        " | total time (s) | drain (s) | clients on target after (s) | agw latency during (ms) | "
        "agw latency before → after (ms) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in data["summary"]:
        during, around = _latency_cells(row)
        lines.append(
            f"| {row['strategy']} | {row['completed']}/{row['runs']} | "
            f"{_failed_cell(row)} | {_cell(row['longest_gap_ms'], 0)} | "
            f"{_cell(row.get('switch_gap_ms') or (None, None), 0)} | "
            f"{_cell(row['total_s'])} | {_cell(row.get('drain_s') or (None, None))} | "
            f"{_cell(row['to_target_s'])} | {during} | {around} |")
    note = _window_note(data)
    if note:
        lines += ["", note]
    lines += _ingress_lines(data)
    if data.get("scale"):
        lines += _scale_lines(data["scale"])
    return "\n".join(lines) + "\n"


def cpus() -> int:
    return sum(1 for line in Path("/proc/cpuinfo").read_text().splitlines()
               if line.startswith("processor"))


def timeline_png(run: dict[str, Any], path: Path) -> None:
    """agw's requests around one migration: latency of each success, failures marked, the
    migration's phases shaded."""
    t0 = run["start"]
    ok = [(r[0] - t0, r[1] * 1000) for r in run["samples"] if r[2]]
    bad = [r[0] - t0 for r in run["samples"] if not r[2]]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(10, 4))
    for i, phase in enumerate(run["phases"]):
        ax.axvspan(float(phase["start"]) - t0, float(phase["end"]) - t0,
                   color=f"C{i % 10}", alpha=0.15)
        ax.text((float(phase["start"]) + float(phase["end"])) / 2 - t0, 1, str(phase["name"]),
                rotation=90, fontsize=7, va="bottom", ha="center",
                transform=ax.get_xaxis_transform(), clip_on=False)
    if ok:
        ax.scatter([x for x, _ in ok], [y for _, y in ok], s=2, color="tab:green",
                   label="answered (latency)")
    if bad:
        ax.scatter(bad, [0.5] * len(bad), s=8, marker="x", color="tab:red",
                   label=f"failed ({len(bad)})")
    ax.set_yscale("log")
    ax.set_xlabel("seconds from migration start")
    ax.set_ylabel("latency (ms)")
    ax.set_title(f"{run['strategy']}: agw requests during the migration "
                 f"(failed {run['failed']}, longest gap {run['longest_gap_ms']} ms)")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def comparison_png(data: dict[str, Any], path: Path) -> None:
    rows = data["summary"]
    names = [r["strategy"] for r in rows]
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
    metrics = (("failed_requests", "failed requests"), ("longest_gap_ms", "longest gap (ms)"),
               ("total_s", "total migration time (s)"))
    for ax, (key, label) in zip(axes, metrics, strict=True):
        med = [(r[key][0] or 0) for r in rows]
        top = [(r[key][1] or 0) for r in rows]
        ax.bar(names, med, color=[COLORS.get(n, "gray") for n in names], label="median")
        ax.scatter(names, top, color="black", marker="_", s=200, label="max", zorder=3)
        ax.set_title(label, fontsize=10)
        ax.tick_params(axis="x", labelsize=8)
        if key != "total_s":
            ax.set_yscale("symlog")
    axes[0].legend(fontsize=8)
    fig.suptitle("kubehop strategies vs baselines (median bars, max ticks)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(data: dict[str, Any], out: Path, command: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    files = [out / "runs.json", out / "summary.md", out / "comparison.png"]
    (out / "runs.json").write_text(json.dumps(data, indent=1))
    (out / "summary.md").write_text(summary_markdown(data, command))
    comparison_png(data, out / "comparison.png")
    seen = set()
    for run in data["runs"]:
        if run["strategy"] not in seen:
            seen.add(run["strategy"])
            path = out / f"timeline-{run['strategy']}.png"
            timeline_png(run, path)
            files.append(path)
    return files


# -- the controller scenario ---------------------------------------------------------------

def _s(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _clock(at: float | None) -> str:
    if at is None:
        return "-"
    return time.strftime("%H:%M:%S", time.localtime(at)) + f".{int(at * 1000) % 1000:03d}"


def _tail_s(summary: dict[str, Any], digits: int = 3) -> str:
    """A spread's tail as its cell says it: "p99 1.391" or "max 1.210"."""
    label, value = tail_of(summary)
    return "-" if value is None else f"{label} {value:.{digits}f}"


def controller_summary(data: dict[str, Any]) -> dict[str, Any]:
    """The summary recomputed from the runs (so an older file's summary, with a p99 over ten
    runs, is read by today's rule too)."""
    return controller.summarize(data["runs"], cycle_s=float(data["cycle_interval_s"]),
                                scrape_s=float(data["scrape_interval_s"]))


def controller_markdown(data: dict[str, Any], command: str) -> str:
    """The controller scenario's summary: the figures, how they were measured, every run."""
    s = controller_summary(data)
    r = s["reaction_s"]
    lines = [
        "# kubehop bench: controller reaction time",
        "",
        f"Command: `{command}`  ",
        f"Machine: {platform.node()} {platform.machine()}, {cpus()} cores, Linux "
        f"{platform.release()}; Kubernetes v{layout.KUBERNETES_VERSION}.  ",
        wan_line(data.get("wan")),
        "",
        f"Reaction time: from the first Prometheus sample of the rule's expression over "
        f"{data['rule']['above']} to the created time of the migration's journal row (the "
        "engine writes it after its discovery reads and before its first change). Rule "
        f"`{data['rule']['name']}` on {data['rule']['cluster']}: `{data['rule']['expr']}` "
        f"above {data['rule']['above']} for 0s; CPU stress of {data['stress_cpu_millis']}m on "
        "edge. Each run starts a fresh controller process on an empty store.",
        "",
        f"Controller cycle interval {data['cycle_interval_s']:g} s; Prometheus scrape interval "
        f"{data['scrape_interval_s']:g} s (job {data['scrape_job']}). Target: p99 <= cycle + "
        f"scrape = {s['target_s']:g} s, checked on the reaction's {s['target_tail']}: "
        f"**{'met' if s['target_met'] else 'NOT met'}**.",
        "",
        "| runs verified / n | p50 (s) | p90 (s) | tail (s) | mean (s) | stress -> row p50 / "
        "tail (s) | migration p50 / tail (s) | agw failed requests |",
        "|---|---|---|---|---|---|---|---|",
        f"| {s['verified']}/{s['runs']} | {_s(r['p50'])} | {_s(r.get('p90'))} | {_tail_s(r)} | "
        f"{_s(r['mean'])} | {_s(s['from_stress_s']['p50'], 2)} / "
        f"{_tail_s(s['from_stress_s'], 2)} | {_s(s['migration_s']['p50'], 2)} / "
        f"{_tail_s(s['migration_s'], 2)} | {s['agw_failed']} |",
        "",
        f"Over the {s['verified']} verified runs (numpy's linear interpolation): p90 needs at "
        "least 10 runs and p99 at least 100 (- : too few); the tail column is the p99, or the "
        "largest value, called max, with fewer runs.",
        "",
        "| run | first sample over | journal row | reaction (s) | stress -> row (s) | "
        "decision cycle start -> row (s) | measured cycle (s) | target | migration (s) | "
        "agw failed | note |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in data["runs"]:
        note = run["error"] or ("" if run["verified"] else
                                "first sample over is not the stress pod's first")
        fails = run.get("agw_failures") or []
        if fails:
            when = [float(f[0]) for f in fails]
            steps = ", ".join(f"{st[0]} {st[2]:.1f}" for st in run.get("steps") or []
                              if st[2] is not None)
            note += (f" agw failed {min(when):+.1f} to {max(when):+.1f} s from the journal row"
                     f" ({', '.join(sorted({str(f[1]) for f in fails}))}); steps start at: "
                     f"{steps}").strip()
        lines.append(
            f"| {run['index'] + 1} | {_clock(run['first_over'])} | {_clock(run['created'])} | "
            f"{_s(run['reaction_s'])} | {_s(run['from_stress_s'])} | "
            f"{_s(run['decision_to_row_s'])} | {_s(run['cycle_period_s'])} | "
            f"{run['target'] or '-'} | {_s(run['migration_s'], 2)} | "
            f"{'-' if run['agw_failed'] is None else run['agw_failed']} | {note} |")
    return "\n".join(lines) + "\n"


def reaction_png(data: dict[str, Any], path: Path) -> None:
    """Reaction per run (from the sample over the threshold), on top of the time from the
    stress start, with p50, the tail (p99 or max, as the runs allow) and the target as lines."""
    runs = [r for r in data["runs"] if r["reaction_s"] is not None]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 4))
    xs = [r["index"] + 1 for r in runs]
    ax.bar(xs, [r["from_stress_s"] for r in runs], color="tab:gray", alpha=0.35,
           label="from the stress start (adds the wait for a scrape)")
    ax.bar(xs, [r["reaction_s"] for r in runs], color="tab:blue",
           label="reaction: sample over threshold -> journal row")
    s = controller_summary(data)
    tail_label, tail_value = tail_of(s["reaction_s"])
    for key, value, style in (("p50", s["reaction_s"]["p50"], ":"),
                              (tail_label, tail_value, "--")):
        if value is not None:
            ax.axhline(value, color="tab:blue", linestyle=style, linewidth=1,
                       label=f"reaction {key} {value:.3f} s")
    ax.axhline(s["target_s"], color="tab:red", linewidth=1,
               label=f"target: cycle + scrape = {s['target_s']:g} s")
    top = max([s["target_s"], *(r["from_stress_s"] or 0 for r in runs)])
    ax.set_ylim(0, top * 1.45)  # room above the bars and the target for the legend
    ax.set_xticks(xs)
    ax.set_xlabel("run")
    ax.set_ylabel("seconds")
    ax.set_title(f"controller reaction time (cycle {data['cycle_interval_s']:g} s, scrape "
                 f"{data['scrape_interval_s']:g} s)")
    ax.legend(fontsize=7, loc="upper left", ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_results(data: dict[str, Any], out: Path, command: str, *,
                  markdown: Callable[[dict[str, Any], str], str],
                  plot: Callable[[dict[str, Any], Path], None], plot_name: str) -> list[Path]:
    """A scenario's three files: runs.json (with the command that made it), summary.md and
    its plot; the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    data = {**data, "command": command}
    files = [out / "runs.json", out / "summary.md", out / plot_name]
    files[0].write_text(json.dumps(data, indent=1))
    files[1].write_text(markdown(data, command))
    plot(data, files[2])
    return files


def write_controller(data: dict[str, Any], out: Path, command: str) -> list[Path]:
    return write_results(data, out, command, markdown=controller_markdown, plot=reaction_png,
                         plot_name="reaction.png")

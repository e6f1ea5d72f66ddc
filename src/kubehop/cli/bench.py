"""``kubehop bench``: downtime and migration time of each strategy, side by side, on the testbed;
with ``--scenario controller``, the placement controller's reaction time; with ``--scenario
stateful``, moving a service with its volume data (freeze, total time, lost writes) by size."""

from __future__ import annotations

import shlex
import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from kubehop.errors import UsageError

err = Console(stderr=True, highlight=False, soft_wrap=True)
DEFAULT_STRATEGIES = "endpoints,externalname,paper,naive"
DEFAULT_SCALE = "1,16,64"
DEFAULT_SIZES = "10,100,1000"
STATEFUL_RUNS = 20
"""Runs per row of the stateful scenario: enough for a p95 (>= 20 samples; a p99 needs 100),
so its tail figures are not the max of three."""


class Scenario(StrEnum):
    strategies = "strategies"
    controller = "controller"
    stateful = "stateful"


def bench(
    scenario: Annotated[Scenario, typer.Option(
        help="strategies: migration strategies vs baselines; controller: the placement "
        "controller's reaction time; stateful: moving orc8r with its volume data.")]
        = Scenario.strategies,
    runs: Annotated[int | None, typer.Option(
        help="Runs per strategy (interleaved), or runs of the controller scenario (default "
        f"10), or runs per size of the stateful scenario (default {STATEFUL_RUNS}).")] = None,
    strategies: Annotated[str | None, typer.Option(
        help="Comma-separated: endpoints, externalname, paper, naive (default: all; "
        "strategies scenario only).")] = None,
    scale: Annotated[str | None, typer.Option(
        help=f"Numbers of services migrated at once; '' for none (default {DEFAULT_SCALE}; "
        "strategies scenario only).")] = None,
    sizes: Annotated[str | None, typer.Option(
        help=f"Volume sizes in MB (10^6 bytes), comma-separated (default {DEFAULT_SIZES}; "
        "stateful scenario only).")] = None,
    interval: Annotated[float, typer.Option(help="agw's request interval in ms (1-1000).")]
        = 10,
    quick: Annotated[bool, typer.Option("--quick", help="1 run per strategy, scale 1 (1 run "
                                        "of the controller scenario; 1 run of 10 MB of the "
                                        "stateful one).")] = False,
    out: Annotated[Path | None, typer.Option(
        help="Results folder (default results/bench, results/bench-controller or "
        "results/bench-stateful).")] = None,
    wan: Annotated[str | None, typer.Option(help="WAN profile to apply first: default, flat or "
                                            "a YAML file (default: leave the WAN as it is).")]
        = None,
) -> None:
    """Migrate orc8r edge -> cloud under agw's load with each strategy, or (--scenario
    controller) time the controller's reaction to an overloaded edge, or (--scenario stateful)
    move orc8r with its volume data back and forth by volume size; write JSON, a markdown
    summary and PNG plots under --out. Needs 'kubehop testbed up'."""
    _refuse_other_scenarios_options(scenario, strategies=strategies, scale=scale, sizes=sizes)
    if scenario == Scenario.controller:
        _controller(runs=1 if quick else (10 if runs is None else runs),
                    out=out or Path("results/bench-controller"), wan=wan, interval=interval)
        return
    if scenario == Scenario.stateful:
        _stateful(runs=1 if quick else (STATEFUL_RUNS if runs is None else runs),
                  sizes="10" if quick else (sizes or DEFAULT_SIZES),
                  out=out or Path("results/bench-stateful"), wan=wan, interval=interval)
        return
    _strategies(runs=10 if runs is None else runs, out=out or Path("results/bench"),
                strategies=DEFAULT_STRATEGIES if strategies is None else strategies,
                scale=DEFAULT_SCALE if scale is None else scale, interval=interval,
                quick=quick, wan=wan)


def _say(message: str) -> None:
    """Progress on stderr, timestamped: stdout carries only the markdown summary."""
    err.print(f"[{time.strftime('%H:%M:%S')}] {message}", markup=False)


def _command_line() -> str:
    """The command as typed, for the reports to say how they were made."""
    return "kubehop " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _refuse_other_scenarios_options(scenario: Scenario, *, strategies: str | None,
                                    scale: str | None, sizes: str | None) -> None:
    if scenario != Scenario.strategies and (strategies is not None or scale is not None):
        raise UsageError(f"--strategies and --scale are for --scenario strategies; drop "
                         f"them for --scenario {scenario}")
    if scenario != Scenario.stateful and sizes is not None:
        raise UsageError("--sizes is for --scenario stateful; drop it for --scenario "
                         f"{scenario}")


def _check_strategies_options(*, runs: int, strategies: str, scale: str,
                              interval: float) -> tuple[list[str], list[int]]:
    """The strategies and scale counts asked for, each refused with its fix before any run."""
    from kubehop.bench import runner

    chosen = [s.strip() for s in strategies.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in runner.STRATEGIES]
    if unknown or not chosen:
        raise UsageError(f"unknown strategy {unknown[0] if unknown else '(none)'}; choose from "
                         f"{', '.join(runner.STRATEGIES)}")
    if runs < 1:
        raise UsageError("--runs must be at least 1")
    if not 1 <= interval <= 1000:
        raise UsageError("--interval must be between 1 and 1000 ms")
    try:
        counts = [int(x) for x in scale.split(",") if x.strip()]
    except ValueError as exc:
        raise UsageError(f"--scale wants numbers like 1,16,64, not {scale!r}") from exc
    if any(not 1 <= n <= runner.MAX_SCALE for n in counts):
        raise UsageError(f"--scale counts must be 1 to {runner.MAX_SCALE} (edge's node holds "
                         f"{runner.MAX_SCALE + 10} pods), not {scale!r}")
    return chosen, counts


def _strategies(*, runs: int, out: Path, strategies: str, scale: str, interval: float,
                quick: bool, wan: str | None) -> None:
    """The strategies scenario: each strategy migrates orc8r edge -> cloud under agw's load."""
    from kubehop.bench import report, runner
    from kubehop.testbed import sample
    from kubehop.testbed import testbed as tb
    from kubehop.testbed import wan as testbed_wan

    chosen, counts = _check_strategies_options(runs=runs, strategies=strategies, scale=scale,
                                               interval=interval)
    report.pyplot()  # matplotlib is an extra: say so now, not after the runs
    if quick:
        runs, counts = 1, [1] if counts else []
    if not {"edge", "cloud"} <= set(tb.recorded_clusters()):
        raise UsageError("the benchmark needs a testbed with clusters edge and cloud; run "
                         "'kubehop testbed up'")
    names = tb.recorded_clusters()
    if wan is not None:
        _say("wan: " + testbed_wan.summary(testbed_wan.apply(testbed_wan.resolve(wan, names),
                                                              names)))
    wan_record = testbed_wan.report(names, count=5)  # configured and measured, before the load
    sample.deploy("edge", interval_ms=interval)
    data = runner.run_bench(runs=runs, strategies=chosen, scale=counts, out=out, say=_say,
                            interval_ms=interval)
    data["wan"] = wan_record
    command = _command_line()
    for path in report.write(data, out, command):
        _say(f"wrote {path}")
    sys.stdout.write(report.summary_markdown(data, command))


def _controller(*, runs: int, out: Path, wan: str | None, interval: float) -> None:
    from kubehop.bench import controller, report
    from kubehop.testbed import testbed as tb
    from kubehop.testbed import wan as testbed_wan

    if runs < 1:
        raise UsageError("--runs must be at least 1")
    if not 1 <= interval <= 1000:
        raise UsageError("--interval must be between 1 and 1000 ms")
    report.pyplot()  # matplotlib is an extra: say so now, not after the runs
    names = tb.recorded_clusters()
    if not {"edge", "fog", "cloud"} <= set(names):
        raise UsageError("the controller scenario needs a testbed with clusters edge, fog and "
                         "cloud; run 'kubehop testbed up --clusters edge,fog,cloud'")
    if wan is not None:
        _say("wan: " + testbed_wan.summary(testbed_wan.apply(testbed_wan.resolve(wan, names),
                                                              names)))
    wan_record = testbed_wan.report(names, count=5)
    data = controller.run_bench(runs=runs, interval_ms=interval, say=_say)
    data["wan"] = wan_record
    command = _command_line()
    for path in report.write_controller(data, out, command):
        _say(f"wrote {path}")
    sys.stdout.write(report.controller_markdown(data, command))


def _stateful(*, runs: int, sizes: str, out: Path, wan: str | None, interval: float) -> None:
    from kubehop.bench import report, stateful, stateful_report
    from kubehop.testbed import testbed as tb
    from kubehop.testbed import wan as testbed_wan

    if runs < 1:
        raise UsageError("--runs must be at least 1")
    if not 1 <= interval <= 1000:
        raise UsageError("--interval must be between 1 and 1000 ms")
    try:
        chosen = stateful.parse_sizes(sizes)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    report.pyplot()  # matplotlib is an extra: say so now, not after the runs
    names = tb.recorded_clusters()
    if not {"edge", "cloud"} <= set(names):
        raise UsageError("the stateful scenario needs a testbed with clusters edge and cloud; "
                         "run 'kubehop testbed up'")
    if wan is not None:
        _say("wan: " + testbed_wan.summary(testbed_wan.apply(testbed_wan.resolve(wan, names),
                                                              names)))
    wan_record = testbed_wan.report(names, count=3)
    data = stateful.run_bench(sizes=chosen, runs=runs, say=_say, interval_ms=interval,
                              wan=wan_record)
    data["wan"] = wan_record
    command = _command_line()
    for path in stateful_report.write(data, out, command):
        _say(f"wrote {path}")
    sys.stdout.write(stateful_report.markdown(data, command))

"""``kubehop bench``: downtime and migration time of each strategy, side by side, on the testbed."""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from kubehop.errors import UsageError

err = Console(stderr=True, highlight=False, soft_wrap=True)


def bench(
    runs: Annotated[int, typer.Option(help="Runs per strategy (interleaved).")] = 10,
    strategies: Annotated[str, typer.Option(help="Comma-separated: endpoints, externalname, "
                                            "paper, naive.")] =
        "endpoints,externalname,paper,naive",
    scale: Annotated[str, typer.Option(help="Numbers of services migrated at once; '' for "
                                       "none.")] = "1,4,16",
    interval: Annotated[float, typer.Option(help="agw's request interval in ms (1-1000).")]
        = 10,
    quick: Annotated[bool, typer.Option("--quick", help="1 run per strategy, scale 1.")] = False,
    out: Annotated[Path, typer.Option(help="Results folder.")] = Path("results/bench"),
    wan: Annotated[str | None, typer.Option(help="WAN profile to apply first: default, flat or "
                                            "a YAML file (default: leave the WAN as it is).")]
        = None,
) -> None:
    """Migrate orc8r edge -> cloud under agw's load with each strategy; write JSON, a markdown
    summary and PNG plots under --out. Needs 'kubehop testbed up'."""
    from kubehop.bench import report, runner
    from kubehop.testbed import sample
    from kubehop.testbed import testbed as tb
    from kubehop.testbed import wan as testbed_wan

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
        sizes = [int(x) for x in scale.split(",") if x.strip()]
    except ValueError as exc:
        raise UsageError(f"--scale wants numbers like 1,4,16, not {scale!r}") from exc
    report.pyplot()  # matplotlib is an extra: say so now, not after the runs
    if quick:
        runs, sizes = 1, [1] if sizes else []
    if not {"edge", "cloud"} <= set(tb.recorded_clusters()):
        raise UsageError("the benchmark needs a testbed with clusters edge and cloud; run "
                         "'kubehop testbed up'")

    def say(message: str) -> None:
        err.print(f"[{time.strftime('%H:%M:%S')}] {message}", markup=False)

    names = tb.recorded_clusters()
    if wan is not None:
        say("wan: " + testbed_wan.summary(testbed_wan.apply(testbed_wan.resolve(wan, names),
                                                             names)))
    wan_record = testbed_wan.report(names, count=5)  # configured and measured, before the load
    sample.deploy("edge", interval_ms=interval)
    data = runner.run_bench(runs=runs, strategies=chosen, scale=sizes, out=out, say=say)
    data["interval_ms"] = interval
    data["wan"] = wan_record
    command = "kubehop " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    for path in report.write(data, out, command):
        say(f"wrote {path}")
    sys.stdout.write(report.summary_markdown(data, command))

"""``kubehop testbed``: real Kubernetes clusters on this machine, for users without their own."""

from __future__ import annotations

import json
import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from kubehop.errors import UsageError
from kubehop.testbed import layout
from kubehop.testbed import testbed as tb

app = typer.Typer(
    help="Real multi-cluster Kubernetes testbed on this machine.", no_args_is_help=True
)
out = Console(highlight=False)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class Output(StrEnum):
    table = "table"
    json = "json"


class _Reporter:
    """Progress for a long ``up``: plain timestamped lines, so logs and terminals read the same.

    Build progress is printed at most every 15 s per component (a cold Kubernetes build takes
    minutes and must not look like a hang), with packages done/total, elapsed time and log path.
    """

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.last_build: dict[str, float] = {}

    def say(self, message: str) -> None:
        err.print(f"[{time.monotonic() - self.start:6.1f}s] {message}", markup=False)

    def build(self, component: str, done: int, total: int, elapsed: float, log: Path) -> None:
        now = time.monotonic()
        if done < total and now - self.last_build.get(component, 0.0) < 15:
            return
        self.last_build[component] = now
        pct = 100 * done // max(total, 1)
        self.say(
            f"building {component}: {done}/{total} packages ({pct}%), {elapsed:.0f}s "
            f"elapsed, log: {log}"
        )


def _names(clusters: str) -> tuple[str, ...]:
    try:
        return layout.parse_cluster_names(clusters)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


@app.command()
def up(
    clusters: Annotated[
        str, typer.Option(help="Comma-separated cluster names, e.g. edge,fog,cloud.")
    ] = ",".join(layout.DEFAULT_CLUSTERS),
) -> None:
    """Build (first time) and start the clusters; a healthy testbed is left as it is."""
    names = _names(clusters)
    rep = _Reporter()
    result = tb.up(names, say=rep.say, progress=rep.build)
    verb = "already up" if result.already_up else f"up in {result.seconds:.1f}s"
    rep.say(f"testbed {verb}: clusters {', '.join(result.clusters)}")
    out.print(f"kubeconfig: {result.kubeconfig}", markup=False)


@app.command()
def build(
    print_kubectl: Annotated[
        bool, typer.Option("--print-kubectl", help="Only print the built kubectl's path.")
    ] = False,
) -> None:
    """Build the upstream components now (up does it too); cached by version."""
    if print_kubectl:
        out.print(str(tb.kubectl_binary()), markup=False, soft_wrap=True)
        return
    rep = _Reporter()
    tb.build_all(rep.build)
    rep.say(f"components built and cached under {layout.cache_dir()}")


@app.command()
def down() -> None:
    """Stop and remove everything 'up' created (caches stay)."""
    rep = _Reporter()
    left = tb.down(say=rep.say)
    if left:
        err.print("error: could not remove: " + "; ".join(left[:5]), markup=False)
        raise typer.Exit(1)


@app.command()
def status(
    output: Annotated[Output, typer.Option("-o", "--output", help="table or json")] = Output.table,
) -> None:
    """Show the clusters, their addresses and whether each part runs. Exit 1 when unhealthy."""
    st = tb.status()
    if output is Output.json:
        sys.stdout.write(json.dumps(st.to_dict(), indent=2) + "\n")
    elif not st.up:
        out.print("testbed is down; start it with 'kubehop testbed up'", markup=False)
    else:
        table = Table(title="kubehop testbed")
        for col in ("cluster", "tier", "address / load balancer", "api", "node", "ingress",
                    "down parts"):
            table.add_column(col)
        for c in st.clusters:
            missing = [name for name, ok in c.processes.items() if not ok]
            table.add_row(c.name, c.tier, c.address, "ready" if c.api_ready else "DOWN",
                          "Ready" if c.node_ready else "NOT READY",
                          "ready" if c.ingress_ready else "DOWN", ", ".join(missing) or "-")
        out.print(table)
        states = ", ".join(f"{k} {'running' if v else 'DOWN'}" for k, v in st.services.items())
        out.print(f"host services: {states}", markup=False)
        out.print(f"registry: {st.registry}", markup=False)
        out.print(f"cloud DNS: zone {st.dns_zone} at {st.dns_server}, TSIG key file "
                  f"{st.tsig_key_file}", markup=False)
        out.print(f"prometheus: {st.prometheus}", markup=False)
        out.print(f"kubeconfig: {st.kubeconfig}", markup=False)
    if st.up and not st.healthy:
        raise typer.Exit(1)


@app.command("deploy-sample")
def deploy_sample(
    cluster: Annotated[str, typer.Option(help="Testbed cluster to deploy into.")] = "edge",
    interval_ms: Annotated[float, typer.Option(help="agw's check-in interval (ms).")] = 10,
) -> None:
    """(Re)deploy the sample orc8r (orc8r-ns) and agw (agw-ns) in one cluster, as in the
    paper's edge; an earlier sample is removed from every cluster first."""
    from kubehop.testbed import sample

    record = sample.deploy(cluster, interval_ms=interval_ms)
    out.print(f"orc8r and agw running in {cluster}; agw checks in every {interval_ms:g} ms "
              f"({record['ok']} ok, {record['failed']} failed in the last 1.5 s)", markup=False)


@app.command()
def kubeconfig() -> None:
    """Print the path of the kubeconfig with one context per cluster."""
    if not tb.recorded_clusters() or not tb.kubeconfig_file().exists():
        raise UsageError("the testbed is not up; start it with 'kubehop testbed up'")
    out.print(str(tb.kubeconfig_file()), markup=False, soft_wrap=True)


@app.command()
def inventory() -> None:
    """Print the testbed's cluster inventory (contexts, tiers, load-balancer addresses)."""
    if not tb.recorded_clusters():
        raise UsageError("the testbed is not up; start it with 'kubehop testbed up'")
    sys.stdout.write(tb.inventory_yaml())

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
    wan: Annotated[
        str | None, typer.Option(help="WAN profile: default, flat or a YAML file (default: "
                                 "'default' on a new testbed, unchanged on a running one).")
    ] = None,
) -> None:
    """Build (first time) and start the clusters; a healthy testbed is left as it is."""
    names = _names(clusters)
    rep = _Reporter()
    result = tb.up(names, say=rep.say, progress=rep.build, wan=wan)
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
        for col in ("cluster", "tier", "CPU", "memory", "address / load balancer", "api",
                    "node", "ingress", "storage", "down parts"):
            table.add_column(col)
        for c in st.clusters:
            missing = [name for name, ok in c.processes.items() if not ok]
            cpu = "?" if c.cpu_allocatable is None else f"{c.cpu_allocatable:g}"
            memory = ("?" if c.memory_allocatable is None
                      else f"{c.memory_allocatable / 2**30:.1f} GiB")
            table.add_row(c.name, c.tier, cpu, memory, c.address,
                          "ready" if c.api_ready else "DOWN",
                          "Ready" if c.node_ready else "NOT READY",
                          "ready" if c.ingress_ready else "DOWN",
                          "ready" if c.storage_ready else "DOWN", ", ".join(missing) or "-")
        table.caption = "CPU and memory: the node's allocatable (its tier's shape)"
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
    stateful: Annotated[bool, typer.Option(help="Keep orc8r's database on a PersistentVolume"
                                           "Claim (local-path) with freeze/thaw hooks, so a "
                                           "migration carries its data.")] = False,
) -> None:
    """(Re)deploy the sample orc8r (orc8r-ns) and agw (agw-ns) in one cluster, as in the
    paper's edge; an earlier sample is removed from every cluster first."""
    from kubehop.testbed import sample

    record = sample.deploy(cluster, interval_ms=interval_ms, stateful=stateful)
    kind = "orc8r (state on claim orc8r-state)" if stateful else "orc8r"
    out.print(f"{kind} and agw running in {cluster}; agw checks in every {interval_ms:g} ms "
              f"({record['ok']} ok, {record['failed']} failed in the last 1.5 s)", markup=False)


@app.command()
def stress(
    cluster: Annotated[str | None, typer.Option(help="Testbed cluster to load (with --stop: "
                                                "only this one; default every cluster).")] = None,
    cpu: Annotated[str | None, typer.Option(help="Cores to burn, e.g. 0.5 or 500m (request "
                                            "= limit).")] = None,
    memory: Annotated[str | None, typer.Option(help="Bytes to hold, e.g. 512Mi or 1G.")] = None,
    for_: Annotated[str | None, typer.Option("--for", help="Seconds until the load ends by "
                                             "itself (default: until --stop).")] = None,
    stop: Annotated[bool, typer.Option("--stop", help="Remove the load instead.")] = False,
) -> None:
    """Load one cluster with a real pod (namespace kubehop-stress) that burns CPU and holds
    memory, as other tenants would; running it again replaces the load there."""
    from kubehop.testbed import stress as st

    _running()
    if stop:
        if cpu is not None or memory is not None or for_ is not None:
            raise UsageError("--stop takes no --cpu, --memory or --for; give just --stop "
                             "[--cluster NAME]")
        stopped = st.stop(cluster)
        where = ", ".join(stopped) if stopped else "no cluster (none was loaded)"
        out.print(f"stress stopped on {where}", markup=False)
        return
    if cluster is None or cpu is None:
        raise UsageError("give --cluster NAME and --cpu CORES (or --stop); e.g. "
                         "kubehop testbed stress --cluster edge --cpu 0.5")
    cpu_millis = st.parse_cpu(cpu)
    size = st.parse_size(memory) if memory is not None else 0
    seconds = st.parse_seconds(for_) if for_ is not None else None
    done = st.start(cluster, cpu_millis=cpu_millis, memory=size, seconds=seconds)
    held = f", {size / 2**20:.0f} MiB held" if size else ""
    until = (f"ends by itself in {seconds} s" if seconds
             else f"until 'kubehop testbed stress --stop --cluster {cluster}'")
    out.print(f"stress on {cluster}: {cpu_millis / 1000:g} CPU{held} (pod {done.pod}); {until}",
              markup=False)


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


wan_app = typer.Typer(help="The WAN between the clusters: delay, jitter and rate per link.",
                      no_args_is_help=True)
app.add_typer(wan_app, name="wan")


def _running() -> tuple[str, ...]:
    names = tb.recorded_clusters()
    if not names:
        raise UsageError("the testbed is not up; start it with 'kubehop testbed up'")
    return names


@wan_app.command("set")
def wan_set(
    a: Annotated[str, typer.Argument(help="A tier (edge, fog, cloud) or a cluster name.")],
    b: Annotated[str, typer.Argument(help="The other tier or cluster.")],
    delay: Annotated[str | None, typer.Option(help="One-way delay, e.g. 30ms.")] = None,
    jitter: Annotated[str | None, typer.Option(help="Jitter, e.g. 1ms (<= delay).")] = None,
    rate: Annotated[str | None, typer.Option(help="Rate per direction, e.g. 100mbit, or "
                                             "unlimited.")] = None,
) -> None:
    """Change one link of the running testbed; fields not given keep their value."""
    from kubehop.testbed import wan as wan_mod
    from kubehop.testbed import wanprofile as wp

    names = _running()
    for name in (a, b):
        wp.check_endpoint(name, names)
    if delay is None and jitter is None and rate is None:
        raise UsageError("give at least one of --delay, --jitter, --rate")
    profile = (wan_mod.current_profile() or wp.FLAT).with_link(
        a, b,
        delay_ms=None if delay is None else wp.parse_delay(delay),
        jitter_ms=None if jitter is None else wp.parse_delay(jitter, "jitter"),
        rate_bit=wp.KEEP if rate is None else wp.parse_rate(rate))
    table = wan_mod.apply(profile, names)
    out.print("wan: " + wan_mod.summary(table), markup=False)


@wan_app.command("apply")
def wan_apply(
    profile: Annotated[str, typer.Argument(help="default, flat or a YAML profile file.")],
) -> None:
    """Replace the running testbed's whole WAN profile."""
    from kubehop.testbed import wan as wan_mod

    names = _running()
    table = wan_mod.apply(wan_mod.resolve(profile, names), names)
    out.print("wan: " + wan_mod.summary(table), markup=False)


@wan_app.command("show")
def wan_show(
    output: Annotated[Output, typer.Option("-o", "--output", help="table or json")] = Output.table,
    count: Annotated[int, typer.Option(min=1, max=100, help="Probes per pair.")] = 5,
) -> None:
    """The configured RTT of each link and the RTT measured now (TCP connect from inside each
    cluster's network namespace to the other's API server, and to the host side)."""
    from kubehop.testbed import wan as wan_mod

    data = wan_mod.report(_running(), count)
    if output is Output.json:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return
    table = Table(title=f"kubehop testbed WAN (profile {data['profile']['name']}; RTT in ms, "
                        f"{data['probe']})")
    for col in ("link (a <-> b)", "tiers", "delay", "jitter", "rate", "RTT set",
                "RTT measured a->b / b->a"):
        table.add_column(col)

    def ms(value: float | None) -> str:
        return "FAILED" if value is None else f"{value:.2f}"

    for link in data["links"]:
        measured = " / ".join(ms(v) for v in link["measured_rtt_ms"].values())
        table.add_row(f"{link['a']} <-> {link['b']}", "-".join(link["tiers"]), link["delay"],
                      link["jitter"], link["rate"], f"{link['configured_rtt_ms']:g}", measured)
    for name, host in data["host"].items():
        table.add_row(f"{name} <-> host", "own tier", "0ms", "0ms", "unlimited", "0",
                      ms(host["measured_rtt_ms"]))
    table.caption = "host: the bridge side (registry, Cloud DNS, Prometheus), never delayed"
    out.print(table)
    delayer = data["delayer"]
    if delayer.get("running"):
        out.print(f"delayer: pid {delayer.get('pid')}, {delayer.get('packets', 0)} packets "
                  f"delayed, {delayer.get('cpu_seconds', 0):.1f}s CPU", markup=False)

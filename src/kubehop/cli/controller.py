"""``kubehop controller``: run the placement controller, and read what it saw and decided."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.table import Table

from kubehop.adapters import inventory as inv_file
from kubehop.adapters.kube import KubeCluster
from kubehop.adapters.lease import LeaderElector, default_identity
from kubehop.adapters.store import Store, default_url
from kubehop.cli.controller_run import (
    Campaign,
    RunMode,
    check_policy_options,
    load_run_inventory,
    open_parts,
    serve,
)
from kubehop.cli.migrate import Output
from kubehop.controller import install as install_mod
from kubehop.controller import rbac as controller_rbac
from kubehop.controller import resources
from kubehop.controller.loop import what_would_move
from kubehop.controller.metrics import ControllerMetrics
from kubehop.controller.policy_source import load_file as load_policy
from kubehop.errors import KubehopError, UsageError
from kubehop.web import api

app = typer.Typer(help="The placement controller: decides on its own where services run.",
                  no_args_is_help=True)
out = Console(highlight=False, soft_wrap=True)

crds_app = typer.Typer(help="kubehop's custom resources: Migration and PlacementPolicy.",
                       no_args_is_help=True)
app.add_typer(crds_app, name="crds")

ClusterOption = Annotated[str, typer.Option(
    "--cluster", help="The management cluster, by its inventory name (the testbed's: cloud).")]
InventoryOption = Annotated[str | None, typer.Option(
    help="Inventory YAML (or KUBEHOP_INVENTORY).")]
DbOption = Annotated[str | None, typer.Option(
    "--db", envvar="KUBEHOP_DB", show_envvar=True,
    help="Store URL: sqlite:///FILE or postgresql+psycopg://...")]
OutputOption = Annotated[Output, typer.Option("-o", "--output")]


def _emit(data: Any, output: Output, table: Table | None = None) -> None:
    if output == Output.json:
        typer.echo(json.dumps(data, indent=2, default=str))
    elif output == Output.yaml:
        typer.echo(yaml.safe_dump(json.loads(json.dumps(data, default=str)), sort_keys=False))
    elif table is not None:
        out.print(table)


def _clock(t: float | None) -> str:
    return "-" if t is None else time.strftime("%H:%M:%S", time.localtime(t))


def _say(line: str) -> None:
    out.print(line, markup=False)


@app.command()
def run(
    policy: Annotated[Path | None, typer.Option(
        help="Policy file (YAML, kind PlacementPolicy), read once.")] = None,
    policy_resource: Annotated[str | None, typer.Option(
        "--policy-resource", help="Instead of --policy: the PlacementPolicy NAME in "
        "kubehop-system of --cluster, read again every cycle; decisions are published in its "
        "status and as Events.")] = None,
    db: DbOption = None,
    interval: Annotated[float | None, typer.Option(
        help="Seconds between cycles (default: the policy's interval).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Decide and explain; move nothing.")]
        = False,
    once: Annotated[bool, typer.Option("--once", help="One cycle (and its migrations), then "
                                       "exit.")] = False,
    listen: Annotated[str, typer.Option(help="HOST:PORT of /healthz, /metrics, the "
                                        "read-only API and the dashboard; '' for none.")]
        = "127.0.0.1:9180",
    inventory: Annotated[str | None, typer.Option(help="Inventory YAML (or "
                                                  "KUBEHOP_INVENTORY).")] = None,
    leader_elect: Annotated[bool, typer.Option(
        "--leader-elect", help="Run as one of several replicas: only the holder of a Lease "
        "acts; on taking it, first finish what the last leader left.")] = False,
    lease_namespace: Annotated[str, typer.Option(help="Namespace of the Lease.")]
        = "kubehop-system",
    lease_name: Annotated[str, typer.Option(help="Name of the Lease.")] = "kubehop-controller",
    lease_seconds: Annotated[float, typer.Option(
        help="A leader that has not renewed the Lease for this long is replaced.")] = 15.0,
    cluster: Annotated[str, typer.Option(
        "--cluster", help="The management cluster: holds the Lease and the "
        "--policy-resource.")] = "cloud",
    reconcile_resources: Annotated[bool, typer.Option(
        "--reconcile", help="Also run the Migrations applied in kubehop-system of --cluster "
        "(what 'controller reconcile' does), in the same leader.")] = False,
) -> None:
    """Watch every cluster, apply the policy's rules, and move services where they should run,
    explaining every decision."""
    file_source = check_policy_options(policy, policy_resource, interval)
    inv, prometheus_url = load_run_inventory(inventory, cluster, needs_management=(
        leader_elect or bool(policy_resource) or reconcile_resources))
    host, port = _listen(listen)
    parts = open_parts(inv, prometheus_url, file_source, cluster=cluster,
                       policy_resource=policy_resource, db=db, dry_run=dry_run, say=_say)
    elector = (LeaderElector(parts.clusters[cluster], lease_name, lease_namespace,
                             default_identity(), lease_seconds=lease_seconds)
               if leader_elect else None)
    mode = RunMode(interval=interval, once=once, dry_run=dry_run, lease_seconds=lease_seconds,
                   reconcile_in=parts.clusters[cluster] if reconcile_resources else None)
    serve(parts, inv, elector, host=host, port=port, mode=mode, say=_say)


def _listen(listen: str) -> tuple[str, int]:
    if not listen:
        return "", 0
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--listen {listen!r}: want HOST:PORT, e.g. 127.0.0.1:9180, or ''")
    return host, int(port)


@app.command()
def rbac(
    manage: Annotated[list[str] | None, typer.Option(
        "--manage", help="A namespace whose services the controller moves (repeat); only there "
        "may it touch Secrets, Pods and workloads.")] = None,
) -> None:
    """Print the in-cluster controller's least-privilege RBAC as YAML (docs/rbac.md), for
    ``kubectl apply -f -`` in the management cluster."""
    typer.echo(yaml.safe_dump_all(controller_rbac.manifests(tuple(manage or ())),
                                  sort_keys=False), nl=False)


@app.command()
def check(policy: Annotated[Path, typer.Argument(help="Policy file to validate.")]) -> None:
    """Validate a policy file (schema and PromQL) without running anything."""
    pol = load_policy(policy)
    out.print(f"{policy}: ok ({len(pol.rules)} rules, {len(pol.services)} services)",
              markup=False)


@app.command()
def topology(db: DbOption = None, output: OutputOption = Output.table) -> None:
    """Clusters, links with their measured RTT, and where each managed service runs."""
    data = api.topology(Store(db or default_url()))
    table = Table(title="clusters")
    for col in ("cluster", "tier", "cpu alloc", "mem alloc GiB", "load balancer", "seen"):
        table.add_column(col)
    for c in data["clusters"]:
        table.add_row(c["name"], c["tier"], f"{c['cpu_allocatable']:g}",
                      f"{c['mem_allocatable'] / 2**30:.1f}", c["load_balancer"],
                      _clock(c["seen"]))
    _emit(data, output, table)
    if output == Output.table:
        links = Table(title="links")
        for col in ("link", "rtt ms", "at"):
            links.add_column(col)
        for link in data["links"]:
            links.add_row(f"{link['source']}-{link['target']}", f"{link['rtt_ms']:.1f}",
                          _clock(link["at"]))
        out.print(links)
        svcs = Table(title="services")
        for col in ("service", "runs in", "since"):
            svcs.add_column(col)
        for s in data["services"]:
            svcs.add_row(f"{s['namespace']}/{s['name']}", s["cluster"] or "-",
                         _clock(s["since"]))
        out.print(svcs)


def _rules_text(path: Path | None) -> list[str]:
    if path is None:
        return []
    return [f"{r.name}: {r.expr} {r.comparison}" + (f" for {r.for_seconds:g}s"
                                                     if r.for_seconds else "")
            for r in load_policy(path).rules]


def _candidates(table: dict[str, Any]) -> Table:
    t = Table()
    for col in ("cluster", "tier", "filtered", "headroom after", "latency ms", "terms", "score"):
        t.add_column(col)
    for c in table.get("candidates", []):
        terms = ", ".join(f"{k} {v:+.3f}" for k, v in (c.get("terms") or {}).items())
        t.add_row(c["cluster"] + (" (winner)" if c.get("winner") else ""), c["tier"],
                  c.get("filtered") or "",
                  "-" if c.get("headroomAfter") is None else f"{c['headroomAfter']:.3f}",
                  "-" if c.get("latencyMs") is None else f"{c['latencyMs']:.1f}",
                  terms, "-" if c.get("score") is None else f"{c['score']:.3f}")
    return t


@app.command()
def decisions(
    decision_id: Annotated[int | None, typer.Argument(help="Show one decision whole.")] = None,
    namespace: Annotated[str | None, typer.Option("-n", "--namespace")] = None,
    service: Annotated[str | None, typer.Option(help="Only this service.")] = None,
    limit: int = 20,
    db: DbOption = None,
    output: OutputOption = Output.table,
) -> None:
    """The controller's decisions, newest first, or one with its candidate table."""
    store = Store(db or default_url())
    if decision_id is not None:
        d = store.decision(decision_id)
        data = api.plain(d)
        if output == Output.table:
            out.print(f"decision {d.id} at {_clock(d.at)}: {d.action} "
                      f"{d.namespace}/{d.service}" + (f" (migration {d.migration_id})"
                                                       if d.migration_id else ""),
                      markup=False)
            out.print(d.explanation, markup=False)
            out.print(_candidates(d.table))
            return
        _emit(data, output)
        return
    rows = store.decisions(limit=limit, namespace=namespace, service=service)
    table = Table()
    for col in ("id", "at", "service", "action", "from", "to", "explanation"):
        table.add_column(col)
    for d in rows:
        table.add_row(str(d.id), _clock(d.at), f"{d.namespace}/{d.service}", d.action,
                      d.source or "-", d.target or "-", d.explanation)
    _emit(api.plain(rows), output, table)


@app.command()
def explain(
    service: Annotated[str, typer.Argument(help="The managed Service.")],
    namespace: Annotated[str, typer.Option("-n", "--namespace")] = "default",
    policy: Annotated[Path | None, typer.Option(help="The policy, to name the rules that "
                                                "would force a move.")] = None,
    db: DbOption = None,
    output: OutputOption = Output.table,
) -> None:
    """Why SERVICE is where it is, and what would make it move."""
    store = Store(db or default_url())
    rows = store.decisions(limit=1, namespace=namespace, service=service)
    if not rows:
        raise UsageError(f"no decision about {namespace}/{service} in the store; is it managed "
                         "(listed in the policy or labelled kubehop.io/managed=true) and has "
                         "the controller run?")
    d = rows[0]
    here = store.current_placement(namespace, service)
    what_if = what_would_move(dict(d.table), _rules_text(policy))
    data = {"decision": api.plain(d), "placement": api.plain(here), "what_would_move": what_if}
    if output != Output.table:
        _emit(data, output)
        return
    out.print(f"{namespace}/{service} runs in {here.cluster if here else '?'} since "
              f"{_clock(here.since if here else None)}", markup=False)
    out.print(f"last decision ({d.id}, {_clock(d.at)}): {d.action}: {d.explanation}",
              markup=False)
    out.print(_candidates(d.table))
    for line in what_if:
        out.print(f"- {line}", markup=False)


def _management(inventory: str | None, cluster: str) -> tuple[Any, KubeCluster]:
    inv = inv_file.load(inventory)
    info = inv.cluster(cluster)
    if info is None:
        raise UsageError(f"--cluster {cluster!r} is not in the inventory; clusters are "
                         f"{', '.join(sorted(inv.clusters))}")
    return inv, KubeCluster(kubeconfig=inv.kubeconfig, context=info.context, name=info.name)


@crds_app.command("install")
def crds_install(cluster: ClusterOption, inventory: InventoryOption = None) -> None:
    """Install (or update) namespace kubehop-system and the CRDs, and wait until the API
    server serves them. Running it again changes nothing."""
    _, kube = _management(inventory, cluster)
    with kube:
        for line in resources.install_crds(kube):
            out.print(f"applied {line}", markup=False)
    out.print(f"CRDs established in {cluster}: {', '.join(resources.CRD_NAMES)}", markup=False)


@app.command()
def reconcile(
    cluster: ClusterOption,
    db: DbOption = None,
    inventory: InventoryOption = None,
    interval: Annotated[float, typer.Option(help="Seconds between passes.")] = 1.0,
    leader_elect: Annotated[bool, typer.Option(
        "--leader-elect", help="One of several replicas (the in-cluster Deployment): only the "
        "holder of the Lease reconciles; on taking it, it resumes what the last leader left.")]
        = False,
    lease_seconds: Annotated[float, typer.Option(
        help="A leader that has not renewed the Lease for this long is replaced.")] = 15.0,
    listen: Annotated[str, typer.Option(help="HOST:PORT of /healthz, /metrics, the read-only "
                                        "API and the dashboard; '' for none.")] = "",
) -> None:
    """Run Migrations and check PlacementPolicies in kubehop-system of the management cluster,
    in the foreground. Ctrl-C stops it: running migrations pause at their next step and the
    next 'kubehop controller reconcile' resumes them."""
    if interval <= 0:
        raise UsageError("--interval must be more than 0 seconds")
    host, port = _listen(listen)
    inv, kube = _management(inventory, cluster)
    store = Store(db or default_url())
    reconciler = resources.MigrationReconciler(kube, inv, store,
                                               say=_say)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    metrics = ControllerMetrics()
    elector = (LeaderElector(kube, controller_rbac.SERVICE_ACCOUNT, resources.NAMESPACE,
                             default_identity(), lease_seconds=lease_seconds)
               if leader_elect else None)

    def health() -> tuple[bool, str]:
        """Both replicas serve the same store: a standby is as good a face as the leader."""
        if elector is None or elector.is_leader():
            return True, "ok: reconciling"
        if elector.last_outcome in ("held", "conflict"):
            return True, f"ok: standby, the leader is {elector.holder() or 'elsewhere'}"
        return False, f"standby cannot reach the lease: {elector.last_error or 'not yet'}"

    server = api.Server(api.create_app(store, metrics.registry, health,
                                       prometheus=inv.prometheus), host, port) if host else None
    try:
        if server:
            server.start()
            out.print(f"API and dashboard on http://{host}:{port}", markup=False)
        if elector is not None and not Campaign(elector, stop, metrics, _say).wait_leading():
            return
        out.print(f"reconciling {resources.NAMESPACE} in {cluster} every {interval:g}s "
                  "(Ctrl-C stops)", markup=False)
        reconciler.run(stop, interval=interval)
    finally:
        if server:
            server.stop()
        kube.close()
        store.close()
    out.print("stopped", markup=False)


@app.command()
def install(
    cluster: ClusterOption,
    db: Annotated[str | None, typer.Option(
        "--db", help="The store's URL (postgresql+psycopg://...); without it a PostgreSQL "
        "StatefulSet is installed too.")] = None,
    image: Annotated[str | None, typer.Option(
        help="The controller's image; default: built and pushed to the testbed's registry.")]
        = None,
    replicas: Annotated[int, typer.Option(help="Controller pods (one leads).")] = 2,
    manage: Annotated[list[str] | None, typer.Option(
        "--manage", help="A namespace whose services it moves in this cluster (repeat); only "
        "there may it touch Secrets, Pods and workloads.")] = None,
    policy_resource: Annotated[str | None, typer.Option(
        "--policy-resource", help="A PlacementPolicy in kubehop-system: the leader also decides "
        "on its own where services run (apply the policy first).")] = None,
    inventory: InventoryOption = None,
) -> None:
    """Run the controller in the management cluster: CRDs, least-privilege RBAC, the member
    clusters' kubeconfigs as a Secret, PostgreSQL (unless --db), and a Deployment of
    --replicas pods electing a leader on a Lease. Running it again updates in place."""
    where = inv_file.locate(inventory)
    inv, kube = _management(str(where), cluster)
    raw = yaml.safe_load(where.read_text())
    try:
        kubeconfig = install_mod.inline_files(yaml.safe_load(Path(inv.kubeconfig).read_text()),
                                              lambda path: Path(path).expanduser().read_bytes())
    except OSError as exc:
        raise UsageError(f"cannot read kubeconfig {inv.kubeconfig}: {exc.strerror}") from exc
    tsig = Path(inv.dns.key_file).read_text() if inv.dns else None
    postgres = None
    if image is None or db is None:
        from kubehop.testbed import images  # the testbed builds what the user did not give

        def built(spec: images.ImageSpec, what: str) -> str:
            try:
                return images.build_and_push(spec)
            except KubehopError as exc:
                raise UsageError(f"cannot build {what} for the testbed ({exc}); outside the "
                                 f"testbed give {'--image' if what == 'kubehop' else '--db'}"
                                 ) from exc

        image = image or built(images.controller_image(), "kubehop")
        postgres = lambda: built(images.postgres_image(), "PostgreSQL")  # noqa: E731
    with kube:
        install_mod.install(kube, inventory=raw, kubeconfig=kubeconfig, tsig_key=tsig,
                            management=cluster, image=image,
                            rbac=controller_rbac.manifests(tuple(manage or ())),
                            postgres_image=postgres, db_url=db, replicas=replicas,
                            policy=policy_resource,
                            say=_say)


@app.command()
def uninstall(
    cluster: ClusterOption,
    delete_data: Annotated[bool, typer.Option(
        "--delete-data", help="Also delete the in-cluster database's claim (its data) and its "
        "password.")] = False,
    inventory: InventoryOption = None,
) -> None:
    """Remove the in-cluster controller (pods, database, kubeconfig Secret). The CRDs, the
    Migrations and the RBAC stay; so do the database's data and password unless
    --delete-data."""
    _, kube = _management(inventory, cluster)
    with kube:
        install_mod.uninstall(kube, delete_data=delete_data,
                              say=_say)

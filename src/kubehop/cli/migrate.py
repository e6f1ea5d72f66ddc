"""``kubehop migrate`` and ``kubehop migrations``: the migration engine's face."""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from enum import StrEnum
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.table import Table

from kubehop.adapters import inventory as inv_file
from kubehop.adapters.store import OLD_JOURNAL, Store, default_home, default_url
from kubehop.domain.model import MigrationRequest, Strategy
from kubehop.engine.executor import Executor
from kubehop.engine.report import Report
from kubehop.errors import UsageError

out = Console(highlight=False)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class Output(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


Db = Annotated[str | None, typer.Option(
    "--db", envvar="KUBEHOP_DB", show_envvar=True,
    help="Database URL: sqlite:///PATH or postgresql+psycopg://USER@HOST/DB "
         "(default: kubehop.db in KUBEHOP_HOME or ~/.local/state/kubehop).")]


def open_store(db: str | None) -> Store:
    """The store at ``db`` (default: the state directory's); says so when it took over the
    journal of an older kubehop."""
    store = Store(db or default_url())
    if store.imported:
        old = default_home() / OLD_JOURNAL
        err.print(f"imported {store.imported} migration{'s' * (store.imported != 1)} from "
                  f"the old journal {old} "
                  f"(kept as {old.name}.imported)", markup=False)
    return store


class _Progress:
    """Each phase live with its duration: a spinner in a terminal, plain lines otherwise."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.status: Any = None

    def __call__(self, event: str, step: str, seconds: float | None) -> None:
        stamp = f"[{time.monotonic() - self.t0:6.2f}s]"
        if event == "start":
            if err.is_terminal:
                self.status = err.status(f"{step} ...")
                self.status.start()
            return
        if self.status is not None:
            self.status.stop()
            self.status = None
        if event == "done":
            err.print(f"{stamp} {step:<8} done in {seconds:.2f}s", markup=False)
        elif event == "undo":
            err.print(f"{stamp} {step:<8} undone", markup=False)


def _emit(report: Report, output: Output) -> None:
    data = report.to_dict()
    if output is Output.json:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return
    if output is Output.yaml:
        sys.stdout.write(yaml.safe_dump(data, sort_keys=False))
        return
    if report.status == "planned":
        table = Table(title=f"plan: {report.namespace}/{report.service} {report.source} -> "
                            f"{report.target} ({report.strategy}); nothing changed")
        for col in ("step", "where", "action", "kind", "name", "detail"):
            table.add_column(col)
        for ch in report.changes:
            where = ch.cluster + (f"/{ch.namespace}" if ch.namespace else "")
            table.add_row(ch.step, where, ch.action, ch.kind, ch.name, ch.detail)
        out.print(table)
        return
    table = Table(title=f"migration {report.id}: {report.status}")
    for col in ("phase", "start", "end", "seconds"):
        table.add_column(col)
    for p in report.phases:
        table.add_row(p.name, _clock(p.start), _clock(p.end), f"{p.seconds:.2f}")
    out.print(table)
    out.print(f"total {report.total_seconds:.2f}s, clients on the target after "
              f"{report.switch_seconds or 0:.2f}s", markup=False)
    moved = report.data
    if moved.get("passes"):
        passes = ", ".join(f"{p['bytes']:,} B in {p['seconds']:.2f}s"
                           + (" (final)" if p.get("final") else "") for p in moved["passes"])
        out.print(f"data: {moved.get('files', '?')} files, {moved.get('bytes', 0):,} bytes; "
                  f"passes: {passes}; pre-copy {moved.get('precopy_seconds', 0):.2f}s, writes "
                  f"frozen {moved.get('freeze_seconds', 0):.3f}s (stopping them "
                  f"{moved.get('stop_writes_seconds', 0):.3f}s, final delta "
                  f"{moved['passes'][-1]['seconds']:.3f}s, verification "
                  f"{moved.get('verify_seconds', 0):.3f}s, then the switch)", markup=False)


def _clock(t: float) -> str:
    return dt.datetime.fromtimestamp(t).strftime("%H:%M:%S.%f")[:-3]


def migrate(
    service: Annotated[str | None, typer.Argument(help="Service to move.")] = None,
    namespace: Annotated[str, typer.Option("-n", "--namespace")] = "default",
    source: Annotated[str | None, typer.Option("--from", help="Source cluster or context.")] = None,
    target: Annotated[str | None, typer.Option("--to", help="Target cluster or context.")] = None,
    target_namespace: Annotated[str | None, typer.Option(
        help="Namespace in the target (default: the same).")] = None,
    strategy: Annotated[Strategy, typer.Option(help="endpoints or externalname.")] =
        Strategy.ENDPOINTS,
    drain: Annotated[float, typer.Option(help="Seconds old pods keep serving after the switch.")]
        = 5.0,
    ready_timeout: Annotated[float, typer.Option(help="Seconds to wait for target replicas.")]
        = 180.0,
    dns_ttl: Annotated[float, typer.Option(
        help="Longest time clients cache a cluster-DNS answer (drain floor when names change).")]
        = 30.0,
    inventory: Annotated[str | None, typer.Option(help="Inventory YAML (or KUBEHOP_INVENTORY).")]
        = None,
    kubeconfig: Annotated[str | None, typer.Option(help="Overrides the inventory's.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan; change nothing.")]
        = False,
    resume: Annotated[str | None, typer.Option(
        help="Finish migration ID after a crash or failure (or finish its rollback).")] = None,
    rollback: Annotated[str | None, typer.Option(
        help="Roll back migration ID instead of finishing it (before the point of no return).")]
        = None,
    output: Annotated[Output, typer.Option("-o", "--output")] = Output.table,
    db: Db = None,
) -> None:
    """Move SERVICE's workload from one cluster to another with no downtime."""
    inv = inv_file.load(inventory)
    if kubeconfig:
        inv = type(inv)(kubeconfig=kubeconfig, clusters=inv.clusters, dns=inv.dns)
    executor = Executor(open_store(db), say=_Progress())
    if resume and rollback:
        raise UsageError("give either --resume ID or --rollback ID, not both")
    if resume:
        _emit(executor.resume(inv, resume), output)
        return
    if rollback:
        _emit(executor.abort(inv, rollback), output)
        return
    if not service or not source or not target:
        raise UsageError("give SERVICE, --from and --to (or --resume ID, --rollback ID)")
    if drain < 0 or dns_ttl < 0:
        raise UsageError("--drain and --dns-ttl must be 0 or more seconds")
    request = MigrationRequest(service=service, namespace=namespace, source=source,
                               target=target, target_namespace=target_namespace or namespace,
                               strategy=strategy, drain_seconds=drain,
                               ready_timeout=ready_timeout, dns_ttl=dns_ttl)
    _emit(executor.start(inv, request, dry_run=dry_run), output)


migrations = typer.Typer(help="Read the migration journal.", no_args_is_help=True)


@migrations.command("list")
def list_migrations(output: Annotated[Output, typer.Option("-o", "--output")] = Output.table,
                    db: Db = None) -> None:
    """Every migration in the journal."""
    store = open_store(db)
    rows = store.list()
    if output is not Output.table:
        data = [{"id": r.id, "status": r.status, "request": r.request, "error": r.error}
                for r in rows]
        sys.stdout.write(json.dumps(data, indent=2) + "\n" if output is Output.json
                         else yaml.safe_dump(data))
        return
    table = Table(title=f"migrations in {store.shown}")
    for col in ("id", "service", "from", "to", "strategy", "status"):
        table.add_column(col)
    for r in rows:
        q = r.request
        table.add_row(r.id, f"{q['namespace']}/{q['service']}", q["source"], q["target"],
                      q["strategy"], r.status)
    out.print(table)


@migrations.command("show")
def show_migration(migration_id: str,
                   output: Annotated[Output, typer.Option("-o", "--output")] = Output.table,
                   db: Db = None) -> None:
    """One migration's steps as the journal recorded them."""
    row = open_store(db).get(migration_id)
    steps = [{"seq": s.seq, "step": s.name, "state": s.state,
              "seconds": None if s.ended is None else round(s.ended - s.started, 3),
              "detail": s.detail} for s in row.steps]
    if output is not Output.table:
        data = {"id": row.id, "status": row.status, "request": row.request, "error": row.error,
                "steps": steps}
        sys.stdout.write(json.dumps(data, indent=2) + "\n" if output is Output.json
                         else yaml.safe_dump(data, sort_keys=False))
        return
    table = Table(title=f"migration {row.id}: {row.status}")
    for col in ("#", "step", "state", "seconds", "detail"):
        table.add_column(col)
    for s in steps:
        table.add_row(str(s["seq"]), str(s["step"]), str(s["state"]),
                      "" if s["seconds"] is None else f"{s['seconds']:.2f}", str(s["detail"]))
    out.print(table)
    if row.error:
        out.print(f"error: {row.error}", markup=False)

"""kubehop's one database: the migration journal and the controller's topology, via SQLAlchemy.

SQLite by default (one private file in the state directory), PostgreSQL by URL when several
controllers or a bigger history need a server. The schema is versioned with alembic and brought
to head on every open, so a newer kubehop upgrades an older database in place.

The journal records every migration step *before* it runs: a crash at any point leaves a row
saying which step had started and not finished, which is all ``kubehop migrate --resume`` needs
to finish or roll back. The controller keeps what it saw (clusters, links, services, placements)
and what it decided, and its rule states, so a restart does not reset a pending rule.

One Engine per :class:`Store`, one short transaction per call: the controller runs migrations
in worker threads that share the store.
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, NoSuchModuleError

# The records and tables are part of this module's face: importers name them from here.
from kubehop.adapters.store_open import driver_reason, make_private, parse_url
from kubehop.adapters.store_queries import (
    current_placement,
    decision_record,
    migration_rows,
    read_old_journal,
    upsert,
)
from kubehop.adapters.store_records import (
    ClusterRecord,
    DecisionRecord,
    EvaluationRecord,
    LinkSample,
    MigrationRow,
    PlacementRecord,
    ServiceRecord,
    StepRow,
)
from kubehop.adapters.store_tables import (
    clusters,
    decisions,
    evaluations,
    links,
    metadata,
    migrations,
    placements,
    rule_states,
    services,
    steps,
)
from kubehop.errors import UsageError
from kubehop.files import ensure_private

log = logging.getLogger(__name__)

DB_FILE = "kubehop.db"
OLD_JOURNAL = "journal.sqlite"
MIGRATIONS_DIR = Path(__file__).with_name("storemigrations")
# Our own alembic version table: a PostgreSQL database shared with an application that uses
# alembic too must not mix the two histories in one ``alembic_version``.
VERSION_TABLE = "kubehop_schema_version"
# Serializes schema upgrades of several kubehop processes opening one PostgreSQL database.
_PG_UPGRADE_LOCK = 0x6B756265686F70  # "kubehop"


def default_home() -> Path:
    """kubehop's state directory: ``$KUBEHOP_HOME`` or ``~/.local/state/kubehop``."""
    return Path(os.environ.get("KUBEHOP_HOME", "~/.local/state/kubehop")).expanduser()


def default_url() -> str:
    """The SQLite file in the state directory, used when no ``--db`` / ``KUBEHOP_DB`` is given."""
    return f"sqlite:///{default_home() / DB_FILE}"


@functools.cache
def _head() -> str | None:
    """The newest schema revision this kubehop ships (parsed once: every open compares it)."""
    return ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()


class Store:
    """The journal and the controller's tables; owns all of kubehop's SQL."""

    def __init__(self, url: str) -> None:
        self.url = parse_url(url)
        self.shown = self.url.render_as_string(hide_password=True)
        self.sqlite = self.url.get_backend_name() == "sqlite"
        self.path: Path | None = None
        default = False
        if self.sqlite:
            self.path = Path(str(self.url.database)).expanduser()
            default = self.path.absolute() == (default_home() / DB_FILE).absolute()
            make_private(self.path, tighten_dir=default)
        try:
            self.engine = self._engine()
            self._upgrade()
        except DBAPIError as exc:
            raise UsageError(f"cannot open the database {self.shown}: "
                             f"{driver_reason(exc, self.url)}") from None
        self.imported = 0
        if default and self.path is not None:
            self.imported = self._import_old(self.path.with_name(OLD_JOURNAL))

    def _engine(self) -> sa.Engine:
        try:
            if not self.sqlite:
                return sa.create_engine(self.url, pool_pre_ping=True)
            engine = sa.create_engine(self.url, pool_pre_ping=True,
                                      connect_args={"timeout": 10, "check_same_thread": False})
        except (NoSuchModuleError, ImportError) as exc:
            raise UsageError(f"cannot use the database {self.shown}: {exc}") from None

        @sa.event.listens_for(engine, "connect")
        def _connect(dbapi_connection: Any, _record: Any) -> None:
            # The driver's own transaction handling off, so BEGIN is ours (see _begin) and
            # DDL runs inside it: an interrupted schema upgrade leaves nothing half-done.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")  # readers never wait for the writer
            # A crash of kubehop loses nothing in WAL mode with NORMAL sync; only a power cut
            # can lose the last writes, and an fsync per step point would slow every migration.
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @sa.event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            # A writer takes the write lock up front: a deferred transaction that read first
            # would fail at once (SQLITE_BUSY, no waiting) if another thread wrote meanwhile.
            write = conn.get_execution_options().get("kubehop_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine

    @contextlib.contextmanager
    def _write(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            conn.execution_options(kubehop_write=True)
            with conn.begin():
                yield conn

    @contextlib.contextmanager
    def _read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn, conn.begin():
            yield conn

    def _alembic(self) -> Config:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        cfg.attributes["version_table"] = VERSION_TABLE
        return cfg

    def _upgrade(self) -> None:
        """Bring the schema to alembic's head; a no-op read when it is there already."""
        cfg = self._alembic()
        head = _head()
        with self._read() as conn:
            current = MigrationContext.configure(
                conn, opts={"version_table": VERSION_TABLE}).get_current_revision()
        if current == head:
            return
        with self._write() as conn:
            if not self.sqlite:  # SQLite's BEGIN IMMEDIATE already serializes upgraders
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_UPGRADE_LOCK)))
            cfg.attributes["connection"] = conn
            try:
                command.upgrade(cfg, "head")
            except CommandError as exc:
                raise UsageError(
                    f"the database {self.shown} has schema revision {current}, which this "
                    f"kubehop does not know ({exc}); use the newer kubehop that wrote it") from None
        log.info("database %s upgraded from %s to %s", self.shown, current, head)

    def schema_revision(self) -> str | None:
        """The alembic revision the database is at (head after a successful open)."""
        with self._read() as conn:
            return MigrationContext.configure(
                conn, opts={"version_table": VERSION_TABLE}).get_current_revision()

    def close(self) -> None:
        self.engine.dispose()

    # --- the journal --------------------------------------------------------------------------

    def create(self, migration_id: str, request: dict[str, Any]) -> None:
        now = time.time()
        with self._write() as conn:
            conn.execute(migrations.insert().values(
                id=migration_id, request=request, status="running", created=now, updated=now,
                error=None, context={}))

    def set_status(self, migration_id: str, status: str, error: str | None = None) -> None:
        with self._write() as conn:
            conn.execute(migrations.update().where(migrations.c.id == migration_id).values(
                status=status, error=error, updated=time.time()))

    def save_context(self, migration_id: str, context: dict[str, Any]) -> None:
        """Facts learnt on the way that undo needs after a crash (old ClusterIP, old record)."""
        with self._write() as conn:
            conn.execute(migrations.update().where(migrations.c.id == migration_id).values(
                context=context, updated=time.time()))

    def step_started(self, migration_id: str, name: str, detail: str = "") -> int:
        with self._write() as conn:
            last = conn.execute(sa.select(sa.func.max(steps.c.seq)).where(
                steps.c.migration_id == migration_id)).scalar()
            seq = int(last or 0) + 1
            conn.execute(steps.insert().values(
                migration_id=migration_id, seq=seq, name=name, state="started",
                started=time.time(), ended=None, detail=detail))
        return seq

    def mark_undone(self, migration_id: str, name: str) -> None:
        """The step's effects were undone: resume must not undo them again."""
        with self._write() as conn:
            conn.execute(steps.update().where(
                steps.c.migration_id == migration_id, steps.c.name == name,
                steps.c.state.in_(("done", "failed", "started"))).values(state="undone"))

    def step_ended(self, migration_id: str, seq: int, state: str, detail: str = "") -> None:
        with self._write() as conn:
            conn.execute(steps.update().where(
                steps.c.migration_id == migration_id, steps.c.seq == seq).values(
                state=state, ended=time.time(), detail=detail))

    def get(self, migration_id: str) -> MigrationRow:
        with self._read() as conn:
            rows = migration_rows(conn, migration_id)
        if not rows:
            raise UsageError(f"no migration {migration_id!r} in the database {self.shown}; "
                             "see 'kubehop migrations list'")
        return rows[0]

    def list(self) -> list[MigrationRow]:
        with self._read() as conn:
            return migration_rows(conn, None)
    # --- the old journal ----------------------------------------------------------------------

    def import_journal(self, path: Path) -> int:
        """Copy the migrations and steps of an old ``journal.sqlite`` (kubehop before the
        store) in; migrations already here are skipped. Returns how many were copied."""
        old_migrations, old_steps = read_old_journal(path)
        with self._write() as conn:
            have = set(conn.execute(sa.select(migrations.c.id)).scalars())
            new = [m for m in old_migrations if m[0] not in have]
            if not new:
                return 0
            conn.execute(migrations.insert(), [
                {"id": m[0], "request": json.loads(m[1]), "status": m[2], "created": m[3],
                 "updated": m[4], "error": m[5], "context": json.loads(m[6] or "{}")}
                for m in new])
            ids = {m[0] for m in new}
            rows = [{"migration_id": s[0], "seq": s[1], "name": s[2], "state": s[3],
                     "started": s[4], "ended": s[5], "detail": s[6]}
                    for s in old_steps if s[0] in ids]
            if rows:
                conn.execute(steps.insert(), rows)
        return len(new)

    def _import_old(self, old: Path) -> int:
        """The first open of the default store takes over the old default journal, once."""
        if not old.exists():
            return 0
        with self._read() as conn:
            if conn.execute(sa.select(migrations.c.id).limit(1)).first() is not None:
                return 0
        count = self.import_journal(old)
        done = old.with_name(old.name + ".imported")
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):  # another process was faster
                kept = old.with_name(old.name + suffix).rename(done.with_name(done.name + suffix))
                ensure_private(kept)  # it still holds what the migrations moved
        log.info("imported %d migrations from %s (kept as %s)", count, old, done)
        return count

    # --- the controller: what it sees ---------------------------------------------------------

    def _upsert(self, conn: Connection, table: sa.Table, values: dict[str, Any]) -> None:
        upsert(conn, table, values, on_sqlite=self.sqlite)

    def upsert_cluster(self, name: str, tier: str, *, cpu_capacity: float,
                       cpu_allocatable: float, mem_capacity: float, mem_allocatable: float,
                       load_balancer: str, seen: float) -> None:
        with self._write() as conn:
            self._upsert(conn, clusters, {
                "name": name, "tier": tier, "cpu_capacity": cpu_capacity,
                "cpu_allocatable": cpu_allocatable, "mem_capacity": mem_capacity,
                "mem_allocatable": mem_allocatable, "load_balancer": load_balancer,
                "seen": seen})

    def clusters(self) -> builtins.list[ClusterRecord]:
        with self._read() as conn:
            return [ClusterRecord(r.name, r.tier, r.cpu_capacity, r.cpu_allocatable,
                                  r.mem_capacity, r.mem_allocatable, r.load_balancer, r.seen)
                    for r in conn.execute(sa.select(clusters).order_by(clusters.c.name))]

    def add_link_sample(self, src: str, dst: str, rtt_ms: float, at: float) -> None:
        with self._write() as conn:
            conn.execute(links.insert().values(src=src, dst=dst, rtt_ms=rtt_ms, at=at))

    def latest_links(self) -> dict[tuple[str, str], LinkSample]:
        """The newest sample of every (src, dst) pair."""
        newest = (sa.select(links.c.src, links.c.dst, sa.func.max(links.c.at).label("at"))
                  .group_by(links.c.src, links.c.dst).subquery())
        query = (sa.select(links).join(newest, sa.and_(
            links.c.src == newest.c.src, links.c.dst == newest.c.dst,
            links.c.at == newest.c.at)).order_by(links.c.id))
        with self._read() as conn:
            return {(r.src, r.dst): LinkSample(r.src, r.dst, r.rtt_ms, r.at)
                    for r in conn.execute(query)}

    def link_history(self, src: str, dst: str, since: float) -> builtins.list[LinkSample]:
        """Samples of one pair at or after ``since``, oldest first."""
        query = (sa.select(links).where(links.c.src == src, links.c.dst == dst,
                                        links.c.at >= since)
                 .order_by(links.c.at, links.c.id))
        with self._read() as conn:
            return [LinkSample(r.src, r.dst, r.rtt_ms, r.at) for r in conn.execute(query)]

    def upsert_service(self, namespace: str, name: str, *, cluster: str, spec: dict[str, Any],
                       seen: float) -> None:
        with self._write() as conn:
            self._upsert(conn, services, {"namespace": namespace, "name": name,
                                          "cluster": cluster, "spec": spec, "seen": seen})

    def services(self) -> builtins.list[ServiceRecord]:
        query = sa.select(services).order_by(services.c.namespace, services.c.name)
        with self._read() as conn:
            return [ServiceRecord(r.namespace, r.name, r.cluster, r.spec, r.seen)
                    for r in conn.execute(query)]

    # --- the controller: where services ran ---------------------------------------------------

    def record_placement(self, namespace: str, name: str, cluster: str, since: float,
                         migration_id: str | None) -> bool:
        """Note that the service runs in ``cluster`` from ``since`` on. Seeing it where it
        already was adds nothing (returns False), so an observer may call this every cycle."""
        with self._write() as conn:
            current = current_placement(conn, namespace, name)
            if current is not None and current.cluster == cluster:
                return False
            conn.execute(placements.insert().values(
                namespace=namespace, name=name, cluster=cluster, since=since,
                migration_id=migration_id))
        return True

    def current_placement(self, namespace: str, name: str) -> PlacementRecord | None:
        with self._read() as conn:
            return current_placement(conn, namespace, name)

    def placements(self, namespace: str, name: str) -> builtins.list[PlacementRecord]:
        """The service's placement history, oldest first."""
        query = (sa.select(placements)
                 .where(placements.c.namespace == namespace, placements.c.name == name)
                 .order_by(placements.c.since, placements.c.id))
        with self._read() as conn:
            return [PlacementRecord(r.namespace, r.name, r.cluster, r.since, r.migration_id)
                    for r in conn.execute(query)]

    def last_move(self, namespace: str, name: str) -> float | None:
        """When the service last changed cluster (None if it never moved): for a cool-down."""
        history = self.placements(namespace, name)
        return history[-1].since if len(history) > 1 else None

    # --- the controller: what it thought and did ----------------------------------------------

    def save_rule_state(self, rule: str, subject: str, state: dict[str, Any]) -> None:
        with self._write() as conn:
            self._upsert(conn, rule_states, {"rule": rule, "subject": subject, "state": state})

    def rule_states(self) -> dict[tuple[str, str], dict[str, Any]]:
        with self._read() as conn:
            return {(r.rule, r.subject): r.state
                    for r in conn.execute(sa.select(rule_states))}

    def add_evaluation(self, at: float, rule: str, subject: str, value: float | None,
                       state: str, detail: str) -> None:
        with self._write() as conn:
            conn.execute(evaluations.insert().values(at=at, rule=rule, subject=subject,
                                                     value=value, state=state, detail=detail))

    def evaluations(self, since: float | None = None, limit: int = 1000
                    ) -> builtins.list[EvaluationRecord]:
        """The newest ``limit`` evaluations (at or after ``since``), oldest first."""
        query = sa.select(evaluations).order_by(evaluations.c.at.desc(),
                                                evaluations.c.id.desc()).limit(limit)
        if since is not None:
            query = query.where(evaluations.c.at >= since)
        with self._read() as conn:
            rows = list(conn.execute(query))
        return [EvaluationRecord(r.at, r.rule, r.subject, r.value, r.state, r.detail)
                for r in reversed(rows)]

    def add_decision(self, at: float, namespace: str, service: str, action: str, source: str,
                     target: str | None, explanation: str, table: dict[str, Any]) -> int:
        with self._write() as conn:
            return int(conn.execute(decisions.insert().values(
                at=at, namespace=namespace, service=service, action=action, source=source,
                target=target, explanation=explanation, score_table=table, migration_id=None)
                .returning(decisions.c.id)).scalar_one())

    def set_decision_migration(self, decision_id: int, migration_id: str) -> None:
        with self._write() as conn:
            done = conn.execute(decisions.update().where(decisions.c.id == decision_id)
                                .values(migration_id=migration_id))
            if done.rowcount == 0:
                raise UsageError(f"no decision {decision_id} in the database {self.shown}")


    def decisions(self, limit: int = 50, namespace: str | None = None,
                  service: str | None = None) -> builtins.list[DecisionRecord]:
        """The newest decisions first, optionally of one namespace or service."""
        query = (sa.select(decisions).order_by(decisions.c.at.desc(), decisions.c.id.desc())
                 .limit(limit))
        if namespace is not None:
            query = query.where(decisions.c.namespace == namespace)
        if service is not None:
            query = query.where(decisions.c.service == service)
        with self._read() as conn:
            return [decision_record(r) for r in conn.execute(query)]

    def decision(self, decision_id: int) -> DecisionRecord:
        with self._read() as conn:
            row = conn.execute(sa.select(decisions).where(decisions.c.id == decision_id)).first()
        if row is None:
            raise UsageError(f"no decision {decision_id} in the database {self.shown}")
        return decision_record(row)


__all__ = [
    "DB_FILE",
    "MIGRATIONS_DIR",
    "OLD_JOURNAL",
    "VERSION_TABLE",
    "ClusterRecord",
    "DecisionRecord",
    "EvaluationRecord",
    "LinkSample",
    "MigrationRow",
    "PlacementRecord",
    "ServiceRecord",
    "StepRow",
    "Store",
    "default_home",
    "default_url",
    "metadata",
]

"""The store's shared SQL: queries and row mappers that several :class:`Store` methods run inside
their own transaction, and the read of an old ``journal.sqlite``.

Each function takes the open connection it runs on, so the caller decides where the transaction
begins and ends (one short transaction per :class:`Store` call).
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from kubehop.adapters.store_records import (
    DecisionRecord,
    MigrationRow,
    PlacementRecord,
    StepRow,
)
from kubehop.adapters.store_tables import migrations, placements, steps
from kubehop.errors import UsageError


def upsert(conn: Connection, table: sa.Table, values: dict[str, Any], *, on_sqlite: bool) -> None:
    """Insert the row or update it in place by primary key, in the dialect's own syntax."""
    keys = [c.name for c in table.primary_key.columns]
    if on_sqlite:
        lite = sqlite.insert(table).values(**values)
        conn.execute(lite.on_conflict_do_update(
            index_elements=keys,
            set_={k: lite.excluded[k] for k in values if k not in keys}))
    else:
        pg = postgresql.insert(table).values(**values)
        conn.execute(pg.on_conflict_do_update(
            index_elements=keys,
            set_={k: pg.excluded[k] for k in values if k not in keys}))


def migration_rows(conn: Connection, migration_id: str | None) -> list[MigrationRow]:
    """Every migration (or the one ``migration_id``) with its steps, oldest first."""
    m_query = sa.select(migrations).order_by(migrations.c.created, migrations.c.id)
    s_query = sa.select(steps).order_by(steps.c.migration_id, steps.c.seq)
    if migration_id is not None:
        m_query = m_query.where(migrations.c.id == migration_id)
        s_query = s_query.where(steps.c.migration_id == migration_id)
    by_id: dict[str, list[StepRow]] = {}
    for s in conn.execute(s_query):
        by_id.setdefault(s.migration_id, []).append(
            StepRow(s.seq, s.name, s.state, s.started, s.ended, s.detail or ""))
    return [MigrationRow(m.id, m.request, m.status, m.created, m.updated, m.error,
                         m.context, by_id.get(m.id, []))
            for m in conn.execute(m_query)]


def current_placement(conn: Connection, namespace: str, name: str) -> PlacementRecord | None:
    """The service's newest placement; read inside a write too, to add only a real change."""
    row = conn.execute(
        sa.select(placements)
        .where(placements.c.namespace == namespace, placements.c.name == name)
        .order_by(placements.c.since.desc(), placements.c.id.desc()).limit(1)).first()
    if row is None:
        return None
    return PlacementRecord(row.namespace, row.name, row.cluster, row.since, row.migration_id)


def decision_record(r: sa.Row[Any]) -> DecisionRecord:
    return DecisionRecord(r.id, r.at, r.namespace, r.service, r.action, r.source, r.target,
                          r.explanation, r.score_table, r.migration_id)


def read_old_journal(path: Path) -> tuple[list[Any], list[Any]]:
    """The migrations and steps rows of an old ``journal.sqlite`` (kubehop before the store)."""
    try:
        # mode=rw: never create an empty file where the journal was expected.
        with contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=rw",
                                                uri=True, timeout=10)) as old:
            old_migrations = old.execute(
                "SELECT id, request, status, created, updated, error, context "
                "FROM migrations").fetchall()
            old_steps = old.execute(
                "SELECT migration_id, seq, name, state, started, ended, "
                "COALESCE(detail, '') FROM steps").fetchall()
    except sqlite3.Error as exc:
        raise UsageError(f"cannot read the old journal {path}: {exc}") from None
    return old_migrations, old_steps

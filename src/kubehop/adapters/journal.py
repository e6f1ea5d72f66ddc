"""The migration journal: every step recorded before it runs, in SQLite (stdlib ``sqlite3``).

A crash at any point leaves a row saying which step had started and not finished, which is all
``kubehop migrate --resume`` needs to finish or roll back. One file in the state directory;
WAL mode so ``kubehop migrations list`` can read while a migration writes.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubehop.errors import UsageError
from kubehop.files import ensure_private, private_dir

SCHEMA = """
CREATE TABLE IF NOT EXISTS migrations (
    id TEXT PRIMARY KEY,
    request TEXT NOT NULL,
    status TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    error TEXT,
    context TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS steps (
    migration_id TEXT NOT NULL REFERENCES migrations(id),
    seq INTEGER NOT NULL,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    started REAL NOT NULL,
    ended REAL,
    detail TEXT,
    PRIMARY KEY (migration_id, seq)
);
"""


@dataclass
class StepRow:
    seq: int
    name: str
    state: str
    started: float
    ended: float | None
    detail: str


@dataclass
class MigrationRow:
    id: str
    request: dict[str, Any]
    status: str
    created: float
    updated: float
    error: str | None
    context: dict[str, Any]
    steps: list[StepRow]


def _private(path: Path) -> None:
    """The journal holds the Services and workloads it moved: owner-only from the first byte.
    SQLite gives its ``-wal`` and ``-shm`` files the mode of the database file, so they are
    private too; files a wider umask or an older version left readable are tightened."""
    private_dir(path.parent)
    ensure_private(path)
    for extra in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if extra.exists():
            ensure_private(extra)


class Journal:
    """Every migration and every step, with the state undo needs; owns all of its SQL."""

    def __init__(self, path: Path) -> None:
        _private(path)
        self.path = path
        self.db = sqlite3.connect(str(path), isolation_level=None, timeout=10,
                                  check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        # A crash of kubehop loses nothing in WAL mode with NORMAL sync; only a power cut can
        # lose the last writes, and an fsync per step point would slow every migration.
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)

    def create(self, migration_id: str, request: dict[str, Any]) -> None:
        now = time.time()
        self.db.execute("INSERT INTO migrations VALUES (?, ?, 'running', ?, ?, NULL, '{}')",
                        (migration_id, json.dumps(request), now, now))

    def set_status(self, migration_id: str, status: str, error: str | None = None) -> None:
        self.db.execute("UPDATE migrations SET status=?, error=?, updated=? WHERE id=?",
                        (status, error, time.time(), migration_id))

    def save_context(self, migration_id: str, context: dict[str, Any]) -> None:
        """Facts learnt on the way that undo needs after a crash (old ClusterIP, old record)."""
        self.db.execute("UPDATE migrations SET context=?, updated=? WHERE id=?",
                        (json.dumps(context), time.time(), migration_id))

    def step_started(self, migration_id: str, name: str, detail: str = "") -> int:
        cur = self.db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM steps WHERE migration_id=?",
                              (migration_id,))
        seq = int(cur.fetchone()[0])
        self.db.execute("INSERT INTO steps VALUES (?, ?, ?, 'started', ?, NULL, ?)",
                        (migration_id, seq, name, time.time(), detail))
        return seq

    def mark_undone(self, migration_id: str, name: str) -> None:
        """The step's effects were undone: resume must not undo them again."""
        self.db.execute("UPDATE steps SET state='undone' WHERE migration_id=? AND name=? AND "
                        "state IN ('done', 'failed', 'started')", (migration_id, name))

    def step_ended(self, migration_id: str, seq: int, state: str, detail: str = "") -> None:
        self.db.execute("UPDATE steps SET state=?, ended=?, detail=? WHERE migration_id=? AND "
                        "seq=?", (state, time.time(), detail, migration_id, seq))

    def get(self, migration_id: str) -> MigrationRow:
        row = self.db.execute("SELECT id, request, status, created, updated, error, context "
                              "FROM migrations WHERE id=?", (migration_id,)).fetchone()
        if row is None:
            raise UsageError(f"no migration {migration_id!r} in the journal {self.path}; "
                             "see 'kubehop migrations list'")
        steps = [StepRow(*r) for r in self.db.execute(
            "SELECT seq, name, state, started, ended, COALESCE(detail, '') FROM steps "
            "WHERE migration_id=? ORDER BY seq", (migration_id,))]
        return MigrationRow(row[0], json.loads(row[1]), row[2], row[3], row[4], row[5],
                            json.loads(row[6]), steps)

    def list(self) -> list[MigrationRow]:
        ids = [r[0] for r in self.db.execute("SELECT id FROM migrations ORDER BY created")]
        return [self.get(i) for i in ids]

    def close(self) -> None:
        self.db.close()

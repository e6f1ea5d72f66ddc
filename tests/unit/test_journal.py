"""The journal is private from its first byte: the file, SQLite's -wal and -shm, and an old
journal someone left readable."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from kubehop.adapters.journal import Journal


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_journal_and_its_wal_files_are_0600_even_with_umask_0(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        journal = Journal(tmp_path / "state" / "journal.sqlite")
        journal.create("m1", {"service": "orc8r"})
    finally:
        os.umask(old)
    files = sorted(p.name for p in (tmp_path / "state").iterdir())
    assert files == ["journal.sqlite", "journal.sqlite-shm", "journal.sqlite-wal"]
    for name in files:
        assert mode(tmp_path / "state" / name) == 0o600, name
    assert mode(tmp_path / "state") == 0o700


def test_an_existing_readable_journal_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    Journal(path).create("m1", {"service": "orc8r"})
    for p in tmp_path.iterdir():
        p.chmod(0o644)
    journal = Journal(path)
    assert journal.get("m1").request == {"service": "orc8r"}
    for p in tmp_path.iterdir():
        assert mode(p) == 0o600, p.name


def test_opening_the_journal_again_keeps_the_first_connection_working(tmp_path: Path) -> None:
    """Opening and closing a file drops this process's POSIX locks on it, which SQLite uses:
    a second Journal in the same process must not open the database file behind its back."""
    path = tmp_path / "journal.sqlite"
    first = Journal(path)
    first.create("m1", {"n": 1})
    for i in range(5):
        Journal(path).create(f"other{i}", {"n": i})
        first.save_context("m1", {"i": i})
    assert first.get("m1").context == {"i": 4}
    assert [r.id for r in Journal(path).list()] == ["m1", *[f"other{i}" for i in range(5)]]

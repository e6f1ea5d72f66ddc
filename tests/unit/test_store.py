"""The store on both databases kubehop supports (a real SQLite file and a real PostgreSQL
server): the journal, the import of an old journal, the controller's tables, the alembic schema,
one-line errors that never show a password, and private files."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from kubehop.adapters import store as store_module
from kubehop.adapters.store import (
    VERSION_TABLE,
    ClusterRecord,
    LinkSample,
    PlacementRecord,
    ServiceRecord,
    Store,
    default_url,
)
from kubehop.errors import UsageError
from tests.conftest import KUBEHOP, assert_one_line_error, kubehop
from tests.pg import PostgresServer

OLD_SCHEMA = """
CREATE TABLE migrations (id TEXT PRIMARY KEY, request TEXT NOT NULL, status TEXT NOT NULL,
    created REAL NOT NULL, updated REAL NOT NULL, error TEXT, context TEXT NOT NULL DEFAULT '{}');
CREATE TABLE steps (migration_id TEXT NOT NULL REFERENCES migrations(id), seq INTEGER NOT NULL,
    name TEXT NOT NULL, state TEXT NOT NULL, started REAL NOT NULL, ended REAL, detail TEXT,
    PRIMARY KEY (migration_id, seq));
"""


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def store(db_url: str) -> Store:
    return Store(db_url)


def old_journal(path: Path) -> None:
    """A journal.sqlite as kubehop wrote it before the store (stdlib sqlite3, JSON as text)."""
    with sqlite3.connect(path) as db:
        db.executescript(OLD_SCHEMA)
        db.execute("INSERT INTO migrations VALUES ('m1', ?, 'succeeded', 10.0, 12.0, NULL, ?)",
                   (json.dumps({"service": "orc8r", "source": "edge"}),
                    json.dumps({"old_ip": "10.0.0.7"})))
        db.execute("INSERT INTO migrations VALUES ('m2', ?, 'failed', 20.0, 21.0, 'boom', '{}')",
                   (json.dumps({"service": "web"}),))
        db.executemany("INSERT INTO steps VALUES (?, ?, ?, ?, ?, ?, ?)", [
            ("m1", 1, "copy", "done", 10.1, 10.5, ""),
            ("m1", 2, "switch", "done", 10.6, 11.0, None),
            ("m2", 1, "copy", "failed", 20.1, 20.2, "RuntimeError: boom")])
    db.close()


# --- the journal ------------------------------------------------------------------------------


def test_journal_round_trip(store: Store) -> None:
    store.create("m1", {"service": "orc8r", "nested": {"ports": [80, 443]}})
    store.create("m2", {"service": "web"})
    first = store.step_started("m1", "copy")
    second = store.step_started("m1", "route", "to cloud")
    assert (first, second) == (1, 2)
    assert store.step_started("m2", "copy") == 1, "seq counts per migration"
    store.step_ended("m1", first, "done", "3 objects")
    store.save_context("m1", {"old_ip": "10.0.0.7", "records": ["a", "b"]})
    store.set_status("m1", "rolling-back", "verify failed")
    store.mark_undone("m1", "copy")
    store.mark_undone("m1", "route")

    row = store.get("m1")
    assert row.request == {"service": "orc8r", "nested": {"ports": [80, 443]}}
    assert (row.status, row.error) == ("rolling-back", "verify failed")
    assert row.context == {"old_ip": "10.0.0.7", "records": ["a", "b"]}
    assert row.updated >= row.created
    assert [(s.seq, s.name, s.state, s.detail) for s in row.steps] == [
        (1, "copy", "undone", "3 objects"), (2, "route", "undone", "to cloud")]
    assert row.steps[0].ended is not None and row.steps[0].ended >= row.steps[0].started
    assert row.steps[1].ended is None

    store.set_status("m1", "rolled-back")
    assert store.get("m1").error is None
    assert [r.id for r in store.list()] == ["m1", "m2"]
    assert [s.name for s in store.list()[1].steps] == ["copy"]


def test_mark_undone_leaves_steps_that_were_already_undone_or_never_ran(store: Store) -> None:
    store.create("m", {})
    store.step_ended("m", store.step_started("m", "copy"), "done")
    store.step_ended("m", store.step_started("m", "copy"), "done")
    store.mark_undone("m", "copy")
    store.mark_undone("m", "route")
    assert [s.state for s in store.get("m").steps] == ["undone", "undone"]


def test_an_unknown_migration_is_a_usage_error_naming_the_database(store: Store) -> None:
    with pytest.raises(UsageError, match="no migration 'nope' in the database") as failed:
        store.get("nope")
    assert store.shown in str(failed.value)


def test_concurrent_writers_in_threads_all_succeed(store: Store) -> None:
    """The controller runs migrations in worker threads sharing one store: no write may fail
    because another thread wrote in between (SQLite's BEGIN IMMEDIATE, short transactions)."""
    errors: list[BaseException] = []

    def migrate(i: int) -> None:
        try:
            store.create(f"m{i}", {"i": i})
            for step in ("copy", "ready", "route", "switch"):
                seq = store.step_started(f"m{i}", step)
                store.save_context(f"m{i}", {"at": step})
                store.step_ended(f"m{i}", seq, "done")
            store.set_status(f"m{i}", "succeeded")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=migrate, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    rows = store.list()
    assert len(rows) == 8
    assert all(r.status == "succeeded" and [s.seq for s in r.steps] == [1, 2, 3, 4]
               for r in rows)


# --- the old journal --------------------------------------------------------------------------


def test_import_journal_copies_migrations_and_steps_once(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    old_journal(path)
    assert store.import_journal(path) == 2
    assert store.import_journal(path) == 0, "already there: skipped"
    m1 = store.get("m1")
    assert m1.request == {"service": "orc8r", "source": "edge"}
    assert (m1.status, m1.created, m1.updated, m1.error) == ("succeeded", 10.0, 12.0, None)
    assert m1.context == {"old_ip": "10.0.0.7"}
    assert [(s.seq, s.name, s.state, s.started, s.ended, s.detail) for s in m1.steps] == [
        (1, "copy", "done", 10.1, 10.5, ""), (2, "switch", "done", 10.6, 11.0, "")]
    m2 = store.get("m2")
    assert (m2.status, m2.error) == ("failed", "boom")
    assert m2.steps[0].detail == "RuntimeError: boom"
    assert store.step_started("m1", "resume") == 3, "imported seqs continue"


def test_import_of_something_that_is_not_a_journal_is_a_usage_error(store: Store,
                                                                   tmp_path: Path) -> None:
    missing = tmp_path / "missing.sqlite"
    with pytest.raises(UsageError, match="cannot read the old journal"):
        store.import_journal(missing)
    assert not missing.exists(), "never creates an empty file where the journal was expected"
    empty = tmp_path / "empty.sqlite"
    sqlite3.connect(empty).close()
    with pytest.raises(UsageError, match="no such table: migrations"):
        store.import_journal(empty)


def test_the_default_store_takes_over_the_old_default_journal(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    monkeypatch.setenv("KUBEHOP_HOME", str(home))
    old_journal(home / "journal.sqlite")
    (home / "journal.sqlite").chmod(0o644)
    store = Store(default_url())
    assert store.imported == 2
    assert [r.id for r in store.list()] == ["m1", "m2"]
    assert not (home / "journal.sqlite").exists()
    assert mode(home / "journal.sqlite.imported") == 0o600, "it still holds secrets"
    assert mode(home) == 0o700, "kubehop's own state directory is tightened"
    # An old journal showing up again is not imported over a store that has migrations.
    old_journal(home / "journal.sqlite")
    assert Store(default_url()).imported == 0
    assert (home / "journal.sqlite").exists()


def test_a_store_at_another_url_leaves_the_old_journal_alone(
        db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBEHOP_HOME", str(tmp_path))
    old_journal(tmp_path / "journal.sqlite")
    store = Store(db_url)
    assert store.imported == 0 and store.list() == []
    assert (tmp_path / "journal.sqlite").exists()


def test_default_url_follows_kubehop_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBEHOP_HOME", "/srv/kh")
    assert default_url() == "sqlite:////srv/kh/kubehop.db"
    monkeypatch.delenv("KUBEHOP_HOME")
    assert default_url() == f"sqlite:///{Path('~/.local/state/kubehop').expanduser()}/kubehop.db"


# --- the controller's tables ------------------------------------------------------------------


def test_clusters_upsert(store: Store) -> None:
    store.upsert_cluster("edge", "edge", cpu_capacity=4, cpu_allocatable=3.5, mem_capacity=8e9,
                         mem_allocatable=7e9, load_balancer="10.0.0.1", seen=100.0)
    store.upsert_cluster("cloud", "cloud", cpu_capacity=16, cpu_allocatable=15,
                         mem_capacity=64e9, mem_allocatable=60e9, load_balancer="", seen=100.0)
    store.upsert_cluster("edge", "edge", cpu_capacity=4, cpu_allocatable=1.25,
                         mem_capacity=8e9, mem_allocatable=6e9, load_balancer="10.0.0.2",
                         seen=160.5)
    assert store.clusters() == [
        ClusterRecord("cloud", "cloud", 16.0, 15.0, 64e9, 60e9, "", 100.0),
        ClusterRecord("edge", "edge", 4.0, 1.25, 8e9, 6e9, "10.0.0.2", 160.5)]


def test_links_latest_and_history(store: Store) -> None:
    t0 = 1_700_000_000.123456  # unix seconds keep their microseconds (double precision)
    for i, rtt in enumerate([10.0, 12.5, 11.0]):
        store.add_link_sample("edge", "cloud", rtt, t0 + i)
    store.add_link_sample("cloud", "edge", 9.0, t0 + 5)
    store.add_link_sample("edge", "cloud", 99.0, t0 - 100)  # late arrival of an old sample
    assert store.latest_links() == {
        ("edge", "cloud"): LinkSample("edge", "cloud", 11.0, t0 + 2),
        ("cloud", "edge"): LinkSample("cloud", "edge", 9.0, t0 + 5)}
    assert [s.rtt_ms for s in store.link_history("edge", "cloud", t0 + 1)] == [12.5, 11.0]
    assert [s.at for s in store.link_history("edge", "cloud", 0)] == [
        t0 - 100, t0, t0 + 1, t0 + 2]
    assert store.link_history("edge", "nowhere", 0) == []


def test_services_upsert(store: Store) -> None:
    store.upsert_service("magma", "orc8r", cluster="edge", spec={"cpu": 0.5, "slo_ms": 50},
                         seen=1.0)
    store.upsert_service("default", "web", cluster="cloud", spec={}, seen=2.0)
    store.upsert_service("magma", "orc8r", cluster="cloud", spec={"cpu": 1.0}, seen=3.0)
    assert store.services() == [
        ServiceRecord("default", "web", "cloud", {}, 2.0),
        ServiceRecord("magma", "orc8r", "cloud", {"cpu": 1.0}, 3.0)]


def test_placements_history_current_and_last_move(store: Store) -> None:
    assert store.current_placement("magma", "orc8r") is None
    assert store.last_move("magma", "orc8r") is None
    assert store.record_placement("magma", "orc8r", "edge", 10.0, None)
    assert not store.record_placement("magma", "orc8r", "edge", 20.0, None), "no change"
    assert store.last_move("magma", "orc8r") is None, "first seen is not a move"
    assert store.record_placement("magma", "orc8r", "cloud", 30.0, "mig-1")
    store.record_placement("magma", "other", "edge", 40.0, None)
    assert store.current_placement("magma", "orc8r") == PlacementRecord(
        "magma", "orc8r", "cloud", 30.0, "mig-1")
    assert store.placements("magma", "orc8r") == [
        PlacementRecord("magma", "orc8r", "edge", 10.0, None),
        PlacementRecord("magma", "orc8r", "cloud", 30.0, "mig-1")]
    assert store.last_move("magma", "orc8r") == 30.0


def test_rule_states_survive_reopening(db_url: str) -> None:
    first = Store(db_url)
    first.save_rule_state("rtt-high", "edge->cloud", {"phase": "pending", "since": 5.0})
    first.save_rule_state("cpu-low", "edge", {"phase": "firing"})
    first.save_rule_state("rtt-high", "edge->cloud", {"phase": "firing", "since": 5.0})
    first.close()
    assert Store(db_url).rule_states() == {
        ("rtt-high", "edge->cloud"): {"phase": "firing", "since": 5.0},
        ("cpu-low", "edge"): {"phase": "firing"}}


def test_evaluations_newest_window_in_time_order(store: Store) -> None:
    for i in range(5):
        store.add_evaluation(float(i), "rtt-high", "edge->cloud", None if i == 0 else i * 1.5,
                             "pending" if i < 4 else "firing", f"eval {i}")
    assert [e.at for e in store.evaluations()] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert store.evaluations()[0].value is None
    last = store.evaluations()[-1]
    assert (last.rule, last.subject, last.value, last.state, last.detail) == (
        "rtt-high", "edge->cloud", 6.0, "firing", "eval 4")
    assert [e.at for e in store.evaluations(since=2.0)] == [2.0, 3.0, 4.0]
    assert [e.at for e in store.evaluations(limit=2)] == [3.0, 4.0]


def test_decisions_newest_first_filtered_and_linked_to_migrations(store: Store) -> None:
    table = {"edge": {"score": 0.4}, "cloud": {"score": 0.9}}
    a = store.add_decision(10.0, "magma", "orc8r", "move", "edge", "cloud", "rtt high", table)
    b = store.add_decision(20.0, "magma", "orc8r", "stay", "cloud", None, "cool-down", {})
    c = store.add_decision(15.0, "default", "web", "move", "cloud", "edge", "cpu", {})
    d = store.add_decision(20.0, "magma", "orc8r", "stay", "cloud", None, "same second", {})
    assert len({a, b, c, d}) == 4
    assert [x.id for x in store.decisions()] == [d, b, c, a]
    assert [x.id for x in store.decisions(limit=2)] == [d, b]
    assert [x.id for x in store.decisions(namespace="magma")] == [d, b, a]
    assert [x.id for x in store.decisions(service="web")] == [c]
    store.set_decision_migration(a, "mig-1")
    got = store.decision(a)
    assert (got.at, got.namespace, got.service, got.action, got.source, got.target,
            got.explanation, got.table, got.migration_id) == (
        10.0, "magma", "orc8r", "move", "edge", "cloud", "rtt high", table, "mig-1")
    assert store.decision(b).target is None and store.decision(b).migration_id is None
    with pytest.raises(UsageError, match="no decision 9999"):
        store.decision(9999)
    with pytest.raises(UsageError, match="no decision 9999"):
        store.set_decision_migration(9999, "mig-2")


# --- the schema -------------------------------------------------------------------------------


def test_alembic_head_is_the_schema_of_the_code(store: Store) -> None:
    """The migration scripts build exactly the tables store.py declares (nothing for
    ``alembic revision --autogenerate`` to add), and the version table says head."""
    head = ScriptDirectory(str(store_module.MIGRATIONS_DIR)).get_current_head()
    assert head is not None and store.schema_revision() == head
    with store.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE,
                                                     "compare_type": True})
        assert compare_metadata(ctx, store_module.metadata) == []
        tables = set(sa.inspect(conn).get_table_names())
    assert tables == {*store_module.metadata.tables, VERSION_TABLE}


def test_reopening_at_head_runs_no_migration(db_url: str, monkeypatch: pytest.MonkeyPatch
                                             ) -> None:
    Store(db_url).create("m1", {})

    def no_upgrade(*args: object, **kwargs: object) -> None:
        raise AssertionError("upgrade ran again")

    monkeypatch.setattr(store_module.command, "upgrade", no_upgrade)
    assert [r.id for r in Store(db_url).list()] == ["m1"]


def test_a_database_from_a_newer_kubehop_is_a_usage_error(db_url: str) -> None:
    Store(db_url).close()
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        version = sa.table(VERSION_TABLE, sa.column("version_num"))
        conn.execute(version.update().values(version_num="f00d"))
    engine.dispose()
    with pytest.raises(UsageError, match="schema revision f00d, which this kubehop does not"):
        Store(db_url)


# --- errors and privacy -----------------------------------------------------------------------


@pytest.mark.parametrize(("url", "fragment"), [
    ("not a url", "not a database URL"),
    ("mysql://kh:s3cret@db/kubehop", "unsupported database"),
    ("sqlite://", "in-memory"),
    ("postgresql+psycopg://kh:s3cret@/kubehop?host=/nonexistent-socket-dir",
     "cannot open the database postgresql+psycopg://kh:***@/kubehop"),
    ("postgresql://kh:s3cret@/kubehop?host=/nonexistent-socket-dir",
     "cannot open the database postgresql+psycopg://kh:***@/kubehop"),
])
def test_bad_urls_are_one_line_usage_errors_without_the_password(url: str,
                                                                 fragment: str) -> None:
    with pytest.raises(UsageError) as failed:
        Store(url)
    message = str(failed.value)
    assert fragment in message
    assert "s3cret" not in message and "\n" not in message
    assert failed.value.__cause__ is None, "the driver's exception could carry the URL"


def test_a_missing_postgres_database_is_a_usage_error(postgres: PostgresServer) -> None:
    url = postgres.url("no_such_db").replace("postgres@", "postgres:s3cret@")
    with pytest.raises(UsageError, match='database "no_such_db" does not exist') as failed:
        Store(url)
    assert "s3cret" not in str(failed.value) and "postgres:***@" in str(failed.value)


def test_the_cli_takes_db_and_kubehop_db(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'kh.db'}"
    store = Store(url)
    store.create("m-cli", {"namespace": "magma", "service": "orc8r", "source": "edge",
                           "target": "cloud", "strategy": "endpoints"})
    shown = kubehop("migrations", "list", "--db", url, "-o", "json")
    assert shown.returncode == 0, shown.stderr
    assert [r["id"] for r in json.loads(shown.stdout)] == ["m-cli"]
    env_run = kubehop_env({"KUBEHOP_DB": url}, "migrations", "show", "m-cli", "-o", "json")
    assert env_run.returncode == 0, env_run.stderr
    assert json.loads(env_run.stdout)["id"] == "m-cli"
    assert_one_line_error(kubehop("migrations", "list", "--db", "mysql://u:s3cret@h/d"),
                          "unsupported database", "u:***@h/d")


def kubehop_env(extra: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([KUBEHOP, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **extra}, check=False)


def test_a_new_store_and_its_wal_files_are_0600_even_with_umask_0(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        store = Store(f"sqlite:///{tmp_path / 'state' / 'kubehop.db'}")
        store.create("m1", {"service": "orc8r"})
        files = sorted(p.name for p in (tmp_path / "state").iterdir())
    finally:
        os.umask(old)
    assert files == ["kubehop.db", "kubehop.db-shm", "kubehop.db-wal"]
    for name in files:
        assert mode(tmp_path / "state" / name) == 0o600, name
    assert mode(tmp_path / "state") == 0o700


def test_an_existing_readable_store_is_tightened(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'kubehop.db'}"
    first = Store(url)
    first.create("m1", {"service": "orc8r"})
    for p in tmp_path.iterdir():
        p.chmod(0o644)
    assert Store(url).get("m1").request == {"service": "orc8r"}
    for p in tmp_path.iterdir():
        assert mode(p) == 0o600, p.name


def test_an_existing_directory_given_by_url_is_not_chmod_ed(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o755)
    Store(f"sqlite:///{shared / 'kubehop.db'}").create("m1", {})
    assert mode(shared) == 0o755
    assert mode(shared / "kubehop.db") == 0o600


def test_opening_the_store_again_keeps_the_first_connection_working(tmp_path: Path) -> None:
    """Opening and closing a file drops this process's POSIX locks on it, which SQLite uses:
    a second Store in the same process must not open the database file behind its back."""
    url = f"sqlite:///{tmp_path / 'kubehop.db'}"
    first = Store(url)
    first.create("m1", {"n": 1})
    for i in range(5):
        Store(url).create(f"other{i}", {"n": i})
        first.save_context("m1", {"i": i})
    assert first.get("m1").context == {"i": 4}
    assert [r.id for r in Store(url).list()] == ["m1", *[f"other{i}" for i in range(5)]]

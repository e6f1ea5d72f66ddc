"""Shared test helpers: run the real ``kubehop`` command as a user would; a real PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .pg import PostgresServer

_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
"""``gw0``, ``gw1``... under pytest-xdist (``make test`` runs two): each worker gets a testbed
slot of its own (set before anything imports kubehop.testbed.layout, which reads it once, and
inherited by every ``kubehop`` command the tests run) and a journal home of its own."""
if _WORKER.startswith("gw"):
    # Set, not defaulted: an exported slot would put every worker on one testbed, where one
    # worker's ``down`` pulls the clusters from under the other's migrations.
    os.environ["KUBEHOP_TESTBED_SLOT"] = _WORKER.removeprefix("gw")
    os.environ["KUBEHOP_HOME"] = tempfile.mkdtemp(prefix=f"kubehop-home-{_WORKER}-")
    if os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") != "1" and (
            os.environ.get("KUBEHOP_STATE") or os.environ.get("KUBEHOP_INVENTORY")):
        raise pytest.UsageError(
            "KUBEHOP_STATE or KUBEHOP_INVENTORY is set: every worker would share one testbed; "
            "unset it, or run with TEST_WORKERS=0")

KUBEHOP = str(Path(sys.executable).with_name("kubehop"))


def results_dir(name: str) -> Path:
    """Where a real-cluster test writes what it shows a reader (a screenshot, a transcript):
    ``results/NAME`` in the repository when ``KUBEHOP_RECORD_RESULTS=1``, otherwise a scratch
    directory. By default a run must not rewrite files the README's figures are checked
    against (tests/unit/test_figures.py), or the check would fail depending on test order;
    refresh them with ``KUBEHOP_RECORD_RESULTS=1 make test``, then
    ``python scripts/figures.py --write``."""
    if os.environ.get("KUBEHOP_RECORD_RESULTS") == "1":
        return Path(__file__).resolve().parents[1] / "results" / name
    return Path(tempfile.mkdtemp(prefix=f"kubehop-results-{name}-"))


def kubehop(
    *args: str, user: str | None = None, timeout: float = 1800
) -> subprocess.CompletedProcess[str]:
    """Run ``kubehop ARGS`` (optionally as another user through setpriv); never raises."""
    argv = [KUBEHOP, *args]
    if user is not None:
        argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *argv]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """A bad-input failure: non-zero exit, one 'error:' line naming the problem, no traceback."""
    assert result.returncode != 0, result
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines
    assert "Traceback" not in result.stderr + result.stdout
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the session (started only if a test asks for it)."""
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty database, once per backend kubehop supports."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state' / 'kubehop.db'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    name = server.create_database()
    yield server.url(name)
    server.drop_database(name)

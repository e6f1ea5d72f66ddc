"""Failures and crashes inside every step, right after each of its side effects, on the real
testbed while agw keeps calling orc8r: a failure rolls back (or, past the point of no return,
leaves the migration for ``--resume``), a crash is finished by ``kubehop migrate --resume`` or
undone by ``--rollback``; agw never sees a failed request.

The faults come through the engine's test seam (:class:`kubehop.engine.context.Seam`), the
same checkpoints the executor's unit tests enumerate; the resumes run the real command.
Each test migrates orc8r from wherever it runs now to the other cluster, so a finished
migration is the next test's starting point and no test depends on another.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubehop.adapters.kube import KubeCluster
from kubehop.adapters.store import DB_FILE, Store
from kubehop.domain.model import STEPS, MigrationRequest
from kubehop.engine.context import MigrationError
from kubehop.engine.executor import Executor
from kubehop.engine.steps.registry import STEP_TYPES
from kubehop.testbed import sample
from kubehop.testbed import testbed as tb
from tests.conftest import KUBEHOP
from tests.unit.test_executor import ENDPOINTS_POINTS, Crash, FaultAt

from .conftest import BY_NAME

pytestmark = pytest.mark.usefixtures("testbed")

EDGE, CLOUD = BY_NAME["edge"], BY_NAME["cloud"]
NS = sample.ORC8R_NAMESPACE


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("kubehop-home")


def kube(name: str) -> KubeCluster:
    return KubeCluster(kubeconfig=str(tb.kubeconfig_file()), context=name, name=name)


def runs_in() -> list[str]:
    return [c.name for c in (EDGE, CLOUD) if kube(c.name).get("Deployment", "orc8r", NS)]


def settled() -> None:
    """No namespace still terminating (a rollback deletes the one copy made)."""
    for _ in range(240):
        if not any(kube(c.name).namespace_terminating(ns) for c in (EDGE, CLOUD)
                   for ns in (NS, sample.AGW_NAMESPACE)):
            return
        time.sleep(0.5)


@pytest.fixture
def where() -> Iterator[tuple[str, str]]:
    """(source, target): orc8r runs in exactly one cluster, agw in edge is served by it."""
    settled()
    home = runs_in()
    try:
        recent = sample.agw_record(EDGE, since=time.time() - 2, until=time.time() - 0.2,
                                   complete=False)
        healthy = recent["ok"] > 0 and recent["failed"] == 0
    except Exception:
        healthy = False
    if len(home) != 1 or not healthy:
        sample.deploy("edge")
        home = ["edge"]
    src = home[0]
    yield src, ("cloud" if src == "edge" else "edge")


def request(src: str, dst: str) -> MigrationRequest:
    return MigrationRequest(service="orc8r", namespace=NS, source=src, target=dst,
                            target_namespace=NS, drain_seconds=1.0)


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBEHOP_HOME": str(home),
           "KUBEHOP_INVENTORY": str(tb.inventory_file())}
    return subprocess.run([KUBEHOP, "migrate", "--db", f"sqlite:///{home / DB_FILE}", *args],
                          capture_output=True, text=True, env=env,
                          timeout=600, check=False)


def assert_served_by(cluster: str, why: str) -> None:
    """Right now orc8r runs only in ``cluster`` and agw's latest answers came from there."""
    assert runs_in() == [cluster], why
    for _ in range(30):
        time.sleep(0.3)
        rec = sample.agw_record(EDGE, since=time.time() - 0.6, until=time.time() - 0.1,
                                complete=False)
        if set(rec["served_by"]) == {cluster}:
            return
    raise AssertionError(f"{why}: agw still served by {rec['served_by']}")


def assert_no_failed_request(since: float) -> None:
    """Over the whole window, once every request sent in it has ended (agw's timeout)."""
    rec = sample.agw_record(EDGE, since=since, until=time.time())
    assert rec["count"] > 20, "agw kept calling"
    assert rec["failed"] == 0, rec["errors"]


def points(step: str) -> list[str]:
    return [p for s, p in ENDPOINTS_POINTS if s == step]


@pytest.mark.parametrize("step", STEPS)
def test_failure_at_every_point_inside_a_step(where: tuple[str, str], home: Path,
                                              step: str) -> None:
    """Before the point of no return: rolled back, the source serves; after it: ``failed``, and
    the real ``kubehop migrate --resume`` finishes it."""
    start = time.time()
    journal = Store(f"sqlite:///{home / DB_FILE}")
    for point in points(step):
        src = runs_in()[0]
        dst = "cloud" if src == "edge" else "edge"
        seam = FaultAt(step, point, RuntimeError(f"injected at {step}/{point}"))
        with pytest.raises(MigrationError) as failed:
            Executor(journal, seam=seam).start(tb.inventory(), request(src, dst))
        assert seam.fired, point
        migration = journal.list()[-1]
        if STEP_TYPES[step].forward_only:
            assert migration.status == "failed" and "--resume" in str(failed.value), point
            resumed = cli(home, "--resume", migration.id, "-o", "json")
            assert resumed.returncode == 0, (point, resumed.stderr)
            assert json.loads(resumed.stdout)["status"] == "succeeded", point
            assert_served_by(dst, point)
        else:
            assert migration.status == "rolled-back", (point, migration.error)
            assert "rolled back" in str(failed.value), point
            assert_served_by(src, point)
            assert kube(dst).find("IngressRoute", NS) == [], point
            svc = kube(src).get("Service", "orc8r", NS)
            assert svc is not None and svc["spec"].get("selector") == {"app": "orc8r"}, point
    assert_no_failed_request(start)


@pytest.mark.parametrize("step", STEPS)
def test_crash_at_every_point_inside_a_step_then_resume(where: tuple[str, str], home: Path,
                                                        step: str) -> None:
    """The process stops dead at the point; the real ``kubehop migrate --resume`` finishes."""
    start = time.time()
    journal = Store(f"sqlite:///{home / DB_FILE}")
    for point in points(step):
        src = runs_in()[0]
        dst = "cloud" if src == "edge" else "edge"
        with pytest.raises(Crash):
            Executor(journal, seam=FaultAt(step, point, Crash())).start(tb.inventory(),
                                                                         request(src, dst))
        migration = journal.list()[-1]
        assert migration.status == "running", point
        resumed = cli(home, "--resume", migration.id, "-o", "json")
        assert resumed.returncode == 0, (point, resumed.stderr)
        assert json.loads(resumed.stdout)["status"] == "succeeded", point
        assert_served_by(dst, point)
    assert_no_failed_request(start)


def test_crash_then_rollback_restores_the_source(where: tuple[str, str], home: Path) -> None:
    """``kubehop migrate --rollback`` undoes a crashed migration from a half-done step."""
    start = time.time()
    journal = Store(f"sqlite:///{home / DB_FILE}")
    src, dst = where
    for step, point in (("copy", "workload"), ("dns", "record-set"),
                        ("switch", "selector-removed")):
        with pytest.raises(Crash):
            Executor(journal, seam=FaultAt(step, point, Crash())).start(tb.inventory(),
                                                                         request(src, dst))
        migration = journal.list()[-1]
        undone = cli(home, "--rollback", migration.id, "-o", "json")
        assert undone.returncode == 0, (point, undone.stderr)
        assert json.loads(undone.stdout)["status"] == "rolled-back", point
        assert_served_by(src, point)
    assert_no_failed_request(start)

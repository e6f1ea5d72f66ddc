"""The executor against in-memory clusters: every failure and every crash, at every point a step
can stop, ends with the service reachable throughout and the clusters either as they were
(rollback) or fully migrated (resume). Runs in seconds; the real-cluster twins are in
tests/testbed/test_faults.py."""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import pytest

from kubehop.adapters.store import Store
from kubehop.domain.model import STEPS, MigrationRequest, Strategy
from kubehop.engine.context import MigrationError
from kubehop.engine.executor import Executor
from kubehop.engine.steps.registry import STEP_TYPES
from kubehop.errors import UsageError

from .fakes import FQDN, NS, SERVICE, FakeConnector, World, deploy_orc8r


class Crash(BaseException):
    """Stands for the process dying: no handler in the engine catches it."""


class FaultAt:
    """Raises ``exc`` the first time the executor passes ``(step, point)``; records the rest."""

    def __init__(self, step: str = "", point: str = "", exc: BaseException | None = None
                 ) -> None:
        self.target = (step, point)
        self.exc = exc
        self.fired = False
        self.seen: list[tuple[str, str]] = []

    def checkpoint(self, step: str, point: str) -> None:
        self.seen.append((step, point))
        if not self.fired and (step, point) == self.target and self.exc is not None:
            self.fired = True
            raise self.exc


@pytest.fixture(autouse=True)
def no_drain_wait(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The drain is the one real wait in the engine; here its length is what matters."""
    drains: list[float] = []
    monkeypatch.setattr("kubehop.engine.steps.switch.time.sleep", drains.append)
    return drains


def request(strategy: Strategy = Strategy.ENDPOINTS, src: str = "edge", dst: str = "cloud",
            drain: float = 0.0) -> MigrationRequest:
    return MigrationRequest(service=SERVICE, namespace=NS, source=src, target=dst,
                            target_namespace=NS, strategy=strategy, drain_seconds=drain,
                            dns_ttl=0.0)


def fresh_world() -> World:
    world = World()
    deploy_orc8r(world.clusters["edge"])
    world.watch = {"edge"}
    return world


def snapshot(world: World) -> dict[str, Any]:
    """Everything in every cluster and the zone, minus what changes on any write."""
    out: dict[str, Any] = {"dns": dict(world.records)}
    for name, cluster in world.clusters.items():
        objs = {}
        for key, obj in cluster.objects.items():
            o = copy.deepcopy(obj)
            o["metadata"].pop("resourceVersion", None)
            o["metadata"].pop("uid", None)  # each new pod has its own
            for field in ("labels", "annotations"):
                if not o["metadata"].get(field):
                    o["metadata"].pop(field, None)
            objs[key] = o
        out[name] = objs
    return out


def store(tmp_path: Path) -> Store:
    return Store(f"sqlite:///{tmp_path / 'kubehop.db'}")


def executor(world: World, tmp_path: Path, seam: FaultAt | None = None) -> Executor:
    return Executor(store(tmp_path), seam=seam,
                    connect=FakeConnector(world))


def points_of(strategy: Strategy) -> list[tuple[str, str]]:
    """Every (step, point) a clean migration passes, in order."""
    import tempfile

    world, seam = fresh_world(), FaultAt()
    with tempfile.TemporaryDirectory() as tmp:
        executor(world, Path(tmp), seam).start(world.inventory(), request(strategy))
    return seam.seen


ENDPOINTS_POINTS = points_of(Strategy.ENDPOINTS)
EXTERNALNAME_POINTS = points_of(Strategy.EXTERNALNAME)
ALL_POINTS = [(Strategy.ENDPOINTS, s, p) for s, p in ENDPOINTS_POINTS] + [
    (Strategy.EXTERNALNAME, s, p) for s, p in EXTERNALNAME_POINTS
    if (s, p) not in ENDPOINTS_POINTS]


@functools.cache
def migrated_state(strategy: Strategy) -> dict[str, Any]:
    import tempfile

    world = fresh_world()
    with tempfile.TemporaryDirectory() as tmp:
        executor(world, Path(tmp)).start(world.inventory(), request(strategy))
    return normalised(snapshot(world))


def normalised(snap: dict[str, Any]) -> dict[str, Any]:
    """Without the migration's id (each run has its own) and cluster-assigned IPs."""
    text = repr(snap)
    import re

    return {"text": re.sub(r"\d{8}-\d{6}-[0-9a-f]{6}", "ID", text)}


def test_every_step_declares_the_points_it_passes() -> None:
    for step, point in ENDPOINTS_POINTS + EXTERNALNAME_POINTS:
        assert point == "begin" or point in STEP_TYPES[step].points, (step, point)
    assert [s for s, p in ENDPOINTS_POINTS if p == "begin"] == list(STEPS)
    assert ("switch", "drain-service") in EXTERNALNAME_POINTS
    assert ("switch", "drain-service") not in ENDPOINTS_POINTS


@pytest.mark.parametrize("strategy", [Strategy.ENDPOINTS, Strategy.EXTERNALNAME])
def test_a_clean_migration_never_leaves_clients_unserved(tmp_path: Path,
                                                         strategy: Strategy) -> None:
    world = fresh_world()
    report = executor(world, tmp_path).start(world.inventory(), request(strategy))
    assert report.status == "succeeded"
    assert [p.name for p in report.phases] == list(STEPS)
    assert world.outages == []
    edge, cloud = world.clusters["edge"], world.clusters["cloud"]
    assert edge.get("Deployment", "orc8r", NS) is None
    assert cloud.get("Deployment", "orc8r", NS) is not None
    assert world.records[FQDN] == [cloud.lb]
    svc = edge.get("Service", SERVICE, NS)
    assert svc is not None
    assert svc["spec"].get("type") == ("ExternalName" if strategy is Strategy.EXTERNALNAME
                                       else None)


@pytest.mark.parametrize(("strategy", "step", "point"), ALL_POINTS)
def test_failure_at_every_point_rolls_back_or_is_resumable(
        tmp_path: Path, strategy: Strategy, step: str, point: str) -> None:
    world = fresh_world()
    before = snapshot(world)
    seam = FaultAt(step, point, RuntimeError(f"boom at {step}/{point}"))
    with pytest.raises(MigrationError) as failed:
        executor(world, tmp_path, seam).start(world.inventory(), request(strategy))
    message = str(failed.value)
    assert f"step {step} failed: RuntimeError: boom at {step}/{point}" in message
    assert "\n" not in message
    journal = store(tmp_path)
    row = journal.list()[-1]
    if STEP_TYPES[step].forward_only:
        assert "--resume" in message and row.status == "failed"
        report = executor(world, tmp_path).resume(world.inventory(), row.id)
        assert report.status == "succeeded"
        assert normalised(snapshot(world)) == migrated_state(strategy)
    else:
        assert "rolled back" in message and row.status == "rolled-back"
        assert snapshot(world) == before
    assert world.outages == []


@pytest.mark.parametrize(("strategy", "step", "point"), ALL_POINTS)
def test_crash_at_every_point_then_resume_finishes(
        tmp_path: Path, strategy: Strategy, step: str, point: str) -> None:
    world = fresh_world()
    with pytest.raises(Crash):
        executor(world, tmp_path, FaultAt(step, point, Crash())).start(
            world.inventory(), request(strategy))
    row = store(tmp_path).list()[-1]
    assert row.status == "running"
    report = executor(world, tmp_path).resume(world.inventory(), row.id)
    assert report.status == "succeeded"
    assert normalised(snapshot(world)) == migrated_state(strategy)
    assert world.outages == []


@pytest.mark.parametrize(("strategy", "step", "point"), ALL_POINTS)
def test_crash_at_every_point_then_rollback_restores_or_is_refused(
        tmp_path: Path, strategy: Strategy, step: str, point: str) -> None:
    world = fresh_world()
    before = snapshot(world)
    with pytest.raises(Crash):
        executor(world, tmp_path, FaultAt(step, point, Crash())).start(
            world.inventory(), request(strategy))
    row = store(tmp_path).list()[-1]
    if STEP_TYPES[step].forward_only:
        with pytest.raises(UsageError, match="point of no return"):
            executor(world, tmp_path).abort(world.inventory(), row.id)
        return
    report = executor(world, tmp_path).abort(world.inventory(), row.id)
    assert report.status == "rolled-back"
    assert snapshot(world) == before
    assert world.outages == []


@pytest.mark.parametrize("undo", ["copy", "route", "dns", "switch"])
def test_crash_during_rollback_then_resume_finishes_the_rollback(tmp_path: Path,
                                                                 undo: str) -> None:
    world = fresh_world()
    before = snapshot(world)

    class FailThenCrash(FaultAt):
        def checkpoint(self, step: str, point: str) -> None:
            if (step, point) == ("switch", "selector-removed"):
                raise RuntimeError("boom")
            if (step, point) == (f"undo-{undo}", "begin"):
                raise Crash()

    with pytest.raises(Crash):
        executor(world, tmp_path, FailThenCrash()).start(world.inventory(), request())
    row = store(tmp_path).list()[-1]
    assert row.status == "rolling-back"
    report = executor(world, tmp_path).resume(world.inventory(), row.id)
    assert report.status == "rolled-back"
    assert snapshot(world) == before
    assert world.outages == []


def test_rollback_order_is_the_reverse_of_the_steps_done(tmp_path: Path) -> None:
    world = fresh_world()
    seam = FaultAt("switch", "selector-removed", RuntimeError("boom"))
    with pytest.raises(MigrationError, match=r"rolled back \(switch, dns, route, copy\)"):
        executor(world, tmp_path, seam).start(world.inventory(), request())
    undos = [s for s, p in seam.seen if s.startswith("undo-") and p == "begin"]
    assert undos == ["undo-switch", "undo-cutover", "undo-verify", "undo-dns", "undo-ready",
                     "undo-start", "undo-precopy", "undo-route", "undo-copy"]


def test_round_trip_through_three_clusters_keeps_every_client_served(tmp_path: Path) -> None:
    world = fresh_world()
    for src, dst in (("edge", "cloud"), ("cloud", "fog"), ("fog", "edge")):
        world.watch = {"edge", src}
        report = executor(world, tmp_path).start(world.inventory(),
                                                 request(src=src, dst=dst))
        assert report.status == "succeeded"
    assert world.outages == []
    edge = world.clusters["edge"]
    assert edge.get("Service", SERVICE, NS)["spec"]["selector"] == {"app": "orc8r"}  # type: ignore[index]
    for name in ("cloud", "fog"):
        cluster = world.clusters[name]
        assert cluster.get("Deployment", "orc8r", NS) is None
        assert cluster.client_served()
        alias = cluster.get("EndpointSlice", "orc8r-kubehop", NS)
        assert alias is not None and alias["endpoints"][0]["addresses"] == [edge.lb]
    assert world.records[FQDN] == [edge.lb]


@pytest.mark.parametrize(("strategy", "target_was", "drain", "expected"), [
    (Strategy.ENDPOINTS, None, 5.0, 5.0),
    (Strategy.EXTERNALNAME, None, 5.0, 31.0),
    (Strategy.EXTERNALNAME, None, 60.0, 60.0),
    (Strategy.ENDPOINTS, "ExternalName", 5.0, 31.0),
])
def test_drain_outlasts_the_dns_ttl_only_when_names_change(
        strategy: Strategy, target_was: str | None, drain: float, expected: float) -> None:
    from kubehop.engine.context import Migration

    world = fresh_world()
    req = MigrationRequest(service=SERVICE, namespace=NS, source="edge", target="cloud",
                           target_namespace=NS, strategy=strategy, drain_seconds=drain,
                           dns_ttl=30.0)
    m = Migration(world.inventory(), req, migration_id="x", connect=FakeConnector(world))
    if target_was:
        m.state.target_service_before = {"spec": {"type": target_was}}
    assert m.drain_seconds() == expected


def test_a_workload_mounting_a_service_account_token_migrates_with_a_fresh_token(
        tmp_path: Path) -> None:
    world = fresh_world()
    edge = world.clusters["edge"]
    edge.apply({"apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": "orc8r-sa", "namespace": NS}})
    edge.apply({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
                "metadata": {"name": "orc8r-token", "namespace": NS, "annotations": {
                    "kubernetes.io/service-account.name": "orc8r-sa",
                    "kubernetes.io/service-account.uid": "edge-uid"}},
                "data": {"token": "ZWRnZS10b2tlbg=="}})
    dep = edge.objects[("Deployment", NS, "orc8r")]
    dep["spec"]["template"]["spec"]["volumes"].append(
        {"name": "t", "secret": {"secretName": "orc8r-token"}})
    report = executor(world, tmp_path).start(world.inventory(), request())
    assert report.status == "succeeded"
    cloud = world.clusters["cloud"]
    token = cloud.get("Secret", "orc8r-token", NS)
    assert token is not None and "data" not in token
    assert cloud.get("ServiceAccount", "orc8r-sa", NS) is not None


def test_resume_of_a_finished_migration_is_refused(tmp_path: Path) -> None:
    world = fresh_world()
    report = executor(world, tmp_path).start(world.inventory(), request())
    with pytest.raises(UsageError, match="succeeded; nothing to resume"):
        executor(world, tmp_path).resume(world.inventory(), report.id)


@pytest.mark.parametrize(("point", "drained"), [("older-aliases", []), ("alias-slice", [4.0]),
                                                ("pod-endpoints-dropped", [4.0])])
def test_a_rollback_after_clients_may_have_moved_drains_back_first(
        tmp_path: Path, no_drain_wait: list[float], point: str, drained: list[float]) -> None:
    world = fresh_world()
    with pytest.raises(MigrationError):
        executor(world, tmp_path, FaultAt("switch", point, RuntimeError("boom"))).start(
            world.inventory(), request(drain=4.0))
    assert no_drain_wait == drained

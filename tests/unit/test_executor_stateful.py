"""The executor moving a *stateful* service (orc8r with its database on a PVC) between in-memory
clusters: the data steps (precopy, cutover) and what copy, switch and cleanup do for volumes, at
every point they can stop. The fakes' :class:`~tests.unit.fakes.MemoryEngine` moves volumes that
are dicts of files; the application's freeze/thaw hooks are answered through the pod proxy and
recorded. The real-cluster twins are in tests/testbed/test_stateful.py."""

from __future__ import annotations

import copy
import functools
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import kubehop.engine.context
import kubehop.engine.data.workload
import kubehop.engine.steps.route
import kubehop.engine.steps.switch
from kubehop.adapters.store import Store
from kubehop.domain import mover as mv
from kubehop.domain.model import STATEFUL_STEPS, STEPS, MigrationRequest, Strategy
from kubehop.engine.context import MigrationError
from kubehop.engine.data.interface import DataError
from kubehop.engine.executor import Executor
from kubehop.engine.steps.data import MAX_PASSES, SMALL_PASS
from kubehop.engine.steps.registry import STEP_TYPES
from kubehop.errors import UsageError
from kubehop.waiting import wait_for

from .fakes import (
    CLAIM,
    FQDN,
    MOVER_IMAGE,
    NS,
    SERVICE,
    STORAGE_CLASS,
    FakeCluster,
    FakeConnector,
    World,
    deploy_orc8r,
    make_stateful,
    memory_engine,
)

FILES = {"orc8r.db": b"SQLite format 3\0" + bytes(range(256)) * 16,
         "orc8r.db-wal": b"wal" * 100, "networks/edge-1.json": b'{"id": "edge-1"}'}
HOOKS, SCALE = "hook", "scale"
SOURCE_PODS = ["orc8r-0", "orc8r-1"]


class Crash(BaseException):
    """Stands for the process dying: no handler in the engine catches it."""


class Seam:
    """Records every point in the world's events (so tests can order them against the hooks
    and passes), calls ``at(step, point)`` at each, and raises ``exc`` the first time the run
    passes ``(step, point)``."""

    def __init__(self, world: World, step: str = "", point: str = "",
                 exc: BaseException | None = None,
                 at: Callable[[str, str], None] | None = None) -> None:
        self.world = world
        self.target = (step, point)
        self.exc = exc
        self.at = at
        self.fired = False
        self.seen: list[tuple[str, str]] = []

    def checkpoint(self, step: str, point: str) -> None:
        self.seen.append((step, point))
        self.world.events.append(("point", step, point))
        if self.at is not None:
            self.at(step, point)
        if not self.fired and (step, point) == self.target and self.exc is not None:
            self.fired = True
            raise self.exc


def capped(check: Callable[[], Any], *, timeout: float, **kwargs: Any) -> Any:
    """The fakes answer at once: a wait that is not over in a tenth of a second never will be."""
    return wait_for(check, timeout=min(timeout, 0.1), **kwargs)


@pytest.fixture(autouse=True)
def fast_fakes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The memory engine moves the data; every wait is capped; the drain takes no time."""
    for module in (kubehop.engine.context, kubehop.engine.data.workload,
                   kubehop.engine.steps.route, kubehop.engine.steps.switch):
        monkeypatch.setattr(module, "wait_for", capped)
    monkeypatch.setattr("kubehop.engine.steps.switch.time.sleep", lambda seconds: None)
    with memory_engine():
        yield


@pytest.fixture(scope="module")
def journal(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """One journal for the module: every migration has its own id."""
    return Store(f"sqlite:///{tmp_path_factory.mktemp('journal') / 'kubehop.db'}")


def request(src: str = "edge", dst: str = "cloud") -> MigrationRequest:
    return MigrationRequest(service=SERVICE, namespace=NS, source=src, target=dst,
                            target_namespace=NS, strategy=Strategy.ENDPOINTS, drain_seconds=0.0,
                            dns_ttl=0.0)


def stateful_world(freeze: str = HOOKS, files: dict[str, bytes] | None = None) -> World:
    """orc8r in edge, 2 replicas on one PVC holding ``files``; with freeze/thaw hooks, or
    without (then the source is scaled to 0 for the final pass). Edge's clients are watched
    with hooks (they are never unserved); without hooks the scale-down is an outage by design."""
    world = World()
    edge = world.clusters["edge"]
    deploy_orc8r(edge)
    make_stateful(edge, dict(FILES if files is None else files), hooks=freeze == HOOKS)
    world.watch = {"edge"} if freeze == HOOKS else set()
    return world


def edge(world: World) -> FakeCluster:
    return world.clusters["edge"]


def cloud(world: World) -> FakeCluster:
    return world.clusters["cloud"]


def executor(world: World, journal: Store, seam: Seam | None = None) -> Executor:
    return Executor(journal, seam=seam, connect=FakeConnector(world))


def start(world: World, journal: Store, seam: Seam | None = None, *,
          migration_id: str | None = None) -> Any:
    return executor(world, journal, seam).start(
        world.inventory(mover_image=MOVER_IMAGE), request(),
        migration_id=migration_id or Executor.new_id())


def resume(world: World, journal: Store, migration_id: str) -> Any:
    return executor(world, journal).resume(world.inventory(mover_image=MOVER_IMAGE),
                                           migration_id)


def abort(world: World, journal: Store, migration_id: str) -> Any:
    return executor(world, journal).abort(world.inventory(mover_image=MOVER_IMAGE),
                                          migration_id)


def state_of(world: World) -> dict[str, Any]:
    """Every object in every cluster and the zone (minus what changes on any write), every
    volume's files and which pods are frozen."""
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
        out[name] = {"objects": objs, "volumes": copy.deepcopy(cluster.volumes),
                     "frozen": sorted(cluster.frozen)}
    return out


def normalised(state: dict[str, Any]) -> str:
    """Without the migration's id (each run has its own)."""
    return re.sub(r"\d{8}-\d{6}-[0-9a-f]{6}|kubehop-(sender|receiver|prepull|mover)-[0-9a-f]{6}",
                  "ID", repr(state))


def target_data(world: World) -> dict[str, bytes]:
    return cloud(world).volumes.get((NS, CLAIM), {})


def movers(world: World) -> list[tuple[str, str, str, str]]:
    """The movers, their keys and pre-pull pods left anywhere."""
    return [(c.name, *key) for c in world.clusters.values() for key in c.objects
            if key[2].startswith("kubehop-") and key[0] in {"Pod", "Secret"}]


def points_of(freeze: str) -> list[tuple[str, str]]:
    """Every (step, point) a clean stateful migration passes, in order."""
    world = stateful_world(freeze)
    seam = Seam(world)
    with memory_engine(), tempfile.TemporaryDirectory() as tmp:
        executor(world, Store(f"sqlite:///{Path(tmp) / 'kubehop.db'}"), seam).start(
            world.inventory(mover_image=MOVER_IMAGE), request())
    return seam.seen


HOOK_POINTS = points_of(HOOKS)
SCALE_POINTS = points_of(SCALE)


def past_point_of_no_return(freeze: str, step: str, point: str) -> bool:
    """Where a failure is finished (``--resume``) instead of rolled back: the forward-only
    steps, and without hooks (the target cannot be frozen) from the moment anything may send
    clients to the target: the private-zone record's change on. With hooks the target is frozen
    until the end of the switch, so the whole switch rolls back."""
    if STEP_TYPES[step].forward_only:
        return True
    return freeze == SCALE and (step in {"verify", "switch"}
                                or (step == "dns" and point != "begin"))


def cases(freeze: str, points: list[tuple[str, str]],
          steps: set[str] | None = None) -> list[Any]:
    return [pytest.param(freeze, step, point, id=f"{freeze}-{step}-{point}")
            for step, point in points if steps is None or step in steps]


DATA_STEPS = {"precopy", "cutover", "start", "ready", "dns", "switch"}
"""Where moving without hooks differs from moving with them (and the point of no return)."""
EVERY_POINT = cases(HOOKS, HOOK_POINTS) + cases(SCALE, SCALE_POINTS, DATA_STEPS)


@functools.cache
def migrated_state(freeze: str) -> str:
    world = stateful_world(freeze)
    with memory_engine(), tempfile.TemporaryDirectory() as tmp:
        executor(world, Store(f"sqlite:///{Path(tmp) / 'kubehop.db'}")).start(
            world.inventory(mover_image=MOVER_IMAGE), request())
    return normalised(state_of(world))


def index(events: list[tuple[Any, ...]], event: tuple[Any, ...]) -> int:
    return events.index(event)


# --- the points ---------------------------------------------------------------------------------


def test_a_stateful_move_passes_every_point_of_its_data_steps() -> None:
    """A stateful move passes each point the data steps declare, in the plan's order, with and
    without hooks; every point passed is declared by its step."""
    for points in (HOOK_POINTS, SCALE_POINTS):
        for step, point in points:
            assert point == "begin" or point in STEP_TYPES[step].points, (step, point)
        assert [s for s, p in points if p == "begin"] == list(STATEFUL_STEPS)
        for step in ("precopy", "cutover"):
            assert [p for s, p in points if s == step and p != "begin"] == list(
                STEP_TYPES[step].points)


# --- a clean move -------------------------------------------------------------------------------


@pytest.mark.parametrize("freeze", [HOOKS, SCALE])
def test_a_clean_stateful_move_leaves_the_target_holding_exactly_the_source_files(
        journal: Store, freeze: str) -> None:
    """The target's PVC ends with exactly the source's files; the report counts them; no mover,
    key or pre-pull pod is left; the target's pods take writes; with hooks, no client of the
    source is unserved at any moment."""
    world = stateful_world(freeze)
    report = start(world, journal)
    assert report.status == "succeeded"
    assert target_data(world) == FILES
    assert (report.data["files"], report.data["bytes"]) == (
        len(FILES), sum(len(b) for b in FILES.values()))
    assert report.data["passes"][-1]["final"] is True
    assert all(not p["final"] for p in report.data["passes"][:-1])
    assert "freeze_started" not in report.data and report.data["freeze_seconds"] >= 0
    assert report.data["engine"] == "memory"  # the engine that moved the data, by its name
    assert movers(world) == []
    assert cloud(world).get("PersistentVolumeClaim", CLAIM, NS)["status"]["phase"] == "Bound"  # type: ignore[index]
    assert cloud(world).writers() == SOURCE_PODS
    assert cloud(world).app_write("after", b"1")
    assert world.outages == []


def test_hooks_freeze_the_source_before_the_final_pass_and_thaw_the_target_after_the_switch(
        journal: Store) -> None:
    """Every source pod's freeze hook answers before the final pass starts, and no source pod
    takes writes during that pass or the verification; the target's pods start once the copy
    is verified and are frozen as soon as they are ready, before the private-zone record or
    Traefik may lead anyone to them, and thawed only once the switch has sent every client to
    the target; the source is never thawed (its pods stay frozen until cleanup deletes
    them)."""
    world = stateful_world(HOOKS)
    start(world, journal, Seam(world))
    ev = world.events
    final = next(i for i, e in enumerate(ev) if e[0] == "pass" and e[1] is True)
    assert ev[final][2] == [], "a source pod took writes during the final pass"
    verify = next(i for i, e in enumerate(ev) if e[0] == "verify")
    assert final < verify and ev[verify][1] == []
    for pod in SOURCE_PODS:
        assert index(ev, ("point", "cutover", "begin")) < index(ev, ("freeze", "edge", pod)) < final
        frozen = index(ev, ("freeze", "cloud", pod))
        assert verify < index(ev, ("point", "cutover", "verified")) < index(
            ev, ("point", "start", "scaled")) < frozen < index(
            ev, ("point", "ready", "target-frozen")) < index(ev, ("point", "dns", "begin"))
        thawed = index(ev, ("thaw", "cloud", pod))
        assert index(ev, ("point", "switch", "pod-endpoints-dropped")) < thawed < index(
            ev, ("point", "drain", "begin"))
    assert not [e for e in ev if e[0] == "thaw" and e[1] == "edge"]


def test_without_hooks_the_source_is_stopped_for_the_final_pass_and_its_clients_wait_for_the_switch(
        journal: Store) -> None:
    """No hook declared: the source is scaled to 0 and every pod gone before the final pass (no
    hook is called anywhere). Its clients are unserved from that scale-down until the switch
    sends them to the target, and only then."""
    world = stateful_world(SCALE)
    served: list[tuple[str, str, bool]] = []
    start(world, journal, Seam(world, at=lambda s, p: served.append(
        (s, p, edge(world).client_served()))))
    ev = world.events
    final = next(e for e in ev if e[0] == "pass" and e[1] is True)
    assert final[2] == []
    assert not [e for e in ev if e[0] in {"freeze", "thaw"}]
    down = [(s, p) for s, p, ok in served if not ok]
    points = [(s, p) for s, p, _ in served]
    assert down == points[points.index(("cutover", "source-frozen")):
                          points.index(("switch", "alias-slice"))]
    assert target_data(world) == FILES


def test_writes_acknowledged_before_the_freeze_are_in_the_target(journal: Store) -> None:
    """A client writes to the source at every point and during every pass: whatever the source
    acknowledged is in the target afterwards; once the freeze hook has answered, the source
    acknowledges nothing."""
    for freeze in (HOOKS, SCALE):
        world = stateful_world(freeze)
        acked: list[str] = []
        refused: list[str] = []

        def write(tag: str, world: World = world, acked: list[str] = acked,
                  refused: list[str] = refused) -> None:
            path = f"acks/{len(acked) + len(refused):03d}-{tag}"
            (acked if edge(world).app_write(path, tag.encode()) else refused).append(path)

        world.before_pass.append(lambda final, write=write: write(f"pass-{final}"))
        start(world, journal, Seam(world, at=lambda s, p, write=write: write(f"{s}-{p}")))
        data = target_data(world)
        assert acked and all(path in data for path in acked)
        assert {p for p in data if p.startswith("acks/")} == set(acked)
        first_refused = min(refused)
        assert "cutover-source-frozen" in first_refused or "pass-True" in first_refused
        assert all(a < first_refused for a in acked), (freeze, acked, refused)


def test_the_target_workload_waits_at_zero_replicas_until_its_data_is_there(
        journal: Store) -> None:
    """copy makes the target's workload at 0 replicas: no target pod runs before the cut-over
    has verified the final copy (the pre-copy has pre-pulled the images); then ``start`` scales
    it to the source's replicas."""
    world = stateful_world(HOOKS)
    pods: list[tuple[str, str, list[str]]] = []
    start(world, journal, Seam(world, at=lambda s, p: pods.append(
        (s, p, cloud(world).app_pods()))))
    running = [(s, p) for s, p, names in pods if names]
    assert running[0] == ("start", "scaled")
    assert ("copy", "workload") in [(s, p) for s, p, names in pods if not names]
    scaled = index(world.events, ("point", "start", "scaled"))
    assert index(world.events, ("point", "cutover", "verified")) < scaled
    assert [e for e in world.events[:scaled] if e[0] == "pass"]


def test_the_movers_are_gone_before_the_target_starts_and_before_any_thaw(
        journal: Store) -> None:
    """The movers (and their keys) stay through the pre-copy and the final pass, and go as soon
    as the copy is verified: before the target's pods start on the data, and known gone before
    any pod is thawed. The pre-pull pod is gone as soon as the images are on the node."""
    world = stateful_world(HOOKS)
    left: dict[tuple[str, str], list[Any]] = {}
    start(world, journal, Seam(world, at=lambda s, p: left.__setitem__((s, p), movers(world))))
    assert len(left[("cutover", "verified")]) == 4
    assert left[("cutover", "movers-removed")] == []
    assert not [m for m in left[("cutover", "begin")] if "prepull" in m[3]]
    ev = world.events
    gone = index(ev, ("movers-gone",))
    assert gone < min(i for i, e in enumerate(ev) if e[0] == "thaw")


def test_cleanup_keeps_the_source_claim_with_its_data_as_of_the_freeze(journal: Store) -> None:
    """The source's workload goes, its PVC stays, holding the data as it was when writes
    stopped (for the user to delete, or for a later move back)."""
    world = stateful_world(HOOKS)
    start(world, journal)
    assert edge(world).get("Deployment", "orc8r", NS) is None
    assert edge(world).get("PersistentVolumeClaim", CLAIM, NS) is not None
    assert edge(world).volumes[(NS, CLAIM)] == FILES


def test_a_move_back_reuses_the_claim_left_behind_and_sends_only_the_difference(
        journal: Store) -> None:
    """Moved edge -> cloud and, after a write in cloud, back: edge's PVC (kept by the first
    move's cleanup) is reused, so the first pass back sends only the changed file, and edge
    ends with exactly cloud's files."""
    world = stateful_world(HOOKS)
    start(world, journal)
    assert cloud(world).app_write("orc8r.db-wal", b"new" * 10)
    inventory = world.inventory(mover_image=MOVER_IMAGE)
    report = executor(world, journal).start(inventory, request("cloud", "edge"))
    assert report.status == "succeeded"
    assert report.data["passes"][0] == {"bytes": 30, "files": 1, "seconds": 0.0, "final": False}
    assert edge(world).volumes[(NS, CLAIM)] == {**FILES, "orc8r.db-wal": b"new" * 10}
    assert edge(world).writers() == SOURCE_PODS
    assert world.outages == []


@pytest.mark.parametrize(("writes_mib", "precopy_passes"), [
    ([], 1),
    ([8, 4, 2, 0.5], 4),
    ([4, 5], 2),
    ([10, 9, 8, 7, 6, 5], MAX_PASSES),
], ids=["small-first-pass", "until-small", "until-no-longer-shrinking", "at-most-max"])
def test_precopy_passes_repeat_while_what_they_send_shrinks(
        journal: Store, monkeypatch: pytest.MonkeyPatch, writes_mib: list[float],
        precopy_passes: int) -> None:
    """While the source serves, passes repeat until one sends at most SMALL_PASS (1 MiB), sends
    no less than the one before, or MAX_PASSES have run; then one final pass inside the freeze.
    (SMALL_PASS is made 8 KiB here, and the writes with it: the policy, not the bytes, is
    under test.)"""
    assert SMALL_PASS == 1 << 20
    small = 8 << 10
    monkeypatch.setattr("kubehop.engine.steps.data.SMALL_PASS", small)
    world = stateful_world(HOOKS)
    sizes = iter(writes_mib)

    def app_writes(final: bool) -> None:
        size = next(sizes, None)
        if not final and size is not None:
            assert edge(world).app_write(f"grow/{size}", b"x" * int(size * small))

    world.before_pass.append(app_writes)
    report = start(world, journal)
    passes = report.data["passes"]
    assert [p["final"] for p in passes] == [False] * precopy_passes + [True]
    assert target_data(world) == edge(world).volumes[(NS, CLAIM)]


def test_failed_attempts_of_the_first_pass_are_reported(journal: Store) -> None:
    """The first pass is retried while the path to the target settles; the report says why
    each earlier attempt failed instead of hiding it."""
    world = stateful_world(HOOKS)
    reset = "rsync: connection reset by peer (exit 10)"
    world.pass_errors = [reset, reset]
    report = start(world, journal)
    assert report.data["failed_attempts"] == [reset, reset]
    assert target_data(world) == FILES


# --- what rolls back ---------------------------------------------------------------------------


def assert_rolled_back(world: World, before: dict[str, Any]) -> None:
    """As before the move: nothing left in any cluster, no target copy, and the source the
    writer (every pod running and thawed) with its data."""
    assert state_of(world) == before
    assert edge(world).writers() == SOURCE_PODS
    assert edge(world).volumes[(NS, CLAIM)] == FILES
    assert edge(world).client_served()
    assert not [e for e in world.events if e[0] == "thaw" and e[1] == "cloud"]


@pytest.mark.parametrize(("damage", "problem"), [
    ("byte-short", "orc8r.db: size 4112 != 4111"),
    ("file-missing", "missing in target: orc8r-db/networks/edge-1.json"),
    ("extra-file", "extra in target: orc8r-db/stray"),
    ("same-size-other-bytes", "orc8r.db-wal: sha256 differs"),
])
def test_a_copy_that_differs_from_the_source_fails_the_verification_and_rolls_back(
        journal: Store, damage: str, problem: str) -> None:
    """The final pass done, the target's copy is damaged: the verification names what differs,
    the cut-over fails and everything rolls back, the source thawed and still the writer with
    its data, the target's copy gone."""
    world = stateful_world(HOOKS)
    before = state_of(world)

    def damaged(final: bool) -> None:
        if not final:
            return
        data = target_data(world)
        if damage == "byte-short":
            data["orc8r.db"] = data["orc8r.db"][:-1]
        elif damage == "file-missing":
            del data["networks/edge-1.json"]
        elif damage == "extra-file":
            data["stray"] = b"?"
        else:
            data["orc8r.db-wal"] = b"WAL" * 100

    world.after_pass.append(damaged)
    with pytest.raises(MigrationError, match=r"step cutover failed: the copy in cloud differs "
                                             r"from the source: .*rolled back") as failed:
        start(world, journal)
    assert problem in str(failed.value)
    assert_rolled_back(world, before)
    assert [e[2] for e in world.events if e[0] == "thaw"] == SOURCE_PODS


def test_a_final_pass_that_fails_rolls_back_and_thaws_the_source(journal: Store) -> None:
    """rsync failing inside the freeze fails the cut-over: the source is thawed and keeps its
    data; nothing is left in the target."""
    world = stateful_world(HOOKS)
    before = state_of(world)

    def fail_final(final: bool) -> None:
        if final:
            raise DataError("rsync from edge to cloud failed (exit 23): partial transfer")

    world.before_pass.append(fail_final)
    with pytest.raises(MigrationError, match=r"exit 23.*rolled back"):
        start(world, journal)
    assert_rolled_back(world, before)


def test_a_freeze_hook_that_fails_on_one_pod_rolls_back_and_thaws_every_source_pod(
        journal: Store) -> None:
    """A pod whose freeze hook does not answer 2xx fails the cut-over; the other pods, already
    frozen, are thawed by the rollback."""
    world = stateful_world(HOOKS)
    before = state_of(world)
    world.hook_status[("edge", "freeze", "orc8r-1")] = 500
    with pytest.raises(MigrationError, match=r"freeze of pod orc8r-ns/orc8r-1 in edge answered "
                                             r"HTTP 500.*rolled back"):
        start(world, journal)
    assert ("freeze", "edge", "orc8r-0") in world.events
    assert_rolled_back(world, before)


def test_an_image_that_cannot_be_pulled_fails_the_precopy_before_any_target_pod_starts(
        journal: Store) -> None:
    """The pre-pull finds the image cannot be pulled: the pre-copy fails before the target's
    workload is scaled up, and everything rolls back."""
    world = stateful_world(HOOKS)
    before = state_of(world)
    world.unpullable.add("orc8r")
    pods: list[str] = []
    with pytest.raises(MigrationError, match=r"step precopy failed: .*image orc8r cannot be "
                                             r"pulled.*rolled back"):
        start(world, journal, Seam(world, at=lambda s, p: pods.extend(cloud(world).app_pods())))
    assert pods == []
    assert_rolled_back(world, before)


def test_a_target_without_the_claims_storage_class_fails_the_precopy_and_rolls_back(
        journal: Store) -> None:
    """The target's PVC cannot bind (no such StorageClass there): no data can be copied, the
    pre-copy fails and the move rolls back."""
    world = stateful_world(HOOKS)
    cloud(world).delete("StorageClass", STORAGE_CLASS)
    before = state_of(world)
    with pytest.raises(MigrationError, match=r"step precopy failed: PVC orc8r-db is not bound in "
                                             r"cloud.*rolled back"):
        start(world, journal)
    assert_rolled_back(world, before)


# --- failures and crashes at every point -----------------------------------------------------


@pytest.mark.parametrize(("freeze", "step", "point"), EVERY_POINT)
def test_failure_at_every_point_rolls_back_before_the_point_of_no_return_else_resumes(
        journal: Store, freeze: str, step: str, point: str) -> None:
    """A failure before the point of no return rolls back: the clusters as they were, the
    source thawed and the writer with its data, the target never thawed. After it, the
    migration is left failed and ``--resume`` finishes it with the data intact."""
    world = stateful_world(freeze)
    before = state_of(world)
    mid = Executor.new_id()
    with pytest.raises(MigrationError) as failed:
        start(world, journal, Seam(world, step, point, RuntimeError(f"boom at {step}/{point}")),
              migration_id=mid)
    message = str(failed.value)
    assert f"step {step} failed: RuntimeError: boom at {step}/{point}" in message
    if past_point_of_no_return(freeze, step, point):
        assert "--resume" in message and journal.get(mid).status == "failed"
        assert resume(world, journal, mid).status == "succeeded"
        assert target_data(world) == FILES
        assert normalised(state_of(world)) == migrated_state(freeze)
    else:
        assert "rolled back" in message and journal.get(mid).status == "rolled-back"
        assert_rolled_back(world, before)
    assert world.outages == []


@pytest.mark.parametrize(("freeze", "step", "point"), [
    pytest.param(*p.values, id=p.id) for p in EVERY_POINT])
def test_crash_at_every_point_then_resume_finishes_with_the_data_intact(
        journal: Store, freeze: str, step: str, point: str) -> None:
    """The process dies at any point; ``--resume`` finishes the move: the target holds exactly
    the source's files, the clusters end as after a clean move, no mover left."""
    world = stateful_world(freeze)
    mid = Executor.new_id()
    with pytest.raises(Crash):
        start(world, journal, Seam(world, step, point, Crash()), migration_id=mid)
    assert journal.get(mid).status == "running"
    assert resume(world, journal, mid).status == "succeeded"
    assert target_data(world) == FILES
    assert normalised(state_of(world)) == migrated_state(freeze)
    assert world.outages == []


@pytest.mark.parametrize(("freeze", "step", "point"),
                         cases(HOOKS, HOOK_POINTS, DATA_STEPS) + cases(SCALE, SCALE_POINTS,
                                                                        DATA_STEPS))
def test_crash_in_the_data_steps_then_rollback_restores_or_is_refused(
        journal: Store, freeze: str, step: str, point: str) -> None:
    """After a crash, ``--rollback`` restores the clusters and thaws the source, unless the
    target may already have acknowledged writes: then it is refused."""
    world = stateful_world(freeze)
    before = state_of(world)
    mid = Executor.new_id()
    with pytest.raises(Crash):
        start(world, journal, Seam(world, step, point, Crash()), migration_id=mid)
    if past_point_of_no_return(freeze, step, point):
        with pytest.raises(UsageError, match="point of no return"):
            abort(world, journal, mid)
        return
    assert abort(world, journal, mid).status == "rolled-back"
    assert_rolled_back(world, before)


@pytest.mark.parametrize("undo", ["cutover", "precopy", "copy"])
def test_crash_during_the_rollback_of_a_stateful_move_then_resume_finishes_it(
        journal: Store, undo: str) -> None:
    """The verification fails, and the process dies while rolling back: ``--resume`` finishes
    the rollback, the source thawed and the writer with its data."""
    world = stateful_world(HOOKS)
    before = state_of(world)
    world.after_pass.append(lambda final: target_data(world).pop("orc8r.db") if final else None)
    mid = Executor.new_id()
    with pytest.raises(Crash):
        start(world, journal, Seam(world, f"undo-{undo}", "begin", Crash()), migration_id=mid)
    assert journal.get(mid).status == "rolling-back"
    assert resume(world, journal, mid).status == "rolled-back"
    assert_rolled_back(world, before)


def test_once_the_target_is_being_thawed_a_failure_is_finished_never_rolled_back(
        journal: Store) -> None:
    """The target's thaw hook fails at the end of the switch: the target may already take
    writes, so the migration is left failed, ``--rollback`` is refused, and ``--resume``
    thaws it and finishes."""
    world = stateful_world(HOOKS)
    world.hook_status[("cloud", "thaw", "orc8r-1")] = 500
    mid = Executor.new_id()
    with pytest.raises(MigrationError, match=r"step switch failed: .*thaw.*--resume"):
        start(world, journal, migration_id=mid)
    assert journal.get(mid).status == "failed"
    with pytest.raises(UsageError, match="point of no return"):
        abort(world, journal, mid)
    del world.hook_status[("cloud", "thaw", "orc8r-1")]
    assert resume(world, journal, mid).status == "succeeded"
    assert cloud(world).writers() == SOURCE_PODS
    assert target_data(world) == FILES


# --- what discovery refuses -----------------------------------------------------------------


def one_hook(world: World) -> None:
    dep = edge(world).get("Deployment", "orc8r", NS)
    assert dep is not None
    del dep["spec"]["template"]["metadata"]["annotations"][mv.THAW_HOOK]
    edge(world).apply(dep)


def bad_hook(world: World) -> None:
    dep = edge(world).get("Deployment", "orc8r", NS)
    assert dep is not None
    dep["spec"]["template"]["metadata"]["annotations"][mv.FREEZE_HOOK] = "https://x/freeze"
    edge(world).apply(dep)


def no_claim(world: World) -> None:
    edge(world).delete("PersistentVolumeClaim", CLAIM, NS)


@pytest.mark.parametrize(("change", "mover_image", "transfer", "error"), [
    (one_hook, MOVER_IMAGE, True, "declares only one of kubehop.io/freeze-hook and "
                                  "kubehop.io/thaw-hook"),
    (bad_hook, MOVER_IMAGE, True, "write it as http://:PORT/PATH"),
    (no_claim, MOVER_IMAGE, True, "PVC orc8r-ns/orc8r-db that the workload mounts is missing"),
    (None, None, True, "names no moverImage"),
    (None, MOVER_IMAGE, False, "has no 'transfer' entry point"),
], ids=["one-hook", "bad-hook", "missing-claim", "no-mover-image", "no-transfer-entrypoint"])
def test_a_stateful_move_that_cannot_work_is_refused_before_anything_changes(
        journal: Store, change: Callable[[World], None] | None, mover_image: str | None,
        transfer: bool, error: str) -> None:
    """What a stateful move needs is checked by discovery: both hooks or neither, hooks of
    the form http://:PORT/PATH, every mounted claim present, a mover image, a transfer entry
    point on the target. Missing any, the move is refused and nothing changes."""
    world = stateful_world(HOOKS)
    if change is not None:
        change(world)
    before = state_of(world)
    inventory = world.inventory(mover_image=mover_image)
    if not transfer:
        info = inventory.clusters["cloud"]
        inventory.clusters["cloud"] = replace(info, entrypoints={80: "web"})
    with pytest.raises(UsageError, match=re.escape(error)):
        executor(world, journal).start(inventory, request())
    assert state_of(world) == before


# --- a StatefulSet ------------------------------------------------------------------------------


def test_a_statefulset_moves_the_data_of_every_claim_its_templates_made(
        journal: Store) -> None:
    """A StatefulSet's claims (``<template>-<set>-<ordinal>``) are copied under the same names
    with their own data before the target's set scales up, so its controller adopts them."""
    world = World()
    src = edge(world)
    deploy_orc8r(src)
    make_stateful(src, {}, hooks=False)
    src.delete("Deployment", "orc8r", NS)
    src.delete("PersistentVolumeClaim", CLAIM, NS)
    src.apply({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "orc8r", "namespace": NS},
        "spec": {"replicas": 2, "serviceName": SERVICE,
                 "selector": {"matchLabels": {"app": "orc8r"}},
                 "template": {"metadata": {"labels": {"app": "orc8r"}}, "spec": {
                     "containers": [{"name": "orc8r", "image": "orc8r",
                                     "volumeMounts": [{"name": "data", "mountPath": "/d"}]}]}},
                 "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                     "accessModes": ["ReadWriteOnce"], "storageClassName": STORAGE_CLASS,
                     "resources": {"requests": {"storage": "1Gi"}}}}]}})
    for i in range(2):
        src.volumes[(NS, f"data-orc8r-{i}")].update({"state": f"replica {i}".encode()})
    report = start(world, journal)
    assert report.status == "succeeded"
    for i in range(2):
        assert cloud(world).volumes[(NS, f"data-orc8r-{i}")] == {
            "state": f"replica {i}".encode()}
    assert cloud(world).app_pods() == SOURCE_PODS


# --- #19: the holes a review found, closed -----------------------------------------------------


def test_target_pods_start_only_after_the_final_verified_copy(journal: Store) -> None:
    """No pod of the target's workload runs, so none can take a write or hold the volume open,
    before the cut-over has verified the final copy."""
    world = stateful_world(HOOKS)
    early: list[tuple[str, str, list[str]]] = []
    verified = False

    def check(step: str, point: str) -> None:
        nonlocal verified
        verified = verified or (step, point) == ("cutover", "verified")
        if not verified and cloud(world).app_pods():
            early.append((step, point, cloud(world).app_pods()))

    start(world, journal, Seam(world, at=check))
    assert early == []
    assert all(e[3] == [] for e in world.events if e[0] == "pass")


def test_no_client_reaches_the_target_before_the_cutover_is_verified(journal: Store) -> None:
    """Until the cut-over has verified the copy, neither the private zone's record nor the
    target's Traefik leads a client to the target's pods."""
    world = stateful_world(HOOKS)
    early: list[tuple[str, str, str]] = []
    verified = False

    def check(step: str, point: str) -> None:
        nonlocal verified
        verified = verified or (step, point) == ("cutover", "verified")
        if verified:
            return
        if world.records.get(FQDN) == [cloud(world).lb]:
            early.append((step, point, "dns"))
        if cloud(world).routed(FQDN):
            early.append((step, point, "route"))

    start(world, journal, Seam(world, at=check))
    assert early == []


def test_a_source_pod_restarted_inside_the_freeze_loses_no_acknowledged_write(
        journal: Store) -> None:
    """A source pod restarts right after the freeze (it comes back thawed: an application's
    freeze does not outlive its process) and a client's write reaches it once the final copy
    is verified. Either the cut-over notices and rolls back (the write is in the source), or
    the write is in the target: never acknowledged and lost."""
    world = stateful_world(HOOKS)
    acked: list[str] = []

    def restart_then_write(step: str, point: str) -> None:
        if (step, point) == ("cutover", "source-frozen"):
            edge(world).delete("Pod", "orc8r-1", NS)  # its Deployment makes it again
        if (step, point) == ("cutover", "verified") and edge(world).app_write("late", b"1"):
            acked.append("late")

    try:
        start(world, journal, Seam(world, at=restart_then_write))
    except MigrationError:
        assert edge(world).volumes[(NS, CLAIM)].get("late") == (b"1" if acked else None)
        return
    assert all(path in target_data(world) for path in acked)


def test_a_resumed_cutover_reports_the_freeze_from_the_first_freeze(
        journal: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """The process dies inside the freeze (the source stays frozen) and is resumed 1000 s
    later: the report's freeze time covers those 1000 s."""
    import time

    real, later = time.time, [0.0]
    monkeypatch.setattr(time, "time", lambda: real() + later[0])
    world = stateful_world(HOOKS)
    mid = Executor.new_id()
    with pytest.raises(Crash):
        start(world, journal, Seam(world, "cutover", "final-delta", Crash()), migration_id=mid)
    assert edge(world).writers() == []
    later[0] = 1000.0
    report = resume(world, journal, mid)
    assert report.data["freeze_seconds"] >= 1000


# --- the review of the closed holes: what the first fix still let through ------------------------


def test_a_source_pod_pending_at_the_freeze_is_never_taken_for_a_frozen_one(
        journal: Store) -> None:
    """A replica Pending when the writes stop (the hook is only called on running pods) that
    runs later is unfrozen: the move stops before the private-zone record changes and rolls
    back, every source pod thawed."""
    world = stateful_world(HOOKS)
    before = state_of(world)
    key = ("Pod", NS, "orc8r-1")

    def pending_then_running(step: str, point: str) -> None:
        if (step, point) == ("cutover", "begin"):
            edge(world).objects[key]["status"]["phase"] = "Pending"
        if (step, point) == ("cutover", "source-frozen"):
            edge(world).objects[key]["status"]["phase"] = "Running"

    with pytest.raises(MigrationError, match=r"may be writing again.*orc8r-1 was not there"):
        start(world, journal, Seam(world, at=pending_then_running))
    assert ("freeze", "edge", "orc8r-1") not in world.events
    assert journal.list()[-1].status == "rolled-back"
    assert_rolled_back(world, before)


def test_without_hooks_a_source_scaled_up_again_stops_the_move_before_the_record_changes(
        journal: Store) -> None:
    """Someone (a GitOps sync) scales the stopped source back up while the target starts:
    the check before ``dns`` (the point of no return without hooks) rolls the move back,
    instead of leaving two writers for a resume that cannot decide."""
    world = stateful_world(SCALE)
    before = state_of(world)

    def scale_up(step: str, point: str) -> None:
        if (step, point) == ("ready", "begin"):
            edge(world).scale("Deployment", "orc8r", NS, 2)

    with pytest.raises(MigrationError, match="may be writing again"):
        start(world, journal, Seam(world, at=scale_up))
    assert journal.list()[-1].status == "rolled-back"
    assert world.records.get(FQDN) != [cloud(world).lb]
    assert_rolled_back(world, before)


@pytest.mark.parametrize("freeze", [HOOKS, SCALE])
def test_a_rollback_stops_the_targets_pods_before_the_source_writes_again(
        journal: Store, freeze: str) -> None:
    """A failure once the target's pods run (here: their readiness, before they are frozen):
    the rollback stops them before the source is thawed or scaled back up; never two
    writers."""
    world = stateful_world(freeze)
    before = state_of(world)
    seen: dict[str, list[str]] = {}

    def note(step: str, point: str) -> None:
        if step == "undo-cutover" and point == "begin":
            seen["target pods when the source is unfrozen"] = cloud(world).app_pods()

    with pytest.raises(MigrationError, match="rolled back"):
        start(world, journal, Seam(world, "ready", "begin", RuntimeError("not ready"), at=note))
    assert seen == {"target pods when the source is unfrozen": []}
    assert_rolled_back(world, before)


def test_a_stateful_move_journaled_in_the_old_order_is_not_resumed_but_can_be_aborted(
        journal: Store) -> None:
    """A journal of an older kubehop (target started before the cut-over) is not finished by
    this one, which would copy the final delta under the running target: --abort it."""
    world = stateful_world(HOOKS)
    before = state_of(world)
    mid = Executor.new_id()
    with pytest.raises(Crash):
        executor(world, journal, Seam(world, "ready", "begin", Crash())).start(
            world.inventory(mover_image=MOVER_IMAGE), request(), plan=STEPS, migration_id=mid)
    with pytest.raises(UsageError, match=r"older kubehop.*--abort"):
        resume(world, journal, mid)
    assert abort(world, journal, mid).status == "rolled-back"
    assert_rolled_back(world, before)

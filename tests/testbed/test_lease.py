"""Leader election against the cloud cluster's real API server: two electors, one leader."""

from __future__ import annotations

import json
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubehop.adapters.kube import KubeCluster, Manifest
from kubehop.adapters.lease import LeaderElector
from kubehop.adapters.store import Store
from kubehop.domain import lease as decide
from kubehop.testbed import sample
from kubehop.testbed import testbed as tb
from kubehop.waiting import wait_for

from .kube import kubectl
from .test_controller import (
    EDGE_LOAD,
    POLICY,
    ControllerProcess,
    assert_agw_clean,
    migration_done,
    runs_in,
    stress,
    wait_decision,
    wait_half_done,
)

pytestmark = pytest.mark.usefixtures("testbed")

NS = "kubehop-system"
LEASE_S = 4.0
EVERY_S = 1.0


def _cloud() -> KubeCluster:
    return KubeCluster(kubeconfig=str(tb.kubeconfig_file()), context="cloud", name="cloud")


@pytest.fixture
def lease_name() -> Iterator[str]:
    kubectl("cloud", "apply", "-f", "-", stdin=json.dumps(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}))
    name = f"test-lease-{uuid.uuid4().hex[:6]}"
    yield name
    kubectl("cloud", "-n", NS, "delete", "lease", name, "--ignore-not-found")


def _lease(name: str) -> Manifest:
    return json.loads(kubectl("cloud", "-n", NS, "get", "lease", name, "-o", "json"))


class Campaign:
    """An elector running its loop in a thread, recording when it started/stopped leading."""

    def __init__(self, name: str, identity: str) -> None:
        self.kube = _cloud()
        self.elector = LeaderElector(self.kube, name, NS, identity, lease_seconds=LEASE_S,
                                     renew_every=EVERY_S)
        self.stop = threading.Event()
        self.started: list[float] = []
        self.stopped: list[float] = []
        self.thread = threading.Thread(
            target=self.elector.run, args=(self.stop, lambda: self.started.append(time.time()),
                                           lambda: self.stopped.append(time.time())),
            daemon=True)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        self.kube.close()


def test_one_leader_and_the_standby_takes_over_within_the_lease_time(lease_name: str) -> None:
    a, b = Campaign(lease_name, "replica-a"), Campaign(lease_name, "replica-b")
    try:
        a.thread.start()
        b.thread.start()
        deadline = time.time() + 20
        while not (a.elector.is_leader() or b.elector.is_leader()):
            assert time.time() < deadline, (a.elector.last_error, b.elector.last_error)
            time.sleep(0.1)
        # For three renewals, exactly one leads, and the Lease names it.
        for _ in range(30):
            assert a.elector.is_leader() != b.elector.is_leader()
            time.sleep(0.1)
        leader, standby = (a, b) if a.elector.is_leader() else (b, a)
        spec = _lease(lease_name)["spec"]
        assert spec["holderIdentity"] == leader.elector.identity
        assert spec["leaseDurationSeconds"] == LEASE_S
        assert standby.elector.last_outcome == "held"
        transitions = int(spec.get("leaseTransitions", 0))
        renewed = decide.parse_micro(spec["renewTime"])
        assert renewed is not None and abs(renewed - time.time()) < 2 * EVERY_S + 1

        # The leader stops renewing (as if it hung or died, without releasing).
        leader.stop.set()
        leader.thread.join(timeout=10)
        cut = time.time()
        assert not leader.elector.is_leader()
        while not standby.elector.is_leader():
            assert time.time() - cut < LEASE_S + 2 * EVERY_S + 1, standby.elector.last_error
            time.sleep(0.05)
        took = time.time() - cut
        # Not before the lease expired: the last renewal was at most one period before the cut.
        assert took >= LEASE_S - EVERY_S - 0.5, took
        spec = _lease(lease_name)["spec"]
        assert spec["holderIdentity"] == standby.elector.identity
        assert int(spec["leaseTransitions"]) == transitions + 1
        assert standby.started and standby.started[0] >= cut
        print(f"standby took over {took:.2f}s after the leader's renewals stopped "
              f"(lease {LEASE_S:g}s)")
    finally:
        a.close()
        b.close()


class RacingElector(LeaderElector):
    """Waits at a barrier between reading the lease and writing it, so both racers write
    with the same resourceVersion: the race is certain, not a matter of timing."""

    def __init__(self, barrier: threading.Barrier, *args: object, **kw: object) -> None:
        super().__init__(*args, **kw)  # type: ignore[arg-type]
        self.barrier = barrier
        self.racing = True

    def _read(self) -> Manifest | None:
        current = super()._read()
        if self.racing:
            self.barrier.wait(timeout=10)
        return current


@pytest.mark.parametrize("existing", [False, True], ids=["absent", "expired"])
def test_loser_of_a_simultaneous_take_gets_conflict_and_does_not_lead(
        lease_name: str, existing: bool) -> None:
    if existing:  # held by a replica that died long ago
        old = decide.LeaseRecord("ghost", LEASE_S, time.time() - 60, time.time() - 30, 5)
        kubectl("cloud", "apply", "-f", "-", stdin=json.dumps({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": lease_name, "namespace": NS},
            "spec": decide.to_spec(old)}))
    barrier = threading.Barrier(2)
    kubes = [_cloud(), _cloud()]
    racers = [RacingElector(barrier, kube, lease_name, NS, f"racer-{i}", lease_seconds=LEASE_S,
                            renew_every=EVERY_S) for i, kube in enumerate(kubes)]
    outcomes: dict[str, str] = {}
    threads = [threading.Thread(target=lambda r=r: outcomes.update(
        {r.identity: r.try_acquire_or_renew()})) for r in racers]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=20)
        assert sorted(outcomes.values()) == ["acquired", "conflict"], outcomes
        winner = next(r for r in racers if outcomes[r.identity] == "acquired")
        loser = next(r for r in racers if outcomes[r.identity] == "conflict")
        assert winner.is_leader() and not loser.is_leader()
        assert "409 Conflict" in loser.last_error, loser.last_error
        spec = _lease(lease_name)["spec"]
        assert spec["holderIdentity"] == winner.identity
        assert int(spec.get("leaseTransitions", 0)) == (6 if existing else 0)
        # The loser's next attempt sees a valid lease held by the winner: it waits.
        assert isinstance(loser, RacingElector)
        loser.racing = False
        assert loser.try_acquire_or_renew() == "held"
        assert not loser.is_leader()
    finally:
        for k in kubes:
            k.close()


CONTROLLER_LEASE_S = 6.0


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_leader_killed_mid_migration_the_standby_takes_over_and_finishes_it(
        tmp_path: Path, db_url: str, lease_name: str) -> None:
    """Two ``controller run --leader-elect`` replicas on one PostgreSQL store: only the leader
    decides; SIGKILL it in the middle of a migration and the standby takes the Lease within
    the lease time, resumes the migration and finishes it, with no failed agw request."""
    elect = ("--leader-elect", "--lease-name", lease_name, "--lease-namespace", NS,
             "--lease-seconds", f"{CONTROLLER_LEASE_S:g}", "--cluster", "cloud")
    stress("--stop")
    sample.deploy("edge")
    since = time.time()
    store = Store(db_url)
    first = ControllerProcess(tmp_path / "a", db_url, POLICY, *elect)
    second = ControllerProcess(tmp_path / "b", db_url, POLICY, *elect)
    try:
        first.start()
        wait_for(lambda: "leading as" in first.output(), timeout=60, interval=0.5,
                 what=f"the first replica to lead: {first.output()[-500:]}")
        second.start()
        wait_for(lambda: "standing by" in second.output(), timeout=60, interval=0.5,
                 what="the second replica to stand by")
        holder = _lease(lease_name)["spec"]["holderIdentity"]
        assert f"leading as {holder} " in first.output()
        health = wait_for(lambda: (r := second.get("/healthz")).status_code == 200 and r,
                          timeout=30, interval=0.5, what="the standby healthy")
        assert "standby" in health.text, health.text

        wait_decision(store, first, "stay", timeout=90)
        stress("--cluster", "edge", *EDGE_LOAD)
        move = wait_decision(store, first, "move:fog", timeout=90)
        mid = str(move["migration"])
        wait_half_done(store, mid)
        # The standby made no decision of its own while it stood by.
        assert "decision " not in second.output(), second.output()
        first.stop(signal.SIGKILL)
        killed = time.time()
        assert store.get(mid).status == "running"
        wait_for(lambda: "leading as" in second.output(), timeout=CONTROLLER_LEASE_S + 10,
                 interval=0.1, what=f"the standby to lead: {second.output()[-500:]}")
        took = time.time() - killed
        assert took <= CONTROLLER_LEASE_S + 3, took
        assert migration_done(store, mid, timeout=240) == "succeeded"
        assert "resuming migration " + mid in second.output()
        spec = _lease(lease_name)["spec"]
        assert spec["holderIdentity"] != holder and int(spec["leaseTransitions"]) >= 1
        assert runs_in("fog")
        assert_agw_clean(store, since)
        print(f"standby led {took:.1f}s after the leader was killed (lease "
              f"{CONTROLLER_LEASE_S:g}s) and finished migration {mid}")
    finally:
        first.stop()
        second.stop()
        stress("--stop")
        sample.remove()
        store.close()

"""kubehop's custom resources on the real testbed: CRDs in the cloud cluster (the management
cluster), Migrations applied with kubectl and run by the reconciler (in a thread of this
process, with its own SQLite journal), refused when invalid, aborted by deletion, resumed by a
fresh reconciler; PlacementPolicies validated into their status."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from kubehop.adapters.kube import KubeCluster
from kubehop.adapters.store import Store
from kubehop.controller import resources as rs
from kubehop.domain.placement import Decision
from kubehop.testbed import sample
from kubehop.testbed import testbed as tb
from kubehop.waiting import NotYet, wait_for
from tests.conftest import KUBEHOP, results_dir

from .conftest import BY_NAME
from .kube import kubectl
from .test_migrate import fresh_sample, orc8r_deployments, record

pytestmark = pytest.mark.usefixtures("testbed")

CLOUD, EDGE = BY_NAME["cloud"], BY_NAME["edge"]
NS = rs.NAMESPACE
RESULTS = results_dir("resources")


def kubectl_run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """kubectl on the management cluster; the result whatever the exit code."""
    return subprocess.run([str(tb.kubectl_binary()), "--kubeconfig", str(tb.kubeconfig_file()),
                           "--context", CLOUD.name, *args], input=stdin, capture_output=True,
                          text=True, timeout=120, check=False)


def migration(name: str, **spec: Any) -> str:
    body = {"service": "orc8r", "namespace": sample.ORC8R_NAMESPACE, "from": "edge",
            "to": "cloud", "strategy": "endpoints", "drainSeconds": 2, **spec}
    return yaml.safe_dump({"apiVersion": "kubehop.io/v1alpha1", "kind": "Migration",
                           "metadata": {"name": name, "namespace": NS}, "spec": body})


def get(kind: str, name: str) -> dict[str, Any] | None:
    out = kubectl(CLOUD, "get", kind, name, "-n", NS, "-o", "json", "--ignore-not-found")
    return json.loads(out) if out.strip() else None


def wait_phase(name: str, phases: set[str], timeout: float = 420) -> dict[str, Any]:
    def ended() -> dict[str, Any]:
        obj = get("migration", name)
        phase = ((obj or {}).get("status") or {}).get("phase")
        if obj is None or phase not in phases:
            raise NotYet(f"phase {phase}")
        return obj

    return wait_for(ended, timeout=timeout, interval=0.5, what=f"Migration {name} to end")


def events_of(name: str) -> list[str]:
    items = json.loads(kubectl(CLOUD, "get", "events", "-n", NS, "--field-selector",
                               f"involvedObject.name={name}", "-o", "json"))["items"]
    return [e["reason"] for e in sorted(items, key=lambda e: e["metadata"]["name"])]


def remove(name: str) -> None:
    """A Migration gone, whatever its state (the finalizer stripped: test clean-up only)."""
    kubectl_run("patch", "migration", name, "-n", NS, "--type", "merge", "-p",
                '{"metadata": {"finalizers": null}}')
    kubectl_run("delete", "migration", name, "-n", NS, "--ignore-not-found", "--wait=true")


@pytest.fixture(scope="module")
def crds() -> None:
    """The CRDs installed by the command a user runs; twice, to show it is idempotent."""
    env = {**os.environ, "KUBEHOP_INVENTORY": str(tb.inventory_file())}
    for _ in range(2):
        result = subprocess.run([KUBEHOP, "controller", "crds", "install", "--cluster", "cloud"],
                                capture_output=True, text=True, env=env, timeout=300,
                                check=False)
        assert result.returncode == 0, result.stderr
        assert "CRDs established in cloud" in result.stdout
    names = kubectl(CLOUD, "get", "crd", "-o", "name")
    assert "migrations.kubehop.io" in names and "placementpolicies.kubehop.io" in names


@pytest.fixture(scope="module")
def journal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    store = Store(f"sqlite:///{tmp_path_factory.mktemp('resources')}/journal.sqlite")
    yield store
    store.close()


class Running:
    """A reconciler running in a thread, as ``kubehop controller reconcile`` runs it."""

    def __init__(self, journal: Store) -> None:
        inv = tb.inventory()
        info = inv.clusters["cloud"]
        self.kube = KubeCluster(kubeconfig=inv.kubeconfig, context=info.context, name="cloud")
        self.said: list[str] = []
        self.reconciler = rs.MigrationReconciler(self.kube, inv, journal,
                                                 say=self.said.append)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.reconciler.run, args=(self.stop,),
                                       kwargs={"interval": 0.5, "grace": 120}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(180)
        assert not self.thread.is_alive()
        self.kube.close()


@pytest.fixture
def reconciler(crds: None, journal: Store) -> Iterator[Running]:
    running = Running(journal)
    yield running
    running.close()


@pytest.mark.parametrize(("change", "fragments"), [
    ({"strategy": "teleport"}, ["spec.strategy", "Unsupported value", "endpoints"]),
    ({"to": None}, ["spec.to", "Required value"]),
    ({"service": "Orc8r_svc"}, ["spec.service", "should match"]),
    ({"to": "edge"}, ["spec.from and spec.to name the same cluster"]),
    ({"drainSeconds": -3}, ["spec.drainSeconds", "greater than or equal to 0"]),
    ({"colour": "blue"}, ["unknown field", "spec.colour"]),
])
def test_invalid_migrations_are_refused_by_the_schema(
        crds: None, change: dict[str, Any], fragments: list[str]) -> None:
    doc = yaml.safe_load(migration("refused"))
    for key, value in change.items():
        if value is None:
            del doc["spec"][key]
        else:
            doc["spec"][key] = value
    result = kubectl_run("apply", "-f", "-", stdin=yaml.safe_dump(doc))
    assert result.returncode != 0, result.stdout
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)
    assert get("migration", "refused") is None


def test_a_bad_name_is_refused(crds: None) -> None:
    result = kubectl_run("apply", "-f", "-", stdin=migration("orc8r.to.cloud"))
    assert result.returncode != 0
    assert "metadata.name" in result.stderr and "should match" in result.stderr, result.stderr


def test_an_unknown_cluster_fails_without_touching_anything(reconciler: Running) -> None:
    name = "to-mars"
    try:
        kubectl(CLOUD, "apply", "-f", "-", stdin=migration(name, to="mars"))
        obj = wait_phase(name, {"Failed"}, timeout=60)
        assert "spec.to: no cluster 'mars'" in obj["status"]["error"]
        assert "migrationId" not in obj["status"]
        assert rs.FINALIZER not in (obj["metadata"].get("finalizers") or [])
        assert "Failed" in events_of(name)
    finally:
        remove(name)


def test_migration_applied_with_kubectl_succeeds(reconciler: Running, journal: Store) -> None:
    name = "orc8r-to-cloud"
    remove(name)
    fresh_sample()
    start = time.time()
    try:
        kubectl(CLOUD, "apply", "-f", "-", stdin=migration(name))
        seen: list[str] = []

        def progress() -> str:
            ended = ((get("migration", name) or {}).get("status") or {}).get("phase") \
                in rs.FINISHED  # read first: the table below is then the end's
            out = kubectl(CLOUD, "get", "migrations", "-n", NS)
            line = next((ln.split() for ln in out.splitlines() if ln.startswith(name)), [])
            if len(line) == 8 and line[5] == "Running" and not seen:  # with its STEP
                seen.append(out)
            if ended:
                return out
            raise NotYet("running")

        final = wait_for(progress, timeout=420, interval=0.5, what=f"Migration {name}")
        obj = get("migration", name)
        assert obj is not None
        status = obj["status"]
        assert status["phase"] == "Succeeded", status
        time.sleep(3)
        rec = record(start, time.time())
        assert rec["count"] > 100
        assert rec["failed"] == 0, rec["errors"]
        assert orc8r_deployments() == {"edge": False, "cloud": True}
        assert [c["type"] for c in status["conditions"]] == list(rs.STEPS)
        assert all(c["status"] == "True" for c in status["conditions"]), status["conditions"]
        assert [p["name"] for p in status["report"]["phases"]] == list(rs.STEPS)
        assert 0 < status["report"]["switchSeconds"] < status["report"]["totalSeconds"]
        assert journal.get(status["migrationId"]).status == "succeeded"
        assert rs.FINALIZER not in (obj["metadata"].get("finalizers") or [])
        assert events_of(name)[0] == "Started" and "Succeeded" in events_of(name)
        header = final.splitlines()[0].split()
        assert header[:7] == ["NAME", "SERVICE", "FROM", "TO", "STRATEGY", "PHASE", "STEP"]
        row = next(line.split() for line in final.splitlines() if line.startswith(name))
        assert row[1:6] == ["orc8r", "edge", "cloud", "endpoints", "Succeeded"]
        RESULTS.mkdir(parents=True, exist_ok=True)
        text = ""
        if seen:
            text += f"$ kubectl get migrations -n {NS}    # while it runs\n{seen[0]}\n"
        text += f"$ kubectl get migrations -n {NS}    # when it is done\n{final}"
        (RESULTS / "kubectl-get-migrations.txt").write_text(text)
        assert seen, "the Running phase (with a step) was never seen"
    finally:
        remove(name)


def test_deleting_a_running_migration_rolls_it_back(reconciler: Running,
                                                    journal: Store) -> None:
    name = "orc8r-deleted"
    remove(name)
    fresh_sample()
    start = time.time()
    kubectl(CLOUD, "apply", "-f", "-", stdin=migration(name))

    def mid_way() -> dict[str, Any]:
        obj = reconciler.kube.get("Migration", name, NS) or {}
        status = obj.get("status") or {}
        assert status.get("phase") not in rs.FINISHED, status
        if status.get("step") in {"start", "ready"}:
            return obj
        raise NotYet(f"step {status.get('step')!r}")

    obj = wait_for(mid_way, timeout=120, interval=0.02, what=f"{name} at start or ready")
    step = obj["status"]["step"]
    mid = obj["status"]["migrationId"]
    kubectl(CLOUD, "delete", "migration", name, "-n", NS, "--wait=false")
    wait_for(lambda: get("migration", name) is None, timeout=300, interval=0.5,
             what=f"Migration {name} to be gone")
    row = journal.get(mid)
    assert row.status == "rolled-back", (step, row.status, row.error)
    assert row.error == "aborted by the user"
    done = {s.name for s in row.steps if s.state == "done"}
    assert "switch" not in done and "undo-copy" in done, (step, row.steps)
    reasons = events_of(name)
    assert "Aborting" in reasons and "RolledBack" in reasons, reasons
    time.sleep(2)
    rec = record(start, time.time())
    assert rec["failed"] == 0, rec["errors"]
    assert orc8r_deployments() == {"edge": True, "cloud": False}
    assert set(rec["served_by"]) == {"edge"}  # type: ignore[arg-type]
    svc = json.loads(kubectl(EDGE, "get", "svc", "orc8r", "-n", sample.ORC8R_NAMESPACE,
                             "-o", "json"))
    assert svc["spec"]["selector"] == {"app": "orc8r"}


def test_a_fresh_reconciler_resumes_a_running_migration(crds: None, journal: Store) -> None:
    """The first reconciler stops (as a controller does on SIGTERM: the migration pauses at a
    step boundary); a new one, with nothing but the object and the journal, finishes it."""
    name = "orc8r-resumed"
    remove(name)
    fresh_sample()
    start = time.time()
    first = Running(journal)
    try:
        kubectl(CLOUD, "apply", "-f", "-", stdin=migration(name))
        wait_for(lambda: ((get("migration", name) or {}).get("status") or {}).get("step")
                 in {"start", "ready", "dns"}, timeout=120, interval=0.1,
                 what=f"{name} to reach start")
    finally:
        first.close()
    paused = get("migration", name)
    assert paused is not None and paused["status"]["phase"] == "Running"
    assert journal.get(paused["status"]["migrationId"]).status == "running"
    assert any("paused" in line for line in first.said), first.said
    second = Running(journal)
    try:
        obj = wait_phase(name, rs.FINISHED)
        assert obj["status"]["phase"] == "Succeeded", obj["status"]
        assert obj["status"]["migrationId"] == paused["status"]["migrationId"]
        assert any("resuming" in line for line in second.said), second.said
        assert "Resuming" in events_of(name)
        time.sleep(2)
        rec = record(start, time.time())
        assert rec["failed"] == 0, rec["errors"]
        assert orc8r_deployments() == {"edge": False, "cloud": True}
    finally:
        second.close()
        remove(name)


def test_placement_policy_status_says_whether_it_is_valid(reconciler: Running) -> None:
    good = {"apiVersion": "kubehop.io/v1alpha1", "kind": "PlacementPolicy",
            "metadata": {"name": "paper", "namespace": NS},
            "spec": {"interval": "2s",
                     "rules": [{"name": "cpu-exhausted", "scope": "cluster",
                                "expr": "cpu_headroom", "below": 0.3, "for": "6s"}],
                     "placement": {"weights": {"headroom": 1.0, "latency": 2.0}},
                     "services": [{"name": "orc8r", "namespace": "orc8r-ns",
                                   "clients": [{"cluster": "edge", "weight": 1}]}]}}
    bad = json.loads(json.dumps(good))
    bad["metadata"]["name"] = "broken"
    bad["spec"]["rules"][0]["below"] = 3

    def verdict(name: str) -> dict[str, Any]:
        status = (get("placementpolicy", name) or {}).get("status") or {}
        if "valid" not in status:
            raise NotYet("not checked yet")
        return dict(status)

    try:
        kubectl(CLOUD, "apply", "-f", "-", stdin=yaml.safe_dump_all([good, bad]))
        ok = wait_for(lambda: verdict("paper"), timeout=60, interval=0.5, what="paper checked")
        assert ok["valid"] is True and ok["rules"] == 1 and ok["services"] == 1, ok
        broken = wait_for(lambda: verdict("broken"), timeout=60, interval=0.5,
                          what="broken checked")
        assert broken["valid"] is False
        assert broken["error"].startswith("spec.rules[0].below: "), broken["error"]
        assert "between 0 and 1" in broken["error"]
        assert "InvalidPolicy" in events_of("broken")
        table = kubectl(CLOUD, "get", "placementpolicies", "-n", NS)
        assert "VALID" in table.splitlines()[0]
        decision = Decision(action="move", service="orc8r-ns/orc8r", source="edge",
                            target="fog", forced=True, gain=0.2,
                            explanation="cpu-exhausted fires in edge", table={})
        for _ in range(12):
            rs.publish_decisions(reconciler.kube, "paper", [decision, decision])
        decisions = (get("placementpolicy", "paper") or {})["status"]["decisions"]
        assert len(decisions) == rs.MAX_DECISIONS
        assert decisions[0]["target"] == "fog" and decisions[0]["action"] == "move"
        assert "DecisionMove" in events_of("paper")
    finally:
        kubectl_run("delete", "placementpolicy", "paper", "broken", "-n", NS,
                    "--ignore-not-found")

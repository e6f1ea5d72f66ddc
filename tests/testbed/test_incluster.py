"""The controller in the management cluster (``kubehop controller install``): two replicas on
PostgreSQL, one leads on a Lease; a Migration applied with kubectl whose leader is killed in the
middle is finished by the standby, and agw sees no failed request."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubehop.controller import install
from kubehop.controller import resources as rs
from kubehop.testbed import sample
from kubehop.testbed import testbed as tb
from kubehop.waiting import NotYet, wait_for
from tests.conftest import KUBEHOP, results_dir

from .conftest import BY_NAME
from .kube import kubectl
from .test_migrate import fresh_sample
from .test_policy_resource import manifest, policy_events
from .test_policy_resource import remove as remove_policy
from .test_resources import get, migration, remove, wait_phase

pytestmark = pytest.mark.usefixtures("testbed")

CLOUD = BY_NAME["cloud"]
NS = rs.NAMESPACE
RESULTS = results_dir("incluster")


def kubehop(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBEHOP_INVENTORY": str(tb.inventory_file())}
    return subprocess.run([KUBEHOP, "controller", *args], capture_output=True, text=True,
                          env=env, timeout=900, check=False)


def controller_pods() -> list[dict[str, Any]]:
    pods = json.loads(kubectl(CLOUD, "get", "pods", "-n", NS, "-l",
                              "app.kubernetes.io/name=kubehop-controller", "-o", "json"))
    return [p for p in pods["items"] if not p["metadata"].get("deletionTimestamp")]


RECONCILING = ["controller", "reconcile"]


def settled(command: list[str]) -> list[dict[str, Any]]:
    """The two controller pods, both running ``command`` (an install by another test of this
    module may still be replacing the pods of the one before)."""
    def two() -> list[dict[str, Any]]:
        pods = controller_pods()
        args = [p["spec"]["containers"][0]["args"][:len(command)] for p in pods]
        if args != [command] * 2:
            raise NotYet(f"pods run {args}")
        return pods

    return wait_for(two, timeout=120, interval=0.5, what=f"two pods running {command}")


def holder() -> str:
    lease = get("lease", "kubehop-controller") or {}
    return str((lease.get("spec") or {}).get("holderIdentity") or "")


def leader_pod() -> str:
    """The pod whose identity holds the Lease (identities are ``<pod>_<suffix>``)."""
    def found() -> str:
        name = holder().rsplit("_", 1)[0]
        if name not in {p["metadata"]["name"] for p in controller_pods()}:
            raise NotYet(f"lease held by {holder()!r}")
        return name

    return wait_for(found, timeout=120, interval=0.5, what="a controller pod to lead")


def kill_process_of(pod: str) -> None:
    """SIGKILL the controller process of ``pod`` (the testbed's nodes run on this host): what
    a crash or a lost node does, unlike a pod deletion, whose SIGTERM hands the lease over."""
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            environ = (proc / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if b"--leader-elect" in cmdline and f"HOSTNAME={pod}".encode() in environ:
            os.kill(int(proc.name), signal.SIGKILL)
            return
    raise AssertionError(f"no controller process of pod {pod} on this host")


@pytest.fixture(scope="module")
def installed() -> Iterator[subprocess.CompletedProcess[str]]:
    """orc8r and agw in edge; then the controller in cloud, managing orc8r's namespace (the
    install makes it, with the controller's grant; a sample deploy would delete it)."""
    sample.deploy("edge")
    result = kubehop("install", "--cluster", "cloud", "--manage", sample.ORC8R_NAMESPACE)
    yield result
    done = kubehop("uninstall", "--cluster", "cloud")
    assert done.returncode == 0, done.stderr
    assert controller_pods() == []


def test_install_runs_two_replicas_one_leading_on_postgresql_and_prints_no_secret(
        installed: subprocess.CompletedProcess[str]) -> None:
    assert installed.returncode == 0, installed.stderr
    pods = settled(RECONCILING)
    assert leader_pod() in {p["metadata"]["name"] for p in pods}
    db = get("statefulset", install.DB_SERVICE) or {}
    assert (db.get("status") or {}).get("readyReplicas") == 1, db.get("status")
    secret = get("secret", install.DB_SECRET) or {}
    password = base64.b64decode(secret["data"]["password"]).decode()
    assert len(password) >= 24
    assert password not in installed.stdout + installed.stderr
    members = base64.b64decode((get("secret", install.MEMBERS_SECRET) or {})["data"]
                               ["kubeconfig"]).decode()
    assert "tokenFile" in members, "the management cluster is reached with the pod's token"
    # A second install changes nothing it should keep: same password, same database.
    again = kubehop("install", "--cluster", "cloud", "--manage", sample.ORC8R_NAMESPACE)
    assert again.returncode == 0, again.stderr
    kept = base64.b64decode((get("secret", install.DB_SECRET) or {})["data"]["password"])
    assert kept.decode() == password


def test_the_leader_killed_mid_migration_the_standby_finishes_it(
        installed: subprocess.CompletedProcess[str]) -> None:
    assert installed.returncode == 0, installed.stderr
    settled(RECONCILING)
    leader = leader_pod()
    name = "incluster-orc8r"
    remove(name)
    since = time.time()
    applied = subprocess.run(
        [str(tb.kubectl_binary()), "--kubeconfig", str(tb.kubeconfig_file()), "--context",
         "cloud", "apply", "-f", "-"], input=migration(name), capture_output=True, text=True,
        timeout=60, check=False)
    assert applied.returncode == 0, applied.stderr
    try:
        def mid_way() -> str:
            status = (get("migration", name) or {}).get("status") or {}
            if status.get("phase") != "Running" or status.get("step") in (None, "", "copy",
                                                                          "route"):
                raise NotYet(f"{status.get('phase')} at {status.get('step')}")
            return str(status["step"])

        step = wait_for(mid_way, timeout=120, interval=0.1, what=f"{name} half done")
        journal_id = (get("migration", name) or {})["status"]["migrationId"]
        identity = holder()
        kill_process_of(leader)  # a crash: no SIGTERM, no release of the lease
        killed_at = time.time()

        def another() -> str:
            now = holder()
            if now in ("", identity):
                raise NotYet(f"lease held by {now!r}")
            return now

        wait_for(another, timeout=120, interval=0.2, what="another replica to lead")
        takeover_s = time.time() - killed_at
        done = wait_phase(name, {"Succeeded", "Failed", "RolledBack"}, timeout=300)
        assert done["status"]["phase"] == "Succeeded", done["status"]
        new_leader = leader_pod()
        assert all(c["status"] == "True" for c in done["status"]["conditions"]), done["status"]
        time.sleep(3)
        rec = sample.agw_record(BY_NAME["edge"], since=since, until=time.time())
        assert rec["failed"] == 0, rec["errors"]
        assert rec["ok"] > 100, rec
        assert dict(rec["served_by"]).get("cloud", 0) > 0, rec["served_by"]
        # The standby resumed the same journal entry (in the shared PostgreSQL), not a new
        # migration of its own.
        assert done["status"]["migrationId"] == journal_id, done["status"]
        logs = kubectl(CLOUD, "logs", new_leader, "-n", NS)
        assert "leading as" in logs and f"resuming {journal_id}" in logs, logs
        # Each pod serves the API and the dashboard over the shared store.
        with tb.kube(CLOUD) as k:
            base = f"/api/v1/namespaces/{NS}/pods/{new_leader}:{install.HTTP_PORT}/proxy"
            code, text = k.get_path(f"{base}/api/v1/migrations", timeout=30)
            assert code == 200, text
            rows = {m["id"]: m["status"] for m in json.loads(text)}
            assert rows.get(done["status"]["migrationId"]) == "succeeded", rows
            code, page = k.get_path(f"{base}/", timeout=30)
            assert code == 200 and "kubehop" in page, page[:200]
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "takeover.txt").write_text(
            f"leader {leader} SIGKILLed at step {step}; {new_leader} led {takeover_s:.1f} s "
            f"later (lease 15 s) and finished the migration; agw "
            f"{rec['ok']} ok, {rec['failed']} failed\n")
    finally:
        remove(name)


def test_with_a_policy_the_in_cluster_leader_decides_on_its_own(
        installed: subprocess.CompletedProcess[str]) -> None:
    """``install --policy-resource``: the leader runs the placement loop too, on the
    PlacementPolicy (test_controller's policy), and publishes its decisions there."""
    assert installed.returncode == 0, installed.stderr
    name = "incluster-policy"
    remove_policy(name)
    fresh_sample()  # orc8r in edge, where its clients are: the policy keeps it there
    kubectl(CLOUD, "apply", "-f", "-", stdin=yaml.safe_dump(manifest(name)))
    try:
        placing = kubehop("install", "--cluster", "cloud", "--manage", sample.ORC8R_NAMESPACE,
                          "--policy-resource", name)
        assert placing.returncode == 0, placing.stderr
        settled(["controller", "run", "--policy-resource", name])
        leader = leader_pod()

        def published() -> dict[str, Any]:
            """The newest decision with data (its first cycles may lack the link RTTs of
            probers it has just started: those are published as no-data)."""
            found = ((get("placementpolicy", name) or {}).get("status") or {}).get(
                "decisions") or []
            made = [d for d in found if d["action"] != "no-data"]
            if not made:
                so_far = [(d["action"], d.get("explanation")) for d in found]
                raise NotYet(f"decisions so far: {so_far}")
            return dict(made[0])

        decided = wait_for(published, timeout=300, interval=1, what="the leader's decision")
        assert decided["service"].endswith("orc8r"), decided
        assert decided["action"] == "stay", decided
        assert policy_events(name), "an Event per published decision"
        logs = kubectl(CLOUD, "logs", leader, "-n", NS)
        assert "leading as" in logs, logs
    finally:
        back = kubehop("install", "--cluster", "cloud", "--manage", sample.ORC8R_NAMESPACE)
        remove_policy(name)
    assert back.returncode == 0, back.stderr

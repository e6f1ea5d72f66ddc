"""Stateful migration on the real testbed: orc8r keeps its state on a PVC (one SQLite database
both replicas share) and agw keeps writing numbered check-ins during every move.

What must hold: what clients wrote before and during a move is there after it, every check-in
agw saw acknowledged is in the moved database (0 lost), files owned by another uid with mode
0700 arrive as they were, and a copy that arrives one byte short is caught by the verification
and rolled back with the source still serving and still the writer.
"""

from __future__ import annotations

import json
import os
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from kubehop.adapters.dns import DnsZone
from kubehop.adapters.kube import KubeCluster
from kubehop.adapters.store import Store
from kubehop.domain import mover as mv
from kubehop.domain.model import MigrationRequest
from kubehop.domain.pods import pod_is_ready
from kubehop.engine.context import MigrationError
from kubehop.engine.executor import Executor
from kubehop.engine.steps.registry import STEP_TYPES
from kubehop.testbed import images, sample
from kubehop.testbed import testbed as tb
from kubehop.waiting import NotYet, wait_for
from tests.unit.test_executor import Crash, FaultAt

from .conftest import BY_NAME

pytestmark = pytest.mark.usefixtures("testbed")
volume_dir = sample.volume_dir

NS = sample.ORC8R_NAMESPACE
FQDN = f"orc8r.{NS}.testnetwork.internal"
EDGE = BY_NAME["edge"]


def kube(name: str) -> KubeCluster:
    return KubeCluster(kubeconfig=str(tb.kubeconfig_file()), context=name, name=name)


def orc8r(cluster: str, method: str, path: str, body: dict[str, object] | None = None
          ) -> object:
    """orc8r's REST API in ``cluster`` through the API server's service proxy."""
    k = kube(cluster)
    url = f"/api/v1/namespaces/{NS}/services/orc8r:http/proxy{path}"
    if method == "GET":
        code, text = k.get_path(url, timeout=30)
    else:
        code, text = k.post_path(url, body=body, timeout=30)
    assert code in (200, 201), (method, path, code, text)
    return json.loads(text)


def request(src: str, dst: str) -> MigrationRequest:
    return MigrationRequest(service="orc8r", namespace=NS, source=src, target=dst,
                            target_namespace=NS, drain_seconds=2.0)


def movers_left(namespace: str = NS) -> list[str]:
    """Mover pods, their keys, NetworkPolicies, Services and routes still in either cluster."""
    return [f"{c}: {kind} {o['metadata']['name']}" for c in ("edge", "cloud")
            for kind in ("Pod", "Secret", "Service", "IngressRouteTCP", "NetworkPolicy")
            for o in kube(c).find(kind, namespace)
            if mv.LABEL_MOVER in (o["metadata"].get("labels") or {})
            or o["metadata"]["name"].startswith(("kubehop-sender", "kubehop-receiver"))]


def assert_movers_gone(namespace: str = NS) -> None:
    """Deleted pods take their grace period to go: wait for it, not longer."""
    def gone() -> bool:
        left = movers_left(namespace)
        if left:
            raise NotYet(f"left: {left}")
        return True

    wait_for(gone, timeout=30, interval=0.5, what="the movers to be gone")


def assert_nothing_lost(served_by: str, since: float) -> None:
    """Every check-in agw saw acknowledged (from ``since``) is in orc8r's database."""
    acked = set(sample.agw_acked(EDGE, since=since, until=time.time()))
    stored = set(sample.orc8r_checkins(BY_NAME[served_by]))
    assert len(acked) > 50, "agw kept writing"
    lost = sorted(acked - stored)
    assert not lost, f"{len(lost)} acknowledged check-ins lost, first {lost[:10]}"


def ready_pods(cluster: str) -> list[str]:
    pods = [p["metadata"]["name"] for p in kube(cluster).find("Pod", NS, {"app": "orc8r"})
            if not p["metadata"].get("deletionTimestamp")]
    assert len(pods) == 2, pods
    return pods


def pod_get(cluster: str, pod: str, path: str) -> str:
    """One orc8r replica's answer, through its pod proxy (the Service would pick one)."""
    code, text = kube(cluster).get_path(mv.proxy_path(NS, pod, 8080, path), timeout=10)
    assert code == 200, (pod, path, code, text)
    return text


def frozen_pods(cluster: str) -> list[str]:
    """orc8r pods in ``cluster`` that say they are frozen (each asked through its pod proxy)."""
    return [pod for pod in ready_pods(cluster)
            if json.loads(pod_get(cluster, pod, "/admin/state"))["frozen"]]


def running_in() -> tuple[str, str]:
    src = "edge" if kube("edge").get("Deployment", "orc8r", NS) else "cloud"
    return src, ("cloud" if src == "edge" else "edge")


class TruncateAt:
    """Test seam: right after the final delta, the target's copy of a file loses a byte."""

    def __init__(self, victim: Path) -> None:
        self.victim = victim
        self.fired = False

    def checkpoint(self, step: str, point: str) -> None:
        if (step, point) == ("cutover", "final-delta") and not self.fired:
            self.fired = True
            size = self.victim.stat().st_size
            os.truncate(self.victim, size - 1)


class ProbeMoverApi:
    """Test seam: once the movers are up, each one's API is asked through the pod proxy
    without the migration's token and with a wrong one, its unauthenticated readiness path too,
    and its NetworkPolicy is looked up."""

    def __init__(self, src: str, dst: str) -> None:
        self.ends = ((src, "sender"), (dst, "receiver"))
        self.seen: dict[str, tuple[int, int, int, bool]] = {}

    def checkpoint(self, step: str, point: str) -> None:
        if (step, point) != ("precopy", "movers") or self.seen:
            return
        for cluster, role in self.ends:
            k = kube(cluster)
            pod = next(p["metadata"]["name"] for p in k.find("Pod", NS)
                       if p["metadata"]["name"].startswith(f"kubehop-{role}"))
            manifest = mv.proxy_path(NS, pod, mv.API_PORT, "/manifest")
            self.seen[role] = (
                k.get_path(manifest, timeout=30)[0],
                k.get_path(manifest, headers={mv.TOKEN_HEADER: "w" * 43}, timeout=30)[0],
                k.get_path(mv.proxy_path(NS, pod, mv.API_PORT, "/healthz"), timeout=30)[0],
                k.get("NetworkPolicy", pod, NS) is not None)


# A POSIX access ACL as the kernel stores it (version 2; USER_OBJ rw-, USER 1234 r--,
# GROUP_OBJ r--, MASK r--, OTHER ---): rsync -A must carry it, the manifest compare it.
ACL = struct.pack("<I", 2) + b"".join(
    struct.pack("<HHI", tag, perm, ident) for tag, perm, ident in (
        (0x01, 6, 0xFFFFFFFF), (0x02, 4, 1234), (0x04, 4, 0xFFFFFFFF), (0x10, 4, 0xFFFFFFFF),
        (0x20, 0, 0xFFFFFFFF)))


def add_xattrs_acl_and_links(private: Path) -> None:
    """What -aHSAX copies beyond owners and modes: a user xattr, an ACL, a hard link."""
    os.setxattr(private / "key", "user.kubehop.test", b"xattr value")
    os.setxattr(private / "key", "system.posix_acl_access", ACL)
    if not (private / "key-link").exists():
        os.link(private / "key", private / "key-link")


def assert_xattrs_acl_and_links(private: Path) -> None:
    key = private / "key"
    assert os.getxattr(key, "user.kubehop.test") == b"xattr value"
    assert os.getxattr(key, "system.posix_acl_access") == ACL
    assert (private / "key-link").stat().st_ino == key.stat().st_ino


@pytest.fixture(scope="module")
def stateful() -> Iterator[None]:
    """The stateful sample for this module; removed after it, so the other modules (which
    redeploy the sample when it is not theirs) never inherit its volume or its padding."""
    sample.deploy("edge", stateful=True)
    yield
    sample.remove()


def test_orc8r_moves_with_its_data_and_loses_no_acknowledged_write(
        stateful: None, tmp_path: Path) -> None:
    since = time.time()
    home, away = running_in()  # the module's other tests may have moved it
    orc8r(home, "POST", "/networks", {"id": "net-before"})
    orc8r(home, "POST", "/networks/net-before/subscribers", {"imsi": "IMSI001010000000001"})
    owned = volume_dir(home) / "private"
    owned.mkdir(exist_ok=True)
    (owned / "key").write_bytes(b"x" * 4096)
    os.chown(owned, 999, 999)
    os.chown(owned / "key", 999, 999)
    owned.chmod(0o700)
    (owned / "key").chmod(0o600)
    add_xattrs_acl_and_links(owned)  # the ACL's mask: the key's mode becomes 0640
    journal = Store(f"sqlite:///{tmp_path / 'kubehop.db'}")
    probe = ProbeMoverApi(home, away)
    for src, dst in ((home, away), (away, home)):
        report = Executor(journal, seam=probe).start(tb.inventory(), request(src, dst))
        assert report.status == "succeeded", report.error
        # Another pod than kubehop reaching a mover's API is refused; readiness says no more.
        assert probe.seen == {"sender": (401, 403, 200, True),
                              "receiver": (401, 403, 200, True)}, probe.seen
        assert report.data["passes"] and report.data["passes"][-1]["final"], report.data
        assert report.data["files"] >= 2 and report.data["freeze_seconds"] > 0, report.data
        assert frozen_pods(dst) == [], "the target was thawed after the switch"
        # The images were pulled while the data was copied, before the pods were asked to
        # start; the pre-pull pod is gone.
        phases = {p.name: p for p in report.phases}
        assert report.data["prepulled_at"] <= phases["start"].start, report.data
        assert kube(dst).get("Pod", mv.pod_name(report.id, "prepull"), NS) is None
        orc8r(dst, "POST", "/networks", {"id": f"net-after-{dst}"})
        networks = json.dumps(orc8r(dst, "GET", "/networks"))
        assert "net-before" in networks and f"net-after-{dst}" in networks, networks
        for pod in ready_pods(dst):  # every replica reads the one database
            subs = pod_get(dst, pod, "/networks/net-before/subscribers")
            assert "IMSI001010000000001" in subs, (pod, subs)
            assert f"net-after-{dst}" in pod_get(dst, pod, "/networks"), pod
        moved = volume_dir(dst) / "private"
        assert (moved.stat().st_uid, moved.stat().st_mode & 0o7777) == (999, 0o700)
        key = moved / "key"
        assert (key.stat().st_uid, key.stat().st_gid, key.stat().st_mode & 0o7777,
                key.stat().st_size) == (999, 999, 0o640, 4096)
        assert_xattrs_acl_and_links(moved)
        assert_movers_gone()
    assert f"net-after-{away}" in json.dumps(orc8r(home, "GET", "/networks"))
    assert_nothing_lost(home, since)


def test_a_short_copy_is_caught_and_rolled_back_with_the_source_still_the_writer(
        stateful: None, tmp_path: Path) -> None:
    since = time.time()
    journal = Store(f"sqlite:///{tmp_path / 'kubehop.db'}")
    src, dst = running_in()
    victim_name = "private/key"
    if not (volume_dir(src) / victim_name).exists():
        (volume_dir(src) / "private").mkdir(exist_ok=True)
        (volume_dir(src) / victim_name).write_bytes(b"y" * 4096)

    class TruncateInTarget(TruncateAt):
        def checkpoint(self, step: str, point: str) -> None:
            if (step, point) == ("cutover", "final-delta") and not self.fired:
                self.victim = volume_dir(dst) / victim_name
            super().checkpoint(step, point)

    seam = TruncateInTarget(Path("/nonexistent"))
    with pytest.raises(MigrationError) as failed:
        Executor(journal, seam=seam).start(tb.inventory(), request(src, dst))
    assert seam.fired
    assert "differs from the source" in str(failed.value) and "key" in str(failed.value)
    assert journal.list()[-1].status == "rolled-back"
    assert kube(dst).get("Deployment", "orc8r", NS) is None
    assert_movers_gone()
    orc8r(src, "POST", "/networks", {"id": "net-after-rollback"})  # thawed: writes again
    assert "net-after-rollback" in json.dumps(orc8r(src, "GET", "/networks"))
    assert_nothing_lost(src, since)


def test_dry_run_shows_the_volumes_and_the_data_steps(stateful: None, tmp_path: Path) -> None:
    journal = Store(f"sqlite:///{tmp_path / 'kubehop.db'}")
    src, dst = running_in()
    report = Executor(journal).start(tb.inventory(), request(src, dst), dry_run=True)
    data = [c for c in report.changes if c.step in ("precopy", "cutover")]
    assert [c.name for c in data if c.action == "copy-data"] == ["orc8r-state"]
    assert "1Gi" in data[0].detail
    assert any(c.action == "freeze" and "hook" in c.detail for c in data)
    assert kube(dst).get("Deployment", "orc8r", NS) is None, "a dry run changed nothing"


class KillSenderDuringFirstPass:
    """Test seam: once the movers are up, the sender pod is deleted while it copies."""

    def __init__(self, src: str) -> None:
        self.src = src
        self.fired = False

    def checkpoint(self, step: str, point: str) -> None:
        if (step, point) == ("precopy", "movers") and not self.fired:
            self.fired = True
            pod = next(p["metadata"]["name"] for p in kube(self.src).find("Pod", NS)
                       if p["metadata"]["name"].startswith("kubehop-sender"))

            def kill() -> None:
                time.sleep(0.5)
                kube(self.src).delete("Pod", pod, NS)

            threading.Thread(target=kill, daemon=True).start()


def test_the_mover_killed_mid_copy_rolls_back_and_leaves_nothing_behind(
        stateful: None, tmp_path: Path) -> None:
    since = time.time()
    journal = Store(f"sqlite:///{tmp_path / 'kubehop.db'}")
    src, dst = running_in()
    padding = volume_dir(src) / "padding.bin"
    with padding.open("wb") as f:
        for _ in range(40):  # 320 MiB: the first pass takes seconds
            f.write(os.urandom(8 << 20))
    existed = kube(dst).get("PersistentVolumeClaim", "orc8r-state", NS) is not None
    try:
        seam = KillSenderDuringFirstPass(src)
        with pytest.raises(MigrationError) as failed:
            Executor(journal, seam=seam).start(tb.inventory(), request(src, dst))
        assert seam.fired and "precopy" in str(failed.value), failed.value
        assert journal.list()[-1].status == "rolled-back"
        assert_movers_gone()
        assert kube(dst).get("Deployment", "orc8r", NS) is None
        # A claim left by an earlier move stays; one this migration made is gone.
        assert (kube(dst).get("PersistentVolumeClaim", "orc8r-state", NS) is not None) == existed
        orc8r(src, "POST", "/networks", {"id": "net-after-kill"})
        assert_nothing_lost(src, since)
    finally:
        padding.unlink()


STS_NS = "sts-ns"


def statefulset_manifests() -> list[dict[str, object]]:
    """A StatefulSet whose volume comes from a volumeClaimTemplate, and no freeze hooks: kubehop
    copies the claim its controller made and stops the source for the final delta."""
    labels = {"app": "web"}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": STS_NS}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": STS_NS},
         "spec": {"selector": labels, "ports": [{"name": "http", "port": 80,
                                                 "targetPort": 8080}]}},
        {"apiVersion": "apps/v1", "kind": "StatefulSet",
         "metadata": {"name": "web", "namespace": STS_NS},
         "spec": {
             "serviceName": "web", "replicas": 1, "selector": {"matchLabels": labels},
             "template": {"metadata": {"labels": labels}, "spec": {
                 "terminationGracePeriodSeconds": 1,
                 "containers": [{
                     "name": "web", "image": images.httpd_image().ref(),
                     "ports": [{"containerPort": 8080}],
                     "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080},
                                        "periodSeconds": 1},
                     "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]}},
             "volumeClaimTemplates": [{
                 "metadata": {"name": "data"},
                 "spec": {"accessModes": ["ReadWriteOnce"],
                          "resources": {"requests": {"storage": "64Mi"}}}}]}},
    ]


def sts_volume(cluster: str) -> Path:
    return sample.volume_dir(cluster, "data-web-0", STS_NS)


def test_a_statefulset_with_a_claim_template_moves_with_its_data(tmp_path: Path) -> None:
    edge, cloud = kube("edge"), kube("cloud")
    for k in (edge, cloud):
        k.delete_namespaces(STS_NS)
    try:
        edge.apply_yaml(yaml.safe_dump_all(statefulset_manifests()))
        edge.wait_ready("StatefulSet", "web", STS_NS, {"app": "web"}, timeout=120)
        private = sts_volume("edge") / "private"
        private.mkdir()
        (private / "state").write_bytes(b"s" * 10_000)
        os.chown(private, 999, 999)
        os.chown(private / "state", 999, 999)
        private.chmod(0o700)
        (sts_volume("edge") / "link").symlink_to("private/state")
        journal = Store(f"sqlite:///{tmp_path / 'kubehop.db'}")
        req = MigrationRequest(service="web", namespace=STS_NS, source="edge", target="cloud",
                               target_namespace=STS_NS, drain_seconds=1.0)
        plan = Executor(journal).start(tb.inventory(), req, dry_run=True)
        assert any(c.action == "freeze" and "scaled to 0" in c.detail for c in plan.changes)
        report = Executor(journal).start(tb.inventory(), req)
        assert report.status == "succeeded", report.error
        moved = sts_volume("cloud")
        assert (moved / "private" / "state").read_bytes() == b"s" * 10_000
        st = (moved / "private").stat()
        assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (999, 999, 0o700)
        assert (moved / "link").readlink() == Path("private/state")
        assert cloud.workload_ready("StatefulSet", "web", STS_NS)[0]
        assert_movers_gone(STS_NS)
    finally:
        for k in (edge, cloud):
            k.delete_namespaces(STS_NS, timeout=None)



DATA_POINTS = [("precopy", "movers"), ("precopy", "pass"),
               *(("cutover", point) for point in ("begin", *STEP_TYPES["cutover"].points))]
"""The points of the data steps the real tests stop at: every point of the cut-over (the
freeze), and the pre-copy's once its movers are up and after a pass. Every point of every step
is covered on fakes by tests/unit/test_executor_stateful.py; here each costs a real move."""
FROZEN_POINTS = {("cutover", p) for p in STEP_TYPES["cutover"].points}
"""Points at which the source is frozen: a crash there leaves it frozen for the resume."""


def test_a_failure_at_every_point_of_the_data_steps_rolls_back_losing_nothing(
        stateful: None, tmp_path: Path) -> None:
    """Right after each side effect of precopy and cutover: rolled back, the source thawed and
    serving its data, movers gone, no acknowledged write lost."""
    since = time.time()
    journal = Store(f"sqlite:///{tmp_path / 'kubehop.db'}")
    for step, point in DATA_POINTS:
        src, dst = running_in()
        seam = FaultAt(step, point, RuntimeError(f"injected at {step}/{point}"))
        with pytest.raises(MigrationError, match="rolled back"):
            Executor(journal, seam=seam).start(tb.inventory(), request(src, dst))
        assert seam.fired, point
        assert journal.list()[-1].status == "rolled-back", (point, journal.list()[-1].error)
        assert running_in() == (src, dst) and kube(dst).get("Deployment", "orc8r", NS) is None
        assert frozen_pods(src) == [], point
        orc8r(src, "POST", "/networks", {"id": f"net-{step}-{point}"})
        assert_movers_gone()
    assert_nothing_lost(running_in()[0], since)


def test_a_crash_at_every_point_of_the_data_steps_is_finished_by_resume(
        stateful: None, tmp_path: Path) -> None:
    """The process dies right after each side effect; ``--resume`` (the same executor call the
    command makes) finishes the move with the data intact and nothing lost."""
    since = time.time()
    journal = Store(f"sqlite:///{tmp_path / 'kubehop.db'}")
    for step, point in DATA_POINTS:
        src, dst = running_in()
        orc8r(src, "POST", "/networks", {"id": f"crash-{step}-{point}"})
        with pytest.raises(Crash):
            Executor(journal, seam=FaultAt(step, point, Crash())).start(
                tb.inventory(), request(src, dst))
        crashed = time.time()
        migration = journal.list()[-1]
        assert migration.status == "running", point
        if (step, point) in FROZEN_POINTS:
            time.sleep(2)  # the source stays frozen while nobody runs the migration
        report = Executor(journal).resume(tb.inventory(), migration.id)
        assert report.status == "succeeded", (point, report.error)
        assert running_in() == (dst, src), point
        assert f"crash-{step}-{point}" in json.dumps(orc8r(dst, "GET", "/networks")), point
        if (step, point) in FROZEN_POINTS:
            # The freeze the report gives began before the crash, not at the resume.
            switched = next(p.end for p in report.phases if p.name == "switch")
            assert report.data["freeze_seconds"] >= switched - crashed, (point, report.data)
        assert_movers_gone()
    assert_nothing_lost(running_in()[0], since)


class Watch:
    """Test seam: at every point until the cut-over has verified the copy, which orc8r pods
    the target runs and where the private zone's name for orc8r leads."""

    def __init__(self, dst: str) -> None:
        self.dst = dst
        self.verified = False
        self.seen: list[tuple[str, str, list[str], list[str]]] = []

    def checkpoint(self, step: str, point: str) -> None:
        if self.verified:
            return
        self.verified = (step, point) == ("cutover", "verified")
        pods = [p["metadata"]["name"] for p in kube(self.dst).find("Pod", NS, {"app": "orc8r"})
                if not p["metadata"].get("deletionTimestamp")]
        self.seen.append((step, point, pods, DnsZone(tb.inventory().dns).lookup_a(FQDN)))


def test_the_target_starts_on_the_verified_copy_and_nothing_leads_to_it_before(
        stateful: None, tmp_path: Path) -> None:
    """No orc8r pod runs in the target, and the private zone's name does not lead there,
    until the cut-over has verified the final copy (a database opening a half-copied volume,
    or a client writing to a copy the final pass then overwrites, loses writes)."""
    since = time.time()
    journal = Store(f"sqlite:///{tmp_path / 'kubehop.db'}")
    src, dst = running_in()
    # The record as kubehop leaves it after a move into the source (a redeployed sample may
    # have inherited another module's record pointing anywhere).
    DnsZone(tb.inventory().dns).set_a(FQDN, tb.inventory().clusters[src].load_balancer)
    seam = Watch(dst)
    report = Executor(journal, seam=seam).start(tb.inventory(), request(src, dst))
    assert report.status == "succeeded", report.error
    lb = tb.inventory().clusters[dst].load_balancer
    early = [seen for seen in seam.seen if seen[2] or seen[3] == [lb]]
    assert seam.verified and len(seam.seen) > 5 and early == [], early
    phases = {p.name: p for p in report.phases}
    assert phases["cutover"].end <= phases["start"].start <= phases["dns"].start
    assert_nothing_lost(dst, since)


class RestartASourcePod:
    """Test seam: once the copy is verified, a source pod is deleted; its Deployment makes a
    new one, which comes up unfrozen (a freeze lives in the process)."""

    def __init__(self, src: str) -> None:
        self.src = src
        self.victim = ""

    def checkpoint(self, step: str, point: str) -> None:
        if (step, point) == ("cutover", "verified") and not self.victim:
            self.victim = ready_pods(self.src)[0]
            kube(self.src).delete("Pod", self.victim, NS)


def test_a_source_pod_restarted_inside_the_freeze_rolls_the_move_back(
        stateful: None, tmp_path: Path) -> None:
    """The switch finds a source pod the freeze did not stop: it refuses to move the clients,
    rolls back, and the source (every pod thawed) is still the writer with every write."""
    since = time.time()
    journal = Store(f"sqlite:///{tmp_path / 'kubehop.db'}")
    src, dst = running_in()
    seam = RestartASourcePod(src)
    with pytest.raises(MigrationError) as failed:
        Executor(journal, seam=seam).start(tb.inventory(), request(src, dst))
    assert seam.victim and "may be writing again" in str(failed.value), failed.value
    assert journal.list()[-1].status == "rolled-back"
    assert kube(dst).get("Deployment", "orc8r", NS) is None
    def both_ready() -> bool:
        pods = [p for p in kube(src).find("Pod", NS, {"app": "orc8r"})
                if not p["metadata"].get("deletionTimestamp")]
        if len(pods) == 2 and all(pod_is_ready(p) for p in pods):
            return True
        raise NotYet(f"{len(pods)} pods")

    wait_for(both_ready, timeout=60, interval=0.5, what="the source's replacement pod")
    assert frozen_pods(src) == []
    orc8r(src, "POST", "/networks", {"id": "net-after-restart"})
    assert_movers_gone()
    assert_nothing_lost(src, since)

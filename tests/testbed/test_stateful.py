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
import time
from pathlib import Path

import pytest

from kubehop.adapters.kube import KubeCluster
from kubehop.adapters.store import Store
from kubehop.domain import mover as mv
from kubehop.domain.model import MigrationRequest
from kubehop.engine.migrate import Executor, MigrationError
from kubehop.testbed import sample
from kubehop.testbed import testbed as tb
from kubehop.waiting import NotYet, wait_for

from .conftest import BY_NAME

pytestmark = pytest.mark.usefixtures("testbed")
volume_dir = sample.volume_dir

NS = sample.ORC8R_NAMESPACE
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


def movers_left() -> list[str]:
    """Mover pods, their keys, Services and routes still in either cluster."""
    return [f"{c}: {kind} {o['metadata']['name']}" for c in ("edge", "cloud")
            for kind in ("Pod", "Secret", "Service", "IngressRouteTCP")
            for o in kube(c).find(kind, NS)
            if mv.LABEL_MOVER in (o["metadata"].get("labels") or {})
            or o["metadata"]["name"].startswith(("kubehop-sender", "kubehop-receiver"))]


def assert_movers_gone() -> None:
    """Deleted pods take their grace period to go: wait for it, not longer."""
    def gone() -> bool:
        left = movers_left()
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


@pytest.fixture(scope="module")
def stateful() -> None:
    sample.deploy("edge", stateful=True)


def test_orc8r_moves_with_its_data_and_loses_no_acknowledged_write(
        stateful: None, tmp_path: Path) -> None:
    since = time.time()
    orc8r("edge", "POST", "/networks", {"id": "net-before"})
    orc8r("edge", "POST", "/networks/net-before/subscribers", {"imsi": "IMSI001010000000001"})
    owned = volume_dir("edge") / "private"
    owned.mkdir(exist_ok=True)
    (owned / "key").write_bytes(b"x" * 4096)
    os.chown(owned, 999, 999)
    os.chown(owned / "key", 999, 999)
    owned.chmod(0o700)
    (owned / "key").chmod(0o600)
    journal = Store(f"sqlite:///{tmp_path / 'kubehop.db'}")
    for src, dst in (("edge", "cloud"), ("cloud", "edge")):
        report = Executor(journal).start(tb.inventory(), request(src, dst))
        assert report.status == "succeeded", report.error
        assert report.data["passes"] and report.data["passes"][-1]["final"], report.data
        assert report.data["files"] >= 2 and report.data["freeze_seconds"] > 0, report.data
        orc8r(dst, "POST", "/networks", {"id": f"net-after-{dst}"})
        networks = json.dumps(orc8r(dst, "GET", "/networks"))
        assert "net-before" in networks and f"net-after-{dst}" in networks, networks
        subs = json.dumps(orc8r(dst, "GET", "/networks/net-before/subscribers"))
        assert "IMSI001010000000001" in subs, subs
        moved = volume_dir(dst) / "private"
        assert (moved.stat().st_uid, moved.stat().st_mode & 0o7777) == (999, 0o700)
        key = moved / "key"
        assert (key.stat().st_uid, key.stat().st_gid, key.stat().st_mode & 0o7777,
                key.stat().st_size) == (999, 999, 0o600, 4096)
        assert_movers_gone()
    assert "net-after-cloud" in json.dumps(orc8r("edge", "GET", "/networks"))
    assert_nothing_lost("edge", since)


def test_a_short_copy_is_caught_and_rolled_back_with_the_source_still_the_writer(
        stateful: None, tmp_path: Path) -> None:
    since = time.time()
    journal = Store(f"sqlite:///{tmp_path / 'kubehop.db'}")
    src = "edge" if kube("edge").get("Deployment", "orc8r", NS) else "cloud"
    dst = "cloud" if src == "edge" else "edge"
    victim_name = "private/key"
    if not (volume_dir(src) / victim_name).exists():
        (volume_dir(src) / "private").mkdir(exist_ok=True)
        (volume_dir(src) / victim_name).write_bytes(b"y" * 4096)

    class Hooks(TruncateAt):
        def checkpoint(self, step: str, point: str) -> None:
            if (step, point) == ("cutover", "final-delta") and not self.fired:
                self.victim = volume_dir(dst) / victim_name
            super().checkpoint(step, point)

    hooks = Hooks(Path("/nonexistent"))
    with pytest.raises(MigrationError) as failed:
        Executor(journal, hooks=hooks).start(tb.inventory(), request(src, dst))
    assert hooks.fired
    assert "differs from the source" in str(failed.value) and "key" in str(failed.value)
    assert journal.list()[-1].status == "rolled-back"
    assert kube(dst).get("Deployment", "orc8r", NS) is None
    assert_movers_gone()
    orc8r(src, "POST", "/networks", {"id": "net-after-rollback"})  # thawed: writes again
    assert "net-after-rollback" in json.dumps(orc8r(src, "GET", "/networks"))
    assert_nothing_lost(src, since)


def test_dry_run_shows_the_volumes_and_the_data_steps(stateful: None, tmp_path: Path) -> None:
    journal = Store(f"sqlite:///{tmp_path / 'kubehop.db'}")
    src = "edge" if kube("edge").get("Deployment", "orc8r", NS) else "cloud"
    dst = "cloud" if src == "edge" else "edge"
    report = Executor(journal).start(tb.inventory(), request(src, dst), dry_run=True)
    data = [c for c in report.changes if c.step in ("precopy", "cutover")]
    assert [c.name for c in data if c.action == "copy-data"] == ["orc8r-state"]
    assert "1Gi" in data[0].detail
    assert any(c.action == "freeze" and "hook" in c.detail for c in data)
    assert kube(dst).get("Deployment", "orc8r", NS) is None, "a dry run changed nothing"

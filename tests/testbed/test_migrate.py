"""``kubehop migrate`` on the real testbed: orc8r moves between clusters while agw keeps calling
it, with both strategies; plans, round trips, crashes, injected and real failures, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from kubehop.adapters import inventory as inv_file
from kubehop.adapters.dns import DnsZone
from kubehop.adapters.proxyrules import ProxyRules
from kubehop.adapters.store import Store
from kubehop.domain.model import MigrationRequest
from kubehop.domain.pods import pod_is_ready
from kubehop.engine.executor import Executor
from kubehop.testbed import images, layout, sample
from kubehop.testbed import testbed as tb
from kubehop.waiting import wait_for
from tests.conftest import KUBEHOP, assert_one_line_error

from .conftest import BY_NAME
from .kube import fresh_namespaces, kubectl

pytestmark = pytest.mark.usefixtures("testbed")

EDGE, CLOUD = BY_NAME["edge"], BY_NAME["cloud"]
NS = sample.ORC8R_NAMESPACE
FQDN = f"orc8r.{NS}.testnetwork.internal"


@pytest.fixture(scope="module", autouse=True)
def journal_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("kubehop-home")
    old = os.environ.get("KUBEHOP_HOME")
    os.environ["KUBEHOP_HOME"] = str(home)
    yield home
    if old is None:
        del os.environ["KUBEHOP_HOME"]
    else:
        os.environ["KUBEHOP_HOME"] = old


def assert_failed_with(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """A failed migration: progress lines, then one 'error:' line saying what failed and what
    was undone; non-zero exit, no traceback."""
    assert result.returncode != 0, result
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[-1], (fragment, lines[-1])


def migrate(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBEHOP_INVENTORY": str(tb.inventory_file())}
    return subprocess.run([KUBEHOP, "migrate", *args], capture_output=True, text=True,
                          env=env, timeout=600, check=False)


def kh(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBEHOP_INVENTORY": str(tb.inventory_file())}
    return subprocess.run([KUBEHOP, *args], capture_output=True, text=True, env=env,
                          timeout=600, check=False)


def _is_fresh() -> bool:
    """edge serves orc8r from its own pods, and no cluster holds anything kubehop made."""
    try:
        svc = json.loads(kubectl(EDGE, "get", "svc", "orc8r", "-n", NS, "-o", "json"))
        made = [i for c in (EDGE, CLOUD) for kind in ("ingressroutes", "endpointslices", "svc")
                for i in json.loads(kubectl(c, "get", kind, "-A", "-o", "json"))["items"]
                if "kubehop" in i["metadata"]["name"]]
        recent = record(time.time() - 2, time.time() - 0.2, complete=False)
    except Exception:
        return False
    return (svc["spec"].get("selector") == {"app": "orc8r"} and not made
            and orc8r_deployments() == {"edge": True, "cloud": False}
            and recent["failed"] == 0 and recent["ok"] > 0)


def _settled() -> None:
    """Wait until no namespace is still being deleted (a rollback deletes the one it made), so
    snapshots compare a quiet cluster."""
    def quiet() -> bool:
        phases = [n["status"].get("phase") for c in (EDGE, CLOUD)
                  for n in json.loads(kubectl(c, "get", "namespaces", "-o", "json"))["items"]]
        return "Terminating" not in phases

    wait_for(quiet, timeout=180, interval=0.5, what="no namespace being deleted")


def fresh_sample() -> float:
    """orc8r and agw in edge only, nothing of them in cloud; returns when agw is served."""
    _settled()
    if _is_fresh():
        return time.time()
    sample.deploy("edge")
    return time.time()


def record(since: float, until: float | None = None, *, complete: bool = True
           ) -> dict[str, object]:
    """agw's record over the window, once every request in it has ended."""
    return sample.agw_record(EDGE, since=since, until=until, complete=complete)


def served_now() -> dict[str, int]:
    time.sleep(2)
    rec = record(time.time() - 1.5, time.time() - 0.2)
    assert rec["failed"] == 0, rec["errors"]
    return dict(rec["served_by"])  # type: ignore[call-overload]


def snapshot() -> dict[str, object]:
    """What a migration could touch, with resource versions: equal snapshots, nothing changed."""
    watched = {NS, sample.AGW_NAMESPACE, "kh-sel"}
    state: dict[str, object] = {}
    for c in (EDGE, CLOUD):
        for kind in ("namespaces", "svc", "deploy", "endpointslices", "ingressroutes",
                     "configmaps"):
            items = json.loads(kubectl(c, "get", kind, "-A", "-o", "json"))["items"]
            state[f"{c.name}/{kind}"] = sorted(
                (i["metadata"].get("namespace", ""), i["metadata"]["name"],
                 i["metadata"]["resourceVersion"])
                for i in items
                if kind == "namespaces" or (i["metadata"]["namespace"] in watched and (
                    kind != "endpointslices" or "kubehop" in i["metadata"]["name"])))
    state["dns"] = DnsZone(tb.inventory().dns).lookup_a(FQDN)  # type: ignore[arg-type]
    return state


def orc8r_deployments() -> dict[str, bool]:
    return {c.name: bool(json.loads(kubectl(c, "get", "deploy", "-n", NS, "-o", "json",
                                                "--ignore-not-found") or '{"items": []}')
                         ["items"]) for c in (EDGE, CLOUD)}


@pytest.mark.parametrize("strategy", ["endpoints", "externalname"])
def test_migration_under_load_loses_no_request(strategy: str) -> None:
    fresh_sample()
    start = time.time()
    result = migrate("orc8r", "-n", NS, "--from", "edge", "--to", "cloud", "--strategy",
                     strategy, "--drain", "2", "-o", "json")
    assert result.returncode == 0, result.stderr
    time.sleep(3)  # and a little after, when the source is gone
    rec = record(start, time.time())
    report = json.loads(result.stdout)
    assert report["status"] == "succeeded"
    assert [p["name"] for p in report["phases"]] == [
        "copy", "route", "precopy", "start", "ready", "dns", "verify", "cutover", "switch",
        "drain", "cleanup"]
    assert rec["count"] > 100
    if strategy == "endpoints":
        assert rec["failed"] == 0, rec["errors"]
    else:
        # Turning the Service into an ExternalName releases its ClusterIP; the drain Service
        # takes it back within milliseconds, but a connection attempt in that instant can
        # fail. Any failure must fall inside the switch, none before or after it.
        switch = next(p for p in report["phases"] if p["name"] == "switch")
        raw = sample.agw_record(EDGE, since=start, until=time.time(), raw=True)["rows"]
        failed_at = [row[0] for row in raw if not row[2]]
        # (Requests sent in the switch's last instant fail just after it ends, while the
        # source's kube-proxy programs the drain Service: the window is the switch +/- 1 s.)
        assert all(switch["start"] - 1 <= t <= switch["end"] + 1 for t in failed_at), (
            failed_at, switch)
    assert set(rec["served_by"]) == {"edge", "cloud"}  # type: ignore[arg-type]
    assert orc8r_deployments() == {"edge": False, "cloud": True}
    pods = json.loads(kubectl(EDGE, "get", "pods", "-n", NS, "-l", "app=orc8r", "-o",
                                 "json"))["items"]
    assert [p for p in pods if not p["metadata"].get("deletionTimestamp")] == []
    assert served_now() .keys() == {"cloud"}
    svc = json.loads(kubectl(EDGE, "get", "svc", "orc8r", "-n", NS, "-o", "json"))
    if strategy == "endpoints":
        assert svc["spec"]["type"] == "ClusterIP" and not svc["spec"].get("selector")
    else:
        assert svc["spec"]["type"] == "ExternalName"
        assert svc["spec"]["externalName"] == FQDN
    assert DnsZone(tb.inventory().dns).lookup_a(FQDN) == [str(CLOUD.node_ip)]  # type: ignore[arg-type]


def test_dry_run_prints_the_plan_and_changes_nothing() -> None:
    fresh_sample()
    before = snapshot()
    result = migrate("orc8r", "-n", NS, "--from", "edge", "--to", "cloud", "--dry-run",
                     "-o", "yaml")
    assert result.returncode == 0, result.stderr
    plan = yaml.safe_load(result.stdout)
    assert plan["status"] == "planned"
    kinds = {(ch["cluster"], ch["kind"], ch["name"]) for ch in plan["changes"]}
    assert ("cloud", "Deployment", "orc8r") in kinds
    assert ("cloud", "IngressRoute", "kubehop-orc8r") in kinds
    assert ("dns", "A", FQDN) in kinds
    assert ("edge", "Deployment", "orc8r") in kinds  # deleted at cleanup
    assert snapshot() == before
    assert orc8r_deployments() == {"edge": True, "cloud": False}


def test_round_trip_edge_cloud_edge_leaves_nothing_stale() -> None:
    fresh_sample()
    start = time.time()
    for src, dst in (("edge", "cloud"), ("cloud", "edge")):
        result = migrate("orc8r", "-n", NS, "--from", src, "--to", dst, "--drain", "1")
        assert result.returncode == 0, result.stderr
    time.sleep(2)
    rec = record(start, time.time())
    assert rec["failed"] == 0, rec["errors"]
    assert served_now().keys() == {"edge"}
    assert orc8r_deployments() == {"edge": True, "cloud": False}
    # edge serves from its own pods again; cloud keeps only an alias back to edge
    svc = json.loads(kubectl(EDGE, "get", "svc", "orc8r", "-n", NS, "-o", "json"))
    assert svc["spec"]["selector"] == {"app": "orc8r"}
    edge_slices = json.loads(kubectl(EDGE, "get", "endpointslices", "-n", NS, "-o",
                                        "json"))["items"]
    assert not [s for s in edge_slices if s["metadata"]["name"] == "orc8r-kubehop"]
    assert json.loads(kubectl(CLOUD, "get", "ingressroutes", "-n", NS, "-o",
                                 "json"))["items"] == []
    cloud_alias = json.loads(kubectl(CLOUD, "get", "endpointslice", "orc8r-kubehop", "-n",
                                        NS, "-o", "json"))
    assert cloud_alias["endpoints"][0]["addresses"] == [str(EDGE.node_ip)]
    assert DnsZone(tb.inventory().dns).lookup_a(FQDN) == [str(EDGE.node_ip)]  # type: ignore[arg-type]


def test_target_cannot_pull_the_image_rolls_back() -> None:
    """A real failure: the image is gone from the registry, and only edge has it cached."""
    fresh_sample()
    spec = images.orc8r_image()
    reg = f"http://{layout.registry_address()}/v2/{spec.name}"
    accept = {"Accept": "application/vnd.oci.image.manifest.v1+json, "
                        "application/vnd.docker.distribution.manifest.v2+json"}
    digest = httpx.head(f"{reg}/manifests/{spec.tag()}", headers=accept).headers[
        "Docker-Content-Digest"]
    assert httpx.delete(f"{reg}/manifests/{digest}").status_code == 202
    subprocess.run(["ctr", "-a", str(CLOUD.containerd_socket), "-n", "k8s.io", "images", "rm",
                    spec.ref()], capture_output=True, check=False)
    try:
        start = time.time()
        result = migrate("orc8r", "-n", NS, "--from", "edge", "--to", "cloud")
        assert_failed_with(result, "step start failed", "rolled back")  # pulls happen there
        assert "ImagePull" in result.stderr or "ErrImagePull" in result.stderr
        rec = record(start, time.time())
        assert rec["failed"] == 0, rec["errors"]
        assert orc8r_deployments() == {"edge": True, "cloud": False}
    finally:
        images.build_and_push(spec)


def test_dns_server_refusing_the_update_rolls_back(tmp_path: Path) -> None:
    """A real failure: the inventory's TSIG key is not the server's, BIND answers BADSIG."""
    fresh_sample()
    inv = yaml.safe_load(inv_file.dump(tb.inventory()))
    wrong = tmp_path / "wrong.key"
    wrong.write_text('key "kubehop-tsig" {\n\talgorithm hmac-sha256;\n\tsecret '
                     '"c2VjcmV0LXRoYXQtaXMtbm90LXRoZS10ZXN0YmVkLWtleQ==";\n};\n')
    inv["dns"]["tsigKeyFile"] = str(wrong)
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(inv))
    before_dns = DnsZone(tb.inventory().dns).lookup_a(FQDN)  # type: ignore[arg-type]
    start = time.time()
    result = migrate("orc8r", "-n", NS, "--from", "edge", "--to", "cloud", "--inventory",
                     str(path))
    assert_failed_with(result, "step dns failed", "rolled back")
    rec = record(start, time.time())
    assert rec["failed"] == 0, rec["errors"]
    assert orc8r_deployments() == {"edge": True, "cloud": False}
    assert DnsZone(tb.inventory().dns).lookup_a(FQDN) == before_dns  # type: ignore[arg-type]


def _inventory_variant(tmp_path: Path, change: str) -> str:
    inv = yaml.safe_load(inv_file.dump(tb.inventory()))
    if change == "no-dns":
        del inv["dns"]
    elif change == "no-entrypoint":
        for c in inv["clusters"]:
            c["entrypoints"] = {"websecure": 443}
    path = tmp_path / f"{change}.yaml"
    path.write_text(yaml.safe_dump(inv))
    return str(path)


@pytest.fixture(scope="module")
def selectorless() -> Iterator[None]:
    fresh_namespaces(EDGE, "kh-sel")
    kubectl(EDGE, "apply", "-f", "-", stdin="""
apiVersion: v1
kind: Namespace
metadata: {name: kh-sel}
---
apiVersion: v1
kind: Service
metadata: {name: manual, namespace: kh-sel}
spec: {ports: [{port: 80}]}
""")
    yield
    kubectl(EDGE, "delete", "namespace", "kh-sel", "--wait=false")


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["orc8r", "-n", NS, "--from", "mars", "--to", "cloud"], ["unknown cluster", "mars"]),
        (["orc8r", "-n", NS, "--from", "edge", "--to", "edge"], ["same cluster"]),
        (["nosuch", "-n", NS, "--from", "edge", "--to", "cloud"], ["service", "does not exist"]),
        (["orc8r", "-n", "nosuch-ns", "--from", "edge", "--to", "cloud"],
         ["namespace", "does not exist"]),
        (["manual", "-n", "kh-sel", "--from", "edge", "--to", "cloud"], ["no selector"]),
        (["orc8r", "-n", NS, "--from", "edge", "--to", "cloud", "--drain", "-1"], ["--drain"]),
        (["orc8r", "-n", NS, "--from", "edge"], ["--to"]),
        (["orc8r", "-n", NS, "--from", "edge", "--to", "cloud", "--strategy", "teleport"],
         ["teleport"]),
    ],
)
def test_bad_input_is_one_line_and_changes_nothing(
    selectorless: None, args: list[str], fragments: list[str]
) -> None:
    # None of these may touch a cluster, so none needs a fresh sample (deploying one cost 35 s
    # a case): only the sample's namespace, for the case naming a missing service in it.
    _settled()
    if not json.loads(kubectl(EDGE, "get", "namespaces", "-o", "json",
                              "--field-selector", f"metadata.name={NS}"))["items"]:
        fresh_sample()
    before = snapshot()
    result = migrate(*args)
    assert result.returncode != 0
    if "teleport" in fragments:  # typer's own usage error: still no traceback, non-zero
        assert "Traceback" not in result.stderr and "teleport" in result.stderr
    else:
        assert_one_line_error(result, *fragments)
    assert snapshot() == before


@pytest.mark.parametrize(("change", "fragment"), [("no-dns", "no dns section"),
                                                  ("no-entrypoint", "no ingress entry point")])
def test_target_not_configured_is_refused(tmp_path: Path, change: str, fragment: str) -> None:
    # A missing dns section is refused before any cluster is read: no fresh sample (35 s) for
    # it; the entry point is looked up for the Service's ports, so that case needs orc8r.
    if change == "no-dns":
        _settled()
    else:
        fresh_sample()
    before = snapshot()
    result = migrate("orc8r", "-n", NS, "--from", "edge", "--to", "cloud", "--inventory",
                     _inventory_variant(tmp_path, change))
    assert_one_line_error(result, fragment)
    assert snapshot() == before


def test_journal_lists_and_shows_migrations() -> None:
    fresh_sample()
    result = migrate("orc8r", "-n", NS, "--from", "edge", "--to", "cloud", "--drain", "0",
                     "-o", "json")
    assert result.returncode == 0, result.stderr
    migration_id = json.loads(result.stdout)["id"]
    rows = json.loads(kh("migrations", "list", "-o", "json").stdout)
    assert migration_id in [r["id"] for r in rows]
    shown = json.loads(kh("migrations", "show", migration_id, "-o", "json").stdout)
    assert shown["status"] == "succeeded"
    assert [s["step"] for s in shown["steps"]] == [
        "copy", "route", "precopy", "start", "ready", "dns", "verify", "cutover", "switch",
        "drain", "cleanup"]
    assert_one_line_error(kh("migrations", "show", "nope"), "no migration")



TOKEN_APP = """
apiVersion: v1
kind: Namespace
metadata: {name: kh-token}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: web-sa, namespace: kh-token}
---
apiVersion: v1
kind: Secret
type: kubernetes.io/service-account-token
metadata:
  name: web-token
  namespace: kh-token
  annotations: {kubernetes.io/service-account.name: web-sa}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: kh-token}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      volumes: [{name: token, secret: {secretName: web-token}}]
      containers:
      - name: web
        image: IMAGE
        volumeMounts: [{name: token, mountPath: /var/run/web-token}]
        readinessProbe: {httpGet: {path: /healthz, port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: kh-token}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
"""


def _token(c: layout.ClusterLayout) -> str:
    out = kubectl(c, "get", "secret", "web-token", "-n", "kh-token", "-o",
                     "jsonpath={.data.token}", "--ignore-not-found")
    return out.strip()


def test_workload_mounting_a_service_account_token_migrates_with_a_token_of_the_target() -> None:
    """Issue 8's defect 1: this workload made the engine raise ValueError mid-copy."""
    for c in (EDGE, CLOUD):
        kubectl(c, "delete", "namespace", "kh-token", "--ignore-not-found", "--wait=true",
                   "--timeout=120s")
    kubectl(EDGE, "apply", "-f", "-",
               stdin=TOKEN_APP.replace("IMAGE", images.httpd_image().ref()))
    kubectl(EDGE, "-n", "kh-token", "rollout", "status", "deployment/web", "--timeout=180s")
    for _ in range(100):
        if _token(EDGE):
            break
        time.sleep(0.2)
    try:
        result = migrate("web", "-n", "kh-token", "--from", "edge", "--to", "cloud",
                         "--drain", "0", "-o", "json")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["status"] == "succeeded"
        for _ in range(100):
            if _token(CLOUD):
                break
            time.sleep(0.2)
        assert _token(CLOUD) and _token(CLOUD) != _token(EDGE), "a token of cloud's own"
        ready = kubectl(CLOUD, "get", "deploy", "web", "-n", "kh-token", "-o",
                           "jsonpath={.status.readyReplicas}")
        assert ready.strip() == "1"
    finally:
        for c in (EDGE, CLOUD):
            kubectl(c, "delete", "namespace", "kh-token", "--ignore-not-found",
                       "--wait=false")


class ProxyAtSwitch:
    """Reads edge's kube-proxy rules for orc8r at the switch's checkpoints: what clients'
    new connections are sent to at that instant."""

    def __init__(self) -> None:
        self.proxy = ProxyRules("edge", tb.inventory().clusters["edge"].proxy_rules)
        self.seen: dict[str, set[str]] = {}

    def checkpoint(self, step: str, point: str) -> None:
        if step == "switch" and point in ("alias-slice", "selector-removed",
                                          "pod-endpoints-dropped"):
            [ports] = self.proxy.endpoints(NS, "orc8r")
            self.seen[point] = set().union(*ports.values())


def test_the_switch_drops_the_pods_only_once_the_proxy_sends_to_the_target(
        tmp_path: Path) -> None:
    """Make-before-break checked, not guessed: the pods' endpoints leave only after edge's
    service proxy sends new connections to cloud's load balancer, and the step ends once it
    sends them nowhere else."""
    fresh_sample()
    since = time.time()
    seam = ProxyAtSwitch()
    request = MigrationRequest(service="orc8r", namespace=NS, source="edge", target="cloud",
                               target_namespace=NS, drain_seconds=1.0)
    report = Executor(Store(f"sqlite:///{tmp_path / 'j.db'}"), seam=seam).start(
        tb.inventory(), request)
    assert report.status == "succeeded", report.error
    lb = f"{CLOUD.node_ip}:80"
    pods = seam.seen["alias-slice"] - {lb}
    assert pods, seam.seen  # right after the alias slice is written, the pods still serve
    assert lb in seam.seen["selector-removed"], seam.seen  # waited for the proxy
    assert seam.seen["pod-endpoints-dropped"] == {lb}, seam.seen
    time.sleep(1)
    rec = record(since, time.time() - 0.5)
    assert rec["failed"] == 0, rec["errors"]


SLOW_PROBE_APP = """
apiVersion: v1
kind: Namespace
metadata: {name: kh-gate}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: kh-gate}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: IMAGE
        ports: [{name: http, containerPort: 8080}]
        # The kubelet's first probe comes 20 s after the start: long after it answers.
        readinessProbe: {httpGet: {path: /healthz, port: http}, initialDelaySeconds: 20}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: kh-gate}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
"""


class KubeletReadyAtGate:
    """At the ready step's "admitted" point: is cloud's pod Ready to the kubelet yet, and does
    the target's Traefik already route to it?"""

    def __init__(self) -> None:
        self.kubelet_ready: bool | None = None
        self.routed: int | None = None

    def checkpoint(self, step: str, point: str) -> None:
        if (step, point) != ("ready", "admitted"):
            return
        pods = json.loads(kubectl(CLOUD, "get", "pods", "-n", "kh-gate", "-o", "json"))["items"]
        self.kubelet_ready = any(pod_is_ready(p) for p in pods)

        def answered() -> int | None:
            r = httpx.get(f"http://{CLOUD.node_ip}/healthz", timeout=2,
                          headers={"Host": "web.kh-gate.svc.cluster.local"})
            return r.status_code if r.status_code == 200 else None

        self.routed = wait_for(answered, timeout=15, interval=0.1, what="Traefik to route")


def test_the_readiness_gate_admits_a_pod_that_answers_before_the_kubelet_does(
        tmp_path: Path) -> None:
    """kubehop's gate: the target pod answers its readiness probe's request, so Traefik gets
    it as an endpoint at once, though the kubelet will only call it ready 20 s later; the
    migration goes on, and cleanup waits for the kubelet's own endpoints before the early
    slice goes."""
    for c in (EDGE, CLOUD):
        kubectl(c, "delete", "namespace", "kh-gate", "--ignore-not-found", "--wait=true",
                "--timeout=120s")
    kubectl(EDGE, "apply", "-f", "-", stdin=SLOW_PROBE_APP.replace("IMAGE",
                                                                   images.httpd_image().ref()))
    kubectl(EDGE, "-n", "kh-gate", "rollout", "status", "deployment/web", "--timeout=180s")
    seam = KubeletReadyAtGate()
    try:
        request = MigrationRequest(service="web", namespace="kh-gate", source="edge",
                                   target="cloud", target_namespace="kh-gate",
                                   drain_seconds=0)
        report = Executor(Store(f"sqlite:///{tmp_path / 'j.db'}"), seam=seam).start(
            tb.inventory(), request)
        assert report.status == "succeeded", report.error
        assert seam.kubelet_ready is False, "admitted before the kubelet's first probe"
        assert seam.routed == 200
        slices = kubectl(CLOUD, "get", "endpointslices", "-n", "kh-gate", "-o", "name")
        assert "kubehop-web-early" not in slices  # the kubelet's own took over
    finally:
        for c in (EDGE, CLOUD):
            kubectl(c, "delete", "namespace", "kh-gate", "--ignore-not-found", "--wait=false")

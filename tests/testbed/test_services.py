"""The services beside the clusters: Traefik ingress, the Cloud DNS zone, Prometheus, and the
paper's sample network functions (orc8r and its client agw)."""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from collections.abc import Iterator

import dns.query
import dns.rcode
import dns.resolver
import dns.tsig
import dns.tsigkeyring
import dns.update
import httpx
import pytest

from kubehop.testbed import clouddns, images, layout, monitoring, sample, wan
from kubehop.waiting import NotYet, wait_for
from tests.conftest import kubehop

from .conftest import BY_NAME, CLUSTERS
from .kube import fresh_namespaces, kubectl

pytestmark = pytest.mark.usefixtures("testbed")

EDGE, CLOUD = BY_NAME["edge"], BY_NAME["cloud"]


def in_netns(c: layout.ClusterLayout, code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", c.netns, "python3", "-c", code, *args],
                          capture_output=True, text=True, timeout=30, check=False)


HTTP_WITH_HOST = (
    "import sys, urllib.request; "
    "r = urllib.request.Request(sys.argv[1], headers={'Host': sys.argv[2]}); "
    "print(urllib.request.urlopen(r, timeout=5).read().decode())"
)


def _backend(ns: str, cluster: str) -> str:
    return f"""
apiVersion: v1
kind: Namespace
metadata: {{name: {ns}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {ns}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
      - name: web
        image: {images.httpd_image().ref()}
        env: [{{name: KUBEHOP_CLUSTER, value: {cluster}}}]
        readinessProbe: {{httpGet: {{path: /healthz, port: 8080}}, periodSeconds: 1}}
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: {ns}}}
spec:
  selector: {{app: web}}
  ports: [{{port: 8080, targetPort: 8080}}]
"""


ROUTES = """
apiVersion: v1
kind: Namespace
metadata: {name: kh-routes}
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: web, namespace: kh-ing}
spec:
  entryPoints: [web]
  routes:
  - match: Host(`web.kubehop.test`)
    kind: Rule
    services: [{name: web, port: 8080}]
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: cross, namespace: kh-routes}
spec:
  entryPoints: [web]
  routes:
  - match: Host(`cross.kubehop.test`)
    kind: Rule
    services: [{name: web, namespace: kh-ing, port: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: alias, namespace: kh-routes}
spec:
  type: ExternalName
  externalName: web.kh-ing.svc.cluster.local
  ports: [{port: 8080}]
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: alias, namespace: kh-routes}
spec:
  entryPoints: [web]
  routes:
  - match: Host(`alias.kubehop.test`)
    kind: Rule
    services: [{name: alias, port: 8080}]
"""


@pytest.fixture(scope="module")
def routed() -> Iterator[None]:
    fresh_namespaces(CLOUD, "kh-ing", "kh-routes")
    kubectl(CLOUD, "apply", "-f", "-", stdin=_backend("kh-ing", "cloud"))
    kubectl(CLOUD, "-n", "kh-ing", "rollout", "status", "deployment/web", "--timeout=180s")
    kubectl(CLOUD, "apply", "-f", "-", stdin=ROUTES)
    yield
    kubectl(CLOUD, "delete", "namespace", "kh-ing", "kh-routes", "--wait=false")


def _through_cloud_lb(host: str) -> dict[str, str]:
    """Request Host ``host`` at cloud's load balancer from the edge cluster's namespace; the
    route may take a moment to be picked up by Traefik, so retry for a while."""

    def answer() -> dict[str, str]:
        reply = in_netns(EDGE, HTTP_WITH_HOST, f"http://{CLOUD.node_ip}/", host)
        if reply.returncode != 0:
            raise NotYet(reply.stderr.strip()[-200:])
        return dict(json.loads(reply.stdout))

    return wait_for(answer, timeout=30, interval=0.5,
                    what=f"an answer through cloud's Traefik for {host}")


@pytest.mark.parametrize("host", ["web.kubehop.test", "cross.kubehop.test", "alias.kubehop.test"])
def test_ingressroute_reaches_the_cloud_pod_from_edge(routed: None, host: str) -> None:
    reply = _through_cloud_lb(host)
    assert reply["cluster"] == "cloud"
    assert reply["pod"].startswith("web-")


def test_unknown_host_is_not_routed(routed: None) -> None:
    _through_cloud_lb("web.kubehop.test")
    result = in_netns(EDGE, HTTP_WITH_HOST, f"http://{CLOUD.node_ip}/", "nope.kubehop.test")
    assert result.returncode != 0 and "404" in result.stderr


# --- Cloud DNS --------------------------------------------------------------------------------


def _update(name: str, address: str, *, secret: str | None = None) -> int:
    key_name, algorithm, real_secret = clouddns.read_key()
    keyring = dns.tsigkeyring.from_text({key_name: secret or real_secret})
    update = dns.update.UpdateMessage(clouddns.DEFAULT_ZONE, keyring=keyring,
                                      keyalgorithm=algorithm)
    update.replace(name, 5, "A", address)
    reply = dns.query.tcp(update, str(layout.HOST_ADDRESS), timeout=5)
    return int(reply.rcode())


@pytest.fixture(scope="module")
def client_pod() -> Iterator[str]:
    fresh_namespaces(EDGE, "kh-dns")
    kubectl(EDGE, "apply", "-f", "-", stdin=f"""
apiVersion: v1
kind: Namespace
metadata: {{name: kh-dns}}
---
apiVersion: v1
kind: Pod
metadata: {{name: client, namespace: kh-dns}}
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: client
    image: {images.httpd_image().ref()}
    command: ["python3", "-c", "import time; time.sleep(10**9)"]
""")
    kubectl(EDGE, "-n", "kh-dns", "wait", "pod/client", "--for=condition=Ready", "--timeout=180s")
    yield "client"
    kubectl(EDGE, "delete", "namespace", "kh-dns", "--wait=false")


def test_signed_update_is_resolved_by_a_pod_in_edge(client_pod: str) -> None:
    name = f"probe-{secrets.token_hex(4)}"
    assert _update(name, "10.250.0.99") == dns.rcode.NOERROR
    fqdn = f"{name}.{clouddns.DEFAULT_ZONE}"
    out = kubectl(EDGE, "-n", "kh-dns", "exec", client_pod, "--", "python3", "-c",
                  "import socket, sys; print(socket.gethostbyname(sys.argv[1]))", fqdn)
    assert out.strip() == "10.250.0.99"


def test_update_signed_with_another_key_is_refused() -> None:
    name = f"evil-{secrets.token_hex(4)}"
    wrong = "c2VjcmV0LXRoYXQtaXMtbm90LXRoZS10ZXN0YmVkLWtleQ=="
    with pytest.raises(dns.tsig.PeerBadSignature):
        _update(name, "10.250.0.66", secret=wrong)
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [str(layout.HOST_ADDRESS)]
    with pytest.raises(dns.resolver.NXDOMAIN):
        resolver.resolve(f"{name}.{clouddns.DEFAULT_ZONE}", "A")


def test_tsig_key_is_private_and_never_printed() -> None:
    assert clouddns.key_file().stat().st_mode & 0o077 == 0
    secret = clouddns.read_key()[2]
    for args in (("testbed", "status"), ("testbed", "status", "-o", "json"),
                 ("testbed", "inventory")):
        result = kubehop(*args)
        assert secret not in result.stdout + result.stderr


# --- sample network functions and monitoring ---------------------------------------------------


@pytest.fixture(scope="module")
def sample_deployed() -> Iterator[None]:
    result = kubehop("testbed", "deploy-sample")
    assert result.returncode == 0, result.stderr
    yield
    for ns in (sample.ORC8R_NAMESPACE, sample.AGW_NAMESPACE):
        kubectl(EDGE, "delete", "namespace", ns, "--wait=false")


def test_agw_checks_in_with_orc8r_without_failures(sample_deployed: None) -> None:
    time.sleep(3)
    record = sample.agw_record(EDGE, since=time.time() - 3)
    assert record["ok"] > 100, record
    assert record["failed"] == 0, record["errors"]
    assert record["served_by"] == {"edge": record["ok"]}
    assert record["latency_ms"]["p50"] is not None


def _prom(query: str) -> list[dict[str, object]]:
    reply = httpx.get(f"{monitoring.prometheus_url()}/api/v1/query", params={"query": query},
                      timeout=10).json()
    assert reply["status"] == "success", reply
    return list(reply["data"]["result"])


def _prom_eventually(query: str) -> list[dict[str, object]]:
    return wait_for(lambda: _prom(query) or None, timeout=90, interval=1,
                    what=f"a Prometheus series for {query}")


@pytest.mark.parametrize(
    ("cluster", "namespace", "pod_prefix"),
    [("edge", "orc8r-ns", "orc8r-"), ("cloud", "kube-system", "coredns-")],
)
def test_prometheus_has_pod_cpu_per_cluster(
    sample_deployed: None, cluster: str, namespace: str, pod_prefix: str
) -> None:
    series = _prom_eventually(
        f'container_cpu_usage_seconds_total{{cluster="{cluster}",namespace="{namespace}",'
        f'pod=~"{pod_prefix}.*",container!=""}}'
    )
    assert float(series[0]["value"][1]) > 0  # type: ignore[index]
    memory = _prom_eventually(
        f'container_memory_working_set_bytes{{cluster="{cluster}",namespace="{namespace}",'
        f'container!=""}}'
    )
    assert float(memory[0]["value"][1]) > 0  # type: ignore[index]


@pytest.mark.parametrize("cluster", CLUSTERS)
def test_prometheus_has_node_capacity_and_allocatable(cluster: str) -> None:
    for metric in ("kube_node_status_capacity", "kube_node_status_allocatable"):
        series = _prom_eventually(f'{metric}{{cluster="{cluster}",resource="cpu"}}')
        assert float(series[0]["value"][1]) >= 1  # type: ignore[index]


def test_prometheus_has_the_sample_services_own_metrics(sample_deployed: None) -> None:
    checkins = _prom_eventually('orc8r_checkins_total{cluster="edge"}')
    assert sum(float(s["value"][1]) for s in checkins) > 0  # type: ignore[index]
    _prom_eventually('agw_requests_total{cluster="edge",outcome="ok"}')


def test_status_reports_the_services() -> None:
    data = json.loads(kubehop("testbed", "status", "-o", "json").stdout)
    expected = {"registry": True, "clouddns": True, "prometheus": True, "clusterexporter": True}
    if wan.delayer_config().exists():  # the WAN profile delays something: its delayer runs
        expected["wan-delayer"] = True
    assert data["services"] == expected
    assert data["prometheus"] == monitoring.prometheus_url()
    assert all(c["ingress_ready"] for c in data["clusters"])

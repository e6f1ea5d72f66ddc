"""Each testbed cluster is a complete, real Kubernetes cluster, reachable as users reach theirs."""

from __future__ import annotations

import json
import subprocess
from functools import partial

import pytest

from kubehop.testbed import layout
from kubehop.testbed import testbed as tb
from kubehop.waiting import NotYet, wait_for
from tests.conftest import kubehop

from .conftest import CLUSTERS
from .kube import fresh_namespaces, kubectl

pytestmark = pytest.mark.usefixtures("testbed")


def test_kubeconfig_command_names_the_testbed_kubeconfig() -> None:
    result = kubehop("testbed", "kubeconfig")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(tb.kubeconfig_file())


@pytest.mark.parametrize("context", CLUSTERS)
def test_each_context_shows_one_ready_node(context: str) -> None:
    nodes = json.loads(kubectl(context, "get", "nodes", "-o", "json"))["items"]
    assert [n["metadata"]["name"] for n in nodes] == [f"{context}-node"]
    ready = {c["type"]: c["status"] for c in nodes[0]["status"]["conditions"]}["Ready"]
    assert ready == "True"
    assert nodes[0]["status"]["nodeInfo"]["kubeletVersion"] == f"v{layout.KUBERNETES_VERSION}"


def test_server_version_is_the_pinned_upstream() -> None:
    version = json.loads(kubectl("edge", "version", "-o", "json"))
    assert version["serverVersion"]["gitVersion"] == f"v{layout.KUBERNETES_VERSION}"


def test_status_json_reports_every_cluster_healthy() -> None:
    result = kubehop("testbed", "status", "-o", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["healthy"] is True
    assert [c["name"] for c in data["clusters"]] == list(CLUSTERS)
    addresses = {c["address"] for c in data["clusters"]}
    assert len(addresses) == len(CLUSTERS)
    for c in data["clusters"]:
        assert c["load_balancer"] == c["address"]
        assert all(c["processes"].values()), c


def _manifest(cluster: str, image: str) -> str:
    return f"""
apiVersion: v1
kind: Namespace
metadata: {{name: kh-test}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: httpd, namespace: kh-test}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: httpd}}}}
  template:
    metadata: {{labels: {{app: httpd}}}}
    spec:
      containers:
      - name: httpd
        image: {image}
        env: [{{name: KUBEHOP_CLUSTER, value: {cluster}}}]
        ports: [{{containerPort: 8080}}]
        readinessProbe:
          httpGet: {{path: /healthz, port: 8080}}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {{name: httpd, namespace: kh-test}}
spec:
  type: NodePort
  selector: {{app: httpd}}
  ports: [{{port: 8080, targetPort: 8080}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: client, namespace: kh-test}}
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: client
    image: {image}
    command: ["python3", "-c", "import time; time.sleep(10**9)"]
"""


FETCH = (
    "import json, sys, urllib.request; "
    "print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())"
)


def _service_answers(cluster: str) -> bool:
    try:
        kubectl(cluster, "-n", "kh-test", "exec", "client", "--", "python3", "-c", FETCH,
                "http://httpd:8080/")
    except AssertionError as exc:
        raise NotYet(str(exc)[-200:]) from exc
    return True


@pytest.fixture(scope="module")
def deployed() -> dict[str, int]:
    """httpd (2 replicas, NodePort) plus a client pod in every cluster; returns node ports."""
    from kubehop.testbed import images

    image = images.httpd_image().ref()
    ports = {}
    for cluster in CLUSTERS:
        fresh_namespaces(cluster, "kh-test")
        kubectl(cluster, "apply", "-f", "-", stdin=_manifest(cluster, image))
    for cluster in CLUSTERS:
        kubectl(cluster, "-n", "kh-test", "rollout", "status", "deployment/httpd", "--timeout=180s")
        kubectl(
            cluster,
            "-n",
            "kh-test",
            "wait",
            "pod/client",
            "--for=condition=Ready",
            "--timeout=180s",
        )
        svc = json.loads(kubectl(cluster, "-n", "kh-test", "get", "svc", "httpd", "-o", "json"))
        ports[cluster] = svc["spec"]["ports"][0]["nodePort"]
        # Ready pods are not yet a programmed Service: kube-proxy follows a moment later.
        wait_for(partial(_service_answers, cluster), timeout=60, interval=0.5,
                 what=f"the httpd Service in {cluster} to answer its client pod")
    yield ports
    for cluster in CLUSTERS:
        kubectl(cluster, "delete", "namespace", "kh-test", "--wait=false")


@pytest.mark.parametrize("cluster", CLUSTERS)
def test_deployment_of_two_replicas_becomes_ready(cluster: str, deployed: dict[str, int]) -> None:
    dep = json.loads(kubectl(cluster, "-n", "kh-test", "get", "deployment", "httpd", "-o", "json"))
    assert dep["status"]["readyReplicas"] == 2
    pods = json.loads(
        kubectl(cluster, "-n", "kh-test", "get", "pods", "-l", "app=httpd", "-o", "json")
    )["items"]
    assert all(
        p["spec"]["containers"][0]["image"].startswith(layout.registry_address()) for p in pods
    )


@pytest.mark.parametrize("cluster", CLUSTERS)
@pytest.mark.parametrize("name", ["httpd", "httpd.kh-test", "httpd.kh-test.svc.cluster.local"])
def test_pod_reaches_service_by_name(cluster: str, name: str, deployed: dict[str, int]) -> None:
    out = kubectl(
        cluster,
        "-n",
        "kh-test",
        "exec",
        "client",
        "--",
        "python3",
        "-c",
        FETCH,
        f"http://{name}:8080/",
    )
    reply = json.loads(out)
    assert reply["cluster"] == cluster
    assert reply["pod"].startswith("httpd-")


@pytest.mark.parametrize(("server", "client"), [("edge", "cloud"), ("cloud", "edge")])
def test_other_cluster_reaches_nodeport_across_the_wan(
    server: str, client: str, deployed: dict[str, int]
) -> None:
    server_ip = next(c.node_ip for c in layout.layouts(CLUSTERS) if c.name == server)
    url = f"http://{server_ip}:{deployed[server]}/"
    result = subprocess.run(
        ["ip", "netns", "exec", f"{layout.NETNS_PREFIX}{client}", "python3", "-c", FETCH, url],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["cluster"] == server


def test_the_hosts_inotify_limits_hold_several_testbeds() -> None:
    """Each kubelet and containerd takes inotify instances; Debian's 128 ran out with three
    testbeds (kubelets failing with 'inotify_init: too many open files')."""
    from pathlib import Path

    from kubehop.testbed.hostnet import INOTIFY_MINIMUMS

    for key, minimum in INOTIFY_MINIMUMS.items():
        value = int((Path("/proc/sys") / key.replace(".", "/")).read_text())
        assert value >= minimum, key

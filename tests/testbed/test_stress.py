"""Tier shapes and ``kubehop testbed stress``: a real load on one cluster, seen where a placement
controller sees it (the testbed's Prometheus) and where the scheduler does (the node's
allocated resources)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest

from kubehop.testbed import layout, monitoring
from kubehop.testbed import stress as st
from kubehop.testbed import testbed as tb
from kubehop.waiting import NotYet, wait_for
from tests.conftest import assert_one_line_error, kubehop

from .kube import kubectl

pytestmark = pytest.mark.usefixtures("testbed")

# The CPU the pods of a cluster use, in cores: the kubepods cgroup under the kubelet's own
# cgroup root, from the kubelet's cAdvisor. (node_cpu_usage_seconds_total of /metrics/resource
# is the whole machine's: every kubelet here sees the same machine.)
CLUSTER_CPU = ('sum(rate(container_cpu_usage_seconds_total{{cluster="{c}",'
               'id="/' + layout.CGROUP_PREFIX + '{c}/kubepods"}}[20s]))')
# The stress pod's own, from the kubelet's resource metrics (pod_cpu_usage_seconds_total of the
# same endpoint follows some 30 s later).
STRESS_CPU = ('sum(rate(container_cpu_usage_seconds_total{{cluster="{c}",'
              'namespace="kubehop-stress"}}[20s]))')
REQUESTED_CPU = ('sum(kube_pod_container_resource_requests{{cluster="{c}",'
                 'namespace="kubehop-stress",resource="cpu"}})')
ALLOCATABLE = 'kube_node_status_allocatable{{cluster="{c}",resource="{r}"}}'


def _prom(query: str) -> float:
    """The single value of an instant query; NotYet while Prometheus has none."""
    reply = httpx.get(f"{monitoring.prometheus_url()}/api/v1/query", params={"query": query},
                      timeout=10)
    reply.raise_for_status()
    result = reply.json()["data"]["result"]
    if not result:
        raise NotYet(f"no samples yet for {query}")
    return float(result[0]["value"][1])


def _pods() -> list[dict[str, object]]:
    items: list[dict[str, object]] = json.loads(
        kubectl("edge", "-n", st.NAMESPACE, "get", "pods", "-o", "json"))["items"]
    return items


@pytest.fixture
def no_stress() -> Iterator[float]:
    """No stress anywhere (before and after the test); yields when the last one was gone."""
    st.stop()
    yield time.time()
    st.stop()


def _usage_since(cluster: str, since: float) -> float:
    """``cluster``'s pods' CPU usage (cores) over the time since ``since`` (an earlier load is
    out of the window), once Prometheus has a few samples of it."""
    seconds = int(time.time() - since)
    if seconds < 15:
        raise NotYet(f"only {seconds}s since the last stress ended")
    window = f"{seconds}s"
    query = (f'container_cpu_usage_seconds_total{{cluster="{cluster}",'
             f'id="/{layout.CGROUP_PREFIX}{cluster}/kubepods"}}')
    if _prom(f"count_over_time({query}[{window}])") < 4:
        raise NotYet("fewer than 4 samples since the last stress ended")
    return _prom(f"rate({query}[{window}])")


def test_tiers_differ_in_allocatable() -> None:
    nodes = {c: json.loads(kubectl(c, "get", "node", f"{c}-node", "-o", "json"))
             for c in ("edge", "cloud")}
    cpu = {c: n["status"]["allocatable"]["cpu"] for c, n in nodes.items()}
    assert cpu == {"edge": "1", "cloud": "2"}
    for c in ("edge", "cloud"):
        want = tb.expected_allocatable(next(x for x in layout.layouts(tb.recorded_clusters())
                                            if x.name == c))
        assert tb.node_resources(next(x for x in layout.layouts(tb.recorded_clusters())
                                      if x.name == c)) == want
    memory = {c: wait_for(lambda c=c: _prom(ALLOCATABLE.format(c=c, r="memory")), timeout=30,
                          interval=1, what=f"{c}'s allocatable in Prometheus")
              for c in ("edge", "cloud")}
    assert memory["edge"] == 4 * layout.GIB
    assert memory["edge"] < memory["cloud"]
    status = json.loads(kubehop("testbed", "status", "-o", "json").stdout)
    shapes = {c["name"]: (c["cpu_allocatable"], c["memory_allocatable"])
              for c in status["clusters"]}
    assert shapes["edge"] == (1.0, 4 * layout.GIB)
    assert shapes["cloud"][0] == 2.0 and shapes["cloud"][1] > shapes["edge"][1]


def test_stress_loads_the_cluster_until_stopped(no_stress: float) -> None:
    before = wait_for(lambda: _usage_since("edge", no_stress), timeout=90, interval=1,
                      what="edge's CPU usage without stress in Prometheus")

    # A first load, then a second replaces it: one pod, the second's size.
    first = kubehop("testbed", "stress", "--cluster", "edge", "--cpu", "0.2")
    assert first.returncode == 0, first.stderr
    result = kubehop("testbed", "stress", "--cluster", "edge", "--cpu", "0.5", "--memory",
                     "128Mi", "--for", "300")
    assert result.returncode == 0, result.stderr
    assert "0.5 CPU" in result.stdout
    (pod,) = _pods()
    uid = pod["metadata"]["uid"]  # type: ignore[index]
    resources = pod["spec"]["containers"][0]["resources"]  # type: ignore[index]
    assert resources["requests"]["cpu"] == resources["limits"]["cpu"] == "500m"

    # The controller's view: edge's pods burn half a core more than before.
    def loaded() -> float:
        now = _prom(CLUSTER_CPU.format(c="edge"))
        if now < before + 0.3:
            raise NotYet(f"edge's pods use {now:.2f} cores, {before:.2f} before")
        return now

    after = wait_for(loaded, timeout=90, interval=2, what="edge's CPU usage to rise")
    assert after - before < 0.5 + 0.25, "the CPU limit caps the load"

    def own_usage() -> float:
        own = _prom(STRESS_CPU.format(c="edge"))
        if not 0.3 < own < 0.6:
            raise NotYet(f"the stress pod uses {own:.2f} cores")
        return own

    wait_for(own_usage, timeout=60, interval=2, what="the stress pod's own CPU usage")
    assert wait_for(lambda: _prom(REQUESTED_CPU.format(c="edge")) == 0.5 or None, timeout=30,
                    interval=1, what="the stress pod's request in Prometheus")

    # The scheduler's view: the request is in the node's allocated resources.
    described = kubectl("edge", "describe", "node", "edge-node")
    allocated = described.split("Allocated resources:")[1]
    cpu_line = next(line for line in allocated.splitlines() if line.strip().startswith("cpu"))
    assert int(cpu_line.split()[1].removesuffix("m")) >= 500, cpu_line
    stress_line = next(line for line in described.splitlines() if "kubehop-stress" in line)
    assert "500m" in stress_line

    # Bad input changes nothing.
    assert_one_line_error(kubehop("testbed", "stress", "--cluster", "edge", "--cpu", "5"),
                          "--cpu 5", "allocatable")
    assert_one_line_error(kubehop("testbed", "stress", "--cluster", "moon", "--cpu", "0.1"),
                          "moon")
    assert [p["metadata"]["uid"] for p in _pods()] == [uid]  # type: ignore[index]

    result = kubehop("testbed", "stress", "--stop", "--cluster", "edge")
    assert result.returncode == 0, result.stderr
    assert "edge" in result.stdout
    assert kubectl("edge", "get", "pods", "-n", st.NAMESPACE, "-o", "name") == ""
    assert kubectl("edge", "get", "namespace", st.NAMESPACE, "--ignore-not-found") == ""


@pytest.mark.usefixtures("no_stress")
def test_a_timed_stress_ends_by_itself() -> None:
    result = kubehop("testbed", "stress", "--cluster", "edge", "--cpu", "100m", "--for", "3")
    assert result.returncode == 0, result.stderr

    def ended() -> str:
        (pod,) = _pods()
        phase = str(pod["status"]["phase"])  # type: ignore[index]
        if phase in {"Pending", "Running"}:
            raise NotYet(phase)
        return phase

    assert wait_for(ended, timeout=60, interval=1, what="the stress pod to end") == "Succeeded"

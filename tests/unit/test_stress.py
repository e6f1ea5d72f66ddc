"""The stress pod's manifest, its input parsing and the fit check (pure; the real load is in
tests/testbed/test_stress.py)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from kubehop.errors import UsageError
from kubehop.testbed import stress
from kubehop.testbed.layout import GIB, MIB


def test_pod_requests_and_limits_exactly_the_load() -> None:
    ns, pod = stress.manifests(cpu_millis=1500, memory=256 * MIB, seconds=None, image="reg/x:1")
    assert ns == {"apiVersion": "v1", "kind": "Namespace",
                  "metadata": {"name": "kubehop-stress"}}
    assert pod["metadata"]["namespace"] == "kubehop-stress"
    (container,) = pod["spec"]["containers"]
    want = {"cpu": "1500m", "memory": f"{256 + stress.MEMORY_OVERHEAD // MIB}Mi"}
    assert container["resources"] == {"requests": want, "limits": want}
    assert container["image"] == "reg/x:1"
    # two busy processes for 1.5 cores (the limit caps them), the bytes, no end
    assert container["command"][3:] == ["2", str(256 * MIB), "0"]
    assert pod["spec"]["restartPolicy"] == "Always"
    assert "activeDeadlineSeconds" not in pod["spec"]


def test_a_timed_stress_ends_by_itself_and_is_backed_by_a_deadline() -> None:
    _, pod = stress.manifests(cpu_millis=500, memory=0, seconds=30, image="reg/x:1")
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["spec"]["containers"][0]["resources"]["limits"]["memory"] == "64Mi"
    _, odd = stress.manifests(cpu_millis=500, memory=1000, seconds=30, image="reg/x:1")
    assert odd["spec"]["containers"][0]["resources"]["limits"]["memory"] == str(1000 + 64 * MIB)
    assert pod["spec"]["activeDeadlineSeconds"] == 30 + stress.DEADLINE_SLACK_S
    assert pod["spec"]["containers"][0]["command"][3:] == ["1", "0", "30"]


def test_the_script_ends_after_its_seconds_and_holds_its_bytes() -> None:
    """The pod's program, run here: one busy process, 8 MiB held, ends after 1 s."""
    _, pod = stress.manifests(cpu_millis=100, memory=8 * MIB, seconds=1, image="x")
    argv = pod["spec"]["containers"][0]["command"]
    start = time.monotonic()
    result = subprocess.run([sys.executable, *argv[1:]], capture_output=True, text=True,
                            timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    assert 1 <= time.monotonic() - start < 10
    assert f"1 busy processes, {8 * MIB} bytes held" in result.stdout


@pytest.mark.parametrize(("text", "millis"), [("0.5", 500), ("2", 2000), ("250m", 250),
                                              (".1", 100), ("1.", 1000)])
def test_cpu_in_cores_or_millicores(text: str, millis: int) -> None:
    assert stress.parse_cpu(text) == millis


@pytest.mark.parametrize("text", ["0", "-1", "0m", "0.0001", "abc", "1 core", ""])
def test_cpu_must_be_a_positive_number(text: str) -> None:
    with pytest.raises(UsageError, match="--cpu"):
        stress.parse_cpu(text)


@pytest.mark.parametrize(("text", "size"), [("512Mi", 512 * MIB), ("1GiB", GIB), ("1G", 10**9),
                                            ("100", 100), ("1.5Gi", 3 * GIB // 2),
                                            ("64 MiB", 64 * MIB)])
def test_sizes(text: str, size: int) -> None:
    assert stress.parse_size(text) == size


@pytest.mark.parametrize("text", ["0", "12x", "-5Mi", "Mi", "1 gigabyte"])
def test_bad_sizes(text: str) -> None:
    with pytest.raises(UsageError, match="--memory"):
        stress.parse_size(text)


@pytest.mark.parametrize("text", ["0", "-3", "1.5", "ten", str(8 * 24 * 3600)])
def test_bad_durations(text: str) -> None:
    with pytest.raises(UsageError, match="--for"):
        stress.parse_seconds(text)


def _pod(ns: str, cpu: str | None, memory: str | None, *, node: str = "edge-node",
         phase: str = "Running", init_cpu: str | None = None) -> dict[str, object]:
    requests = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v is not None}
    spec: dict[str, object] = {"nodeName": node,
                               "containers": [{"name": "a", "resources": {"requests": requests}},
                                              {"name": "b"}]}
    if init_cpu:
        spec["initContainers"] = [{"name": "i", "resources": {"requests": {"cpu": init_cpu}}}]
    return {"metadata": {"namespace": ns, "name": "p"}, "spec": spec, "status": {"phase": phase}}


def test_requested_counts_live_pods_on_the_node_only() -> None:
    pods = [
        _pod("kube-system", "50m", "32Mi"),
        _pod("traefik", "0.1", "64Mi"),
        _pod("other", "1", "1Gi", node="cloud-node"),
        _pod("done", "1", "1Gi", phase="Succeeded"),
        _pod("kubehop-stress", "500m", "64Mi"),
        _pod("init", "10m", None, init_cpu="300m"),
    ]
    assert stress.requested(pods, node="edge-node", exclude_namespace="kubehop-stress") == (
        50 + 100 + 300, 96 * MIB)
    assert stress.requested(pods, node="edge-node")[0] == 950


def test_fit_check_names_the_limit() -> None:
    alloc = (1000, 4 * GIB)
    stress.check_fits("edge", cpu_millis=750, memory=GIB, allocatable=alloc, taken=(250, 0))
    with pytest.raises(UsageError, match="more than edge's allocatable 1 CPU"):
        stress.check_fits("edge", cpu_millis=1001, memory=0, allocatable=alloc, taken=(0, 0))
    with pytest.raises(UsageError, match="use --cpu 750m or less"):
        stress.check_fits("edge", cpu_millis=800, memory=0, allocatable=alloc, taken=(250, 0))
    with pytest.raises(UsageError, match="allocatable 4096Mi"):
        stress.check_fits("edge", cpu_millis=1, memory=4 * GIB, allocatable=alloc, taken=(0, 0))
    with pytest.raises(UsageError, match="does not fit on edge"):
        stress.check_fits("edge", cpu_millis=1, memory=3 * GIB, allocatable=alloc,
                          taken=(0, GIB))


def test_exporter_publishes_the_requests_the_scheduler_counts() -> None:
    from kubehop.testbed.clusterexporter import container_requests

    pods = [_pod("kubehop-stress", "500m", "64Mi"), _pod("done", "1", None, phase="Failed"),
            {"metadata": {"namespace": "x", "name": "pending"},
             "spec": {"containers": [{"name": "a", "resources": {"requests": {"cpu": "1"}}}]}}]
    assert list(container_requests(pods)) == [
        (["kubehop-stress", "p", "a", "edge-node", "cpu", "core"], 0.5),
        (["kubehop-stress", "p", "a", "edge-node", "memory", "byte"], float(64 * MIB)),
    ]

"""Discovery's arithmetic on API objects: what nodes offer, what pods ask for, which pods count."""

from __future__ import annotations

import pytest

from kubehop.controller.observe import (
    ClusterFacts,
    live,
    matches,
    node_totals,
    parse_clients,
    pod_requests,
    quantity,
)


def pod(cpu: str | None = None, mem: str | None = None, *, init: tuple[str, str] | None = None,
        phase: str = "Running", node: str | None = "n1") -> dict[str, object]:
    requests = {k: v for k, v in (("cpu", cpu), ("memory", mem)) if v is not None}
    spec: dict[str, object] = {"containers": [{"name": "a", "resources": {"requests": requests}},
                                              {"name": "b"}]}
    if init:
        spec["initContainers"] = [{"name": "i", "resources": {
            "requests": {"cpu": init[0], "memory": init[1]}}}]
    if node:
        spec["nodeName"] = node
    return {"metadata": {"labels": {"app": "x"}}, "spec": spec, "status": {"phase": phase}}


@pytest.mark.parametrize(("text", "value"), [("100m", 0.1), ("2", 2.0), ("4Gi", 4 * 2**30),
                                             ("128Mi", 128 * 2**20), (None, 0.0), ("", 0.0)])
def test_quantities(text: str | None, value: float) -> None:
    assert quantity(text) == pytest.approx(value)


def test_node_totals_add_every_node() -> None:
    nodes = [{"status": {"capacity": {"cpu": "2", "memory": "8Gi"},
                         "allocatable": {"cpu": "1500m", "memory": "6Gi"}}},
             {"status": {"capacity": {"cpu": "1", "memory": "1Gi"},
                         "allocatable": {"cpu": "500m", "memory": "512Mi"}}}]
    assert node_totals(nodes) == pytest.approx((3.0, 2.0, 9 * 2**30, 6.5 * 2**30))


def test_pod_requests_take_the_larger_of_containers_and_an_init_container() -> None:
    assert pod_requests(pod("100m", "64Mi")) == pytest.approx((0.1, 64 * 2**20))
    assert pod_requests(pod("100m", "64Mi", init=("1", "1Mi"))) == pytest.approx(
        (1.0, 64 * 2**20))
    assert pod_requests(pod()) == (0.0, 0.0)


def test_only_scheduled_unfinished_pods_hold_resources() -> None:
    assert live(pod())
    assert not live(pod(phase="Succeeded"))
    assert not live(pod(phase="Failed"))
    assert not live(pod(node=None))


def test_an_empty_selector_matches_nothing() -> None:
    """A Service without a selector (an alias left by a migration) has no pods of its own."""
    assert matches({"app": "x"}, pod())
    assert not matches({}, pod())
    assert not matches({"app": "y"}, pod())


def test_clients_annotation() -> None:
    assert parse_clients("edge") == (("edge", 1.0),)
    assert parse_clients("edge=3, fog=1") == (("edge", 3.0), ("fog", 1.0))
    assert parse_clients("edge=x,fog") == (("fog", 1.0),)
    assert parse_clients("") == ()


def test_headroom_counts_the_larger_of_requested_and_used_and_is_unknown_without_usage() -> None:
    c = ClusterFacts("edge", "edge", cpu_allocatable=1.0, mem_allocatable=4.0,
                     cpu_requested=0.2, mem_requested=1.0, cpu_usage=0.6, mem_usage=0.5)
    assert c.cpu_headroom == pytest.approx(0.4)
    assert c.memory_headroom == pytest.approx(0.75)
    assert ClusterFacts("edge", "edge", cpu_allocatable=1.0, cpu_requested=0.2).cpu_headroom \
        is None
    over = ClusterFacts("edge", "edge", cpu_allocatable=1.0, cpu_requested=1.5, cpu_usage=0.1)
    assert over.cpu_headroom == 0.0

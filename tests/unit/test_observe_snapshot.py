"""The observer's snapshot: raw API objects and Prometheus answers turned into the facts the
controller decides on (what each cluster offers and has taken, where each managed service's
ready pods are, the RTT of each link), and every fact it could not get named as missing, never
guessed. Real :class:`~kubehop.controller.observe.Observer` over the fakes of ctlfakes.py."""

from __future__ import annotations

import pytest

from kubehop.adapters.prometheus import MonitoringError
from kubehop.controller import observe as observe_module
from kubehop.controller.observe import (
    CLIENTS_ANNOTATION,
    MANAGED_LABEL,
    Observer,
    ServiceFacts,
    Snapshot,
    Wanted,
)

from .ctlfakes import GI, MI, Clock, World, node, pod, service

NS = "orc8r-ns"


@pytest.fixture
def world() -> World:
    w = World()
    w.prometheus.cpu = {"edge": 0.5, "fog": 1.0, "cloud": 2.0}
    w.prometheus.mem = {"edge": 1.0 * GI, "fog": 2.0 * GI, "cloud": 3.0 * GI}
    w.prometheus.rtt_s = {("edge", "fog"): 0.010, ("edge", "cloud"): 0.050,
                          ("fog", "cloud"): 0.040}
    return w


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(observe_module, "time", c)
    return c


def snapshot(world: World, *wanted: Wanted, max_age: float = 30.0) -> Snapshot:
    observer = Observer(world.inventory(), world.kube,  # type: ignore[arg-type]
                        world.prometheus, max_age=max_age)  # type: ignore[arg-type]
    return observer.snapshot(wanted)


def test_a_cluster_offers_its_nodes_and_has_taken_its_live_pods_and_their_usage(
        world: World, clock: Clock) -> None:
    """Capacity and allocatable add over the nodes; requests add over the pods that hold
    resources (scheduled and not finished, ready or not); usage is Prometheus's; what counts
    as used is the larger of the two; the load balancer and tier come from the inventory."""
    edge = world.kube["edge"]
    edge.nodes.append(node("1", "2Gi"))
    edge.pods = [pod("a", "x", cpu="100m", memory="128Mi"),
                 pod("a", "y", cpu="200m", memory="64Mi", ready=False),
                 pod("a", "done", cpu="4", memory="4Gi", phase="Succeeded"),
                 {**pod("a", "pending", cpu="4", memory="4Gi"), "spec": {"containers": []}}]
    snap = snapshot(world)
    assert snap.at == clock.now
    assert snap.missing == []
    facts = snap.clusters["edge"]
    assert (facts.name, facts.tier, facts.load_balancer) == ("edge", "edge", "10.0.0.1")
    assert (facts.cpu_capacity, facts.cpu_allocatable) == (3.0, 3.0)
    assert facts.mem_allocatable == 6 * GI
    assert facts.cpu_requested == pytest.approx(0.3)
    assert facts.mem_requested == 192 * MI
    assert (facts.cpu_usage, facts.mem_usage) == (0.5, 1.0 * GI)
    assert facts.cpu_used == 0.5 and facts.mem_used == 1.0 * GI
    assert facts.cpu_headroom == pytest.approx(1 - 0.5 / 3)
    assert snap.clusters["fog"].cpu_requested == 0.0


def test_a_service_runs_where_its_selector_finds_ready_pods_in_its_namespace(
        world: World, clock: Clock) -> None:
    """orc8r runs in edge (its Service selects ready pods there). Not in fog, where only the
    alias a migration leaves (a Service without a selector) stands beside pods with its
    labels; not in cloud, where its pods are not ready. Pods with its labels in another
    namespace are not its own. Its needs are its pods' requests where it runs."""
    world.deploy("edge", NS, "orc8r", cpu="100m", memory="128Mi", replicas=2)
    world.kube["edge"].pods.append(pod("elsewhere", "orc8r", cpu="3", memory="3Gi"))
    world.kube["fog"].services.append(service(NS, "orc8r"))
    world.kube["fog"].pods.append(pod(NS, "orc8r"))
    world.kube["cloud"].services.append(service(NS, "orc8r", selector={"app": "orc8r"}))
    world.kube["cloud"].pods.append(pod(NS, "orc8r", ready=False))
    snap = snapshot(world, Wanted(NS, "orc8r", clients=(("edge", 1.0),)))
    assert snap.services == {f"{NS}/orc8r": ServiceFacts(
        NS, "orc8r", ("edge",), cpu=pytest.approx(0.2), mem=256 * MI,  # type: ignore[arg-type]
        clients=(("edge", 1.0),), source="policy")}


def test_a_service_with_ready_pods_in_two_clusters_runs_in_both(world: World,
                                                                 clock: Clock) -> None:
    """Mid-migration (or copied by hand) a service is seen in both clusters, its requests
    added up; one the policy names but no cluster runs is seen nowhere, with no needs."""
    world.deploy("edge", NS, "orc8r")
    world.deploy("fog", NS, "orc8r")
    snap = snapshot(world, Wanted(NS, "orc8r"), Wanted("web-ns", "web"))
    orc8r, web = snap.services[f"{NS}/orc8r"], snap.services["web-ns/web"]
    assert orc8r.running_in == ("edge", "fog")
    assert orc8r.cpu == pytest.approx(0.2) and orc8r.mem == 256 * MI
    assert (web.running_in, web.cpu, web.mem) == ((), 0.0, 0.0)


def test_declared_needs_win_over_pod_requests(world: World, clock: Clock) -> None:
    world.deploy("edge", NS, "orc8r", cpu="100m", memory="128Mi")
    facts = snapshot(world, Wanted(NS, "orc8r", cpu=0.5, mem=1.0 * GI)).services[f"{NS}/orc8r"]
    assert (facts.cpu, facts.mem) == (0.5, 1.0 * GI)


def test_labelled_services_are_managed_with_their_clients_annotation(world: World,
                                                                     clock: Clock) -> None:
    """A Service labelled kubehop.io/managed=true is managed although the policy does not
    list it (source 'label'), its clients read from its annotation; the policy's entry wins
    for one it lists (source 'policy', its clients); another label value is not managed."""
    labelled = {MANAGED_LABEL: "true"}
    world.kube["fog"].services += [
        service("web-ns", "web", selector={"app": "web"}, labels=labelled,
                annotations={CLIENTS_ANNOTATION: "edge=3, fog=1"}),
        service(NS, "orc8r", selector={"app": "orc8r"}, labels=labelled,
                annotations={CLIENTS_ANNOTATION: "cloud"}),
        service("db-ns", "db", selector={"app": "db"}, labels={MANAGED_LABEL: "false"})]
    world.kube["fog"].pods += [pod("web-ns", "web"), pod(NS, "orc8r"), pod("db-ns", "db")]
    snap = snapshot(world, Wanted(NS, "orc8r", clients=(("edge", 1.0),)))
    assert sorted(snap.services) == ["orc8r-ns/orc8r", "web-ns/web"]
    web = snap.services["web-ns/web"]
    assert (web.source, web.clients, web.running_in) == (
        "label", (("edge", 3.0), ("fog", 1.0)), ("fog",))
    orc8r = snap.services[f"{NS}/orc8r"]
    assert (orc8r.source, orc8r.clients) == ("policy", (("edge", 1.0),))


def test_link_rtts_are_milliseconds_averaged_both_ways_and_unmeasured_links_named(
        world: World, clock: Clock) -> None:
    """An RTT in seconds becomes milliseconds, under both orders of the pair; a link measured
    from both ends takes the mean; samples naming an unknown cluster or a cluster and itself
    are ignored; a link nobody measured is missing, with the window looked at."""
    world.prometheus.rtt_s = {("edge", "fog"): 0.010, ("fog", "edge"): 0.020,
                              ("edge", "mars"): 0.001, ("cloud", "cloud"): 0.0,
                              ("edge", "cloud"): 0.050}
    snap = snapshot(world)
    assert snap.rtt_ms == pytest.approx({("edge", "fog"): 15.0, ("fog", "edge"): 15.0,
                                         ("cloud", "edge"): 50.0, ("edge", "cloud"): 50.0})
    assert snap.missing == ["link cloud-fog: no RTT measured in the last 30s"]


def test_an_unreadable_cluster_is_missing_not_empty(world: World, clock: Clock) -> None:
    """A cluster whose API cannot be read is named missing with the reason; its facts are
    unknown (None: no headroom, even with Prometheus's usage), not zero, and no service is
    seen running there."""
    world.deploy("fog", NS, "orc8r")
    world.kube["fog"].down = "connection refused"
    snap = snapshot(world, Wanted(NS, "orc8r"))
    assert "cluster fog: API not readable (fog: connection refused)" in snap.missing
    fog = snap.clusters["fog"]
    assert (fog.tier, fog.load_balancer) == ("fog", "10.0.0.2")
    assert (fog.cpu_capacity, fog.cpu_allocatable, fog.mem_allocatable) == (None, None, None)
    assert (fog.cpu_requested, fog.mem_requested) == (None, None)
    assert fog.cpu_used is None and fog.cpu_headroom is None and fog.memory_headroom is None
    assert snap.services[f"{NS}/orc8r"].running_in == ()


def test_prometheus_down_loses_usage_and_links_but_not_what_the_apis_said(
        world: World, clock: Clock) -> None:
    world.deploy("edge", NS, "orc8r")
    world.prometheus.down = "ConnectError: connection refused"
    snap = snapshot(world, Wanted(NS, "orc8r"))
    assert [m.split(":")[0] for m in snap.missing] == ["usage of every cluster", "link RTTs"]
    assert all("connection refused" in m for m in snap.missing)
    edge = snap.clusters["edge"]
    assert edge.cpu_requested == pytest.approx(0.1) and edge.cpu_usage is None
    assert edge.cpu_headroom is None
    assert snap.rtt_ms == {}
    assert snap.services[f"{NS}/orc8r"].running_in == ("edge",)


def test_a_cluster_without_usage_series_is_missing(world: World, clock: Clock) -> None:
    """Prometheus answering without a cluster's memory series: that cluster's usage is
    missing (both cpu and memory left unknown), the others' are set."""
    del world.prometheus.mem["fog"]
    snap = snapshot(world, max_age=45)
    assert snap.missing == ["cluster fog: no CPU/memory usage in Prometheus for the last 45s"]
    assert snap.clusters["fog"].cpu_usage is None
    assert snap.clusters["edge"].cpu_usage == 0.5


@pytest.mark.parametrize(("max_age", "usage", "rtt"), [(45, "[45s]", "[45s]"),
                                                         (5, "[15s]", "[10s]")])
def test_queries_look_back_max_data_age_with_a_floor(world: World, clock: Clock,
                                                     max_age: float, usage: str,
                                                     rtt: str) -> None:
    """Usage and RTT are read over maxDataAge, but never less than 15 s (two scrapes of
    rate()) and 10 s."""
    snapshot(world, max_age=max_age)
    cpu_q, mem_q, rtt_q = world.prometheus.queries
    assert usage in cpu_q and usage in mem_q and rtt in rtt_q


def test_without_prometheus_every_query_is_a_monitoring_error(world: World,
                                                             clock: Clock) -> None:
    observer = Observer(world.inventory(), world.kube, None,  # type: ignore[arg-type]
                        max_age=30)
    with pytest.raises(MonitoringError, match="no Prometheus in the inventory"):
        observer.query("up")
    snap = observer.snapshot([])
    assert snap.missing[0].startswith("usage of every cluster: no Prometheus")

"""Cluster names and the address plan derived from them."""

import ipaddress

import pytest

from kubehop.testbed import layout


def test_default_names_parse() -> None:
    assert layout.parse_cluster_names("edge,cloud") == ("edge", "cloud")
    assert layout.parse_cluster_names(" edge , fog,cloud ") == ("edge", "fog", "cloud")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "no cluster names"),
        ("edge,edge", "repeat"),
        ("Edge", "not valid"),
        ("edge-1", "not valid"),
        ("averyverylongname", "not valid"),
        (",".join(f"c{i}" for i in range(9)), "at most"),
    ],
)
def test_bad_names_are_refused_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        layout.parse_cluster_names(text)


def test_clusters_get_disjoint_addresses_on_the_wan() -> None:
    clusters = layout.layouts(("edge", "fog", "cloud"))
    node_ips = {c.node_ip for c in clusters}
    assert len(node_ips) == 3
    assert all(ip in layout.WAN_NETWORK and ip != layout.HOST_ADDRESS for ip in node_ips)
    nets = [c.pod_cidr for c in clusters] + [c.service_cidr for c in clusters]
    for i, a in enumerate(nets):
        assert not a.overlaps(layout.WAN_NETWORK)
        for b in nets[i + 1 :]:
            assert not a.overlaps(b), (a, b)


def test_service_ips_sit_in_the_service_range() -> None:
    c = layout.layouts(("edge",))[0]
    assert c.api_service_ip in c.service_cidr
    assert c.dns_service_ip in c.service_cidr
    assert c.node_pod_cidr.subnet_of(c.pod_cidr)
    assert isinstance(c.node_ip, ipaddress.IPv4Address)


def test_interface_names_fit_the_kernel_limit() -> None:
    for c in layout.layouts(("abcdefghij",)):
        assert len(c.veth_host) <= 15 and len(c.veth_peer) <= 15 and len(c.netns) <= 15


def test_tiers() -> None:
    assert layout.tier_of("fog") == "fog"
    assert layout.tier_of("cloud") == "cloud"
    assert layout.tier_of("site7") == "edge"


def test_tier_shapes_grow_from_edge_to_cloud() -> None:
    edge, fog, cloud = (layout.TIER_SHAPES[t] for t in ("edge", "fog", "cloud"))
    assert edge.cpu_millis < fog.cpu_millis < cloud.cpu_millis
    assert edge.memory < fog.memory < cloud.memory


def test_reservation_leaves_the_tier_shape() -> None:
    machine = {"cpu_millis": 2000, "memory": 24 * layout.GIB}
    r = layout.reservation("edge", **machine)
    assert r == layout.Reservation(cpu_millis=1000,
                                   memory=20 * layout.GIB - layout.EVICTION_MEMORY)
    # the kubelet's arithmetic: capacity - reserved - eviction threshold
    assert 24 * layout.GIB - r.memory - layout.EVICTION_MEMORY == 4 * layout.GIB
    assert layout.allocatable("edge", **machine) == layout.TIER_SHAPES["edge"]
    assert layout.allocatable("fog", **machine) == layout.TierShape(1500, 8 * layout.GIB)
    assert layout.reservation("cloud", **machine).cpu_millis == 0


def test_a_small_machine_clamps_the_shape_to_what_it_has() -> None:
    small = {"cpu_millis": 1000, "memory": 6 * layout.GIB}
    assert layout.reservation("cloud", **small) == layout.Reservation(0, 0)
    assert layout.allocatable("cloud", **small) == layout.TierShape(
        1000, 6 * layout.GIB - layout.EVICTION_MEMORY)
    assert layout.allocatable("edge", **small) == layout.TierShape(1000, 4 * layout.GIB)

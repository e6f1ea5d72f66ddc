"""Cluster names and the address plan derived from them."""

import ipaddress
from pathlib import Path

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


_PLAN = """
import json
from kubehop.testbed import layout as l
from kubehop.testbed import wan, wanprofile
c = l.layouts(("edge", "cloud"))
print(json.dumps({
    "bridge": l.BRIDGE, "wan": str(l.WAN_NETWORK), "host": str(l.HOST_ADDRESS),
    "state": str(l.state_dir()), "comment": l.IPTABLES_COMMENT, "chain": wan.CHAIN,
    "wan_tag": wan.TAG, "queues": [wanprofile.queue_number(0, 0), wanprofile.queue_number(7, 7)],
    "netns": [x.netns for x in c], "links": [x.veth_host for x in c] + [x.veth_peer for x in c],
    "cgroups": [x.cgroup_root for x in c], "nodes": [str(x.node_ip) for x in c],
    "pods": [str(x.pod_cidr) for x in c], "services": [str(x.service_cidr) for x in c],
}))
"""


def _plan(slot: str | None) -> dict[str, object]:
    """The address and name plan as a process with ``KUBEHOP_TESTBED_SLOT=slot`` sees it (the
    slot is read once, at import, so each slot needs a process of its own)."""
    import json
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("KUBEHOP_TESTBED_SLOT",
                                                           "KUBEHOP_STATE")}
    if slot is not None:
        env["KUBEHOP_TESTBED_SLOT"] = slot
    out = subprocess.run([sys.executable, "-c", _PLAN], env=env, capture_output=True,
                         text=True, check=True, timeout=60).stdout
    plan: dict[str, object] = json.loads(out)
    return plan


def test_slot_zero_is_the_testbed_as_it_always_was() -> None:
    plan = _plan(None)
    assert plan == _plan("0")
    assert plan["bridge"] == "kh0" and plan["wan"] == "10.250.0.0/24"
    assert plan["state"] == "/var/lib/kubehop/testbed"
    assert plan["netns"] == ["kh-edge", "kh-cloud"]
    assert plan["cgroups"] == ["/kubehop-edge", "/kubehop-cloud"]
    assert plan["chain"] == "KUBEHOP-WAN" and plan["comment"] == "kubehop-testbed"


def test_slots_share_no_name_address_or_queue_and_none_is_a_prefix_of_another() -> None:
    """Each slot's ``down`` sweeps what matches its own names and prefixes: had one slot's
    name been a prefix or substring of another's, one worker's teardown would remove the
    other's testbed."""
    plans = [_plan(str(slot)) for slot in range(layout.MAX_SLOTS)]
    for i, a in enumerate(plans):
        for b in plans[i + 1:]:
            for key in ("bridge", "state", "comment", "chain", "wan_tag"):
                assert str(a[key]) not in str(b[key]) and str(b[key]) not in str(a[key]), key
            for key in ("netns", "links", "cgroups", "nodes"):
                assert not set(a[key]) & set(b[key]), key  # type: ignore[arg-type]
            for key in ("pods", "services"):
                assert not any(ipaddress.ip_network(x).overlaps(ipaddress.ip_network(y))
                               for x in a[key] for y in b[key]), key  # type: ignore[attr-defined]
            assert not ipaddress.ip_network(a["wan"]).overlaps(  # type: ignore[arg-type]
                ipaddress.ip_network(b["wan"]))  # type: ignore[arg-type]
            qa, qb = a["queues"], b["queues"]
            assert qa[1] < qb[0] or qb[1] < qa[0]  # type: ignore[index]
    for plan in plans:
        assert all(len(name) <= 15 for name in plan["links"]), "IFNAMSIZ"  # type: ignore[attr-defined]


@pytest.mark.parametrize("slot", ["4", "-1", "one"])
def test_a_bad_slot_is_one_line_and_no_traceback(slot: str) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "KUBEHOP_TESTBED_SLOT": slot}
    result = subprocess.run([sys.executable, "-m", "kubehop.cli.main", "testbed", "status"],
                            env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "KUBEHOP_TESTBED_SLOT" in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_a_slot_finds_its_own_testbeds_inventory_not_slot_zeros(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --inventory or KUBEHOP_INVENTORY a command falls back to the testbed's inventory:
    in slot 1 that must be slot 1's, or ``kubehop migrate`` would move slot 0's services."""
    from kubehop.adapters import inventory

    monkeypatch.delenv("KUBEHOP_STATE", raising=False)
    monkeypatch.setenv("KUBEHOP_TESTBED_SLOT", "1")
    assert inventory.testbed_inventory() == Path("/var/lib/kubehop/slot1/testbed/inventory.yaml")
    monkeypatch.setenv("KUBEHOP_TESTBED_SLOT", "0")
    assert inventory.testbed_inventory() == Path("/var/lib/kubehop/testbed/inventory.yaml")

"""The inventory file: parsed when right, a one-line reason when wrong."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubehop.adapters import inventory
from kubehop.errors import KubehopError, UsageError

GOOD = {
    "kubeconfig": "/tmp/kc",
    "clusters": [{"name": "edge", "context": "edge-ctx", "tier": "edge",
                  "loadBalancer": "10.0.0.10", "entrypoints": {"web": 80, "alt": 8080},
                  "proxyRules": [["ssh", "node1", "iptables-save", "-t", "nat"]]}],
    "dns": {"zone": "testnetwork.internal.", "server": "10.0.0.2", "tsigKeyFile": "/k"},
}


def test_good_inventory_round_trips(tmp_path: Path) -> None:
    inv = inventory.parse(GOOD, tmp_path / "i.yaml")
    edge = inv.cluster("edge-ctx")
    assert edge is not None and edge.name == "edge"
    assert edge.entrypoints == {80: "web", 8080: "alt"}
    assert edge.proxy_rules == (("ssh", "node1", "iptables-save", "-t", "nat"),)
    assert inv.dns is not None and inv.dns.zone == "testnetwork.internal" and inv.dns.port == 53
    again = inventory.parse(yaml.safe_load(inventory.dump(inv)), tmp_path / "i.yaml")
    assert again == inv


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({}, "clusters"),
        ({"clusters": [{"name": "a"}]}, "lacks context, loadBalancer"),
        ({"clusters": [{"name": "a", "context": "c", "loadBalancer": "1.2.3.4",
                        "entrypoints": ["web"]}]}, "entrypoints"),
        ({"clusters": [], "dns": {"zone": "z"}}, "dns lacks server, tsigKeyFile"),
    ],
)
def test_bad_inventory_names_the_problem(tmp_path: Path, data: object, fragment: str) -> None:
    with pytest.raises(UsageError, match=fragment):
        inventory.parse(data, tmp_path / "i.yaml")


def test_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot read inventory"):
        inventory.load(str(tmp_path / "nope.yaml"))


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"clusters": [{"name": ["edge"], "context": "c", "loadBalancer": "1.2.3.4"}]},
         "clusters[0].name must be a string, not list"),
        ({"clusters": [{"name": "a", "context": "c", "loadBalancer": "1.2.3.4",
                        "entrypoints": {"web": "eighty"}}]}, "entrypoints.web must be a port"),
        ({"clusters": [{"name": "a", "context": "c", "loadBalancer": "1.2.3.4",
                        "entrypoints": {"web": 80, "alt": 80}}]}, "gives port 80 twice"),
        ({"clusters": [{"name": "a", "context": "c", "loadBalancer": "1.2.3.4",
                        "entrypoints": 80}]}, "entrypoints must map names to ports"),
        ({"clusters": [{"name": "a", "context": "c", "loadBalancer": "1.2.3.4"}] * 2},
         "listed twice"),
        ({"clusters": [{"name": "a", "context": "c", "loadBalancer": "1.2.3.4",
                        "proxyRules": "iptables-save"}]}, "proxyRules must be a list of commands"),
        ({"clusters": [{"name": "a", "context": "c", "loadBalancer": "1.2.3.4",
                        "proxyRules": [["ssh", 1]]}]}, "proxyRules must be a list of commands"),
        ({"clusters": [], "dns": {**GOOD["dns"], "port": "fifty-three"}}, "dns.port"),
        ({"clusters": [], "dns": {**GOOD["dns"], "port": 53.5}}, "dns.port"),
        ({"clusters": [], "dns": ["zone"]}, "dns must be a mapping"),
        ({"clusters": [], "dns": {**GOOD["dns"], "zone": "."}}, "dns.zone"),
        ({"clusters": [], "kubeconfig": "~no-such-user-kh/kc"}, "cannot expand"),
    ],
)
def test_wrong_types_are_named_not_crashed_on(tmp_path: Path, data: object,
                                              fragment: str) -> None:
    with pytest.raises(UsageError) as info:
        inventory.parse(data, tmp_path / "i.yaml")
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("clusters: [\n", "not valid YAML: "),
        ("clusters: []\nwhen: 2024-13-01\n", "cannot represent"),
        ("[" * 5000 + "]" * 5000, "inventory"),
    ],
)
def test_unreadable_yaml_is_one_line(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "i.yaml"
    path.write_text(text)
    with pytest.raises(UsageError) as info:
        inventory.load(str(path))
    assert fragment in str(info.value)
    assert len(str(info.value).splitlines()) == 1


# --- fuzzing: nothing but an Inventory or a one-line KubehopError ---------------------------

_scalars = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats()
            | st.text(max_size=12) | st.dates() | st.sampled_from(["~", "~nobody-kh/x", ".", ""]))
_yaml_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=8) | st.integers(0, 9), inner, max_size=4),
    max_leaves=20,
)


def _maybe(good: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    """Mostly a right value, sometimes any YAML value: reaches the checks deep inside."""
    return st.one_of(good, good, _yaml_values)


_cluster = st.dictionaries(
    st.sampled_from(["name", "context", "tier", "loadBalancer", "entrypoints",
                     "clusterDomain", "other"]),
    _maybe(st.text(min_size=1, max_size=10)), max_size=7,
).flatmap(lambda base: st.fixed_dictionaries(
    {"name": _maybe(st.sampled_from(["edge", "cloud"])), "context": _maybe(st.just("ctx")),
     "loadBalancer": _maybe(st.just("10.0.0.10")),
     "entrypoints": _maybe(st.dictionaries(st.sampled_from(["web", "alt", 80, None, True, ""]),
                                           _maybe(st.integers(0, 70000)), max_size=3))},
).map(lambda fixed: {**base, **fixed}))
_dns = st.fixed_dictionaries(
    {"zone": _maybe(st.sampled_from(["z.internal", "z.", "."])),
     "server": _maybe(st.just("10.0.0.2")), "port": _maybe(st.integers(-5, 70000)),
     "tsigKeyFile": _maybe(st.sampled_from(["/k", "~/k", "~nobody-kh/k"]))})
_inventories = st.fixed_dictionaries(
    {"clusters": _maybe(st.lists(_maybe(_cluster), max_size=3))},
    optional={"dns": _maybe(_dns), "kubeconfig": _maybe(st.sampled_from(["/kc", "~/kc"]))},
)


def _inventory_or_one_line_error(call: Callable[[], inventory.Inventory]) -> None:
    try:
        inv = call()
    except KubehopError as exc:
        assert len(str(exc).splitlines()) == 1, str(exc)
        return
    assert all(isinstance(port, int) and 0 < port < 65536
               for c in inv.clusters.values() for port in c.entrypoints)
    assert inv.dns is None or (isinstance(inv.dns.port, int) and inv.dns.zone)
    # What kubehop accepts, it writes back the same (the testbed writes its inventory so).
    assert inventory.parse(yaml.safe_load(inventory.dump(inv)), Path("again.yaml")) == inv


_FUZZ = settings(max_examples=500, deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture])


@_FUZZ
@given(data=_inventories | _yaml_values)
def test_fuzz_parse(data: object) -> None:
    _inventory_or_one_line_error(lambda: inventory.parse(data, Path("i.yaml")))


@_FUZZ
@given(content=st.text() | st.binary() | _inventories.map(yaml.safe_dump))
def test_fuzz_load(tmp_path: Path, content: str | bytes) -> None:
    path = tmp_path / "i.yaml"
    if isinstance(content, str):
        path.write_text(content)
    else:
        path.write_bytes(content)
    _inventory_or_one_line_error(lambda: inventory.load(str(path)))

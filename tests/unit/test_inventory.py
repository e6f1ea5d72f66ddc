"""The inventory file: parsed when right, a one-line reason when wrong."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kubehop.adapters import inventory
from kubehop.errors import UsageError

GOOD = {
    "kubeconfig": "/tmp/kc",
    "clusters": [{"name": "edge", "context": "edge-ctx", "tier": "edge",
                  "loadBalancer": "10.0.0.10", "entrypoints": {"web": 80, "alt": 8080}}],
    "dns": {"zone": "testnetwork.internal.", "server": "10.0.0.2", "tsigKeyFile": "/k"},
}


def test_good_inventory_round_trips(tmp_path: Path) -> None:
    inv = inventory.parse(GOOD, tmp_path / "i.yaml")
    edge = inv.cluster("edge-ctx")
    assert edge is not None and edge.name == "edge"
    assert edge.entrypoints == {80: "web", 8080: "alt"}
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

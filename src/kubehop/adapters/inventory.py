"""The cluster inventory: a small YAML file naming each cluster's context, tier, load-balancer
address and ingress entry points, and the private DNS zone with its server and TSIG key file.

Found by ``--inventory``, else ``$KUBEHOP_INVENTORY``, else the testbed's when it is up.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from kubehop.domain.model import ClusterInfo, DnsZoneInfo, Inventory
from kubehop.errors import UsageError

TESTBED_INVENTORY = Path(os.environ.get("KUBEHOP_STATE", "/var/lib/kubehop/testbed")) / (
    "inventory.yaml")

EXAMPLE = """kubeconfig: ~/.kube/config
clusters:
  - {name: edge, context: edge-admin, tier: edge, loadBalancer: 10.0.0.10,
     entrypoints: {web: 80}}
dns: {zone: testnetwork.internal, server: 10.0.0.2, port: 53, tsigKeyFile: /path/tsig.key}
"""


def locate(path: str | None) -> Path:
    if path:
        return Path(path).expanduser()
    if os.environ.get("KUBEHOP_INVENTORY"):
        return Path(os.environ["KUBEHOP_INVENTORY"]).expanduser()
    if TESTBED_INVENTORY.exists():
        return TESTBED_INVENTORY
    raise UsageError("no inventory: pass --inventory FILE or set KUBEHOP_INVENTORY "
                     "(or start 'kubehop testbed up', which writes one)")


def _bad(path: Path, what: str) -> UsageError:
    return UsageError(f"inventory {path}: {what}")


def parse(data: Any, path: Path) -> Inventory:
    if not isinstance(data, dict) or not isinstance(data.get("clusters"), list):
        raise _bad(path, "want a mapping with a 'clusters' list")
    clusters: dict[str, ClusterInfo] = {}
    for i, item in enumerate(data["clusters"]):
        if not isinstance(item, dict):
            raise _bad(path, f"clusters[{i}] is not a mapping")
        missing = [k for k in ("name", "context", "loadBalancer") if not item.get(k)]
        if missing:
            raise _bad(path, f"clusters[{i}] lacks {', '.join(missing)}")
        entry = item.get("entrypoints") or {"web": 80}
        try:
            entrypoints = {int(port): str(name) for name, port in entry.items()}
        except (TypeError, ValueError, AttributeError) as exc:
            raise _bad(path, f"clusters[{i}].entrypoints must map names to ports") from exc
        clusters[str(item["name"])] = ClusterInfo(
            name=str(item["name"]), context=str(item["context"]),
            tier=str(item.get("tier", "edge")), load_balancer=str(item["loadBalancer"]),
            entrypoints=entrypoints,
            cluster_domain=str(item.get("clusterDomain", "cluster.local")),
        )
    dns_data = data.get("dns")
    dns_info = None
    if dns_data:
        missing = [k for k in ("zone", "server", "tsigKeyFile") if not dns_data.get(k)]
        if missing:
            raise _bad(path, f"dns lacks {', '.join(missing)}")
        dns_info = DnsZoneInfo(zone=str(dns_data["zone"]).rstrip("."),
                               server=str(dns_data["server"]), port=int(dns_data.get("port", 53)),
                               key_file=str(Path(dns_data["tsigKeyFile"]).expanduser()))
    kubeconfig = str(Path(str(data.get("kubeconfig", "~/.kube/config"))).expanduser())
    return Inventory(kubeconfig=kubeconfig, clusters=clusters, dns=dns_info)


def load(path: str | None = None) -> Inventory:
    where = locate(path)
    try:
        data = yaml.safe_load(where.read_text())
    except OSError as exc:
        raise UsageError(f"cannot read inventory {where}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise UsageError(f"inventory {where} is not valid YAML: {exc}") from exc
    return parse(data, where)


def dump(inv: Inventory) -> str:
    data: dict[str, Any] = {
        "kubeconfig": inv.kubeconfig,
        "clusters": [{"name": c.name, "context": c.context, "tier": c.tier,
                      "loadBalancer": c.load_balancer,
                      "entrypoints": {n: p for p, n in c.entrypoints.items()},
                      "clusterDomain": c.cluster_domain} for c in inv.clusters.values()],
    }
    if inv.dns:
        data["dns"] = {"zone": inv.dns.zone, "server": inv.dns.server, "port": inv.dns.port,
                       "tsigKeyFile": inv.dns.key_file}
    return yaml.safe_dump(data, sort_keys=False)

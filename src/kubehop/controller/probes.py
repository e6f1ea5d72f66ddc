"""The link probers: one small Deployment per cluster (namespace ``kubehop-system``) that measures
the RTT to every other cluster's load balancer from inside the cluster and exports it to
Prometheus (``kubehop_link_rtt_seconds{source,target}``), so link latency is a time series like
every other metric, kept by Prometheus and read back by the controller.

It runs as nobody, read-only, with no service-account token and no privileges: it only opens
TCP connections and answers Prometheus's scrape.
"""

from __future__ import annotations

from typing import Any

import yaml

from kubehop.adapters.kube import KubeCluster
from kubehop.controller.observe import PROBE_NAMESPACE
from kubehop.domain.model import Inventory
from kubehop.errors import UsageError

PROBE_PORT = 9100
PROBE_INTERVAL_S = 2


def manifests(inventory: Inventory, cluster: str, image: str) -> list[dict[str, Any]]:
    """The prober of ``cluster``: it dials each other cluster's load balancer on its first
    entry point (the port the migrated services' clients use)."""
    targets = ",".join(
        f"{c.name}={c.load_balancer}:{min(c.entrypoints)}"
        for c in inventory.clusters.values() if c.name != cluster)
    labels = {"app.kubernetes.io/name": "kubehop-linkprobe"}
    pod: dict[str, Any] = {
        "metadata": {"labels": labels, "annotations": {
            "prometheus.io/scrape": "true", "prometheus.io/port": str(PROBE_PORT)}},
        "spec": {
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 65534,
                                "runAsGroup": 65534},
            "containers": [{
                "name": "linkprobe", "image": image,
                "env": [{"name": "SOURCE", "value": cluster},
                        {"name": "TARGETS", "value": targets},
                        {"name": "INTERVAL", "value": str(PROBE_INTERVAL_S)},
                        {"name": "PORT", "value": str(PROBE_PORT)}],
                "ports": [{"name": "metrics", "containerPort": PROBE_PORT}],
                "resources": {"requests": {"cpu": "10m", "memory": "32Mi"},
                              "limits": {"memory": "64Mi"}},
                "securityContext": {"allowPrivilegeEscalation": False,
                                    "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]}},
            }],
        },
    }
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": PROBE_NAMESPACE}},
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": "kubehop-linkprobe", "namespace": PROBE_NAMESPACE,
                      "labels": labels},
         "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": pod}},
    ]


def ensure(inventory: Inventory, clusters: dict[str, KubeCluster]) -> None:
    """Apply every cluster's prober (server-side apply: idempotent, updates a changed image or
    a changed set of peers)."""
    if not inventory.probe_image:
        raise UsageError("the inventory names no probeImage: the controller measures link RTTs "
                         "with it; add 'probeImage: <image>' (the testbed's inventory has one)")
    for name, kube in clusters.items():
        kube.apply_yaml(yaml.safe_dump_all(manifests(inventory, name, inventory.probe_image)))

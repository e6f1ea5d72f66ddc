"""Node capacity and allocatable of every testbed cluster, as Prometheus metrics.

kube-state-metrics would normally publish ``kube_node_status_capacity`` and
``kube_node_status_allocatable``, but the Go module proxy here does not serve it. This small
exporter reads the nodes from each cluster's API server (with the read-only ``kubehop-prometheus``
identity) at every scrape and publishes the same metric names and labels, plus ``cluster``.

Run by ``kubehop testbed up`` as ``python -m kubehop.testbed.nodeexporter CLUSTERS``.
"""

from __future__ import annotations

import os
import ssl
import sys
import time
from collections.abc import Iterator

import httpx
from prometheus_client import start_http_server
from prometheus_client.core import REGISTRY, GaugeMetricFamily
from prometheus_client.registry import Collector

from kubehop.testbed import layout
from kubehop.testbed.layout import ClusterLayout
from kubehop.testbed.monitoring import EXPORTER_PORT

_UNITS = {"cpu": "core", "memory": "byte", "pods": "integer", "ephemeral-storage": "byte"}


def parse_quantity(text: str) -> float:
    """A Kubernetes resource quantity ("1500m", "16Gi", "110") as a float in base units."""
    suffixes = {
        "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
        "n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15,
        "E": 1e18,
    }
    for suffix in sorted(suffixes, key=len, reverse=True):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * suffixes[suffix]
    return float(text)


class NodeCollector(Collector):
    def __init__(self, clusters: list[ClusterLayout]) -> None:
        self.clusters = clusters

    def _client(self, c: ClusterLayout) -> httpx.Client:
        ctx = ssl.create_default_context(cafile=str(c.pki_dir / "ca.crt"))
        ctx.load_cert_chain(str(c.pki_dir / "prometheus.crt"), str(c.pki_dir / "prometheus.key"))
        return httpx.Client(base_url=c.api_url, verify=ctx, timeout=3)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        labels = ["cluster", "node", "resource", "unit"]
        capacity = GaugeMetricFamily("kube_node_status_capacity", "Node capacity.", labels=labels)
        alloc = GaugeMetricFamily("kube_node_status_allocatable", "Node allocatable.",
                                  labels=labels)
        up = GaugeMetricFamily("kubehop_cluster_api_up", "1 if the API server answered.",
                               labels=["cluster"])
        for c in self.clusters:
            try:
                with self._client(c) as client:
                    nodes = client.get("/api/v1/nodes").json()["items"]
            except (httpx.HTTPError, KeyError, ValueError):
                up.add_metric([c.name], 0)
                continue
            up.add_metric([c.name], 1)
            for node in nodes:
                name = node["metadata"]["name"]
                for family, key in ((capacity, "capacity"), (alloc, "allocatable")):
                    for resource, value in node["status"].get(key, {}).items():
                        unit = _UNITS.get(resource, "integer")
                        family.add_metric([c.name, name, resource, unit], parse_quantity(value))
        yield capacity
        yield alloc
        yield up


def main(argv: list[str]) -> None:
    """``nodeexporter CLUSTERS STATE_DIR``: the state directory is where the certificates are
    (and it names this process as the testbed's, for ``down``'s leftover check)."""
    os.environ["KUBEHOP_STATE"] = argv[1]
    names = layout.parse_cluster_names(argv[0])
    REGISTRY.register(NodeCollector(layout.layouts(names)))
    start_http_server(EXPORTER_PORT, addr=str(layout.HOST_ADDRESS))
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main(sys.argv[1:])

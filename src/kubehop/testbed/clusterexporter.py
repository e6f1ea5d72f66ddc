"""What Debian's Prometheus cannot get from the clusters by itself, served over HTTP.

- ``/metrics``: node capacity and allocatable. kube-state-metrics would normally publish
  ``kube_node_status_capacity`` and ``kube_node_status_allocatable``, but the Go module proxy here
  does not serve it; this reads the nodes from each cluster's API server at every scrape and
  publishes the same names and labels, plus ``cluster``.
- ``/sd/pods``: Prometheus HTTP service discovery of the pods annotated
  ``prometheus.io/scrape: "true"`` in every cluster. Debian builds Prometheus without the
  Kubernetes discovery, so this lists them in the ``http_sd_configs`` format instead.

Both use the read-only ``kubehop-prometheus`` identity of each cluster. Run by
``kubehop testbed up`` as ``python -m kubehop.testbed.clusterexporter CLUSTERS STATE_DIR``.
"""

from __future__ import annotations

import json
import os
import ssl
import sys
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import httpx
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
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


def _client(c: ClusterLayout) -> httpx.Client:
    ctx = ssl.create_default_context(cafile=str(c.pki_dir / "ca.crt"))
    ctx.load_cert_chain(str(c.pki_dir / "prometheus.crt"), str(c.pki_dir / "prometheus.key"))
    return httpx.Client(base_url=c.api_url, verify=ctx, timeout=3)


def scrape_targets(pods: list[dict[str, Any]], c: ClusterLayout) -> list[dict[str, Any]]:
    """Prometheus HTTP-SD target groups for the running pods that ask to be scraped."""
    groups = []
    for pod in pods:
        meta, status = pod["metadata"], pod.get("status", {})
        notes = meta.get("annotations", {})
        if notes.get("prometheus.io/scrape") != "true" or status.get("phase") != "Running":
            continue
        if not status.get("podIP") or not notes.get("prometheus.io/port"):
            continue
        groups.append({
            "targets": [f"{status['podIP']}:{notes['prometheus.io/port']}"],
            "labels": {
                "__metrics_path__": notes.get("prometheus.io/path", "/metrics"),
                "cluster": c.name,
                "tier": layout.tier_of(c.name),
                "namespace": meta["namespace"],
                "pod": meta["name"],
                "app": meta.get("labels", {}).get("app", ""),
            },
        })
    return groups


class NodeCollector(Collector):
    def __init__(self, clusters: list[ClusterLayout]) -> None:
        self.clusters = clusters

    def collect(self) -> Iterator[GaugeMetricFamily]:
        labels = ["cluster", "node", "resource", "unit"]
        capacity = GaugeMetricFamily("kube_node_status_capacity", "Node capacity.", labels=labels)
        alloc = GaugeMetricFamily("kube_node_status_allocatable", "Node allocatable.",
                                  labels=labels)
        up = GaugeMetricFamily("kubehop_cluster_api_up", "1 if the API server answered.",
                               labels=["cluster"])
        for c in self.clusters:
            try:
                with _client(c) as client:
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


class Handler(BaseHTTPRequestHandler):
    clusters: ClassVar[list[ClusterLayout]] = []

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, data: bytes, ctype: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/sd/pods":
            groups: list[dict[str, Any]] = []
            for c in self.clusters:
                try:
                    with _client(c) as client:
                        pods = client.get("/api/v1/pods").json()["items"]
                except (httpx.HTTPError, KeyError, ValueError):
                    continue
                groups += scrape_targets(pods, c)
            self._send(json.dumps(groups).encode(), "application/json")
        elif self.path == "/metrics":
            self._send(generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
        else:
            self.send_error(404)


def main(argv: list[str]) -> None:
    """``clusterexporter CLUSTERS STATE_DIR``: the state directory is where the certificates
    are (and it names this process as the testbed's, for ``down``'s leftover check)."""
    os.environ["KUBEHOP_STATE"] = argv[1]
    clusters = layout.layouts(layout.parse_cluster_names(argv[0]))
    REGISTRY.register(NodeCollector(clusters))
    Handler.clusters = clusters
    server = ThreadingHTTPServer((str(layout.HOST_ADDRESS), EXPORTER_PORT), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])

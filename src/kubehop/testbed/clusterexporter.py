"""What Debian's Prometheus cannot get from the clusters by itself, served over HTTP.

- ``/metrics``: node capacity and allocatable, and the containers' requests. kube-state-metrics
  would normally publish ``kube_node_status_capacity``, ``kube_node_status_allocatable`` and
  ``kube_pod_container_resource_requests``, but the Go module proxy here does not serve it; this
  reads the nodes and pods from each cluster's API server at every scrape and publishes the same
  names and labels, plus ``cluster``.
- ``/sd/pods``: Prometheus HTTP service discovery of the pods annotated
  ``prometheus.io/scrape: "true"`` in every cluster. Debian builds Prometheus without the
  Kubernetes discovery, so this lists them in the ``http_sd_configs`` format instead.

Both use the read-only ``kubehop-prometheus`` identity of each cluster. Run by
``kubehop testbed up`` as ``python -m kubehop.testbed.clusterexporter CLUSTERS STATE_DIR``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

from lightkube.utils.quantity import parse_quantity
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import REGISTRY, GaugeMetricFamily
from prometheus_client.registry import Collector

from kubehop.errors import KubehopError
from kubehop.testbed import layout
from kubehop.testbed.access import kube
from kubehop.testbed.layout import ClusterLayout
from kubehop.testbed.monitoring import EXPORTER_PORT

_UNITS = {"cpu": "core", "memory": "byte", "pods": "integer", "ephemeral-storage": "byte"}


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
        requests = GaugeMetricFamily(
            "kube_pod_container_resource_requests",
            "Requests of the containers of pods bound to a node and not finished.",
            labels=["cluster", "namespace", "pod", "container", "node", "resource", "unit"])
        for c in self.clusters:
            try:
                with kube(c, "prometheus") as k:
                    nodes = k.find("Node")
                    pods = k.find("Pod")
            except KubehopError:
                up.add_metric([c.name], 0)
                continue
            up.add_metric([c.name], 1)
            for node in nodes:
                name = node["metadata"]["name"]
                for family, key in ((capacity, "capacity"), (alloc, "allocatable")):
                    for resource, value in node["status"].get(key, {}).items():
                        unit = _UNITS.get(resource, "integer")
                        family.add_metric([c.name, name, resource, unit],
                                          float(parse_quantity(value) or 0))
            for labels_, value in container_requests(pods):
                requests.add_metric([c.name, *labels_], value)
        yield capacity
        yield alloc
        yield requests
        yield up


def container_requests(pods: list[dict[str, Any]]) -> Iterator[tuple[list[str], float]]:
    """(namespace, pod, container, node, resource, unit) and value of every request of the
    pods the scheduler counts against a node: bound and neither Succeeded nor Failed (what
    kube-state-metrics publishes as ``kube_pod_container_resource_requests``)."""
    for pod in pods:
        meta, spec = pod["metadata"], pod.get("spec") or {}
        node = spec.get("nodeName")
        if not node or (pod.get("status") or {}).get("phase") in {"Succeeded", "Failed"}:
            continue
        for container in spec.get("containers") or []:
            for resource, value in ((container.get("resources") or {}).get("requests")
                                    or {}).items():
                yield ([meta["namespace"], meta["name"], container["name"], node, resource,
                        _UNITS.get(resource, "integer")], float(parse_quantity(value) or 0))


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
                    with kube(c, "prometheus") as k:
                        pods = k.find("Pod")
                except KubehopError:
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

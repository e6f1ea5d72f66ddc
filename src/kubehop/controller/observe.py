"""Discovery and monitoring: one snapshot of the world per controller cycle.

Discovery asks each cluster's API (nodes: capacity and allocatable; pods: what is requested;
Services: which are managed, where each one's pods are ready). Monitoring asks Prometheus (what
is used, the RTT of every link measured by the link probers, any PromQL a rule names). Anything
that could not be read is a *missing* fact with the reason, never a zero or an old value: the
controller decides nothing on a fact it lacks and reports it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from lightkube.utils.quantity import parse_quantity

from kubehop.adapters.kube import KubeCluster, Manifest
from kubehop.adapters.prometheus import MonitoringError, Prometheus
from kubehop.domain.model import Inventory
from kubehop.domain.pods import pod_is_ready
from kubehop.errors import KubehopError

MANAGED_LABEL = "kubehop.io/managed"
CLIENTS_ANNOTATION = "kubehop.io/clients"
"""On a managed Service: the clusters its clients are in, ``edge`` or ``edge=3,fog=1``."""
PROBE_NAMESPACE = "kubehop-system"

# What each cluster's pods use, from the kubelets' resource metrics (every container of a pod,
# so neither pause containers nor the node's own daemons count; all clusters share one machine,
# so node-wide figures would not tell them apart), labelled cluster= by the scrape.
CPU_USED = ('sum by (cluster) (rate(container_cpu_usage_seconds_total'
            '{{container!="",pod!=""}}[{window}s]))')
MEM_USED = ('sum by (cluster) (last_over_time(container_memory_working_set_bytes'
            '{{container!="",pod!=""}}[{window}s]))')
RTT = "last_over_time(kubehop_link_rtt_seconds[{window}s])"


def quantity(value: Any) -> float:
    """A Kubernetes quantity ("100m", "4Gi", 2) as a float; absent is 0."""
    if value in (None, ""):
        return 0.0
    return float(parse_quantity(str(value)) or 0)


@dataclass(frozen=True)
class ClusterFacts:
    """One cluster as discovery and monitoring saw it. ``None`` means not known this cycle."""

    name: str
    tier: str
    cpu_capacity: float | None = None
    cpu_allocatable: float | None = None
    mem_capacity: float | None = None
    mem_allocatable: float | None = None
    cpu_requested: float | None = None
    mem_requested: float | None = None
    cpu_usage: float | None = None
    mem_usage: float | None = None
    load_balancer: str = ""

    @property
    def cpu_used(self) -> float | None:
        """What placement must count as taken: the larger of what pods asked for and what they
        use (a pod over its request takes room the scheduler does not see)."""
        if self.cpu_requested is None or self.cpu_usage is None:
            return None
        return max(self.cpu_requested, self.cpu_usage)

    @property
    def mem_used(self) -> float | None:
        if self.mem_requested is None or self.mem_usage is None:
            return None
        return max(self.mem_requested, self.mem_usage)

    @property
    def cpu_headroom(self) -> float | None:
        if self.cpu_used is None or not self.cpu_allocatable:
            return None
        return max(0.0, 1.0 - self.cpu_used / self.cpu_allocatable)

    @property
    def memory_headroom(self) -> float | None:
        if self.mem_used is None or not self.mem_allocatable:
            return None
        return max(0.0, 1.0 - self.mem_used / self.mem_allocatable)


@dataclass(frozen=True)
class ServiceFacts:
    """A managed Service: where its pods are ready, what they request, where its clients are."""

    namespace: str
    name: str
    running_in: tuple[str, ...]
    cpu: float
    mem: float
    clients: tuple[tuple[str, float], ...] = ()
    source: str = "policy"
    """Why it is managed: ``policy`` (listed there) or ``label`` (kubehop.io/managed=true)."""

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass
class Snapshot:
    """Everything one cycle knows, taken at ``at``."""

    at: float
    clusters: dict[str, ClusterFacts] = field(default_factory=dict)
    services: dict[str, ServiceFacts] = field(default_factory=dict)
    rtt_ms: dict[tuple[str, str], float] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    """What could not be known this cycle, each with why."""


def node_totals(nodes: Iterable[Manifest]) -> tuple[float, float, float, float]:
    """(cpu capacity, cpu allocatable, memory capacity, memory allocatable) over the nodes."""
    cap_cpu = alloc_cpu = cap_mem = alloc_mem = 0.0
    for node in nodes:
        status = node.get("status") or {}
        cap, alloc = status.get("capacity") or {}, status.get("allocatable") or {}
        cap_cpu += quantity(cap.get("cpu"))
        alloc_cpu += quantity(alloc.get("cpu"))
        cap_mem += quantity(cap.get("memory"))
        alloc_mem += quantity(alloc.get("memory"))
    return cap_cpu, alloc_cpu, cap_mem, alloc_mem


def pod_requests(pod: Manifest) -> tuple[float, float]:
    """(cpu, memory) a pod asks for: its containers' requests, or an init container's if larger
    (the scheduler's rule)."""
    spec = pod.get("spec") or {}

    def total(containers: list[Manifest], resource: str) -> float:
        return sum(quantity(((c.get("resources") or {}).get("requests") or {}).get(resource))
                   for c in containers)

    def peak(containers: list[Manifest], resource: str) -> float:
        return max((quantity(((c.get("resources") or {}).get("requests") or {}).get(resource))
                    for c in containers), default=0.0)

    main, init = spec.get("containers") or [], spec.get("initContainers") or []
    return (max(total(main, "cpu"), peak(init, "cpu")),
            max(total(main, "memory"), peak(init, "memory")))


def live(pod: Manifest) -> bool:
    """A pod that holds resources: scheduled and not yet finished."""
    phase = (pod.get("status") or {}).get("phase")
    return phase not in ("Succeeded", "Failed") and bool((pod.get("spec") or {}).get("nodeName"))


def matches(selector: dict[str, str], pod: Manifest) -> bool:
    labels = (pod.get("metadata") or {}).get("labels") or {}
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def parse_clients(text: str) -> tuple[tuple[str, float], ...]:
    """``edge`` or ``edge=3,fog=1`` (from the clients annotation) as (cluster, weight) pairs."""
    pairs = []
    for item in filter(None, (p.strip() for p in text.split(","))):
        name, _, weight = item.partition("=")
        try:
            pairs.append((name.strip(), float(weight) if weight else 1.0))
        except ValueError:
            continue
    return tuple(pairs)


@dataclass(frozen=True)
class Wanted:
    """A service the policy names: its declared needs and clients (None: take them from its
    pods' requests / leave unknown)."""

    namespace: str
    name: str
    cpu: float | None = None
    mem: float | None = None
    clients: tuple[tuple[str, float], ...] = ()


class Observer:
    """Takes a :class:`Snapshot` from the clusters' APIs and Prometheus."""

    def __init__(self, inventory: Inventory, clusters: dict[str, KubeCluster],
                 prometheus: Prometheus | None, *, max_age: float) -> None:
        self.inventory = inventory
        self.kube = clusters
        self.prometheus = prometheus
        self.max_age = max_age

    def snapshot(self, wanted: Iterable[Wanted]) -> Snapshot:
        snap = Snapshot(at=time.time())
        pods: dict[str, list[Manifest]] = {}
        services: dict[str, list[Manifest]] = {}
        for name, info in self.inventory.clusters.items():
            try:
                cap_cpu, alloc_cpu, cap_mem, alloc_mem = node_totals(
                    self.kube[name].find("Node"))
                pods[name] = [p for p in self.kube[name].find("Pod") if live(p)]
                services[name] = self.kube[name].find("Service")
            except KubehopError as exc:
                snap.missing.append(f"cluster {name}: API not readable ({exc})")
                snap.clusters[name] = ClusterFacts(name, info.tier,
                                                   load_balancer=info.load_balancer)
                continue
            req_cpu = sum(pod_requests(p)[0] for p in pods[name])
            req_mem = sum(pod_requests(p)[1] for p in pods[name])
            snap.clusters[name] = ClusterFacts(
                name, info.tier, cap_cpu, alloc_cpu, cap_mem, alloc_mem, req_cpu, req_mem,
                load_balancer=info.load_balancer)
        self._usage(snap)
        self._links(snap)
        self._services(snap, list(wanted), pods, services)
        return snap

    def query(self, expr: str) -> list[Any]:
        """A rule's PromQL (raises MonitoringError when Prometheus cannot answer)."""
        if self.prometheus is None:
            raise MonitoringError("no Prometheus in the inventory (field 'prometheus')")
        return self.prometheus.query(expr)

    def _usage(self, snap: Snapshot) -> None:
        window = max(15, int(self.max_age))
        try:
            cpu = {s.labels.get("cluster", ""): s.value
                   for s in self.query(CPU_USED.format(window=window))}
            mem = {s.labels.get("cluster", ""): s.value
                   for s in self.query(MEM_USED.format(window=window))}
        except MonitoringError as exc:
            snap.missing.append(f"usage of every cluster: {exc}")
            return
        for name, facts in list(snap.clusters.items()):
            if name not in cpu or name not in mem:
                snap.missing.append(f"cluster {name}: no CPU/memory usage in Prometheus for the "
                                    f"last {window}s")
                continue
            snap.clusters[name] = replace(facts, cpu_usage=cpu[name], mem_usage=mem[name])

    def _links(self, snap: Snapshot) -> None:
        """RTT per link as both ends measure it; a link measured both ways takes the mean."""
        try:
            samples = self.query(RTT.format(window=max(10, int(self.max_age))))
        except MonitoringError as exc:
            snap.missing.append(f"link RTTs: {exc}")
            return
        ways: dict[tuple[str, str], list[float]] = {}
        for s in samples:
            a, b = s.labels.get("source", ""), s.labels.get("target", "")
            if a in snap.clusters and b in snap.clusters and a != b:
                ways.setdefault((min(a, b), max(a, b)), []).append(s.value * 1000)
        names = sorted(snap.clusters)
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                got = ways.get((a, b))
                if got:
                    snap.rtt_ms[(a, b)] = snap.rtt_ms[(b, a)] = sum(got) / len(got)
                else:
                    snap.missing.append(f"link {a}-{b}: no RTT measured in the last "
                                        f"{max(10, int(self.max_age))}s")

    def _services(self, snap: Snapshot, wanted: list[Wanted],
                  pods: dict[str, list[Manifest]], services: dict[str, list[Manifest]]) -> None:
        by_key = {f"{w.namespace}/{w.name}": w for w in wanted}
        sources = dict.fromkeys(by_key, "policy")
        for cluster_services in services.values():
            for svc in cluster_services:
                meta = svc.get("metadata") or {}
                if (meta.get("labels") or {}).get(MANAGED_LABEL) == "true":
                    key = f"{meta.get('namespace')}/{meta.get('name')}"
                    if key not in by_key:
                        clients = parse_clients((meta.get("annotations") or {}).get(
                            CLIENTS_ANNOTATION, ""))
                        by_key[key] = Wanted(meta.get("namespace", ""), meta.get("name", ""),
                                             clients=clients)
                        sources[key] = "label"
        for key, w in sorted(by_key.items()):
            running: list[str] = []
            cpu = mem = 0.0
            for cluster, cluster_services in services.items():
                found = [s for s in cluster_services
                         if (s.get("metadata") or {}).get("namespace") == w.namespace
                         and (s.get("metadata") or {}).get("name") == w.name]
                selector = ((found[0] if found else {}).get("spec") or {}).get("selector") or {}
                mine = [p for p in pods.get(cluster, [])
                        if (p.get("metadata") or {}).get("namespace") == w.namespace
                        and matches(selector, p)]
                if any(pod_is_ready(p) for p in mine):
                    running.append(cluster)
                    cpu += sum(pod_requests(p)[0] for p in mine)
                    mem += sum(pod_requests(p)[1] for p in mine)
            snap.services[key] = ServiceFacts(
                w.namespace, w.name, tuple(running),
                cpu=w.cpu if w.cpu is not None else cpu,
                mem=w.mem if w.mem is not None else mem,
                clients=w.clients, source=sources[key])


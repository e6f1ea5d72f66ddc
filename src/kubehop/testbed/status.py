"""``kubehop testbed status``: what of the testbed runs and answers, per cluster and per host
service. Only looks; ``up`` decides from it whether to keep a testbed or rebuild it."""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

from kubehop.errors import KubehopError
from kubehop.testbed import clouddns, layout, monitoring, procs
from kubehop.testbed import wan as testbed_wan
from kubehop.testbed.access import (
    api_ready,
    deployment_available,
    node_ready,
    node_resources,
    storage_ready,
)
from kubehop.testbed.clusterprocs import CONTROL_PLANE, NODE_PROCESSES
from kubehop.testbed.readiness import succeeds
from kubehop.testbed.state import (
    clouddns_pidfile,
    kubeconfig_file,
    monitoring_pidfiles,
    recorded_clusters,
    registry_pidfile,
    run_dir,
)


@dataclass
class ClusterStatus:
    name: str
    tier: str
    netns: str
    address: str
    api_server: str
    load_balancer: str
    processes: dict[str, bool] = field(default_factory=dict)
    api_ready: bool = False
    node_ready: bool = False
    ingress_ready: bool = False
    storage_ready: bool = False
    """The dynamic provisioner runs and ``local-path`` is the default StorageClass."""
    cpu_allocatable: float | None = None
    """Cores the node offers its pods (its tier's shape), None if the API did not say."""
    memory_allocatable: int | None = None
    """Bytes the node offers its pods."""

    @property
    def running(self) -> bool:
        """The cluster itself works (what ``up`` keeps rather than rebuilds)."""
        return (self.api_ready and self.node_ready and self.ingress_ready
                and all(self.processes.values()))

    @property
    def healthy(self) -> bool:
        return self.running and self.storage_ready


@dataclass
class Status:
    up: bool
    clusters: list[ClusterStatus]
    registry: str
    kubeconfig: str
    versions: dict[str, str]
    services: dict[str, bool] = field(default_factory=dict)
    dns_zone: str = clouddns.DEFAULT_ZONE
    dns_server: str = f"{layout.HOST_ADDRESS}:{clouddns.DNS_PORT}"
    tsig_key_file: str = ""
    prometheus: str = monitoring.prometheus_url()

    @property
    def running(self) -> bool:
        """Up, every host service and every cluster running, add-ons (storage) aside."""
        return self.up and all(self.services.values()) and all(c.running for c in self.clusters)

    @property
    def healthy(self) -> bool:
        return self.running and all(c.healthy for c in self.clusters)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["healthy"] = self.healthy
        for c, d in zip(self.clusters, data["clusters"], strict=True):
            d["healthy"] = c.healthy
        return data


def _cluster_status(c: layout.ClusterLayout) -> ClusterStatus:
    st = ClusterStatus(
        name=c.name,
        tier=layout.tier_of(c.name),
        netns=c.netns,
        address=str(c.node_ip),
        api_server=c.api_url,
        load_balancer=str(c.node_ip),
    )
    for name in (*CONTROL_PLANE, *NODE_PROCESSES):
        st.processes[name] = procs.read_pid(run_dir(c) / f"{name}.pid") is not None
    st.api_ready = succeeds(partial(api_ready, c))
    st.node_ready = st.api_ready and succeeds(partial(node_ready, c))
    st.ingress_ready = st.api_ready and succeeds(
        partial(deployment_available, c, "traefik", "traefik"))
    st.storage_ready = st.api_ready and succeeds(partial(storage_ready, c))
    if st.api_ready:
        with contextlib.suppress(KubehopError):
            alloc = node_resources(c)
            if alloc is not None:
                st.cpu_allocatable, st.memory_allocatable = alloc[0] / 1000, alloc[1]
    return st


def status() -> Status:
    names = recorded_clusters()
    clusters = [_cluster_status(c) for c in layout.layouts(names)]
    return Status(
        up=bool(names),
        clusters=clusters,
        registry=layout.registry_address(),
        services={
            "registry": procs.read_pid(registry_pidfile()) is not None,
            "clouddns": procs.read_pid(clouddns_pidfile()) is not None,
            "prometheus": procs.read_pid(monitoring_pidfiles()[0]) is not None,
            "clusterexporter": procs.read_pid(monitoring_pidfiles()[1]) is not None,
            **testbed_wan.services(),
        } if names else {},
        tsig_key_file=str(clouddns.key_file()) if names else "",
        kubeconfig=str(kubeconfig_file()) if names else "",
        versions={
            "kubernetes": layout.KUBERNETES_VERSION,
            "etcd": layout.ETCD_VERSION,
            "coredns": layout.COREDNS_VERSION,
            "registry": layout.REGISTRY_VERSION,
            "local-path-provisioner": layout.LOCAL_PATH_PROVISIONER_VERSION,
        },
    )

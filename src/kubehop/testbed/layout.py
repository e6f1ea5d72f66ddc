"""Where everything of the testbed lives: versions, directories, addresses, names.

Pure computation from the cluster names, so ``up``, ``down`` and ``status`` agree on every
path and address without storing them, and tests can check the plan without root.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path

from kubehop.adapters import inventory
from kubehop.errors import UsageError

KUBERNETES_VERSION = "1.34.4"
ETCD_VERSION = "3.6.16"
COREDNS_VERSION = "1.14.7"
REGISTRY_VERSION = "3.1.2"
TRAEFIK_VERSION = "3.6.12"
LOCAL_PATH_PROVISIONER_VERSION = "0.0.30"
PAUSE_VERSION = "3.10"

DEFAULT_CLUSTERS = ("edge", "fog", "cloud")
MAX_CLUSTERS = 8
TIERS = ("edge", "fog", "cloud")

MAX_SLOTS = inventory.MAX_SLOTS
SLOT_ENV = inventory.SLOT_ENV


def _slot() -> int:
    """Which testbed of this machine the process means (``KUBEHOP_TESTBED_SLOT``, 0 by default).

    Each slot has its own bridge, address ranges, namespace, interface, cgroup and iptables
    names and state directory, none a prefix of another's, so several testbeds (the test
    suite's parallel workers) run side by side without seeing or removing each other's parts.
    Read once at import: every path and address below derives from it."""
    try:
        return inventory.testbed_slot()
    except UsageError as exc:
        # Import time: no command's error handler runs yet, so say it and exit like one.
        raise SystemExit(f"error: {exc}") from None


SLOT = _slot()
_TAG = "" if SLOT == 0 else str(SLOT)
"""Slot 0 keeps the names the testbed always had (kh0, kh-edge, 10.250.0.0/24 ...)."""

BRIDGE = f"kh{SLOT}"
WAN_NETWORK = ipaddress.IPv4Network(f"10.{250 + SLOT}.0.0/24")
HOST_ADDRESS = WAN_NETWORK.network_address + 1
REGISTRY_PORT = 5000
API_PORT = 6443
CLUSTER_DOMAIN = "cluster.local"
IPTABLES_COMMENT = f"kubehop{_TAG}-testbed"
NETNS_PREFIX = f"kh{_TAG}-"
LINK_PREFIXES = (f"kh{_TAG}v-", f"kh{_TAG}p-")
"""The host and peer ends of each cluster's veth (at most 15 characters with a 10-letter
cluster name)."""
CGROUP_PREFIX = f"kubehop{_TAG}-"

MIB = 1024**2
GIB = 1024**3

EVICTION_MEMORY = 100 * MIB
"""The kubelets' hard eviction threshold for memory: allocatable excludes it as well."""


@dataclass(frozen=True)
class TierShape:
    """What a node of a tier offers its pods (allocatable), as in the paper: edge smallest."""

    cpu_millis: int
    memory: int


TIER_SHAPES = {
    "edge": TierShape(cpu_millis=1000, memory=4 * GIB),
    "fog": TierShape(cpu_millis=1500, memory=8 * GIB),
    "cloud": TierShape(cpu_millis=2000, memory=16 * GIB),
}
"""Every cluster runs on the same machine and sees all of it; the kubelet's reservation makes
each node's allocatable this shape (clamped to the machine), so the scheduler fills an edge
node first. The reservation is accounting only: pods are capped together at allocatable
(``enforceNodeAllocatable: [pods]``), nothing carves the machine up."""


@dataclass(frozen=True)
class Reservation:
    """The kubelet's ``systemReserved``: capacity minus this (minus eviction) is allocatable."""

    cpu_millis: int
    memory: int


def reservation(tier: str, *, cpu_millis: int, memory: int) -> Reservation:
    """What a kubelet of ``tier`` reserves on a machine of ``cpu_millis`` and ``memory``
    (bytes), so its allocatable is the tier's shape, or the whole machine if that is smaller."""
    shape = TIER_SHAPES[tier]
    return Reservation(
        cpu_millis=max(0, cpu_millis - shape.cpu_millis),
        memory=max(0, memory - EVICTION_MEMORY - shape.memory),
    )


def allocatable(tier: str, *, cpu_millis: int, memory: int) -> TierShape:
    """The allocatable a kubelet of ``tier`` reports on that machine (what ``reservation``
    leaves)."""
    r = reservation(tier, cpu_millis=cpu_millis, memory=memory)
    return TierShape(cpu_millis=cpu_millis - r.cpu_millis,
                     memory=memory - EVICTION_MEMORY - r.memory)


_NAME = re.compile(r"^[a-z][a-z0-9]{0,9}$")


def cache_dir() -> Path:
    """Build cache: survives ``testbed down``; keyed by component version inside."""
    return Path(os.environ.get("KUBEHOP_CACHE", "~/.cache/kubehop")).expanduser()


def state_dir() -> Path:
    """Everything ``up`` creates and ``down`` removes (certificates, data, logs, sockets)."""
    return inventory.testbed_state_dir()


def registry_address() -> str:
    """host:port of the local image registry every cluster pulls from."""
    return f"{HOST_ADDRESS}:{REGISTRY_PORT}"


def parse_cluster_names(text: str) -> tuple[str, ...]:
    """Parse ``--clusters edge,fog,cloud``; raise ValueError with a one-line reason."""
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    if not names:
        raise ValueError("no cluster names given; use e.g. --clusters edge,cloud")
    if len(set(names)) != len(names):
        raise ValueError(f"cluster names repeat in {text!r}; give each name once")
    if len(names) > MAX_CLUSTERS:
        raise ValueError(f"at most {MAX_CLUSTERS} clusters fit on one machine, got {len(names)}")
    for name in names:
        if not _NAME.match(name):
            raise ValueError(
                f"cluster name {name!r} is not valid; use 1-10 lowercase letters or digits, "
                "starting with a letter"
            )
    return names


def tier_of(name: str) -> str:
    """The tier a cluster stands for: its name when that is a tier, else ``edge``."""
    return name if name in TIERS else "edge"


@dataclass(frozen=True)
class ClusterLayout:
    """Addresses, names and paths of one testbed cluster (index = position in ``--clusters``)."""

    name: str
    index: int

    @property
    def netns(self) -> str:
        return f"{NETNS_PREFIX}{self.name}"

    @property
    def veth_host(self) -> str:
        return f"{LINK_PREFIXES[0]}{self.name}"

    @property
    def veth_peer(self) -> str:
        return f"{LINK_PREFIXES[1]}{self.name}"

    @property
    def node_ip(self) -> ipaddress.IPv4Address:
        """The cluster's one address on the WAN bridge: API server, node and load balancer."""
        return WAN_NETWORK.network_address + 11 + self.index

    @property
    def node_name(self) -> str:
        return f"{self.name}-node"

    @property
    def pod_cidr(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(f"10.{200 + 10 * SLOT + self.index}.0.0/16")

    @property
    def node_pod_cidr(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(f"10.{200 + 10 * SLOT + self.index}.0.0/24")

    @property
    def service_cidr(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(f"10.{100 + 10 * SLOT + self.index}.0.0/16")

    @property
    def api_service_ip(self) -> ipaddress.IPv4Address:
        return self.service_cidr.network_address + 1

    @property
    def dns_service_ip(self) -> ipaddress.IPv4Address:
        return self.service_cidr.network_address + 10

    @property
    def api_url(self) -> str:
        return f"https://{self.node_ip}:{API_PORT}"

    @property
    def cgroup_root(self) -> str:
        """The kubelet's own cgroup subtree, so clusters never see each other's pods."""
        return f"/{CGROUP_PREFIX}{self.name}"

    @property
    def dir(self) -> Path:
        return state_dir() / "clusters" / self.name

    @property
    def pki_dir(self) -> Path:
        return self.dir / "pki"

    @property
    def log_dir(self) -> Path:
        return self.dir / "logs"

    @property
    def pod_logs_dir(self) -> Path:
        """The kubelet's pod log directory (``podLogsDir``), this cluster's alone."""
        return self.dir / "pod-logs"

    @property
    def volumes_dir(self) -> Path:
        """Where the cluster's dynamic provisioner makes its volumes (removed by ``down``)."""
        return self.dir / "volumes"

    @property
    def containerd_socket(self) -> Path:
        return self.dir / "containerd" / "containerd.sock"


def layouts(names: tuple[str, ...]) -> list[ClusterLayout]:
    """Layouts for the given clusters, in order."""
    return [ClusterLayout(name=name, index=i) for i, name in enumerate(names)]

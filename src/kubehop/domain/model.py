"""What a migration is made of: clusters, the request, its steps and their states. Pure data."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Strategy(StrEnum):
    """How the source Service keeps answering once the service runs in the target.

    ``endpoints``: the Service keeps its ClusterIP; its endpoints become the target's load
    balancer (an EndpointSlice kubehop owns), so clients holding a cached A record never notice.
    ``externalname``: the paper's way: the Service becomes an ``ExternalName`` for a name in the
    private DNS zone that points at the target's load balancer; the old ClusterIP is held by a
    drain Service until every cached answer has expired.
    """

    ENDPOINTS = "endpoints"
    EXTERNALNAME = "externalname"


class StepState(StrEnum):
    STARTED = "started"
    DONE = "done"
    FAILED = "failed"
    UNDONE = "undone"


class Status(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    ROLLED_BACK = "rolled-back"
    FAILED = "failed"  # could neither finish nor roll back: `kubehop migrate --resume` it


STEPS: tuple[str, ...] = ("copy", "ready", "route", "dns", "verify", "switch", "drain", "cleanup")
"""In order. Until ``switch`` is done, clients are served by the source; a failure before then
rolls everything back. ``drain`` and ``cleanup`` only move forward (the target is serving)."""

POINT_OF_NO_RETURN = "cleanup"


@dataclass(frozen=True)
class ClusterInfo:
    """One cluster of the inventory."""

    name: str
    context: str
    tier: str
    load_balancer: str
    entrypoints: dict[int, str] = field(default_factory=lambda: {80: "web"})
    cluster_domain: str = "cluster.local"


@dataclass(frozen=True)
class DnsZoneInfo:
    zone: str
    server: str
    port: int
    key_file: str


@dataclass(frozen=True)
class Inventory:
    kubeconfig: str
    clusters: dict[str, ClusterInfo]
    dns: DnsZoneInfo | None

    def cluster(self, name: str) -> ClusterInfo | None:
        """By inventory name or kubeconfig context."""
        if name in self.clusters:
            return self.clusters[name]
        return next((c for c in self.clusters.values() if c.context == name), None)


@dataclass(frozen=True)
class MigrationRequest:
    service: str
    namespace: str
    source: str
    target: str
    target_namespace: str
    strategy: Strategy = Strategy.ENDPOINTS
    drain_seconds: float = 5.0
    ready_timeout: float = 180.0
    dns_ttl: float = 30.0
    """How long clients may cache a cluster-DNS answer (CoreDNS' ttl and cache, 30 s by
    default): a drain after a switch that changes what the name resolves to lasts at least this."""


@dataclass(frozen=True)
class PlannedChange:
    """One change the migration will make: shown by --dry-run, recorded in the journal."""

    step: str
    cluster: str  # cluster name, or "dns"
    action: str  # create | apply | update | delete | set-record
    kind: str
    name: str
    namespace: str = ""
    detail: str = ""

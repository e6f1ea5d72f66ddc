"""What a migration is made of: clusters, the request, its steps and their states. Pure data."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import Any


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
    ROLLING_BACK = "rolling-back"  # a crash here: `--resume` finishes the rollback
    SUCCEEDED = "succeeded"
    ROLLED_BACK = "rolled-back"
    FAILED = "failed"  # could neither finish nor roll back: `kubehop migrate --resume` it


STEPS: tuple[str, ...] = ("copy", "route", "precopy", "start", "ready", "dns", "verify",
                          "cutover", "switch", "drain", "cleanup")
"""kubehop's plan for a service without volumes, in order. Until ``switch`` is done, clients are
served by the source; a failure before then rolls everything back. ``drain`` and ``cleanup``
only move forward (the target is serving): a failure there leaves the migration ``failed`` for
``--resume`` to finish. ``route`` comes early: the target's Traefik has the route before the
pods are ready, so the verification only waits for it to see their endpoints. (``precopy`` and
``cutover`` do nothing without volumes; they stay in the plan so every journal reads alike.)"""

STATEFUL_STEPS: tuple[str, ...] = ("copy", "route", "precopy", "cutover", "start", "ready",
                                   "dns", "verify", "switch", "drain", "cleanup")
"""kubehop's plan for a service with volumes: the target's pods start only on the final,
verified copy (``cutover`` before ``start``), and nothing sends a client to the target before
then — the route exists early but has no pod behind it, the private-zone record changes in
``dns``, after the target's pods are up (and frozen, when the application has hooks)."""


def starts_before_cutover(plan: tuple[str, ...]) -> bool:
    """Whether ``plan`` starts the target's pods before the cut-over: safe without volumes,
    not for data (the order older journals recorded for every move)."""
    return "start" in plan and "cutover" in plan and plan.index("start") < plan.index("cutover")


def default_plan(stateful: bool) -> tuple[str, ...]:
    """The plan a migration runs when the caller names none."""
    return STATEFUL_STEPS if stateful else STEPS


TRANSFER_ENTRYPOINT = "transfer"
"""The name of the target Traefik's TCP entry point volume data arrives through."""

BASELINES: dict[str, tuple[str, ...]] = {
    "paper": ("copy", "route", "dns", "repoint", "delete-source"),
    "naive": ("delete-source", "copy", "ready", "route", "dns", "repoint"),
}
"""Plans kubehop does not recommend, kept so the benchmark can run them through the same engine:
``paper`` is the paper's four steps done literally (no readiness wait, no verification, no
drain); ``naive`` is backup/restore (delete, then recreate and repoint)."""


@dataclass(frozen=True)
class ClusterInfo:
    """One cluster of the inventory."""

    name: str
    context: str
    tier: str
    load_balancer: str
    entrypoints: dict[int, str] = field(default_factory=lambda: {80: "web"})
    cluster_domain: str = "cluster.local"
    proxy_rules: tuple[tuple[str, ...], ...] = ()
    """One command per node printing its service proxy's ``iptables-save -t nat``: the switch
    then waits for what the proxy has programmed (none: it relies on the proxy's ordering)."""


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
    prometheus: str | None = None
    """URL of the Prometheus that scrapes every cluster (the controller's metrics)."""
    probe_image: str | None = None
    """Image of the link prober the controller runs in each cluster to measure RTTs."""
    mover_image: str | None = None
    """Image of the pods that copy volume data (rsync behind stunnel), for stateful services."""

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


@dataclass
class MigrationState:
    """What a migration learns and changes on its way, kept in the journal after every side
    effect so that undo and ``--resume`` know exactly what exists, even after a crash."""

    service: dict[str, Any] = field(default_factory=dict)
    """The source Service as discovery found it (selector, ports, ClusterIP)."""
    workload_kind: str = ""
    workload: dict[str, Any] = field(default_factory=dict)
    deps: dict[str, list[str]] = field(default_factory=dict)
    port: int = 0
    entrypoint: str = ""
    probe_path: str = "/"
    created: list[list[str]] = field(default_factory=list)
    """[kind, name, namespace] of every object ``copy`` created (recorded before creating it)."""
    target_service_checked: bool = False
    target_service_before: dict[str, Any] | None = None
    """The target's own Service before the copy (an alias from an earlier migration, or None)."""
    dns_before: list[str] | None = None
    """The private-zone record before ``dns`` (None: not looked up yet)."""
    dns_changed: bool = False
    aliases_before: dict[str, list[str]] = field(default_factory=dict)
    """Older aliases in other clusters: cluster -> the addresses they pointed at before."""
    target_alias_before: list[str] = field(default_factory=list)
    """Where the target's own alias slice pointed before the switch made it serve again."""
    volumes: dict[str, str] = field(default_factory=dict)
    """PVCs the workload mounts: claim name -> requested size (empty: nothing to copy)."""
    replicas: int = 0
    """The workload's replicas; a stateful copy starts at 0 and scales up once data is there."""
    freeze: str = ""
    """How the cut-over stops writes: "hook" (the app's freeze/thaw hooks) or "scale" (the
    source scaled to 0: no hooks declared)."""
    source_frozen: bool = False
    target_frozen: bool = False
    target_thawing: bool = False
    """Set before the target is thawed: from then on it may acknowledge writes, so a rollback
    (which would discard the target's data) is refused and the migration is finished instead."""
    data: dict[str, Any] = field(default_factory=dict)
    """The data transfer's figures: passes (bytes, files, seconds), precopy, freeze, verify."""
    admitted: list[str] = field(default_factory=list)
    """Target pods kubehop's readiness gate made Traefik's endpoints before the kubelet did
    (recorded before its slice is written; a rollback deletes the slice)."""
    switch_started: bool = False
    """The source Service may have sent clients to the target: a rollback drains back."""
    frozen_pods: dict[str, list[Any]] = field(default_factory=dict)
    """The source pods the freeze stopped: name -> [uid, restarts]. Right before the switch
    every source pod must still be one of these, unrestarted (the freeze lives in the process),
    else the move rolls back."""
    rolling_back: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MigrationState:
        """Tolerates journals written by older versions (unknown keys dropped)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

"""One migration's context: its facts, validated against the clusters, the typed state its steps
share, and the clients they talk through.

Every step reads and writes the migration only through :class:`Migration`, which records what a
step is about to change (:meth:`Migration.will_create`, :meth:`Migration.save`) and passes each
checkpoint to the :class:`Seam`: the journal then knows exactly what exists after a crash at any
point, and tests can fail or crash a run at any of those points.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from kubehop.adapters import probe
from kubehop.adapters.dns import DnsZone
from kubehop.adapters.kube import KubeCluster
from kubehop.adapters.proxyrules import ProxyRules
from kubehop.domain import manifests as mf
from kubehop.domain import mover as mv
from kubehop.domain.model import (
    TRANSFER_ENTRYPOINT,
    ClusterInfo,
    DnsZoneInfo,
    Inventory,
    MigrationRequest,
    MigrationState,
    PlannedChange,
    Strategy,
)
from kubehop.engine.data import registry
from kubehop.engine.data.interface import DataEngine, DataSetup
from kubehop.engine.report import Report
from kubehop.errors import KubehopError, UsageError
from kubehop.waiting import NotYet, PollBudget, wait_for

Manifest = dict[str, Any]


PROXY_POLLS = PollBudget(0.02)
"""Reads of the source nodes' proxy rules during switches (one process each)."""


class MigrationError(KubehopError):
    """A step failed; the message says which, why, and what was undone. ``report`` is the run's
    report so far (phases done, what was undone) when the executor raised it."""

    report: Report | None = None

    def with_report(self, report: Report) -> MigrationError:
        self.report = report
        return self


class Seam(Protocol):
    """The seam tests plug into: called at the start of every step ("begin") and right after
    each of its side effects, with the step's name and the point's name (see ``Step.points``).
    Raising here is a failure at that point; raising a ``BaseException`` that is not an
    ``Exception`` stops the run where it stands, as a crash would."""

    def checkpoint(self, step: str, point: str) -> None: ...


class Connector(Protocol):
    """Makes the clients a migration talks through: the real adapters in production,
    in-memory fakes in the executor's unit tests."""

    def cluster(self, inventory: Inventory, name: str) -> KubeCluster: ...

    def dns(self, info: DnsZoneInfo) -> DnsZone: ...

    def http_get(self, url: str, host: str) -> tuple[int, str]:
        """(status, body) of a GET with that Host header; raises KubehopError if no answer."""
        ...


class Adapters:
    """The real clients: lightkube per kubeconfig context, dnspython for the private zone."""

    def cluster(self, inventory: Inventory, name: str) -> KubeCluster:
        info = inventory.clusters[name]
        return KubeCluster(kubeconfig=inventory.kubeconfig, context=info.context, name=name)

    def dns(self, info: DnsZoneInfo) -> DnsZone:
        return DnsZone(info)

    def http_get(self, url: str, host: str) -> tuple[int, str]:
        return probe.http_get(url, host)


class NoSeam:
    """Production: checkpoints only persist the state."""

    def checkpoint(self, step: str, point: str) -> None:
        pass


def _keep(state: MigrationState) -> None:
    pass


class Migration:
    """One migration's facts, validated against the clusters, and the state its steps share."""

    def __init__(self, inventory: Inventory, request: MigrationRequest, *, migration_id: str,
                 state: MigrationState | None = None, seam: Seam | None = None,
                 persist: Callable[[MigrationState], None] = _keep,
                 connect: Connector | None = None) -> None:
        self.inv = inventory
        self.connect: Connector = connect or Adapters()
        self.req = request
        self.id = migration_id
        self.state = state or MigrationState()
        self.seam: Seam = seam or NoSeam()
        self.persist = persist
        self.step = ""
        src = inventory.cluster(request.source)
        dst = inventory.cluster(request.target)
        if src is None or dst is None:
            unknown = request.source if src is None else request.target
            known = ", ".join(sorted(inventory.clusters))
            raise UsageError(f"unknown cluster or context {unknown!r}; the inventory has {known}")
        if src.name == dst.name:
            raise UsageError(f"source and target are the same cluster ({src.name}); "
                             "pick another --to")
        self.src_info: ClusterInfo = src
        self.dst_info: ClusterInfo = dst
        self.src = self.cluster(src.name)
        self.dst = self.cluster(dst.name)
        if inventory.dns is None:
            raise UsageError("the inventory has no dns section (zone, server, tsigKeyFile); "
                             "kubehop needs the private zone to redirect the service's name")
        self.dns = self.connect.dns(inventory.dns)
        self.alias = mf.alias_key(request.service, request.namespace)
        self.fqdn = mf.alias_fqdn(request.service, request.namespace, inventory.dns.zone)
        self.route_name = mf.backend_service_name(request.service)

    def cluster(self, name: str) -> KubeCluster:
        return self.connect.cluster(self.inv, name)

    def wait_programmed(self, to: str) -> None:
        """Until every node of the source sends new connections for the Service where ``to``
        says, as its service proxy's own rules show: ``"alias"`` (the target's load balancer is
        among the destinations), ``"alias only"`` (the pods' endpoints are gone from the rules)
        or ``"pods"`` (a pod is among them again, for a rollback). Without ``proxyRules`` in the
        inventory there is nothing to read: the switch then relies on the proxy applying the
        API server's changes in order (see ``Switch``)."""
        if not self.src_info.proxy_rules:
            return
        proxy = ProxyRules(self.src.name, self.src_info.proxy_rules)
        r, lb = self.req, self.dst_info.load_balancer

        def programmed() -> bool:
            for node, ports in enumerate(proxy.endpoints(r.namespace, r.service)):
                dests: set[str] = set().union(*ports.values())
                alias = {d for d in dests if d.rsplit(":", 1)[0] == lb}
                done = {"alias": bool(alias), "alias only": bool(alias) and dests == alias,
                        "pods": bool(dests - alias)}[to]
                if not done:
                    raise NotYet(f"node {node + 1} sends to {sorted(dests) or 'nothing'}")
            return True

        with PROXY_POLLS.waiting():
            wait_for(programmed, timeout=60, interval=PROXY_POLLS.interval, error=MigrationError,
                     what=f"{self.src.name}: the service proxy to send {r.namespace}/"
                          f"{r.service} to the {to}")

    def save(self) -> None:
        """Persist the state now: called before a side effect that undo must know about."""
        self.persist(self.state)

    def checkpoint(self, point: str) -> None:
        """A side effect is done: persist, then let the seam act (tests inject faults here)."""
        self.persist(self.state)
        self.seam.checkpoint(self.step, point)

    def will_create(self, kind: str, name: str, namespace: str) -> None:
        """Record, before creating it, an object undo must delete."""
        entry = [kind, name, namespace]
        if entry not in self.state.created:
            self.state.created.append(entry)
            self.save()

    # --- discovery and validation -------------------------------------------------------------

    def discover(self) -> None:
        """Everything the plan needs, checked; raises UsageError before anything changes."""
        r = self.req
        if self.src.get("Namespace", r.namespace) is None:
            raise UsageError(f"namespace {r.namespace!r} does not exist in {self.src.name}")
        svc = self.src.get("Service", r.service, r.namespace)
        if svc is None:
            raise UsageError(f"service {r.namespace}/{r.service} does not exist in "
                             f"{self.src.name}")
        spec = svc["spec"]
        if spec.get("type") == "ExternalName" or (
                not spec.get("selector") and self._is_alias(svc)):
            raise UsageError(f"service {r.namespace}/{r.service} in {self.src.name} is already "
                             "an alias kubehop made; migrate it from the cluster that runs it")
        if not spec.get("selector"):
            raise UsageError(f"service {r.namespace}/{r.service} has no selector; kubehop "
                             "moves the workload behind a selector")
        workloads = []
        for kind in ("Deployment", "StatefulSet"):
            for obj in self.src.find(kind, r.namespace):
                labels = obj["spec"]["template"]["metadata"].get("labels", {})
                if mf.selector_matches(spec["selector"], labels):
                    workloads.append((kind, obj))
        if len(workloads) != 1:
            what = "no Deployment or StatefulSet" if not workloads else "several workloads"
            raise UsageError(f"{what} behind service {r.namespace}/{r.service}; kubehop moves "
                             "exactly one")
        kind, workload = workloads[0]
        ports = [int(p["port"]) for p in spec["ports"]]
        entry = next((self.dst_info.entrypoints[p] for p in ports
                      if p in self.dst_info.entrypoints), None)
        if entry is None:
            raise UsageError(f"the target {self.dst.name} has no ingress entry point for port "
                             f"{ports[0]}; add one to the inventory's entrypoints")
        if not self.dst.has_ingressroute_crd():
            raise UsageError(f"the target {self.dst.name} has no Traefik IngressRoute CRD; "
                             "install Traefik v3 with the kubernetescrd provider there")
        self.dns.check_zone()
        pod_spec = workload["spec"]["template"]["spec"]
        deps = {k: set(v) for k, v in mf.pod_dependencies(pod_spec).items()}
        deps["PersistentVolumeClaim"] |= set(mv.template_claims(workload))
        for name in sorted(deps["Secret"]):
            secret = self.src.get("Secret", name, r.namespace)
            account = mf.token_account(secret) if secret else None
            if account and account != "default":
                deps["ServiceAccount"].add(account)
        st = self.state
        st.service, st.workload_kind, st.workload = svc, kind, workload
        st.deps = {k: sorted(v) for k, v in deps.items()}
        st.port = next(p for p in ports if p in self.dst_info.entrypoints)
        st.entrypoint = entry
        st.probe_path = _probe_path(pod_spec)
        st.replicas = int(workload["spec"].get("replicas", 1))
        self._discover_volumes(workload, deps["PersistentVolumeClaim"])

    def _discover_volumes(self, workload: Manifest, claims: set[str]) -> None:
        """A workload with PVCs is stateful: its data moves too, which needs the mover image,
        the target's transfer entry point and (for writes to stop briefly, not for seconds)
        the application's freeze and thaw hooks."""
        r, st = self.req, self.state
        if not claims:
            return
        if not self.inv.mover_image:
            raise UsageError("the workload mounts PVCs, so its data must move, and the "
                             "inventory names no moverImage; add 'moverImage: <image>' (the "
                             "testbed's inventory has one)")
        if self.transfer_port() is None:
            raise UsageError(f"the target {self.dst.name} has no '{TRANSFER_ENTRYPOINT}' entry "
                             "point for volume data; add a TCP entry point to its Traefik and "
                             f"'{TRANSFER_ENTRYPOINT}: PORT' to its inventory entrypoints")
        notes = (workload["spec"]["template"]["metadata"].get("annotations") or {})
        app_hooks = [notes.get(mv.FREEZE_HOOK), notes.get(mv.THAW_HOOK)]
        if any(app_hooks) and not all(app_hooks):
            raise UsageError(f"the workload declares only one of {mv.FREEZE_HOOK} and "
                             f"{mv.THAW_HOOK}; declare both (or neither: then the source is "
                             "stopped for the final copy)")
        for value in filter(None, app_hooks):
            try:
                mv.hook(value)
            except ValueError as exc:
                raise UsageError(f"the workload's hook annotation {exc}; write it as "
                                 "http://:PORT/PATH") from exc
        volumes = {}
        for claim in sorted(claims):
            pvc = self.src.get("PersistentVolumeClaim", claim, r.namespace)
            if pvc is None:
                raise UsageError(f"PVC {r.namespace}/{claim} that the workload mounts is "
                                 f"missing in {self.src.name}")
            volumes[claim] = str(((pvc["spec"].get("resources") or {}).get("requests") or {})
                                 .get("storage", "?"))
        st.volumes = volumes
        st.freeze = "hook" if all(app_hooks) else "scale"

    def transfer_port(self) -> int | None:
        return next((p for p, n in self.dst_info.entrypoints.items()
                     if n == TRANSFER_ENTRYPOINT), None)

    def data_engine(self) -> DataEngine:
        """The engine that moves this migration's volume data (see
        :mod:`kubehop.engine.data.registry`); a fresh handle each call: engines keep no state
        a crash could lose."""
        port = self.transfer_port()
        return registry.data_engine(registry.DEFAULT, DataSetup(
            self.src, self.dst, migration_id=self.id, source_namespace=self.req.namespace,
            target_namespace=self.req.target_namespace, image=self.inv.mover_image or "",
            claims=sorted(self.state.volumes),
            target_address=f"{self.dst_info.load_balancer}:{port}",
            entrypoint=TRANSFER_ENTRYPOINT))

    def hook(self, which: str) -> str:
        notes = self.state.workload["spec"]["template"]["metadata"].get("annotations") or {}
        return str(notes[which])

    def _is_alias(self, svc: Manifest) -> bool:
        return any(s["metadata"].get("labels", {}).get(mf.LABEL_ALIAS_OF) == self.alias
                   for s in self.src.find("EndpointSlice", svc["metadata"]["namespace"],
                                          {"kubernetes.io/service-name":
                                           svc["metadata"]["name"]}))

    def plan(self) -> list[PlannedChange]:
        r, st = self.req, self.state
        wl = st.workload["metadata"]["name"]
        tns, src, dst = r.target_namespace, self.src.name, self.dst.name
        changes = [PlannedChange("copy", dst, "apply", "Namespace", tns)]
        for kind in mf.COPY_ORDER:
            changes += [PlannedChange("copy", dst, "apply", kind, n, tns)
                        for n in st.deps.get(kind, [])]
        changes += [
            PlannedChange("copy", dst, "apply", st.workload_kind, wl, tns,
                          f"at 0 replicas until its data is there, then {st.replicas}"
                          if st.volumes else ""),
            PlannedChange("copy", dst, "apply", "Service", self.route_name, tns,
                          "backend for the ingress route"),
            PlannedChange("copy", dst, "apply", "Service", r.service, tns,
                          "unless it exists there already"),
            PlannedChange("route", dst, "apply", "IngressRoute", self.route_name, tns,
                          "hosts " + ", ".join(self.hosts())),
            PlannedChange("dns", "dns", "set-record", "A", self.fqdn, "",
                          f"{self.dst_info.load_balancer} ttl 5"),
            PlannedChange("switch", src, "apply", "EndpointSlice", mf.alias_slice_name(r.service),
                          r.namespace, f"-> {self.dst_info.load_balancer}:{st.port}"),
            PlannedChange("switch", src, "update", "Service", r.service, r.namespace,
                          "selector removed" if r.strategy is Strategy.ENDPOINTS
                          else f"type ExternalName -> {self.fqdn}"),
        ]
        if r.strategy is Strategy.EXTERNALNAME:
            changes.append(PlannedChange("switch", src, "create", "Service",
                                         mf.drain_service_name(r.service), r.namespace,
                                         "holds the old ClusterIP during the drain"))
        for name in self.inv.clusters:
            if name not in {src, dst}:
                changes.append(PlannedChange("switch", name, "update", "EndpointSlice",
                                             mf.alias_slice_name(r.service), r.namespace,
                                             "older aliases, if any, repointed"))
        changes += [
            PlannedChange("cleanup", src, "delete", st.workload_kind, wl, r.namespace),
            PlannedChange("cleanup", src, "delete", "IngressRoute", self.route_name,
                          r.namespace, "if an earlier migration made one"),
        ]
        return self._data_plan(changes)

    def _data_plan(self, changes: list[PlannedChange]) -> list[PlannedChange]:
        """The volume data's part of the plan: pre-copy after the route, cut-over before the
        switch."""
        r, st = self.req, self.state
        if not st.volumes:
            return changes
        tns, src, dst = r.target_namespace, self.src.name, self.dst.name
        wl = st.workload["metadata"]["name"]
        port = self.transfer_port()
        precopy = [PlannedChange("precopy", dst, "copy-data", "PersistentVolumeClaim", c, tns,
                                 f"{size} requested; rsync over TLS from {src} through "
                                 f"{self.dst_info.load_balancer}:{port}")
                   for c, size in sorted(st.volumes.items())]
        precopy += [
            PlannedChange("precopy", dst, "create", "Pod", mv.pod_name(self.id, "receiver"),
                          tns, "receiver, with its Service, TCP route, key and "
                          "NetworkPolicy; removed after the cut-over"),
            PlannedChange("precopy", src, "create", "Pod", mv.pod_name(self.id, "sender"),
                          r.namespace, "sender, with its key and NetworkPolicy; removed after "
                          "the cut-over"),
            PlannedChange("precopy", dst, "create", "Pod", mv.pod_name(self.id, "prepull"),
                          tns, "pulls the workload's images while the data is copied; "
                          "removed once they are on the node"),
            PlannedChange("precopy", dst, "scale", st.workload_kind, wl, tns,
                          f"to {st.replicas} once the data is there"),
        ]
        cutover = [
            PlannedChange("cutover", src, "freeze", st.workload_kind, wl, r.namespace,
                          "freeze hook on every pod" if st.freeze == "hook" else
                          "scaled to 0 (no freeze hook declared)"),
            PlannedChange("cutover", dst, "verify", "PersistentVolumeClaim",
                          ", ".join(sorted(st.volumes)), tns,
                          "final delta, then every file's checksum, owner, mode, size, "
                          "xattrs, ACLs and hard links"),
        ]
        dns = next(i for i, c in enumerate(changes) if c.step == "dns")
        changes[dns:dns] = precopy
        switch = next(i for i, c in enumerate(changes) if c.step == "switch")
        changes[switch:switch] = cutover
        return changes

    def hosts(self) -> list[str]:
        r = self.req
        return [*mf.host_names(r.service, r.namespace, self.src_info.cluster_domain), self.fqdn]

    def drain_seconds(self) -> float:
        """How long the old path must keep working after the switch.

        With ``endpoints`` the name keeps resolving to the same ClusterIP, so only connections
        opened before the switch matter: the caller's drain time bounds them. When the switch
        changes what the name resolves to (the source becomes an ExternalName, or the target's
        Service was one), clients may hold the old answer for the cluster DNS TTL, and the old
        path must outlive it.
        """
        before = self.state.target_service_before or {}
        renamed = (self.req.strategy is Strategy.EXTERNALNAME
                   or before.get("spec", {}).get("type") == "ExternalName")
        if renamed:
            return max(self.req.drain_seconds, self.req.dns_ttl + 1.0)
        return self.req.drain_seconds


def _probe_path(pod_spec: Manifest) -> str:
    for container in pod_spec.get("containers", []):
        probe = container.get("readinessProbe") or {}
        path = (probe.get("httpGet") or {}).get("path")
        if path:
            return str(path)
    return "/"

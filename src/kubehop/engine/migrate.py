"""The migration executor: make-before-break, journalled, undoable until the source is gone.

Steps (see :data:`kubehop.domain.model.STEPS`): copy the workload and what it needs to the
target; wait until every replica is ready; route the old host names through the target's
Traefik; point the service's name in the private zone at the target's load balancer; verify the
new path with a real request; switch the source Service (and every older alias) to the target;
drain; delete the source workload.

Each step is an object with ``do`` and ``undo`` over one typed :class:`MigrationState`. A step
records what it is about to change in that state, and the journal stores it, *before* each side
effect, then calls :meth:`Migration.checkpoint`; so after a crash at any point, undo knows exactly
what exists, and a re-run (``--resume``) finds the step half done and finishes it (every step is
idempotent). Any exception inside a step is a step failure: journalled, then rolled back in
reverse (before the point of no return) or left for ``--resume`` (after it). The checkpoints are
also the seam where tests inject failures and crashes (:class:`Seam`).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Protocol

from kubehop.adapters import probe
from kubehop.adapters.dns import DnsZone
from kubehop.adapters.kube import KubeCluster
from kubehop.adapters.probe import ProbeError
from kubehop.adapters.proxyrules import ProxyRules
from kubehop.adapters.store import Store
from kubehop.domain import manifests as mf
from kubehop.domain import mover as mv
from kubehop.domain.model import (
    BASELINES,
    STEPS,
    TRANSFER_ENTRYPOINT,
    ClusterInfo,
    DnsZoneInfo,
    Inventory,
    MigrationRequest,
    MigrationState,
    PlannedChange,
    Status,
    StepState,
    Strategy,
)
from kubehop.engine.data import registry, workload
from kubehop.engine.data.interface import DataEngine, DataSetup
from kubehop.errors import KubehopError, UsageError
from kubehop.waiting import NotYet, PollBudget, retry, wait_for

Manifest = dict[str, Any]
Say = Callable[[str, str, float | None], None]
"""``say(event, step, seconds)``: event is "start", "done", "undo" or "info" (step = text)."""


PROXY_POLLS = PollBudget(0.02)
"""Reads of the source nodes' proxy rules during switches (one process each)."""
VERIFY_POLLS = PollBudget(0.02)
"""Requests through the target's load balancer while Traefik picks up the new pods."""


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


@dataclass
class PhaseTiming:
    name: str
    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass
class Report:
    id: str
    service: str
    namespace: str
    source: str
    target: str
    target_namespace: str
    strategy: str
    status: str
    phases: list[PhaseTiming] = field(default_factory=list)
    error: str | None = None
    undone: list[str] = field(default_factory=list)
    changes: list[PlannedChange] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    """Volume data moved: passes (bytes, files, seconds), precopy, freeze and verify seconds."""

    @property
    def total_seconds(self) -> float:
        return (self.phases[-1].end - self.phases[0].start) if self.phases else 0.0

    @property
    def switch_seconds(self) -> float | None:
        """From the start until clients were sent to the target."""
        for p in self.phases:
            if p.name == "switch":
                return p.end - self.phases[0].start
        return None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["total_seconds"] = round(self.total_seconds, 3)
        data["switch_seconds"] = (None if self.switch_seconds is None
                                  else round(self.switch_seconds, 3))
        for p, d in zip(self.phases, data["phases"], strict=True):
            d["seconds"] = round(p.seconds, 3)
        return data


def _quiet(event: str, step: str, seconds: float | None) -> None:
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
                          tns, "receiver, with its Service, TCP route and key; removed after "
                          "the cut-over"),
            PlannedChange("precopy", src, "create", "Pod", mv.pod_name(self.id, "sender"),
                          r.namespace, "sender, with its key; removed after the cut-over"),
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
                          "final delta, then every file's checksum, owner, mode and size"),
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


# --- steps ------------------------------------------------------------------------------------


class Step:
    """One step of a plan. ``points`` names, in order, the checkpoints ``do`` passes right after
    its side effects (plus "begin" before any): the places a crash or failure can leave it half
    done, each of which ``undo`` and a re-run of ``do`` must handle."""

    name: ClassVar[str]
    points: ClassVar[tuple[str, ...]] = ()
    forward_only: ClassVar[bool] = False
    has_undo: ClassVar[bool] = False

    def do(self, m: Migration) -> None:
        raise NotImplementedError

    def undo(self, m: Migration) -> None:
        """Nothing to undo by default (the step only waited or checked)."""

    def undoes(self, m: Migration) -> bool:
        """Whether its undo changes anything in this migration (the report lists it)."""
        return self.has_undo


class Copy(Step):
    """The workload, what its pods need, and a backend Service for Traefik, in the target."""

    name = "copy"
    points = ("namespace", "dependencies", "workload", "backend-service", "service")
    has_undo = True

    def do(self, m: Migration) -> None:
        r, st = m.req, m.state
        tns = r.target_namespace
        if m.dst.get("Namespace", tns) is None or m.dst.namespace_terminating(tns):
            m.will_create("Namespace", tns, "")
        m.dst.ensure_namespace(tns)
        m.checkpoint("namespace")
        for kind in mf.COPY_ORDER:
            for name in st.deps.get(kind, []):
                obj = m.src.get(kind, name, r.namespace)
                if obj is None:
                    raise MigrationError(f"{kind} {r.namespace}/{name} that the workload uses "
                                         f"is missing in {m.src.name}")
                if m.dst.get(kind, name, tns) is None:
                    m.will_create(kind, name, tns)
                m.dst.apply(mf.strip(obj, namespace=tns, migration_id=m.id))
                m.checkpoint("dependencies")
        wl = mf.strip(st.workload, namespace=tns, migration_id=m.id)
        existing = m.dst.get(st.workload_kind, wl["metadata"]["name"], tns)
        if st.volumes:
            # No pod may open the new volumes before their data is there; pre-copy scales up.
            wl["spec"]["replicas"] = ((existing or {}).get("spec") or {}).get("replicas", 0)
        if existing is None:
            m.will_create(st.workload_kind, wl["metadata"]["name"], tns)
        m.dst.apply(wl)
        m.checkpoint("workload")
        m.will_create("Service", m.route_name, tns)
        older = m.dst.get("Service", m.route_name, tns)
        if older is not None and older["spec"].get("clusterIP") != "None":
            m.dst.delete("Service", m.route_name, tns)  # an older kubehop's had an address
        m.dst.apply(mf.backend_service(st.service, namespace=tns, migration_id=m.id))
        m.checkpoint("backend-service")
        if not st.target_service_checked:
            st.target_service_before = m.dst.get("Service", r.service, tns)
            st.target_service_checked = True
            m.save()
        if st.target_service_before is None:
            if m.dst.get("Service", r.service, tns) is None:
                m.will_create("Service", r.service, tns)
            m.dst.apply(mf.strip(st.service, namespace=tns, migration_id=m.id))
        m.checkpoint("service")

    def undo(self, m: Migration) -> None:
        for kind, name, ns in reversed(m.state.created):
            m.dst.delete(kind, name, ns or None)


SMALL_PASS = 1 << 20
"""A pre-copy pass that sent less than this leaves a delta small enough for the freeze."""
MAX_PASSES = 5


class PreCopy(Step):
    """The volumes' data copied into the target's PVCs while the source keeps serving: passes
    repeat while what they send shrinks. Then the target's pods start on that data."""

    name = "precopy"
    points = ("movers", "pass", "scaled")
    has_undo = True

    def do(self, m: Migration) -> None:
        st = m.state
        if not st.volumes:
            return
        engine = m.data_engine()
        start = time.time()
        prepull = workload.start_prepull(m.dst, m.req.target_namespace, m.id, st.workload)
        engine.start(timeout=m.req.ready_timeout)
        m.checkpoint("movers")
        first, failed = engine.first_pass()
        passes = [first]
        if failed:
            st.data["failed_attempts"] = failed
        while True:
            st.data["passes"] = [p.to_dict() for p in passes]
            m.checkpoint("pass")
            sent = passes[-1].bytes
            if (sent <= SMALL_PASS or len(passes) >= MAX_PASSES
                    or (len(passes) > 1 and sent >= passes[-2].bytes)):
                break  # the delta is small, or no longer shrinking
            passes.append(engine.run_pass(final=False))
        engine.prepare_verify()  # the freeze then only reads what changed since
        st.data["precopy_seconds"] = round(time.time() - start, 3)
        pulled = workload.finish_prepull(m.dst, m.req.target_namespace, prepull,
                                         timeout=m.req.ready_timeout)
        st.data["prepulled_at"] = pulled
        st.data["prepull_seconds"] = round(pulled - start, 3)
        m.dst.scale(st.workload_kind, st.workload["metadata"]["name"], m.req.target_namespace,
                    st.replicas)
        m.checkpoint("scaled")

    def undo(self, m: Migration) -> None:
        if m.state.volumes:
            m.data_engine().remove()
            m.dst.delete("Pod", mv.pod_name(m.id, "prepull"), m.req.target_namespace)

    def undoes(self, m: Migration) -> bool:
        return bool(m.state.volumes)


class Cutover(Step):
    """Writes stop on the source (its freeze hook, or no hook: the source scaled to 0), the
    last delta is copied, and every file is compared on both sides: checksum, owner, mode,
    size. Any difference fails the step and the rollback thaws the source, still the writer.
    The target's pods are frozen too until the switch is done: a write they acknowledged could
    not be rolled back."""

    name = "cutover"
    points = ("source-frozen", "final-delta", "verified", "target-frozen")
    has_undo = True

    def do(self, m: Migration) -> None:
        r, st = m.req, m.state
        if not st.volumes:
            return
        selector = st.service["spec"]["selector"]
        engine = m.data_engine()
        st.data["freeze_started"] = time.time()
        st.source_frozen = True
        m.save()
        if st.freeze == "hook":
            workload.call_hook(m.src, r.namespace,
                               workload.workload_pods(m.src, r.namespace, selector),
                               m.hook(mv.FREEZE_HOOK))
        else:
            m.src.scale(st.workload_kind, st.workload["metadata"]["name"], r.namespace, 0)
            workload.wait_no_pods(m.src, r.namespace, selector, timeout=60)
        st.data["stop_writes_seconds"] = round(time.time() - st.data["freeze_started"], 3)
        m.checkpoint("source-frozen")
        final = engine.run_pass(final=True)
        st.data.setdefault("passes", []).append(final.to_dict())
        m.checkpoint("final-delta")
        start = time.time()
        check = engine.verify()
        problems = check.problems
        st.data["verify_seconds"] = round(time.time() - start, 3)
        st.data["files"] = check.files
        st.data["bytes"] = check.bytes
        if problems:
            more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
            raise MigrationError(f"the copy in {m.dst.name} differs from the source: "
                                 f"{'; '.join(problems[:3])}{more}")
        m.checkpoint("verified")
        if st.freeze == "hook":
            st.target_frozen = True
            m.save()
            workload.call_hook(m.dst, r.target_namespace,
                               workload.workload_pods(m.dst, r.target_namespace, selector),
                               m.hook(mv.FREEZE_HOOK))
        m.checkpoint("target-frozen")
        # The movers go in cleanup, after the switch: not inside the freeze.

    def undo(self, m: Migration) -> None:
        """Movers gone; the source writes again (thawed, or scaled back up and ready)."""
        r, st = m.req, m.state
        if not st.volumes:
            return
        m.data_engine().remove()
        if not st.source_frozen:
            return
        if st.freeze == "hook":
            pods = workload.workload_pods(m.src, r.namespace, st.service["spec"]["selector"])
            workload.call_hook(m.src, r.namespace, pods, m.hook(mv.THAW_HOOK))
        else:
            m.src.scale(st.workload_kind, st.workload["metadata"]["name"], r.namespace,
                        st.replicas)
            m.src.wait_ready(st.workload_kind, st.workload["metadata"]["name"], r.namespace,
                             st.service["spec"]["selector"], timeout=m.req.ready_timeout)
        st.source_frozen = False
        m.save()

    def undoes(self, m: Migration) -> bool:
        return bool(m.state.volumes)


class Start(Step):
    """Every replica in the target running: scheduled, images pulled (for a stateful service,
    pre-pulled while its data was copied), processes started. Reported apart from ``ready`` so
    the time pods take to start and the time they take to answer their probe are both seen."""

    name = "start"

    def do(self, m: Migration) -> None:
        st = m.state
        m.dst.wait_started(m.req.target_namespace, st.service["spec"]["selector"], st.replicas,
                           timeout=m.req.ready_timeout)


class Ready(Step):
    """Every replica in the target ready: its readiness probe passes (the kubelet's own
    verdict, which is what the Service's endpoints follow)."""

    name = "ready"
    points = ("admitted",)
    has_undo = True

    def do(self, m: Migration) -> None:
        """kubehop's readiness gate: a pod that answers its HTTP readiness probe's request is
        ready for Traefik at once, through a slice of the backend Service, instead of after
        the kubelet's next probe (up to a period later, when its first came too early)."""
        st, tns = m.state, m.req.target_namespace
        pod_spec = st.workload["spec"]["template"]["spec"]
        probe = mf.readiness_http(pod_spec)
        kind, name = st.workload_kind, st.workload["metadata"]["name"]
        selector = st.service["spec"]["selector"]
        if probe is None:
            m.dst.wait_ready(kind, name, tns, selector, timeout=m.req.ready_timeout)
            return
        admitted = m.dst.wait_ready_or_answering(kind, name, tns, selector, st.replicas, probe,
                                                 timeout=m.req.ready_timeout)
        if admitted:
            st.admitted = sorted(admitted)
            m.save()
            m.dst.apply(mf.early_endpoint_slice(
                service=st.service, namespace=tns, addresses=sorted(admitted.values()),
                pod_spec=pod_spec, migration_id=m.id))
            m.checkpoint("admitted")

    def undo(self, m: Migration) -> None:
        m.dst.delete("EndpointSlice", mf.early_slice_name(m.req.service),
                     m.req.target_namespace)

    def undoes(self, m: Migration) -> bool:
        return bool(m.state.admitted)


class Route(Step):
    """The target's Traefik sends every name clients use to the new pods."""

    name = "route"
    points = ("route",)
    has_undo = True

    def do(self, m: Migration) -> None:
        m.dst.apply(mf.ingress_route(
            name=m.route_name, namespace=m.req.target_namespace, hosts=m.hosts(),
            backend=m.route_name, ports=[m.state.port], entrypoint=m.state.entrypoint,
            migration_id=m.id, alias=m.alias))
        m.checkpoint("route")

    def undo(self, m: Migration) -> None:
        m.dst.delete("IngressRoute", m.route_name, m.req.target_namespace)


class Dns(Step):
    """The service's name in the private zone points at the target's load balancer."""

    name = "dns"
    points = ("record-set",)
    has_undo = True

    def do(self, m: Migration) -> None:
        st = m.state
        if st.dns_before is None:
            st.dns_before = m.dns.lookup_a(m.fqdn)
        st.dns_changed = True
        m.save()
        lb = m.dst_info.load_balancer
        m.dns.set_a(m.fqdn, lb)
        m.checkpoint("record-set")
        answer = m.dns.lookup_a(m.fqdn)
        if answer != [lb]:
            raise MigrationError(f"the DNS server answers {answer} for {m.fqdn} after the "
                                 f"update to {lb}")

    def undo(self, m: Migration) -> None:
        """Put the record back as it was; nothing to do if the update never went through."""
        st = m.state
        if not st.dns_changed or st.dns_before is None:
            return
        if m.dns.lookup_a(m.fqdn) == st.dns_before:
            return
        if st.dns_before:
            m.dns.set_a(m.fqdn, st.dns_before[0])
        else:
            m.dns.delete(m.fqdn)


class Verify(Step):
    """A real request through the target's load balancer for every host name."""

    name = "verify"

    def do(self, m: Migration) -> None:
        """Traefik needs a moment to see the new pods' endpoints, so wait for it (up to the
        request's ready timeout: with 64 migrations at once on two cores it took over 30 s)."""
        url = f"http://{m.dst_info.load_balancer}:{m.state.port}{m.state.probe_path}"
        for host in m.hosts():
            def answered(host: str = host) -> bool:
                try:
                    status, text = m.connect.http_get(url, host)
                except ProbeError as exc:
                    raise NotYet(str(exc)) from exc
                routed = not (status == 404 and text.startswith("404 page not found"))
                if status < 500 and routed:
                    return True
                raise NotYet(f"HTTP {status}")

            with VERIFY_POLLS.waiting():
                wait_for(answered, timeout=m.req.ready_timeout, interval=VERIFY_POLLS.interval,
                         error=MigrationError,
                         what=f"the new path {url} with Host {host} to answer")


class Switch(Step):
    """Clients of the source Service go to the target: make-before-break.

    The alias slice (target's load balancer) joins the pods' endpoints first, then the pods'
    endpoints go. kube-proxy receives EndpointSlice events in the order the API server wrote
    them and programs each sync atomically, so every rule set it writes has at least one working
    endpoint: the pods, both, or the alias. When the inventory says how to read the source
    nodes' proxy rules, the switch checks instead of relying on that: the pods' endpoints go the
    moment every node sends to the alias, and the step ends when no node sends to the pods.
    """

    name = "switch"
    points = ("target-serving", "older-aliases", "alias-slice", "selector-removed",
              "pod-endpoints-dropped", "externalname", "drain-service", "alias-slice-deleted")
    has_undo = True

    def do(self, m: Migration) -> None:
        r, st = m.req, m.state
        lb = m.dst_info.load_balancer
        ports = st.service["spec"]["ports"]
        _restore_serving_in_target(m)
        m.checkpoint("target-serving")
        # Older aliases elsewhere (earlier migrations) now lead to the new target.
        for name in m.inv.clusters:
            if name in {m.src.name, m.dst.name}:
                continue
            other = m.cluster(name)
            for sl in other.find("EndpointSlice", None, {mf.LABEL_ALIAS_OF: m.alias}):
                if name not in st.aliases_before:
                    st.aliases_before[name] = _slice_addresses(sl)
                    m.save()
                other.apply(_repointed(sl, [lb]))
        m.checkpoint("older-aliases")
        st.switch_started = True
        m.save()
        m.src.apply(mf.alias_endpoint_slice(service=r.service, namespace=r.namespace,
                                            address=lb, ports=ports, alias=m.alias,
                                            migration_id=m.id))
        m.checkpoint("alias-slice")
        m.wait_programmed("alias")
        m.src.merge_patch("Service", r.service, r.namespace, {"spec": {"selector": None}})
        m.checkpoint("selector-removed")
        _drop_pod_endpoints(m.src, r.service, r.namespace)
        m.wait_programmed("alias only")
        m.checkpoint("pod-endpoints-dropped")
        if r.strategy is Strategy.EXTERNALNAME:
            _to_externalname(m, drain=True)
        _thaw_target(m)

    @staticmethod
    def refuse_undo(m: Migration) -> None:
        """Once the target may have acknowledged writes, going back would lose them."""
        if _target_may_write(m):
            raise MigrationError("the target may already have acknowledged writes to its "
                                 "copy of the data, so it must stay the writer")

    def undo(self, m: Migration) -> None:
        self.refuse_undo(m)
        r, st = m.req, m.state
        ns = r.namespace
        original = st.service
        current = m.src.get("Service", r.service, ns)
        if current is not None and current["spec"].get("type") == "ExternalName":
            m.src.delete("Service", mf.drain_service_name(r.service), ns)
            restored = mf.strip(original, namespace=ns, migration_id=m.id)
            restored["metadata"]["labels"].pop(mf.LABEL_MIGRATION, None)
            restored["spec"]["clusterIP"] = original["spec"]["clusterIP"]
            restored["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            retry(lambda: m.src.replace(restored))  # the old ClusterIP is being released
        elif current is not None and not current["spec"].get("selector"):
            m.src.merge_patch("Service", r.service, ns,
                              {"spec": {"selector": original["spec"]["selector"]}})
        # The pods' own endpoints are back (and programmed) before the alias goes: never an
        # empty Service.
        _wait_pod_endpoints(m.src, r.service, ns)
        m.wait_programmed("pods")
        m.src.delete("EndpointSlice", mf.alias_slice_name(r.service), ns)
        m.src.delete("EndpointSlice", mf.alias_slice_name(mf.drain_service_name(r.service)), ns)
        for name, addresses in st.aliases_before.items():
            other = m.cluster(name)
            for sl in other.find("EndpointSlice", None, {mf.LABEL_ALIAS_OF: m.alias}):
                other.apply(_repointed(sl, addresses))
        if st.switch_started:
            # The mirror of the forward drain: clients that reached the target (connections
            # opened through the alias, kube-proxy rules not yet rewritten, cached DNS answers)
            # are served there until they are done, before route and pods go.
            time.sleep(m.drain_seconds())
        _unrestore_target(m)


def _target_may_write(m: Migration) -> bool:
    """The point of no return of a stateful move: the target may have acknowledged writes
    (thawed, or, without hooks, reachable by clients), so its data is the service's data and
    the migration can only be finished, not rolled back."""
    st = m.state
    return bool(st.volumes) and (st.target_thawing
                                 or (st.freeze == "scale" and st.switch_started))


def _thaw_target(m: Migration) -> None:
    """The switch is done: the target's pods may write (the "thaw on the target"). The freeze
    time the report gives ends here."""
    st = m.state
    if not st.volumes:
        return
    st.target_thawing = True
    m.save()
    if st.freeze == "hook":
        pods = workload.workload_pods(m.dst, m.req.target_namespace, st.service["spec"]["selector"])
        workload.call_hook(m.dst, m.req.target_namespace, pods, m.hook(mv.THAW_HOOK))
    started = st.data.get("freeze_started")
    if started and "freeze_seconds" not in st.data:
        st.data["freeze_seconds"] = round(time.time() - float(started), 3)
    m.save()


class Drain(Step):
    """Old pods keep serving whoever still reaches them: connections made before the switch,
    clients holding a cached DNS answer. The wait is the drain time itself, not a guess."""

    name = "drain"
    forward_only = True

    def do(self, m: Migration) -> None:
        time.sleep(m.drain_seconds())


class Cleanup(Step):
    """The source workload and what kubehop left there (old routes, drain holders) go."""

    name = "cleanup"
    points = ("workload-deleted", "route-deleted", "drain-deleted")
    forward_only = True

    def do(self, m: Migration) -> None:
        r, st = m.req, m.state
        # The kubelet has long called the admitted pods ready: its slices take over from
        # kubehop's early one (checked, so Traefik never loses them).
        _wait_pod_endpoints(m.dst, m.route_name, r.target_namespace)
        m.dst.delete("EndpointSlice", mf.early_slice_name(r.service), r.target_namespace)
        m.src.delete(st.workload_kind, st.workload["metadata"]["name"], r.namespace)
        m.checkpoint("workload-deleted")
        if st.volumes:
            m.data_engine().remove()
        m.src.delete("IngressRoute", m.route_name, r.namespace)
        m.src.delete("Service", m.route_name, r.namespace)
        m.checkpoint("route-deleted")
        if r.strategy is Strategy.EXTERNALNAME:
            m.src.delete("Service", mf.drain_service_name(r.service), r.namespace)
            m.src.delete("EndpointSlice", mf.alias_slice_name(mf.drain_service_name(r.service)),
                         r.namespace)
        m.checkpoint("drain-deleted")


class Repoint(Step):
    """Baselines only: the paper's switch, literally: the Service becomes an ExternalName for
    the private-zone name, with nothing holding the old ClusterIP for cached answers."""

    name = "repoint"
    points = ("externalname",)
    has_undo = True

    def do(self, m: Migration) -> None:
        _to_externalname(m, drain=False)

    def undo(self, m: Migration) -> None:
        Switch().undo(m)


class DeleteSource(Step):
    """Baselines only: the source workload goes (the paper's last step; backup/restore's first)."""

    name = "delete-source"
    points = ("workload-deleted",)
    forward_only = True

    def do(self, m: Migration) -> None:
        st = m.state
        m.src.delete(st.workload_kind, st.workload["metadata"]["name"], m.req.namespace)
        m.checkpoint("workload-deleted")


STEP_TYPES: dict[str, Step] = {s.name: s for s in (
    Copy(), PreCopy(), Start(), Ready(), Route(), Dns(), Verify(), Cutover(), Switch(), Drain(),
    Cleanup(), Repoint(), DeleteSource())}


# --- what the steps share ---------------------------------------------------------------------


def _slice_addresses(sl: Manifest) -> list[str]:
    return [a for e in sl.get("endpoints") or [] for a in e["addresses"]]


def _repointed(sl: Manifest, addresses: list[str]) -> Manifest:
    out = {**sl, "metadata": dict(sl["metadata"])}
    out["endpoints"] = [{"addresses": addresses, "conditions": {"ready": True}}]
    for key in ("uid", "resourceVersion", "managedFields", "creationTimestamp", "generation"):
        out["metadata"].pop(key, None)
    return out


def _pod_slices(cluster: KubeCluster, service: str, namespace: str) -> list[Manifest]:
    return [s for s in cluster.find("EndpointSlice", namespace,
                                    {"kubernetes.io/service-name": service})
            if s["metadata"].get("labels", {}).get("endpointslice.kubernetes.io/managed-by")
            != mf.MANAGED_BY]


def _wait_pod_endpoints(cluster: KubeCluster, service: str, namespace: str) -> None:
    """Until the Service's own (controller-made) slices list a ready pod."""
    def ready() -> bool:
        if any(any((e.get("conditions") or {}).get("ready") for e in s.get("endpoints") or [])
               for s in _pod_slices(cluster, service, namespace)):
            return True
        raise NotYet("no ready pod endpoint yet")

    wait_for(ready, timeout=60, interval=0.05, error=MigrationError,
             what=f"{cluster.name}: the pods of {namespace}/{service} to be its endpoints again")


def _drop_pod_endpoints(cluster: KubeCluster, service: str, namespace: str) -> None:
    """Kubernetes leaves a Service's pod endpoints behind when its selector goes (the
    controllers skip selector-less Services, and the mirroring controller even copies the
    stale Endpoints into a new slice), so remove them: only kubehop's alias slice stays."""
    cluster.delete("Endpoints", service, namespace)
    for sl in _pod_slices(cluster, service, namespace):
        cluster.delete("EndpointSlice", sl["metadata"]["name"], namespace)


def _to_externalname(m: Migration, *, drain: bool) -> None:
    """The source Service becomes an ExternalName for the private-zone name. With ``drain``, a
    drain Service takes over the old ClusterIP (with an alias slice behind it) so clients holding
    a cached A record keep being served; without it (the paper's way) they are not."""
    r, st = m.req, m.state
    ports = st.service["spec"]["ports"]
    lb = m.dst_info.load_balancer
    drain_name = mf.drain_service_name(r.service)
    if drain:
        m.src.apply(mf.alias_endpoint_slice(service=drain_name, namespace=r.namespace,
                                            address=lb, ports=ports, alias=m.alias,
                                            migration_id=m.id))
    svc = m.src.get("Service", r.service, r.namespace)
    if svc is None:
        raise MigrationError(f"service {r.namespace}/{r.service} vanished during the switch")
    if svc["spec"].get("type") != "ExternalName":
        svc["spec"] = {"type": "ExternalName", "externalName": m.fqdn,
                       "ports": [{k: v for k, v in p.items() if k != "nodePort"}
                                 for p in ports]}
        for key in ("managedFields", "creationTimestamp"):
            svc["metadata"].pop(key, None)
        svc.pop("status", None)
        m.src.replace(svc)
    m.checkpoint("externalname")
    if not drain:
        return
    holder = mf.drain_service(service=r.service, namespace=r.namespace,
                              cluster_ip=st.service["spec"]["clusterIP"], ports=ports,
                              alias=m.alias, migration_id=m.id)
    retry(lambda: m.src.apply(holder))  # the old ClusterIP is being released
    m.checkpoint("drain-service")
    m.src.delete("EndpointSlice", mf.alias_slice_name(r.service), r.namespace)
    m.checkpoint("alias-slice-deleted")


def _restore_serving_in_target(m: Migration) -> None:
    """The target's own Service may be an alias from an earlier migration: make it serve the
    new pods again, pods' endpoints before the alias goes."""
    r, st = m.req, m.state
    before = st.target_service_before
    tns = r.target_namespace
    if before is None:
        return
    selector = st.service["spec"]["selector"]
    if before["spec"].get("type") == "ExternalName":
        svc = mf.strip(st.service, namespace=tns, migration_id=m.id)
        current = m.dst.get("Service", r.service, tns)
        if current is not None and current["spec"].get("type") == "ExternalName":
            svc["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            m.dst.replace(svc)
        m.dst.delete("Service", mf.drain_service_name(r.service), tns)
        m.dst.delete("EndpointSlice", mf.alias_slice_name(mf.drain_service_name(r.service)), tns)
    elif not before["spec"].get("selector"):
        alias = m.dst.get("EndpointSlice", mf.alias_slice_name(r.service), tns)
        if alias is not None and not st.target_alias_before:
            st.target_alias_before = _slice_addresses(alias)
            m.save()
        m.dst.merge_patch("Service", r.service, tns, {"spec": {"selector": selector}})
        _wait_pod_endpoints(m.dst, r.service, tns)
        m.dst.delete("EndpointSlice", mf.alias_slice_name(r.service), tns)


def _unrestore_target(m: Migration) -> None:
    """Undo of the above: the target's Service is an alias again, pointing where it did, before
    its new pods go (copy's undo deletes them next)."""
    r, st = m.req, m.state
    before = st.target_service_before
    tns = r.target_namespace
    if before is None:
        return
    if before["spec"].get("type") == "ExternalName":
        current = m.dst.get("Service", r.service, tns)
        if current is not None and current["spec"].get("type") != "ExternalName":
            svc = {**current, "metadata": dict(current["metadata"])}
            svc["spec"] = {k: v for k, v in before["spec"].items()
                           if k in {"type", "externalName", "ports"}}
            svc["metadata"].pop("managedFields", None)
            svc.pop("status", None)
            m.dst.replace(svc)
    elif not before["spec"].get("selector") and st.target_alias_before:
        m.dst.apply(mf.alias_endpoint_slice(
            service=r.service, namespace=tns, address=st.target_alias_before[0],
            ports=st.service["spec"]["ports"], alias=m.alias, migration_id=m.id))
        current = m.dst.get("Service", r.service, tns)
        if current is not None and current["spec"].get("selector"):
            m.dst.merge_patch("Service", r.service, tns, {"spec": {"selector": None}})
        _drop_pod_endpoints(m.dst, r.service, tns)


def _probe_path(pod_spec: Manifest) -> str:
    for container in pod_spec.get("containers", []):
        probe = container.get("readinessProbe") or {}
        path = (probe.get("httpGet") or {}).get("path")
        if path:
            return str(path)
    return "/"


def _describe(exc: Exception) -> str:
    """One line for any exception: kubehop's own say what to do; others name their type."""
    if isinstance(exc, KubehopError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}".rstrip(": ")


# --- the executor -----------------------------------------------------------------------------


class Executor:
    """Runs a migration's plan step by step against the journal.

    ``seam`` is the test seam (see :class:`Seam`); production passes none.
    """

    def __init__(self, journal: Store, *, say: Say = _quiet, seam: Seam | None = None,
                 connect: Connector | None = None) -> None:
        self.journal = journal
        self.say = say
        self.seam: Seam = seam or NoSeam()
        self.connect: Connector = connect or Adapters()

    def _migration(self, inventory: Inventory, request: MigrationRequest, migration_id: str,
                   state: MigrationState | None = None) -> Migration:
        return Migration(inventory, request, migration_id=migration_id, state=state,
                         seam=self.seam, connect=self.connect,
                         persist=lambda s: self.journal.save_context(migration_id, s.to_dict()))

    @staticmethod
    def new_id() -> str:
        """A migration id: sortable by time, unique by its random tail."""
        return time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]

    def start(self, inventory: Inventory, request: MigrationRequest, *,
              dry_run: bool = False, plan: Sequence[str] = STEPS,
              migration_id: str | None = None) -> Report:
        """Discover, then (unless ``dry_run``) run ``plan``: kubehop's steps by default, or a
        baseline of :data:`kubehop.domain.model.BASELINES` for the benchmark. A caller that
        must record the id before anything happens (the controller) passes ``migration_id``."""
        unknown = [s for s in plan if s not in STEP_TYPES]
        if unknown:
            raise UsageError(f"unknown step {unknown[0]!r}; steps are {', '.join(STEP_TYPES)}")
        migration_id = migration_id or self.new_id()
        m = self._migration(inventory, request, migration_id)
        m.discover()
        report = _report(m, "planned" if dry_run else Status.RUNNING)
        report.changes = m.plan()
        if dry_run:
            return report
        self.journal.create(migration_id, {**asdict(request), "strategy": str(request.strategy),
                                           "plan": list(plan)})
        m.save()
        return self._run(m, report, tuple(plan), done=set())

    def _load(self, inventory: Inventory, migration_id: str
              ) -> tuple[Migration, tuple[str, ...], set[str], set[str]]:
        row = self.journal.get(migration_id)
        req = dict(row.request)
        plan = tuple(req.pop("plan", STEPS))
        request = MigrationRequest(**{**req, "strategy": Strategy(req["strategy"])})
        m = self._migration(inventory, request, migration_id,
                            MigrationState.from_dict(row.context))
        done = {s.name for s in row.steps if s.state == StepState.DONE}
        touched = {s.name for s in row.steps
                   if s.state in {StepState.DONE, StepState.FAILED, StepState.STARTED}
                   and not s.name.startswith("undo-")}
        return m, plan, done, touched

    def resume(self, inventory: Inventory, migration_id: str) -> Report:
        """Finish a migration a crash or a failure interrupted: the rest of its plan, or the
        rest of its rollback if it was rolling back."""
        row = self.journal.get(migration_id)
        if row.status not in {Status.RUNNING, Status.FAILED, Status.ROLLING_BACK}:
            raise UsageError(f"migration {migration_id} is {row.status}; nothing to resume")
        m, plan, done, touched = self._load(inventory, migration_id)
        report = _report(m, Status.RUNNING)
        if m.state.rolling_back and not _target_may_write(m):
            self._rollback(m, report, [s for s in plan if s in touched], "resumed rollback")
            return report
        self.journal.set_status(migration_id, Status.RUNNING)
        return self._run(m, report, plan, done=done)

    def abort(self, inventory: Inventory, migration_id: str) -> Report:
        """Roll back an interrupted migration instead of finishing it, if it has not passed
        the point of no return."""
        row = self.journal.get(migration_id)
        if row.status not in {Status.RUNNING, Status.FAILED, Status.ROLLING_BACK}:
            raise UsageError(f"migration {migration_id} is {row.status}; nothing to roll back")
        m, plan, _, touched = self._load(inventory, migration_id)
        if any(STEP_TYPES[s].forward_only for s in touched) or _target_may_write(m):
            raise UsageError(f"migration {migration_id} is past the point of no return (the "
                             f"source may be gone); finish it with 'kubehop migrate --resume "
                             f"{migration_id}'")
        report = _report(m, Status.RUNNING)
        self._rollback(m, report, [s for s in plan if s in touched], "aborted by the user")
        return report

    def _run(self, m: Migration, report: Report, plan: tuple[str, ...], *,
             done: set[str]) -> Report:
        completed = [s for s in plan if s in done]
        for name in plan:
            if name in done:
                continue
            step = STEP_TYPES[name]
            seq = self.journal.step_started(m.id, name)
            m.step = name
            self.say("start", name, None)
            start = time.time()
            try:
                m.checkpoint("begin")
                step.do(m)
            except Exception as exc:
                detail = _describe(exc)
                self.journal.step_ended(m.id, seq, StepState.FAILED, detail)
                m.save()
                report.error = f"step {name} failed: {detail}"
                report.data = _data_figures(m)
                if (step.forward_only or any(STEP_TYPES[s].forward_only for s in completed)
                        or _target_may_write(m)):
                    self.journal.set_status(m.id, Status.FAILED, report.error)
                    report.status = Status.FAILED
                    raise MigrationError(
                        f"{report.error}; the target serves; finish with 'kubehop migrate "
                        f"--resume {m.id}'").with_report(report) from exc
                self._rollback(m, report, [*completed, name], report.error)
                raise MigrationError(
                    f"{report.error}; rolled back ({', '.join(report.undone) or 'nothing to undo'})"
                    f"; the source still serves").with_report(report) from exc
            end = time.time()
            self.journal.step_ended(m.id, seq, StepState.DONE)
            m.save()
            report.phases.append(PhaseTiming(name, start, end))
            completed.append(name)
            self.say("done", name, end - start)
        self.journal.set_status(m.id, Status.SUCCEEDED)
        report.status = Status.SUCCEEDED
        report.data = _data_figures(m)
        return report

    def _rollback(self, m: Migration, report: Report, steps: list[str], why: str) -> None:
        m.state.rolling_back = True
        m.save()
        self.journal.set_status(m.id, Status.ROLLING_BACK, why)
        for name in reversed(steps):
            step = STEP_TYPES[name]
            m.step = f"undo-{name}"
            seq = self.journal.step_started(m.id, m.step)
            try:
                m.checkpoint("begin")
                step.undo(m)
            except Exception as exc:
                detail = _describe(exc)
                self.journal.step_ended(m.id, seq, StepState.FAILED, detail)
                self.journal.set_status(m.id, Status.FAILED, f"{why}; undo {name} failed: "
                                                             f"{detail}")
                report.status = Status.FAILED
                raise MigrationError(f"{why}; undoing {name} failed too: {detail}; retry with "
                                     f"'kubehop migrate --resume {m.id}'"
                                     ).with_report(report) from exc
            self.journal.step_ended(m.id, seq, StepState.DONE)
            self.journal.mark_undone(m.id, name)
            if step.undoes(m):
                report.undone.append(name)
                self.say("undo", name, None)
        self.journal.set_status(m.id, Status.ROLLED_BACK, why)
        report.status = Status.ROLLED_BACK


def _data_figures(m: Migration) -> dict[str, Any]:
    return {k: v for k, v in m.state.data.items() if k != "freeze_started"}


def _report(m: Migration, status: str) -> Report:
    r = m.req
    return Report(id=m.id, service=r.service, namespace=r.namespace, source=m.src.name,
                  target=m.dst.name, target_namespace=r.target_namespace,
                  strategy=str(r.strategy), status=str(status))


__all__ = ["BASELINES", "STEPS", "STEP_TYPES", "Adapters", "Connector", "Executor", "Migration",
           "MigrationError", "NoSeam", "Report", "Seam", "Step"]

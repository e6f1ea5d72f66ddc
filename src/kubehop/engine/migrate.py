"""The migration executor: make-before-break, journalled, undoable until the source is gone.

Steps (see :data:`kubehop.domain.model.STEPS`): copy the workload and what it needs to the
target; wait until every replica is ready; route the old host names through the target's
Traefik; point the service's name in the private zone at the target's load balancer; verify the
new path with a real request; switch the source Service (and every older alias) to the target;
drain; delete the source workload.

Every step is written to the journal before it runs and is idempotent, so a re-run or
``--resume`` after a crash simply runs the remaining steps again. A failure before ``cleanup``
undoes every step done, in reverse, back to the source serving alone.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from kubehop.adapters.dns import DnsZone
from kubehop.adapters.journal import Journal
from kubehop.adapters.kube import KubeCluster
from kubehop.domain import manifests as mf
from kubehop.domain.model import (
    POINT_OF_NO_RETURN,
    STEPS,
    ClusterInfo,
    Inventory,
    MigrationRequest,
    PlannedChange,
    Status,
    StepState,
    Strategy,
)
from kubehop.errors import KubehopError, UsageError

Manifest = dict[str, Any]
Say = Callable[[str, str, float | None], None]
"""``say(event, step, seconds)``: event is "start", "done", "undo" or "info" (step = text)."""


class MigrationError(KubehopError):
    """A step failed; the message says which, why, and what was undone."""



def _fault(step: str, when: str) -> None:
    """``KUBEHOP_FAULT=step:fail`` or ``step:crash`` makes that step fail or the process die
    right after the step is journalled. It exists for the failure and resume tests."""
    spec = os.environ.get("KUBEHOP_FAULT", "")
    if spec == f"{step}:{when}":
        if when == "crash":
            os._exit(137)
        raise MigrationError(f"step {step}: injected failure (KUBEHOP_FAULT)")


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


class Migration:
    """One migration's facts, validated against the clusters, plus the steps that act on them."""

    def __init__(self, inventory: Inventory, request: MigrationRequest, *, migration_id: str,
                 say: Say = _quiet, context: dict[str, Any] | None = None) -> None:
        self.inv = inventory
        self.req = request
        self.id = migration_id
        self.say = say
        self.ctx: dict[str, Any] = context or {}
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
        self.dns = DnsZone(inventory.dns)
        self.alias = mf.alias_key(request.service, request.namespace)
        self.fqdn = mf.alias_fqdn(request.service, request.namespace, inventory.dns.zone)
        self.route_name = mf.backend_service_name(request.service)

    def cluster(self, name: str) -> KubeCluster:
        info = self.inv.clusters[name]
        return KubeCluster(kubeconfig=self.inv.kubeconfig, context=info.context, name=name)

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
        deps = {k: sorted(v) for k, v in mf.pod_dependencies(pod_spec).items()}
        self.ctx.update(
            service=svc, workload_kind=kind, workload=workload, deps=deps,
            port=next(p for p in ports if p in self.dst_info.entrypoints), entrypoint=entry,
            probe_path=_probe_path(pod_spec),
        )

    def _is_alias(self, svc: Manifest) -> bool:
        return any(s["metadata"].get("labels", {}).get(mf.LABEL_ALIAS_OF) == self.alias
                   for s in self.src.find("EndpointSlice", svc["metadata"]["namespace"],
                                          {"kubernetes.io/service-name":
                                           svc["metadata"]["name"]}))

    def plan(self) -> list[PlannedChange]:
        r, c = self.req, self.ctx
        wl = c["workload"]["metadata"]["name"]
        tns, src, dst = r.target_namespace, self.src.name, self.dst.name
        changes = [PlannedChange("copy", dst, "apply", "Namespace", tns)]
        for kind, names in c["deps"].items():
            changes += [PlannedChange("copy", dst, "apply", kind, n, tns) for n in names]
        changes += [
            PlannedChange("copy", dst, "apply", c["workload_kind"], wl, tns),
            PlannedChange("copy", dst, "apply", "Service", self.route_name, tns,
                          "backend for the ingress route"),
            PlannedChange("copy", dst, "apply", "Service", r.service, tns,
                          "unless it exists there already"),
            PlannedChange("route", dst, "apply", "IngressRoute", self.route_name, tns,
                          "hosts " + ", ".join(self._hosts())),
            PlannedChange("dns", "dns", "set-record", "A", self.fqdn, "",
                          f"{self.dst_info.load_balancer} ttl 5"),
            PlannedChange("switch", src, "apply", "EndpointSlice", mf.alias_slice_name(r.service),
                          r.namespace, f"-> {self.dst_info.load_balancer}:{c['port']}"),
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
            PlannedChange("cleanup", src, "delete", c["workload_kind"], wl, r.namespace),
            PlannedChange("cleanup", src, "delete", "IngressRoute", self.route_name,
                          r.namespace, "if an earlier migration made one"),
        ]
        return changes

    def _hosts(self) -> list[str]:
        r = self.req
        return [*mf.host_names(r.service, r.namespace, self.src_info.cluster_domain), self.fqdn]

    # --- steps --------------------------------------------------------------------------------

    def do_copy(self) -> None:
        r, c = self.req, self.ctx
        tns = r.target_namespace
        created: list[list[str]] = c.setdefault("created", [])
        if self.dst.ensure_namespace(tns):
            created.append(["Namespace", tns, ""])
        for kind, names in c["deps"].items():
            for name in names:
                obj = self.src.get(kind, name, r.namespace)
                if obj is None:
                    raise MigrationError(f"{kind} {r.namespace}/{name} that the workload uses "
                                          f"is missing in {self.src.name}")
                if self.dst.get(kind, name, tns) is None:
                    created.append([kind, name, tns])
                self.dst.apply(mf.strip(obj, namespace=tns, migration_id=self.id))
        wl = mf.strip(c["workload"], namespace=tns, migration_id=self.id)
        if self.dst.get(c["workload_kind"], wl["metadata"]["name"], tns) is None:
            created.append([c["workload_kind"], wl["metadata"]["name"], tns])
        self.dst.apply(wl)
        self.dst.apply(mf.backend_service(c["service"], namespace=tns, migration_id=self.id))
        created.append(["Service", self.route_name, tns])
        target_svc = self.dst.get("Service", r.service, tns)
        c["target_service_before"] = target_svc
        if target_svc is None:
            self.dst.apply(mf.strip(c["service"], namespace=tns, migration_id=self.id))
            created.append(["Service", r.service, tns])

    def undo_copy(self) -> None:
        for kind, name, ns in reversed(self.ctx.get("created", [])):
            self.dst.delete(kind, name, ns or None)

    def do_ready(self) -> None:
        c = self.ctx
        self.dst.wait_ready(c["workload_kind"], c["workload"]["metadata"]["name"],
                            self.req.target_namespace, c["service"]["spec"]["selector"],
                            timeout=self.req.ready_timeout)

    def do_route(self) -> None:
        c = self.ctx
        self.dst.apply(mf.ingress_route(
            name=self.route_name, namespace=self.req.target_namespace, hosts=self._hosts(),
            backend=self.route_name, ports=[c["port"]], entrypoint=c["entrypoint"],
            migration_id=self.id, alias=self.alias))

    def undo_route(self) -> None:
        self.dst.delete("IngressRoute", self.route_name, self.req.target_namespace)

    def do_dns(self) -> None:
        if "dns_before" not in self.ctx:
            self.ctx["dns_before"] = self.dns.lookup_a(self.fqdn)
        lb = self.dst_info.load_balancer
        self.dns.set_a(self.fqdn, lb)
        self.ctx["dns_changed"] = True
        answer = self.dns.lookup_a(self.fqdn)
        if answer != [lb]:
            raise MigrationError(f"the DNS server answers {answer} for {self.fqdn} after the "
                                  f"update to {lb}")

    def undo_dns(self) -> None:
        """Put the record back as it was; nothing to do if the update never went through."""
        if not self.ctx.get("dns_changed") and self.dns.lookup_a(self.fqdn) == self.ctx.get(
                "dns_before", []):
            return
        before = self.ctx.get("dns_before") or []
        if before:
            self.dns.set_a(self.fqdn, before[0])
        else:
            self.dns.delete(self.fqdn)

    def do_verify(self) -> None:
        """A real request through the target's load balancer for every host name; Traefik needs
        a moment to pick up a new route, so wait for it (up to 30 s)."""
        c = self.ctx
        url = f"http://{self.dst_info.load_balancer}:{c['port']}{c['probe_path']}"
        deadline = time.monotonic() + 30
        pending = self._hosts()
        last = ""
        with httpx.Client(timeout=3) as client:
            while pending and time.monotonic() < deadline:
                host = pending[0]
                try:
                    reply = client.get(url, headers={"Host": host})
                    routed = not (reply.status_code == 404
                                  and reply.text.startswith("404 page not found"))
                    if reply.status_code < 500 and routed:
                        pending.pop(0)
                        continue
                    last = f"HTTP {reply.status_code}"
                except httpx.HTTPError as exc:
                    last = type(exc).__name__
                time.sleep(0.1)
        if pending:
            raise MigrationError(f"the new path does not answer: {url} with Host {pending[0]} "
                                  f"gave {last or 'nothing'}")

    def do_switch(self) -> None:
        r, c = self.req, self.ctx
        lb = self.dst_info.load_balancer
        ports = c["service"]["spec"]["ports"]
        self._restore_serving_in_target()
        # Older aliases elsewhere (earlier migrations) now lead to the new target.
        previous: dict[str, list[str]] = c.setdefault("aliases_before", {})
        for name in self.inv.clusters:
            if name in {self.src.name, self.dst.name}:
                continue
            other = self.cluster(name)
            for sl in other.find("EndpointSlice", None, {mf.LABEL_ALIAS_OF: self.alias}):
                meta = sl["metadata"]
                addresses = [a for e in sl.get("endpoints", []) for a in e["addresses"]]
                previous.setdefault(name, addresses)
                sl["endpoints"] = [{"addresses": [lb], "conditions": {"ready": True}}]
                for key in ("uid", "resourceVersion", "managedFields", "creationTimestamp",
                            "generation"):
                    meta.pop(key, None)
                other.apply(sl)
        # Source: the alias joins the pods' endpoints first (overlap), then the selector goes.
        self.src.apply(mf.alias_endpoint_slice(service=r.service, namespace=r.namespace,
                                               address=lb, ports=ports, alias=self.alias,
                                               migration_id=self.id))
        time.sleep(1.0)  # kube-proxy applies the merged endpoints
        self.src.merge_patch("Service", r.service, r.namespace, {"spec": {"selector": None}})
        self._drop_pod_endpoints(self.src, r.service, r.namespace)
        if r.strategy is Strategy.EXTERNALNAME:
            self._switch_to_externalname(ports)

    @staticmethod
    def _drop_pod_endpoints(cluster: KubeCluster, service: str, namespace: str) -> None:
        """Kubernetes leaves a Service's pod endpoints behind when its selector goes (the
        controllers skip selector-less Services, and the mirroring controller even copies the
        stale Endpoints into a new slice), so remove them: only kubehop's alias slice stays."""
        cluster.delete("Endpoints", service, namespace)
        for sl in cluster.find("EndpointSlice", namespace, {"kubernetes.io/service-name": service}):
            labels = sl["metadata"].get("labels", {})
            if labels.get("endpointslice.kubernetes.io/managed-by") != mf.MANAGED_BY:
                cluster.delete("EndpointSlice", sl["metadata"]["name"], namespace)

    def _switch_to_externalname(self, ports: list[Manifest]) -> None:
        r, c = self.req, self.ctx
        lb = self.dst_info.load_balancer
        old_ip = c["service"]["spec"]["clusterIP"]
        drain = mf.drain_service_name(r.service)
        self.src.apply(mf.alias_endpoint_slice(service=drain, namespace=r.namespace, address=lb,
                                               ports=ports, alias=self.alias,
                                               migration_id=self.id))
        svc = self.src.get("Service", r.service, r.namespace)
        if svc is None:
            raise MigrationError(f"service {r.namespace}/{r.service} vanished during the switch")
        svc["spec"] = {"type": "ExternalName", "externalName": self.fqdn,
                       "ports": [{k: v for k, v in p.items() if k != "nodePort"}
                                 for p in ports]}
        for key in ("managedFields", "creationTimestamp"):
            svc["metadata"].pop(key, None)
        svc.pop("status", None)
        self.src.replace(svc)
        holder = mf.drain_service(service=r.service, namespace=r.namespace, cluster_ip=old_ip,
                                  ports=ports, alias=self.alias, migration_id=self.id)
        _retry_briefly(lambda: self.src.apply(holder))  # the old ClusterIP is being released
        self.src.delete("EndpointSlice", mf.alias_slice_name(r.service), r.namespace)

    def _restore_serving_in_target(self) -> None:
        """The target's own Service may be an alias from an earlier migration: make it serve
        the new pods again, pods' endpoints before the alias goes."""
        r, c = self.req, self.ctx
        before = c.get("target_service_before")
        tns = r.target_namespace
        if before is None:
            return
        selector = c["service"]["spec"]["selector"]
        if before["spec"].get("type") == "ExternalName":
            svc = mf.strip(c["service"], namespace=tns, migration_id=self.id)
            current = self.dst.get("Service", r.service, tns)
            if current is not None and current["spec"].get("type") == "ExternalName":
                svc["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                self.dst.replace(svc)
            self.dst.delete("Service", mf.drain_service_name(r.service), tns)
            self.dst.delete("EndpointSlice", mf.alias_slice_name(mf.drain_service_name(r.service)),
                            tns)
        elif not before["spec"].get("selector"):
            self.dst.merge_patch("Service", r.service, tns, {"spec": {"selector": selector}})
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                slices = self.dst.find("EndpointSlice", tns,
                                       {"kubernetes.io/service-name": r.service})
                if any(s["metadata"].get("labels", {}).get(
                        "endpointslice.kubernetes.io/managed-by") != mf.MANAGED_BY
                       and any(e.get("conditions", {}).get("ready")
                               for e in s.get("endpoints") or [])
                       for s in slices):
                    break
                time.sleep(0.2)
            time.sleep(1.0)  # kube-proxy applies the pods' endpoints
            self.dst.delete("EndpointSlice", mf.alias_slice_name(r.service), tns)

    def undo_switch(self) -> None:
        r, c = self.req, self.ctx
        original = c["service"]
        ns = r.namespace
        current = self.src.get("Service", r.service, ns)
        if current is not None and current["spec"].get("type") == "ExternalName":
            self.src.delete("Service", mf.drain_service_name(r.service), ns)
            restored = mf.strip(original, namespace=ns, migration_id=self.id)
            restored["metadata"]["labels"].pop(mf.LABEL_MIGRATION, None)
            restored["spec"]["clusterIP"] = original["spec"]["clusterIP"]
            restored["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            _retry_briefly(lambda: self.src.replace(restored))
        else:
            self.src.merge_patch("Service", r.service, ns,
                                 {"spec": {"selector": original["spec"]["selector"]}})
            time.sleep(1.0)
        self.src.delete("EndpointSlice", mf.alias_slice_name(r.service), ns)
        self.src.delete("EndpointSlice", mf.alias_slice_name(mf.drain_service_name(r.service)),
                        ns)
        for name, addresses in c.get("aliases_before", {}).items():
            other = self.cluster(name)
            for sl in other.find("EndpointSlice", None, {mf.LABEL_ALIAS_OF: self.alias}):
                sl["endpoints"] = [{"addresses": addresses, "conditions": {"ready": True}}]
                for key in ("uid", "resourceVersion", "managedFields", "creationTimestamp"):
                    sl["metadata"].pop(key, None)
                other.apply(sl)

    def drain_seconds(self) -> float:
        """How long the old path must keep working after the switch.

        With ``endpoints`` the name keeps resolving to the same ClusterIP, so only connections
        opened before the switch matter: the caller's drain time bounds them. When the switch
        changes what the name resolves to (the source becomes an ExternalName, or the target's
        Service was one), clients may hold the old answer for the cluster DNS TTL, and the old
        path must outlive it.
        """
        before = self.ctx.get("target_service_before") or {}
        renamed = (self.req.strategy is Strategy.EXTERNALNAME
                   or before.get("spec", {}).get("type") == "ExternalName")
        if renamed:
            return max(self.req.drain_seconds, self.req.dns_ttl + 1.0)
        return self.req.drain_seconds

    def do_drain(self) -> None:
        """Old pods keep serving whoever still reaches them: connections made before the switch,
        clients with a cached answer."""
        time.sleep(self.drain_seconds())

    def do_cleanup(self) -> None:
        r, c = self.req, self.ctx
        self.src.delete(c["workload_kind"], c["workload"]["metadata"]["name"], r.namespace)
        self.src.delete("IngressRoute", self.route_name, r.namespace)
        self.src.delete("Service", self.route_name, r.namespace)
        if r.strategy is Strategy.EXTERNALNAME:
            self.src.delete("Service", mf.drain_service_name(r.service), r.namespace)
            self.src.delete("EndpointSlice", mf.alias_slice_name(mf.drain_service_name(r.service)),
                            r.namespace)


def _retry_briefly(call: Callable[[], object], seconds: float = 10) -> None:
    """Retry an API call that fails only until the cluster catches up (an IP being freed)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            call()
            return
        except KubehopError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _probe_path(pod_spec: Manifest) -> str:
    for container in pod_spec.get("containers", []):
        probe = container.get("readinessProbe") or {}
        path = (probe.get("httpGet") or {}).get("path")
        if path:
            return str(path)
    return "/"


class Executor:
    """Runs a :class:`Migration` step by step against the journal."""

    def __init__(self, journal: Journal, *, say: Say = _quiet) -> None:
        self.journal = journal
        self.say = say

    def start(self, inventory: Inventory, request: MigrationRequest, *,
              dry_run: bool = False) -> Report:
        migration_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        m = Migration(inventory, request, migration_id=migration_id, say=self.say)
        m.discover()
        report = _report(m, "planned" if dry_run else Status.RUNNING)
        report.changes = m.plan()
        if dry_run:
            return report
        self.journal.create(migration_id, {**asdict(request), "strategy": str(request.strategy)})
        self.journal.save_context(migration_id, m.ctx)
        return self._run(m, report, done=set())

    def resume(self, inventory: Inventory, migration_id: str) -> Report:
        row = self.journal.get(migration_id)
        if row.status != Status.RUNNING and row.status != Status.FAILED:
            raise UsageError(f"migration {migration_id} is {row.status}; nothing to resume")
        req = row.request
        request = MigrationRequest(**{**req, "strategy": Strategy(req["strategy"])})
        m = Migration(inventory, request, migration_id=migration_id, say=self.say,
                      context=row.context)
        done = {s.name for s in row.steps if s.state == StepState.DONE}
        undone = {s.name for s in row.steps if s.state == StepState.UNDONE}
        report = _report(m, Status.RUNNING)
        if undone:  # it was rolling back: finish that
            self._rollback(m, report, [s for s in STEPS if s in done], "resumed rollback")
            return report
        self.journal.set_status(migration_id, Status.RUNNING)
        return self._run(m, report, done=done)

    def _run(self, m: Migration, report: Report, *, done: set[str]) -> Report:
        completed = [s for s in STEPS if s in done]
        for step in STEPS:
            if step in done:
                continue
            seq = self.journal.step_started(m.id, step)
            self.say("start", step, None)
            _fault(step, "crash")
            start = time.time()
            try:
                _fault(step, "fail")
                getattr(m, f"do_{step}")()
            except (KubehopError, httpx.HTTPError, OSError) as exc:
                self.journal.step_ended(m.id, seq, StepState.FAILED, str(exc))
                self.journal.save_context(m.id, m.ctx)
                report.error = f"step {step} failed: {exc}"
                if step == POINT_OF_NO_RETURN or step == "drain":
                    self.journal.set_status(m.id, Status.FAILED, report.error)
                    report.status = Status.FAILED
                    raise MigrationError(
                        f"{report.error}; the target serves; finish with 'kubehop migrate "
                        f"--resume {m.id}'") from exc
                self._rollback(m, report, [*completed, step], report.error)
                raise MigrationError(
                    f"{report.error}; rolled back ({', '.join(report.undone) or 'nothing to undo'})"
                    f"; the source still serves") from exc
            end = time.time()
            self.journal.step_ended(m.id, seq, StepState.DONE)
            self.journal.save_context(m.id, m.ctx)
            report.phases.append(PhaseTiming(step, start, end))
            completed.append(step)
            self.say("done", step, end - start)
        self.journal.set_status(m.id, Status.SUCCEEDED)
        report.status = Status.SUCCEEDED
        return report

    def _rollback(self, m: Migration, report: Report, steps: list[str], why: str) -> None:
        for step in reversed(steps):
            undo = getattr(m, f"undo_{step}", None)
            if undo is None:
                continue
            seq = self.journal.step_started(m.id, f"undo-{step}")
            try:
                undo()
            except (KubehopError, httpx.HTTPError, OSError) as exc:
                self.journal.step_ended(m.id, seq, StepState.FAILED, str(exc))
                self.journal.set_status(m.id, Status.FAILED, f"{why}; undo {step} failed: {exc}")
                report.status = Status.FAILED
                raise MigrationError(f"{why}; undoing {step} failed too: {exc}; retry with "
                                      f"'kubehop migrate --resume {m.id}'") from exc
            self.journal.step_ended(m.id, seq, StepState.DONE)
            self._mark_undone(m.id, step)
            report.undone.append(step)
            self.say("undo", step, None)
        self.journal.set_status(m.id, Status.ROLLED_BACK, why)
        report.status = Status.ROLLED_BACK

    def _mark_undone(self, migration_id: str, step: str) -> None:
        self.journal.db.execute("UPDATE steps SET state=? WHERE migration_id=? AND name=? AND "
                                "state=?", (StepState.UNDONE, migration_id, step, StepState.DONE))


def _report(m: Migration, status: str) -> Report:
    r = m.req
    return Report(id=m.id, service=r.service, namespace=r.namespace, source=m.src.name,
                  target=m.dst.name, target_namespace=r.target_namespace,
                  strategy=str(r.strategy), status=str(status))

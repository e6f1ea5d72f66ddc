"""The steps that move clients and retire the source: the make-before-break switch, the drain,
the cleanup; and the EndpointSlice and Service manipulations they (and the baselines) share.
"""

from __future__ import annotations

import time
from typing import Any

from kubehop.adapters.kube import KubeCluster
from kubehop.domain import manifests as mf
from kubehop.domain.model import Strategy
from kubehop.engine.context import Migration, MigrationError
from kubehop.engine.steps.base import Step
from kubehop.engine.steps.data import (
    check_source_still_frozen,
    target_may_write,
    thaw_target,
    unfreeze_source,
)
from kubehop.waiting import NotYet, retry, wait_for

Manifest = dict[str, Any]


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
    points = ("source-checked", "target-serving", "older-aliases", "alias-slice",
              "selector-removed", "pod-endpoints-dropped", "externalname", "drain-service",
              "alias-slice-deleted")
    has_undo = True

    def do(self, m: Migration) -> None:
        r, st = m.req, m.state
        lb = m.dst_info.load_balancer
        ports = st.service["spec"]["ports"]
        check_source_still_frozen(m)
        m.checkpoint("source-checked")
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
            to_externalname(m, drain=True)
        thaw_target(m)

    @staticmethod
    def refuse_undo(m: Migration) -> None:
        """Once the target may have acknowledged writes, going back would lose them."""
        if target_may_write(m):
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
        # empty Service. The source writes again first (thawed, or scaled back up: without
        # hooks it has no pods to take its clients back); the target, frozen, has taken none.
        unfreeze_source(m)
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


# --- what the switch, its undo and the baselines' repoint share -----------------------------------


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


def to_externalname(m: Migration, *, drain: bool) -> None:
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

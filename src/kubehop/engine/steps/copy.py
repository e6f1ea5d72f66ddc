"""The steps that bring the workload up in the target: copy it and what its pods need, then
wait for its replicas to start and to be ready (kubehop's readiness gate admits them early).
"""

from __future__ import annotations

from kubehop.domain import manifests as mf
from kubehop.engine.context import Migration, MigrationError
from kubehop.engine.data.workload import wait_no_pods
from kubehop.engine.steps.base import Step
from kubehop.engine.steps.data import freeze_target


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


class Start(Step):
    """Every replica in the target running: scheduled, images pulled (for a stateful service,
    pre-pulled while its data was copied), processes started. Reported apart from ``ready`` so
    the time pods take to start and the time they take to answer their probe are both seen.
    A stateful workload waited at 0 replicas; it is scaled up here, after the cut-over verified
    its data (the copy's undo deletes it)."""

    name = "start"
    points = ("scaled",)
    has_undo = True
    data_only = True

    def do(self, m: Migration) -> None:
        st = m.state
        if st.volumes:
            m.dst.scale(st.workload_kind, st.workload["metadata"]["name"],
                        m.req.target_namespace, st.replicas)
            m.checkpoint("scaled")
        m.dst.wait_started(m.req.target_namespace, st.service["spec"]["selector"], st.replicas,
                           timeout=m.req.ready_timeout)

    def undo(self, m: Migration) -> None:
        """A stateful target's pods stopped before the cut-over's undo thaws the source: never
        two writers (the copy's undo deletes the workload later)."""
        st, tns = m.state, m.req.target_namespace
        if not st.volumes or m.dst.get(st.workload_kind, st.workload["metadata"]["name"],
                                       tns) is None:
            return
        m.dst.scale(st.workload_kind, st.workload["metadata"]["name"], tns, 0)
        wait_no_pods(m.dst, tns, st.service["spec"]["selector"], timeout=m.req.ready_timeout)



class Ready(Step):
    """Every replica in the target ready: its readiness probe passes (the kubelet's own
    verdict, which is what the Service's endpoints follow)."""

    name = "ready"
    points = ("target-frozen", "admitted")
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
            freeze_target(m)
            m.checkpoint("target-frozen")
            return
        admitted = m.dst.wait_ready_or_answering(kind, name, tns, selector, st.replicas, probe,
                                                 timeout=m.req.ready_timeout)
        freeze_target(m)  # before anything can route to them
        m.checkpoint("target-frozen")
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

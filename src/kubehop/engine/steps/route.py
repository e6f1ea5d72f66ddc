"""The steps that open the new path before anything is sent down it: the target's Traefik routes
every host name, the private zone's record points at the target, a real request proves it.
"""

from __future__ import annotations

from kubehop.adapters.probe import ProbeError
from kubehop.domain import manifests as mf
from kubehop.engine.context import Migration, MigrationError
from kubehop.engine.steps.base import Step
from kubehop.engine.steps.data import check_source_still_frozen
from kubehop.waiting import NotYet, PollBudget, wait_for

VERIFY_POLLS = PollBudget(0.02)
"""Requests through the target's load balancer while Traefik picks up the new pods."""


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
        # Without hooks the record's change is the point of no return: the source's pods must
        # still be the stopped ones before it (the switch checks again).
        check_source_still_frozen(m)
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

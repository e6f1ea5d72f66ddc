"""The stateful steps: a workload with volumes has its data moved too, by the migration's
:class:`~kubehop.engine.data.interface.DataEngine` (these steps never name a particular engine):
pre-copied while the source serves, then the final delta and a full check inside a short freeze.
Also the point of no return this creates, which the switch and the executor ask about.
"""

from __future__ import annotations

import time
from typing import Any

from kubehop.domain import mover as mv
from kubehop.domain.pods import pod_identity, unfrozen_writers
from kubehop.engine.context import Migration, MigrationError
from kubehop.engine.data import workload
from kubehop.engine.steps.base import Step

SMALL_PASS = 1 << 20
"""A pre-copy pass that sent less than this leaves a delta small enough for the freeze."""
MAX_PASSES = 5


class PreCopy(Step):
    """The volumes' data copied into the target's PVCs while the source keeps serving: passes
    repeat while what they send shrinks. The target's pods stay at 0: they start in ``start``,
    after the cut-over, on the final and verified copy (a database opening a half-copied volume
    would recover from it, then have its files replaced underneath it)."""

    name = "precopy"
    points = ("movers", "pass")
    has_undo = True
    data_only = True

    def do(self, m: Migration) -> None:
        st = m.state
        if not st.volumes:
            return
        engine = m.data_engine()
        st.data["engine"] = engine.name
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

    def undo(self, m: Migration) -> None:
        if m.state.volumes:
            m.data_engine().remove()
            m.dst.delete("Pod", mv.pod_name(m.id, "prepull"), m.req.target_namespace)



class Cutover(Step):
    """Writes stop on the source (its freeze hook, or no hook: the source scaled to 0), the
    last delta is copied, and every file is compared on both sides: checksum, owner, mode,
    size. Any difference fails the step and the rollback thaws the source, still the writer.
    Once the copy is verified the engine's movers are removed: nothing but the target's own
    pods (started next) ever touches the new volumes again."""

    name = "cutover"
    points = ("source-frozen", "final-delta", "verified", "movers-removed")
    has_undo = True
    data_only = True

    def do(self, m: Migration) -> None:
        st = m.state
        if not st.volumes:
            return
        engine = m.data_engine()
        if not st.data.get("verified_at"):
            self._freeze_source(m)
            final = engine.run_pass(final=True)
            st.data.setdefault("passes", []).append(final.to_dict())
            m.checkpoint("final-delta")
            self._verify(m)
        # A resumed run past the verification: the source is still frozen (the switch checks
        # it is the same pods) and no mover has touched either side since; only remove them.
        engine.remove()
        m.checkpoint("movers-removed")

    @staticmethod
    def _freeze_source(m: Migration) -> None:
        """The source's writes stopped, and which pods were stopped recorded for the switch's
        check. The freeze's start survives a resume: the report never under-states it."""
        r, st = m.req, m.state
        selector = st.service["spec"]["selector"]
        st.data.setdefault("freeze_started", time.time())
        st.source_frozen = True
        m.save()
        hooked: list[dict[str, Any]] = []
        if st.freeze == "hook":
            # Exactly the pods the hook is called on are recorded: a pod Pending now that runs
            # later was never frozen, and the switch's check must see it as a stranger.
            hooked = list(workload.running_pods(m.src, r.namespace, selector))
            workload.call_hook(m.src, r.namespace, [str(p["metadata"]["name"]) for p in hooked],
                               m.hook(mv.FREEZE_HOOK))
        else:
            m.src.scale(st.workload_kind, st.workload["metadata"]["name"], r.namespace, 0)
            workload.wait_no_pods(m.src, r.namespace, selector, timeout=60)
        st.frozen_pods = {str(p["metadata"]["name"]): pod_identity(p) for p in hooked}
        st.data["stop_writes_seconds"] = round(time.time() - st.data["freeze_started"], 3)
        m.save()
        m.checkpoint("source-frozen")

    @staticmethod
    def _verify(m: Migration) -> None:
        st = m.state
        start = time.time()
        check = m.data_engine().verify()
        problems = check.problems
        st.data["verify_seconds"] = round(time.time() - start, 3)
        st.data["files"] = check.files
        st.data["bytes"] = check.bytes
        if problems:
            left = len(problems) - 3 + check.more
            more = f" (and {left} more)" if left > 0 else ""
            raise MigrationError(f"the copy in {m.dst.name} differs from the source: "
                                 f"{'; '.join(problems[:3])}{more}")
        st.data["verified_at"] = time.time()
        m.save()
        m.checkpoint("verified")

    def undo(self, m: Migration) -> None:
        """Movers gone; the source writes again (thawed, or scaled back up and ready)."""
        if not m.state.volumes:
            return
        engine = m.data_engine()
        engine.remove()
        engine.wait_removed(timeout=m.req.ready_timeout)
        unfreeze_source(m)



def unfreeze_source(m: Migration) -> None:
    """The source writes again: thawed, or (no hooks) scaled back up and ready. Idempotent:
    the switch's undo calls it first when the source has no pods to take its clients back."""
    r, st = m.req, m.state
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


def freeze_target(m: Migration) -> None:
    """The target's new pods, up on the verified copy, hold writes until the switch is done: a
    write they acknowledged could not be rolled back. Without hooks nothing can hold them, so
    the move passes its point of no return as soon as anything may reach them."""
    st, tns = m.state, m.req.target_namespace
    if not st.volumes or st.freeze != "hook":
        return
    st.target_frozen = True
    m.save()
    pods = workload.workload_pods(m.dst, tns, st.service["spec"]["selector"])
    if len(pods) < st.replicas:
        raise MigrationError(f"only {len(pods)} of the target's {st.replicas} pods run in "
                             f"{m.dst.name} to be frozen ({', '.join(pods) or 'none'})")
    workload.call_hook(m.dst, tns, pods, m.hook(mv.FREEZE_HOOK))


def check_source_still_frozen(m: Migration) -> None:
    """Right before the switch: every source pod is one the freeze stopped, unrestarted (a
    freeze lives in the process; a replaced or restarted pod writes again unnoticed). Else the
    move fails here and rolls back, the source still the writer."""
    st, r = m.state, m.req
    if not st.volumes or target_may_write(m):
        return  # past the point of no return only finishing is left (a resumed switch)
    pods = m.src.find("Pod", r.namespace, st.service["spec"]["selector"])
    problems = unfrozen_writers(st.frozen_pods, pods)
    if problems:
        raise MigrationError(f"the source in {m.src.name} may be writing again: "
                             f"{'; '.join(problems[:3])}")


def target_may_write(m: Migration) -> bool:
    """The point of no return of a stateful move: the target may have acknowledged writes
    (thawed, or, without hooks, reachable by clients: the private-zone record or the switch
    sends them there), so its data is the service's data and
    the migration can only be finished, not rolled back."""
    st = m.state
    reachable = st.dns_changed or st.switch_started
    return bool(st.volumes) and (st.target_thawing or (st.freeze == "scale" and reachable))


def thaw_target(m: Migration) -> None:
    """The switch is done: the target's pods may write (the "thaw on the target"). The freeze
    time the report gives ends here."""
    st = m.state
    if not st.volumes:
        return
    m.data_engine().wait_removed(timeout=m.req.ready_timeout)
    st.target_thawing = True
    m.save()
    if st.freeze == "hook":
        pods = workload.workload_pods(m.dst, m.req.target_namespace, st.service["spec"]["selector"])
        workload.call_hook(m.dst, m.req.target_namespace, pods, m.hook(mv.THAW_HOOK))
    started = st.data.get("freeze_started")
    if started and "freeze_seconds" not in st.data:
        st.data["freeze_seconds"] = round(time.time() - float(started), 3)
    m.save()

"""The stateful steps: a workload with volumes has its data moved too, by the migration's
:class:`~kubehop.engine.data.interface.DataEngine` (these steps never name a particular engine):
pre-copied while the source serves, then the final delta and a full check inside a short freeze.
Also the point of no return this creates, which the switch and the executor ask about.
"""

from __future__ import annotations

import time

from kubehop.domain import mover as mv
from kubehop.engine.context import Migration, MigrationError
from kubehop.engine.data import workload
from kubehop.engine.steps.base import Step

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
            left = len(problems) - 3 + check.more
            more = f" (and {left} more)" if left > 0 else ""
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


def target_may_write(m: Migration) -> bool:
    """The point of no return of a stateful move: the target may have acknowledged writes
    (thawed, or, without hooks, reachable by clients), so its data is the service's data and
    the migration can only be finished, not rolled back."""
    st = m.state
    return bool(st.volumes) and (st.target_thawing
                                 or (st.freeze == "scale" and st.switch_started))


def thaw_target(m: Migration) -> None:
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

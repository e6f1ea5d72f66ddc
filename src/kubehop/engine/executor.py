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
also the seam where tests inject failures and crashes (:class:`~kubehop.engine.context.Seam`).

This module only runs a plan (journal, rollback, resume, abort); the steps live in
:mod:`kubehop.engine.steps`, one module per family, and the context they share in
:mod:`kubehop.engine.context`, so a step can be read without the machinery that runs it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

from kubehop.adapters.store import Store
from kubehop.domain.model import (
    STEPS,
    Inventory,
    MigrationRequest,
    MigrationState,
    Status,
    StepState,
    Strategy,
    default_plan,
    starts_before_cutover,
)
from kubehop.engine.context import Adapters, Connector, Migration, MigrationError, NoSeam, Seam
from kubehop.engine.report import PhaseTiming, Report
from kubehop.engine.steps.data import target_may_write
from kubehop.engine.steps.registry import STEP_TYPES
from kubehop.errors import KubehopError, UsageError

Say = Callable[[str, str, float | None], None]
"""``say(event, step, seconds)``: event is "start", "done", "undo" or "info" (step = text)."""


def _quiet(event: str, step: str, seconds: float | None) -> None:
    pass


def _describe(exc: Exception) -> str:
    """One line for any exception: kubehop's own say what to do; others name their type."""
    if isinstance(exc, KubehopError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}".rstrip(": ")


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
              dry_run: bool = False, plan: Sequence[str] | None = None,
              migration_id: str | None = None) -> Report:
        """Discover, then (unless ``dry_run``) run ``plan``: kubehop's steps by default (the
        stateful order when the workload has volumes), or a baseline of
        :data:`kubehop.domain.model.BASELINES` for the benchmark. A caller that must record the
        id before anything happens (the controller) passes ``migration_id``."""
        unknown = [s for s in plan or () if s not in STEP_TYPES]
        if unknown:
            raise UsageError(f"unknown step {unknown[0]!r}; steps are {', '.join(STEP_TYPES)}")
        migration_id = migration_id or self.new_id()
        m = self._migration(inventory, request, migration_id)
        m.discover()
        plan = tuple(plan) if plan is not None else default_plan(bool(m.state.volumes))
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
        if (m.state.volumes and not m.state.rolling_back and "cutover" not in done
                and starts_before_cutover(plan)):
            raise UsageError(f"migration {migration_id} was journaled by an older kubehop whose "
                             "stateful order starts the target before the cut-over; roll it "
                             f"back with 'kubehop migrate --abort {migration_id}' and run it "
                             "again")
        if m.state.rolling_back and not target_may_write(m):
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
        if any(STEP_TYPES[s].forward_only for s in touched) or target_may_write(m):
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
                        or target_may_write(m)):
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
    return {k: v for k, v in m.state.data.items() if k not in {"freeze_started", "verified_at"}}


def _report(m: Migration, status: str) -> Report:
    r = m.req
    return Report(id=m.id, service=r.service, namespace=r.namespace, source=m.src.name,
                  target=m.dst.name, target_namespace=r.target_namespace,
                  strategy=str(r.strategy), status=str(status))

"""kubehop's custom resources in a management cluster: ``Migration`` and ``PlacementPolicy``
(group ``kubehop.io``, version ``v1alpha1``), and the reconciler that acts on them.

A ``Migration`` in namespace ``kubehop-system`` is a request to move one Service: the reconciler
validates it, puts its finalizer on it, runs the engine's :class:`Executor` in a worker thread
and mirrors the journal into ``.status`` (phase, current step, one condition per step, the
report's summary, the error and what was undone). Deleting a running Migration aborts it the
engine's way: rolled back before the point of no return, finished after it; the finalizer goes
once that is done, so the object disappears only when the clusters are consistent again.

Everything the reconciler needs to carry on is in the journal and in the objects themselves, so
a fresh process (a restarted or standby controller) picks up where another stopped: a Migration
``Running`` whose journal entry is unfinished is resumed (or, if it is being deleted, aborted).

A ``PlacementPolicy`` holds the controller's policy under ``.spec`` (the policy file's schema);
the reconciler validates it with the policy file's own parser and writes the verdict to its
status; :func:`publish_decisions` records the controller's latest decisions there (bounded) and
as Events.

The CRDs themselves live in :mod:`.crds`, the Migration status computed from the journal in
:mod:`.migration_status`, the PlacementPolicy helpers in :mod:`.policy_resource`; this module
keeps the reconciler and re-exports their names, which importers use as ``resources.X``.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from kubehop.adapters.kube import KubeCluster, KubeError
from kubehop.adapters.store import MigrationRow, Store
from kubehop.controller import events
from kubehop.controller.crds import (
    CRD_FILES,
    CRD_NAMES,
    FINALIZER,
    GROUP,
    MAX_TEXT,
    NAMESPACE,
    VERSION,
    Manifest,
    crd_yaml,
    cut_text,
    install_crds,
    rfc3339,
)
from kubehop.controller.migration_status import (
    FAILED,
    FINISHED,
    PENDING,
    PHASE_OF_STATUS,
    ROLLED_BACK,
    RUNNING,
    SUCCEEDED,
    conditions,
    report_summary,
    request_from,
    status_from_row,
)
from kubehop.controller.policy_resource import (
    MAX_DECISIONS,
    decision_entry,
    latest_decisions,
    policy_from_spec,
    publish_decisions,
)
from kubehop.domain.model import STEPS, Inventory, MigrationRequest, Status
from kubehop.engine.context import Connector, MigrationError
from kubehop.engine.executor import Executor
from kubehop.engine.report import Report
from kubehop.engine.steps.registry import STEP_TYPES
from kubehop.errors import KubehopError, UsageError

Say = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


# --- the reconciler ---------------------------------------------------------------------------


class Aborted(BaseException):
    """Raised at a checkpoint when the Migration is being deleted: stops the run where it
    stands (as a crash would) so the engine's abort path can take over."""


class Paused(BaseException):
    """Raised at the start of a step when the reconciler stops: the journal keeps the
    migration running, and the next reconciler (this one restarted, or a standby) resumes it."""


@dataclass
class _Worker:
    uid: str
    name: str
    migration_id: str
    service: str
    abort: threading.Event = field(default_factory=threading.Event)
    pause: threading.Event = field(default_factory=threading.Event)
    armed: bool = True
    thread: threading.Thread | None = None
    changed: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)

    def alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()


class _StatusSeam:
    """The engine's checkpoints, used to follow (a step began: status to publish) and to stop
    (deleted: abort; reconciler stopping: pause)."""

    def __init__(self, worker: _Worker) -> None:
        self.worker = worker

    def checkpoint(self, step: str, point: str) -> None:
        w = self.worker
        if point == "begin":
            w.changed.set()
        if not w.armed:
            return
        forward = STEP_TYPES.get(step)
        if w.abort.is_set() and forward is not None and not forward.forward_only:
            raise Aborted(step)
        if w.pause.is_set() and point == "begin":
            raise Paused(step)


class MigrationReconciler:
    """Reconciles the Migrations (and PlacementPolicies) in ``namespace`` of ``management``.

    ``reconcile_once`` looks at every object once and starts what is due; migrations run in
    worker threads. It keeps no state a fresh process would lack, beyond the workers it runs.
    """

    def __init__(self, management: KubeCluster, inventory: Inventory, journal: Store, *,
                 namespace: str = NAMESPACE, connect: Connector | None = None,
                 say: Say = _quiet, check_promql: bool = True) -> None:
        self.kube = management
        self.inventory = inventory
        self.journal = journal
        self.namespace = namespace
        self.connect = connect
        self.say = say
        self.check_promql = check_promql
        self.workers: dict[str, _Worker] = {}
        self.finished: set[str] = set()
        """uids whose worker published the final status (a list read before that write must
        not make them look orphaned)."""
        self.lock = threading.Lock()

    # --- the loop -----------------------------------------------------------------------------

    def run(self, stop: threading.Event, *, interval: float = 1.0,
            grace: float = 60.0) -> None:
        """Reconcile every ``interval`` seconds until ``stop``; then ask running migrations to
        pause at their next step (the journal keeps them for whoever reconciles next) and wait
        up to ``grace`` seconds for them."""
        while not stop.is_set():
            try:
                self.reconcile_once()
            except KubehopError as exc:
                self.say(f"reconcile: {exc}")
            stop.wait(interval)
        self.shutdown(grace=grace)

    def shutdown(self, *, grace: float = 60.0) -> None:
        with self.lock:
            workers = list(self.workers.values())
        for w in workers:
            w.pause.set()
        deadline = time.monotonic() + grace
        for w in workers:
            if w.thread is not None:
                w.thread.join(max(0.0, deadline - time.monotonic()))

    def wait_idle(self, timeout: float = 600) -> bool:
        """Until no worker runs (tests, ``--once``); False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if not any(w.alive() for w in self.workers.values()):
                    return True
            time.sleep(0.1)
        return False

    def reconcile_once(self) -> None:
        self.reconcile_migrations()
        self.reconcile_policies()

    # --- Migrations ---------------------------------------------------------------------------

    def reconcile_migrations(self) -> None:
        try:
            objs = self.kube.find("Migration", self.namespace)
        except KubeError as exc:
            raise KubeError(f"{exc}; are the CRDs installed? run 'kubehop controller crds "
                            f"install --cluster {self.kube.name}'") from exc
        with self.lock:
            for uid in [u for u, w in self.workers.items() if not w.alive()]:
                del self.workers[uid]
        for obj in sorted(objs, key=lambda o: o["metadata"].get("creationTimestamp") or ""):
            try:
                self._reconcile(obj)
            except KubehopError as exc:
                self.say(f"migration {obj['metadata']['name']}: {exc}")

    def _reconcile(self, obj: Manifest) -> None:
        meta = obj["metadata"]
        uid, name = meta["uid"], meta["name"]
        status = obj.get("status") or {}
        phase = status.get("phase") or ""
        deleting = bool(meta.get("deletionTimestamp"))
        with self.lock:
            worker = self.workers.get(uid)
        if worker is not None and worker.alive():
            if deleting and not worker.abort.is_set():
                worker.abort.set()
                self._event(obj, "Aborting", "deleted while running: rolling back unless past "
                            "the point of no return (then finishing)", warning=True)
            return
        if deleting:
            if phase != RUNNING or uid in self.finished:
                self._drop_finalizer(name)
                return
            row = self._row(status.get("migrationId"))
            if row is None or Status(row.status) in {Status.SUCCEEDED, Status.ROLLED_BACK}:
                if row is not None:
                    self._patch_status(name, status_from_row(row))
                self._drop_finalizer(name)
                return
            self._start_worker(obj, "abort", row.id, None)
            return
        if phase in FINISHED or uid in self.finished:
            if FINALIZER in (meta.get("finalizers") or []):
                self._drop_finalizer(name)
            return
        if phase in ("", PENDING):
            self._admit(obj)
            return
        # Running, and no worker here: another process ran it (a restart, a leader change).
        mid = status.get("migrationId") or ""
        row = self._row(mid)
        if row is None:
            try:
                request = request_from(obj.get("spec") or {}, self.inventory)
            except UsageError as exc:
                self._finish_invalid(obj, str(exc))
                return
            self.say(f"migration {name}: {mid or 'no id'} never reached the journal; "
                     "starting it")
            self._start_worker(obj, "start", mid or Executor.new_id(), request)
        elif Status(row.status) in {Status.RUNNING, Status.ROLLING_BACK}:
            self.say(f"migration {name}: resuming {row.id} ({row.status})")
            self._event(obj, "Resuming", f"resuming {row.id} where the journal left it "
                                         f"({row.status})", warning=False)
            self._start_worker(obj, "resume", row.id, None)
        else:
            final = status_from_row(row, now=time.time())
            self._patch_status(name, final)
            self._drop_finalizer(name)
            self.finished.add(uid)

    def _row(self, migration_id: str | None) -> MigrationRow | None:
        if not migration_id:
            return None
        try:
            return self.journal.get(migration_id)
        except UsageError:
            return None

    def _admit(self, obj: Manifest) -> None:
        """A new Migration: checked (invalid: Failed, nothing touched), then one per service at
        a time (a second waits Pending), then the finalizer, Running, and its worker."""
        name = obj["metadata"]["name"]
        try:
            request = request_from(obj.get("spec") or {}, self.inventory)
        except UsageError as exc:
            self._finish_invalid(obj, str(exc))
            return
        key = f"{request.namespace}/{request.service}"
        with self.lock:
            busy = next((w for w in self.workers.values() if w.alive() and w.service == key),
                        None)
        if busy is not None:
            message = f"waiting for Migration {busy.name} of the same service to end"
            if (obj.get("status") or {}).get("message") != message:
                self._patch_status(name, {"phase": PENDING, "message": message})
            return
        meta = obj["metadata"]
        finalizers = list(meta.get("finalizers") or [])
        if FINALIZER not in finalizers:
            self.kube.merge_patch("Migration", name, self.namespace, {"metadata": {
                "finalizers": [*finalizers, FINALIZER],
                "resourceVersion": meta["resourceVersion"]}})
        mid = Executor.new_id()
        self._patch_status(name, {
            "phase": RUNNING, "step": "", "migrationId": mid, "message": None,
            "startTime": rfc3339(time.time()), "observedGeneration": meta.get("generation"),
            "conditions": [], "error": None, "undone": []})
        self._event(obj, "Started", f"migrating {key} from {request.source} to "
                                    f"{request.target} ({request.strategy}); journal id {mid}",
                    warning=False)
        self._start_worker(obj, "start", mid, request)

    def _finish_invalid(self, obj: Manifest, message: str) -> None:
        name = obj["metadata"]["name"]
        self._patch_status(name, {"phase": FAILED, "error": cut_text(message),
                                  "completionTime": rfc3339(time.time())})
        self._event(obj, FAILED, f"refused: {message}", warning=True)
        self.say(f"migration {name}: refused: {message}")
        self.finished.add(obj["metadata"]["uid"])
        if FINALIZER in (obj["metadata"].get("finalizers") or []):
            self._drop_finalizer(name)

    def _start_worker(self, obj: Manifest, mode: str, migration_id: str,
                      request: MigrationRequest | None) -> None:
        meta, spec = obj["metadata"], obj.get("spec") or {}
        worker = _Worker(uid=meta["uid"], name=meta["name"], migration_id=migration_id,
                         service=f"{spec.get('namespace')}/{spec.get('service')}")
        if meta.get("deletionTimestamp"):
            worker.abort.set()
        worker.thread = threading.Thread(
            target=self._work, args=(worker, obj, mode, request), daemon=True,
            name=f"kubehop-migration-{meta['name']}")
        with self.lock:
            self.workers[worker.uid] = worker
        worker.thread.start()

    def _work(self, w: _Worker, obj: Manifest, mode: str,
              request: MigrationRequest | None) -> None:
        """One migration, start to end, in its own thread; the final status is published
        (and the finalizer dropped) whatever happens, except a pause."""
        publisher = threading.Thread(target=self._publish_progress, args=(w,), daemon=True,
                                     name=f"kubehop-status-{w.name}")
        publisher.start()
        executor = Executor(self.journal, seam=_StatusSeam(w), connect=self.connect)
        error: str | None = None
        report: Report | None = None
        paused = False
        try:
            try:
                if mode == "abort":
                    raise Aborted("deleted")
                if mode == "resume" or request is None:
                    report = executor.resume(self.inventory, w.migration_id)
                else:
                    report = executor.start(self.inventory, request,
                                            migration_id=w.migration_id)
            except Aborted:
                w.armed = False
                report = self._abort(executor, w.migration_id)
        except Paused:
            paused = True
        except MigrationError as exc:
            error, report = str(exc), exc.report
        except KubehopError as exc:
            error = str(exc)
        except Exception as exc:  # a bug must still end the Migration, visibly
            error = f"{type(exc).__name__}: {exc}"
        finally:
            w.done.set()
            w.changed.set()
            publisher.join(10)
        if paused:
            self.say(f"migration {w.name}: paused at a step boundary; the next reconciler "
                     "resumes it")
            return
        try:
            self._publish_final(w, obj, error, report)
        except KubehopError as exc:
            self.say(f"migration {w.name}: cannot publish its end: {exc}")

    def _abort(self, executor: Executor, migration_id: str) -> Report | None:
        """The engine's abort: roll back if before the point of no return, else finish."""
        row = self._row(migration_id)
        if row is None or Status(row.status) in {Status.SUCCEEDED, Status.ROLLED_BACK}:
            return None
        try:
            return executor.abort(self.inventory, migration_id)
        except UsageError:
            self.say(f"migration {migration_id}: past the point of no return; finishing it")
            return executor.resume(self.inventory, migration_id)

    def _publish_progress(self, w: _Worker) -> None:
        """Mirror the journal into the status as steps begin, off the migration's own thread
        (a slow API server must not slow a switch); bursts are coalesced."""
        while True:
            w.changed.wait()
            w.changed.clear()
            if w.done.is_set():
                return
            row = self._row(w.migration_id)
            if row is None:
                continue
            status = status_from_row(row)
            status["phase"] = RUNNING
            status.pop("completionTime", None)
            status.pop("error", None)
            try:
                self._patch_status(w.name, status)
            except KubehopError as exc:
                self.say(f"migration {w.name}: status not updated: {exc}")

    def _publish_final(self, w: _Worker, obj: Manifest, error: str | None,
                       report: Report | None) -> None:
        row = self._row(w.migration_id)
        undone = list(report.undone) if report is not None else None
        if row is None:  # refused before anything changed (discovery)
            status: Manifest = {"phase": FAILED, "error": cut_text(error or "failed"), "step": "",
                                "completionTime": rfc3339(time.time())}
        else:
            status = status_from_row(row, error=error, undone=undone, now=time.time())
            if error and status["phase"] == RUNNING:  # the journal could not say how it ended
                status["phase"] = FAILED
        self._patch_status(w.name, status)
        self.finished.add(w.uid)
        phase = status["phase"]
        message = {SUCCEEDED: "migrated; " + _took(status),
                   ROLLED_BACK: f"rolled back ({', '.join(status.get('undone') or []) or 'nothing'}"
                                f" undone); the source serves"
                                + (f": {status['error']}" if status.get("error") else ""),
                   }.get(phase) or status.get("error") or phase
        self._event(obj, phase, message, warning=phase != SUCCEEDED)
        self.say(f"migration {w.name}: {phase}: {message}")
        self._drop_finalizer(w.name)

    # --- object plumbing ----------------------------------------------------------------------

    def _patch_status(self, name: str, status: Manifest) -> None:
        self.kube.patch_status("Migration", name, self.namespace, {"status": status})

    def _drop_finalizer(self, name: str) -> None:
        """Remove our finalizer (the object goes if it was being deleted), guarded by the
        resourceVersion so another writer's finalizer is never lost."""
        for _ in range(5):
            obj = self.kube.get("Migration", name, self.namespace)
            if obj is None:
                return
            meta = obj["metadata"]
            finalizers = list(meta.get("finalizers") or [])
            if FINALIZER not in finalizers:
                return
            try:
                self.kube.merge_patch("Migration", name, self.namespace, {"metadata": {
                    "finalizers": [f for f in finalizers if f != FINALIZER],
                    "resourceVersion": meta["resourceVersion"]}})
                return
            except KubeError as exc:
                if "modified" not in str(exc) and "conflict" not in str(exc).lower():
                    raise
        raise KubeError(f"{self.kube.name}: Migration {self.namespace}/{name}: finalizer not "
                        "removed after 5 conflicting updates")

    def _event(self, obj: Manifest, reason: str, message: str, *, warning: bool) -> None:
        meta = obj["metadata"]
        involved = {"apiVersion": f"{GROUP}/{VERSION}", "kind": obj.get("kind", "Migration"),
                    "name": meta["name"], "namespace": meta.get("namespace", self.namespace),
                    "uid": meta.get("uid", "")}
        try:
            self.kube.apply(events.object_event(involved, reason=reason, message=message,
                                                warning=warning, at=time.time(),
                                                unique=uuid.uuid4().hex[:4]))
        except KubehopError as exc:  # an Event lost is reported, never a reason to stop
            self.say(f"event {reason} on {meta['name']} not posted: {exc}")

    # --- PlacementPolicies --------------------------------------------------------------------

    def reconcile_policies(self) -> None:
        """Validate every PlacementPolicy whose spec changed since it was last checked, and
        write the verdict (and the parser's one-line error) to its status."""
        for obj in self.kube.find("PlacementPolicy", self.namespace):
            meta = obj["metadata"]
            status = obj.get("status") or {}
            if status.get("observedGeneration") == meta.get("generation"):
                continue
            try:
                policy = policy_from_spec(obj.get("spec") or {},
                                          check_promql=self.check_promql)
                verdict: Manifest = {"valid": True, "error": None,
                                     "rules": len(policy.rules),
                                     "services": len(policy.services)}
            except UsageError as exc:
                verdict = {"valid": False, "error": cut_text(str(exc)), "rules": None,
                           "services": None}
                self._event(obj, "InvalidPolicy", str(exc), warning=True)
            verdict["observedGeneration"] = meta.get("generation")
            self.kube.patch_status("PlacementPolicy", meta["name"], self.namespace,
                                   {"status": verdict})


def _took(status: Manifest) -> str:
    report = status.get("report") or {}
    parts = [f"{report['totalSeconds']:.1f}s in all"] if "totalSeconds" in report else []
    if "switchSeconds" in report:
        parts.append(f"clients on the target after {report['switchSeconds']:.1f}s")
    return ", ".join(parts) or "done"



# The names below were defined here before the CRD, status and PlacementPolicy helpers moved to
# their own modules; importers keep using ``resources.X``.
__all__ = ["CRD_FILES", "CRD_NAMES", "FAILED", "FINALIZER", "FINISHED", "GROUP",
           "MAX_DECISIONS", "MAX_TEXT", "NAMESPACE", "PENDING", "PHASE_OF_STATUS",
           "ROLLED_BACK", "RUNNING", "STEPS", "SUCCEEDED", "VERSION", "Aborted", "Manifest",
           "MigrationReconciler", "MigrationRow", "Paused", "conditions", "crd_yaml",
           "decision_entry", "install_crds", "latest_decisions", "policy_from_spec",
           "publish_decisions", "report_summary", "request_from", "rfc3339", "status_from_row"]

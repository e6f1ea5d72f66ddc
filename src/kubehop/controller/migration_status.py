"""A Migration object's side of the journal: its spec read as an engine request, and its status
(phase, conditions, bounded report) computed from the journal's row.

Pure functions of their arguments, so a fresh reconciler computes the same status another one
would have, and the tests need no cluster.
"""

from __future__ import annotations

from collections.abc import Sequence

from kubehop.adapters.store import MigrationRow, StepRow
from kubehop.controller.crds import Manifest, cut_text, rfc3339
from kubehop.domain.model import Inventory, MigrationRequest, Status, StepState, Strategy
from kubehop.engine.steps.registry import STEP_TYPES
from kubehop.errors import UsageError

PENDING, RUNNING, SUCCEEDED, FAILED, ROLLED_BACK = (
    "Pending", "Running", "Succeeded", "Failed", "RolledBack")
FINISHED = frozenset({SUCCEEDED, FAILED, ROLLED_BACK})
PHASE_OF_STATUS = {Status.RUNNING: RUNNING, Status.ROLLING_BACK: RUNNING,
                   Status.SUCCEEDED: SUCCEEDED, Status.ROLLED_BACK: ROLLED_BACK,
                   Status.FAILED: FAILED}


# --- pure parts: request, conditions, status --------------------------------------------------


def request_from(spec: Manifest, inventory: Inventory) -> MigrationRequest:
    """The engine's request for a Migration's spec, checked against the inventory (the schema
    has checked the shapes; only the controller knows the clusters). Raises UsageError."""
    missing = [k for k in ("service", "namespace", "from", "to") if not spec.get(k)]
    if missing:
        raise UsageError(f"spec.{missing[0]} is missing; set it")
    names = sorted(inventory.clusters)
    for key in ("from", "to"):
        if inventory.cluster(str(spec[key])) is None:
            raise UsageError(f"spec.{key}: no cluster {spec[key]!r} in the controller's "
                             f"inventory; clusters are {', '.join(names)}")
    source = inventory.cluster(str(spec["from"]))
    target = inventory.cluster(str(spec["to"]))
    if source is None or target is None or source is target:
        raise UsageError(f"spec.from and spec.to are the same cluster ({spec['from']}); "
                         "pick another spec.to")
    strategy = str(spec.get("strategy") or Strategy.ENDPOINTS)
    if strategy not in set(Strategy):
        raise UsageError(f"spec.strategy {strategy!r} is unknown; use one of "
                         f"{', '.join(Strategy)}")
    defaults = MigrationRequest("", "", "", "", "")
    numbers = {}
    for key, default in (("drainSeconds", defaults.drain_seconds),
                         ("readyTimeoutSeconds", defaults.ready_timeout),
                         ("dnsTtlSeconds", defaults.dns_ttl)):
        value = spec.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise UsageError(f"spec.{key} must be a number of seconds, not {value!r}")
        numbers[key] = float(value)
    return MigrationRequest(
        service=str(spec["service"]), namespace=str(spec["namespace"]),
        source=source.name, target=target.name,
        target_namespace=str(spec.get("targetNamespace") or spec["namespace"]),
        strategy=Strategy(strategy), drain_seconds=numbers["drainSeconds"],
        ready_timeout=numbers["readyTimeoutSeconds"], dns_ttl=numbers["dnsTtlSeconds"])


def conditions(steps: Sequence[StepRow]) -> list[Manifest]:
    """One condition per step the journal has seen, in the order it ran (the plan's): ``True``
    done, ``Unknown`` running (or being undone), ``False`` failed or rolled back. The latest
    row of a step (and of its undo) wins: a resumed step has several."""
    latest: dict[str, StepRow] = {}
    for row in steps:
        latest[row.name] = row
    order = [n for n in latest if not n.startswith("undo-")]  # first seen: the plan's order
    out = []
    for name in order:
        row = latest[name]
        undo = latest.get(f"undo-{name}")
        when = row.ended or row.started
        if undo is not None and undo.state == StepState.STARTED:
            status, reason, message, when = "Unknown", "Undoing", "being rolled back", undo.started
        elif undo is not None and undo.state == StepState.FAILED:
            status, reason, message = "False", "UndoFailed", undo.detail or "undo failed"
            when = undo.ended or undo.started
        elif row.state == "undone" or (undo is not None and undo.state == StepState.DONE):
            status, reason, message = "False", "RolledBack", "its changes were undone"
            when = (undo.ended or undo.started) if undo is not None else when
        elif row.state == StepState.DONE:
            took = (row.ended or row.started) - row.started
            status, reason, message = "True", "Done", f"took {took:.3f}s"
        elif row.state == StepState.FAILED:
            status, reason, message = "False", "Failed", row.detail or "failed"
        else:
            status, reason, message = "Unknown", "Running", "in progress"
        out.append({"type": name, "status": status, "reason": reason,
                    "message": cut_text(message), "lastTransitionTime": rfc3339(when)})
    return out


def _figures(data: Manifest) -> Manifest:
    """The report's data figures, bounded: scalars as they are, lists by their length."""
    out: Manifest = {}
    for key, value in sorted(data.items()):
        if isinstance(value, bool | int | float | str):
            out[key] = round(value, 3) if isinstance(value, float) else value
        elif isinstance(value, list):
            out[key] = len(value)
    return out


def report_summary(steps: Sequence[StepRow], data: Manifest) -> Manifest:
    """The bounded report a status carries: each forward step that completed with its seconds,
    the total, the time until clients went to the target, and the data figures."""
    done = [r for r in steps if r.state == StepState.DONE and not r.name.startswith("undo-")
            and r.ended is not None]
    summary: Manifest = {"phases": [{"name": r.name, "seconds": round(r.ended - r.started, 3)}
                                    for r in done if r.ended is not None]}
    if steps:
        first = min(r.started for r in steps)
        if done:
            summary["totalSeconds"] = round(max(r.ended or 0 for r in done) - first, 3)
        switch = next((r for r in done if r.name == "switch"), None)
        if switch is not None and switch.ended is not None:
            summary["switchSeconds"] = round(switch.ended - first, 3)
    figures = _figures(data)
    if figures:
        summary["data"] = figures
    return summary


def status_from_row(row: MigrationRow, *, error: str | None = None,
                    undone: list[str] | None = None, now: float | None = None) -> Manifest:
    """A Migration's status from its journal entry. ``error`` and ``undone`` come from the
    engine's own exception and report when there is one (they say it best); otherwise from
    the journal."""
    phase = PHASE_OF_STATUS.get(Status(row.status), FAILED)
    current = row.steps[-1].name if row.steps else ""
    if undone is None:
        stateful = bool((row.context or {}).get("volumes"))
        undone = [r.name for r in row.steps if r.state == "undone"
                  and (step := STEP_TYPES.get(r.name)) is not None and step.has_undo
                  and (stateful or not step.data_only)]
    status: Manifest = {
        "phase": phase, "step": current, "migrationId": row.id,
        "conditions": conditions(row.steps),
        "report": report_summary(row.steps, (row.context or {}).get("data") or {}),
        "startTime": rfc3339(row.created),
        "undone": list(dict.fromkeys(undone)),
    }
    if phase in FINISHED:
        status["completionTime"] = rfc3339(now if now is not None else row.updated)
        status["step"] = ""
    message = error or row.error
    status["error"] = cut_text(message) if message and phase != SUCCEEDED else None
    return status

"""The rule state machine: Prometheus alerting semantics (``for:``) plus ``keepFiringFor``.

Each (rule, subject) pair has a :class:`RuleState` the caller persists between cycles, so a
controller restart does not reset a rule that was pending for most of its ``for:`` (Prometheus
loses that state on restart, prometheus#15175). :func:`evaluate` is pure: the time comes in.

States: ``inactive`` (does not hold), ``pending`` (holds, not yet for ``for:``), ``firing``
(held for ``for:``; stays firing while it holds and for ``keepFiringFor`` after the last
evaluation at which it held), ``missing`` (no fresh value).

Missing data never fires a rule and never clears one: the timing (``active_since``,
``last_true``, ``fired_at``) is kept as it was, and when data returns the machine continues
from it (a rule pending for 8 s of ``for: 10s`` that loses its data and gets it back holding
fires at once; a firing rule whose data returns not holding clears only once
``keepFiringFor`` after its last true evaluation has passed). While missing, a rule that was
firing is reported as ``missing``, not ``firing``: it excludes nothing, and the subject it
watches is reported as having no data, so the controller makes no decision on it (it neither
moves services off that cluster nor onto it) until the data returns.

A ``NaN`` value (Prometheus returns one for 0/0) counts as missing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kubehop.domain.policy import Rule, format_duration, format_value, human_duration

STATES: tuple[str, ...] = ("inactive", "pending", "firing", "missing")


@dataclass(frozen=True)
class RuleState:
    """What the machine remembers about one rule on one subject between evaluations."""

    state: str = "inactive"
    active_since: float | None = None
    """When the condition started holding (the start of this pending/firing episode)."""
    last_true: float | None = None
    """The last evaluation at which the condition held; keepFiringFor counts from here."""
    fired_at: float | None = None
    """When the rule went firing; None while inactive or pending."""

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, "activeSince": self.active_since,
                "lastTrue": self.last_true, "firedAt": self.fired_at}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RuleState:
        """The state :meth:`to_dict` stored (an empty mapping: never evaluated, inactive);
        ValueError if it was not (a corrupt store)."""
        if isinstance(data, Mapping) and not data:
            return INACTIVE
        if not isinstance(data, Mapping) or set(data) != {"state", "activeSince", "lastTrue",
                                                           "firedAt"}:
            raise ValueError(f"not a stored rule state: {data!r}")
        state = data["state"]
        if state not in STATES:
            raise ValueError(f"unknown rule state {state!r}; states are {', '.join(STATES)}")
        times: list[float | None] = []
        for key in ("activeSince", "lastTrue", "firedAt"):
            value = data[key]
            if value is not None and (isinstance(value, bool)
                                      or not isinstance(value, int | float)
                                      or not math.isfinite(value)):
                raise ValueError(f"rule state {key} must be a time in seconds, not {value!r}")
            times.append(None if value is None else float(value))
        result = cls(state, *times)
        if state != "missing" and result != _settled(result):
            raise ValueError(f"inconsistent stored rule state: {data!r}")
        return result


INACTIVE = RuleState()


def _settled(state: RuleState) -> RuleState:
    """The state its timing implies (a stored non-missing state must agree with it)."""
    if state.fired_at is not None and state.active_since is not None \
            and state.last_true is not None:
        return RuleState("firing", state.active_since, state.last_true, state.fired_at)
    if state.active_since is not None and state.last_true is not None \
            and state.fired_at is None:
        return RuleState("pending", state.active_since, state.last_true, None)
    return INACTIVE


@dataclass(frozen=True)
class Evaluation:
    """One rule on one subject at one instant, explained."""

    rule: str
    scope: str
    subject: str
    value: float | None
    holds: bool | None
    state: str
    condition: str
    """The short form: ``cpu_headroom=0.05 below 0.2`` (or ``cpu_headroom: no data``)."""
    detail: str
    """The whole story: ``cpu_headroom=0.12 below 0.2 for 14s (for: 10s) -> firing``."""

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "scope": self.scope, "subject": self.subject,
                "value": self.value, "holds": self.holds, "state": self.state,
                "condition": self.condition, "detail": self.detail}


def label(rule: Rule) -> str:
    """What the rule measures, short enough for a one-line explanation."""
    expr = " ".join(rule.expr.split())
    return expr if len(expr) <= 40 else expr[:39] + "…"


def evaluate(rule: Rule, state: RuleState, value: float | None, now: float,
             subject: str) -> tuple[RuleState, Evaluation]:
    """The rule's next state given this cycle's ``value`` (None: missing or stale) at ``now``.

    ``subject`` is the cluster name (scope cluster) or ``namespace/name`` (scope service).
    """
    what = label(rule)

    def result(new: RuleState, holds: bool | None, condition: str,
               detail: str) -> tuple[RuleState, Evaluation]:
        return new, Evaluation(rule.name, rule.scope, subject, value, holds, new.state,
                               condition, detail)

    if value is None or math.isnan(value):
        value = None
        kept = RuleState("missing", state.active_since, state.last_true, state.fired_at)
        before = _settled(state)
        if before.state == "firing":
            was = (f"was firing for {human_duration(now - (before.fired_at or now))}; "
                   f"no decision on it until data returns")
        elif before.state == "pending":
            was = (f"was pending for {human_duration(now - (before.active_since or now))}; "
                   f"its timing is kept")
        else:
            was = "was inactive"
        return result(kept, None, f"{what}: no data",
                      f"{what}: no data (missing or stale) -> missing ({was})")

    holds = rule.holds(value)
    shown = f"{what}={format_value(value)}"
    if holds:
        since = state.active_since if state.active_since is not None else now
        held = max(now - since, 0.0)
        condition = f"{shown} {rule.comparison}"
        timing = f"for {human_duration(held)} (for: {format_duration(rule.for_seconds)})"
        if state.fired_at is not None or held >= rule.for_seconds:
            fired = state.fired_at if state.fired_at is not None else now
            return result(RuleState("firing", since, now, fired), True, condition,
                          f"{condition} {timing} -> firing")
        return result(RuleState("pending", since, now, None), True, condition,
                      f"{condition} {timing} -> pending")

    condition = f"{shown} not {rule.comparison}"
    if state.fired_at is not None and state.last_true is not None:
        quiet = max(now - state.last_true, 0.0)
        if quiet < rule.keep_firing_for:
            left = rule.keep_firing_for - quiet
            return result(
                RuleState("firing", state.active_since, state.last_true, state.fired_at),
                False, f"{condition} (held until {human_duration(quiet)} ago; keepFiringFor: "
                       f"{format_duration(rule.keep_firing_for)})",
                f"{condition} for {human_duration(quiet)}; keeps firing {human_duration(left)} "
                f"more (keepFiringFor: {format_duration(rule.keep_firing_for)}) -> firing")
        return result(INACTIVE, False, condition, f"{condition} -> inactive (was firing)")
    return result(INACTIVE, False, condition, f"{condition} -> inactive")


def exclusions(evaluations: Iterable[Evaluation], *, service: str,
               cluster: str) -> dict[str, str]:
    """Clusters placement of ``service`` (``namespace/name``, running on ``cluster``) must
    avoid, with the reason: each cluster a firing cluster-scope rule watches, and the
    service's own cluster while one of its service-scope rules fires (it misbehaves there).
    Missing rules exclude nothing: see :func:`missing_data`."""
    return _by_cluster(evaluations, "firing", service, cluster,
                       lambda e: f"{e.rule} firing: {e.condition}")


def missing_data(evaluations: Iterable[Evaluation], *, service: str,
                 cluster: str) -> dict[str, str]:
    """Clusters with a rule in ``missing`` state (for ``service`` on ``cluster``), with the
    reason: placement makes no decision on them (``decide``'s ``stale``)."""
    return _by_cluster(evaluations, "missing", service, cluster,
                       lambda e: f"rule {e.rule} has no data ({e.condition})")


def _by_cluster(evaluations: Iterable[Evaluation], state: str, service: str, cluster: str,
                reason: Callable[[Evaluation], str]) -> dict[str, str]:
    found: dict[str, list[str]] = {}
    for e in sorted(evaluations, key=lambda e: (e.rule, e.subject)):
        if e.state != state:
            continue
        if e.scope == "cluster":
            found.setdefault(e.subject, []).append(reason(e))
        elif e.subject == service:
            found.setdefault(cluster, []).append(reason(e))
    return {name: "; ".join(reasons) for name, reasons in sorted(found.items())}

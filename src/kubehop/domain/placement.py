"""Where a service should run, and whether to move it now: pure and deterministic.

:func:`place` scores every cluster for one service: hard filters first (tier not allowed, would
not fit, latency bound broken, excluded by a firing rule, no fresh data, no RTT), then
``score = w_headroom * headroom_after + w_latency * latency_score`` for what is left. The
headroom term is the smaller of the cpu and memory fractions left free after the move (on the
current cluster the service is already counted), so the whole score table does not change when
the service moves: a move never makes the way back look better, which is what keeps a
voluntary move (one that needs ``minGain``) from ping-ponging. Ties go to the closer tier
(edge < fog < cloud, iFogSim's edge-ward placement), then to the name.

:func:`gate` adds the time damping (cooldown after any move; minDwell before a voluntary one)
and :func:`decide` joins the two into a :class:`Decision` with a JSON-able table of every
candidate, every term and every reason, so a user can see why the controller did what it did.
:func:`limit_concurrency` keeps at most ``maxConcurrent`` migrations going, forced ones first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from kubehop.domain.policy import (
    TIERS,
    PlacementConfig,
    ServicePolicy,
    format_duration,
    human_duration,
)

EPS = 1e-9
"""Scores this close are a tie; a voluntary move must gain more than this even at minGain 0."""
DEFAULT_LATENCY_SCALE_MS = 200.0
"""Latency at which the latency score reaches 0 when the service sets no maxLatencyMs."""
ACTIONS: tuple[str, ...] = ("move", "stay", "hold", "no-data")


@dataclass(frozen=True)
class ClusterView:
    """One cluster as measured now; ``*_used`` includes the service if it runs here."""

    name: str
    tier: str
    cpu_allocatable: float
    mem_allocatable: float
    cpu_used: float
    mem_used: float


@dataclass(frozen=True)
class ServiceView:
    """One service: where it runs, what it needs, where its clients are."""

    namespace: str
    name: str
    cluster: str
    cpu: float
    mem: float
    clients: tuple[tuple[str, float], ...] = ()
    service_time_ms: float = 0.0
    allowed_tiers: tuple[str, ...] = TIERS
    max_latency_ms: float | None = None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @classmethod
    def from_policy(cls, policy: ServicePolicy, *, cluster: str, cpu: float,
                    mem: float) -> ServiceView:
        """The policy's view of the service; its ``cpu``/``memory``, when set, win over the
        measured (or requested) ``cpu`` and ``mem`` the caller passes."""
        return cls(
            namespace=policy.namespace, name=policy.name, cluster=cluster,
            cpu=policy.cpu if policy.cpu is not None else cpu,
            mem=float(policy.memory) if policy.memory is not None else mem,
            clients=tuple((c.cluster, c.weight) for c in policy.clients),
            service_time_ms=policy.service_time_ms, allowed_tiers=policy.allowed_tiers,
            max_latency_ms=policy.max_latency_ms,
        )


@dataclass(frozen=True)
class PlacementSettings:
    weight_headroom: float = 1.0
    weight_latency: float = 1.0
    min_gain: float = 0.05

    @classmethod
    def from_policy(cls, config: PlacementConfig) -> PlacementSettings:
        return cls(config.weights.headroom, config.weights.latency, config.min_gain)


@dataclass(frozen=True)
class Candidate:
    """One cluster for one service. ``score`` and ``terms`` are computed even for a filtered
    cluster when its latency is known (for the table); only unfiltered ones compete."""

    cluster: str
    tier: str
    filtered: str | None
    headroom_after: float
    latency_ms: float | None
    terms: Mapping[str, float]
    score: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"cluster": self.cluster, "tier": self.tier, "filtered": self.filtered,
                "headroomAfter": self.headroom_after, "latencyMs": self.latency_ms,
                "terms": dict(self.terms), "score": self.score}


@dataclass(frozen=True)
class Placement:
    service: str
    current: str
    candidates: tuple[Candidate, ...]
    best: str | None
    gain: float | None
    """Best score minus current score; None when the current cluster is filtered."""
    forced: bool
    """The current cluster is filtered: the service must leave whatever it gains."""
    move: bool
    reason: str
    settings: PlacementSettings = field(default_factory=PlacementSettings)
    latency_scale_ms: float = DEFAULT_LATENCY_SCALE_MS
    """The latency at which the latency score reaches 0 (the service's bound, or the default):
    with the latency weight, what one millisecond is worth in score."""

    def candidate(self, cluster: str) -> Candidate:
        return next(c for c in self.candidates if c.cluster == cluster)

    def to_dict(self) -> dict[str, Any]:
        """The candidate table: every term of every score, every filter and the winner."""
        return {
            "service": self.service, "current": self.current, "best": self.best,
            "gain": self.gain, "forced": self.forced, "move": self.move,
            "reason": self.reason, "minGain": self.settings.min_gain,
            "weights": {"headroom": self.settings.weight_headroom,
                        "latency": self.settings.weight_latency},
            "latencyScaleMs": self.latency_scale_ms,
            "candidates": [dict(c.to_dict(), winner=c.cluster == self.best)
                           for c in self.candidates],
        }


@dataclass
class Decision:
    """What the controller does about one service this cycle, and why. Not frozen: the loop
    turns a move it cannot start into a hold and records the migration it started."""

    action: str
    """``move`` (now), ``stay`` (nothing to gain, or nowhere to go), ``hold`` (a move is due
    but cooldown, minDwell or maxConcurrent hold it back), ``no-data`` (no decision)."""
    service: str
    source: str
    target: str | None
    forced: bool
    gain: float | None
    explanation: str
    table: dict[str, Any]
    migration_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action, "service": self.service, "source": self.source,
                "target": self.target, "forced": self.forced, "gain": self.gain,
                "explanation": self.explanation, "table": dict(self.table),
                "migrationId": self.migration_id}


def hold(service: str, where: str | Sequence[str], why: str) -> Decision:
    """A decision not to judge a move now, for a reason outside placement (a migration of
    the service is running; it runs in no cluster or in several)."""
    source = where if isinstance(where, str) else ", ".join(where)
    return Decision("hold", service, source, None, False, None,
                    f"hold {service}: {why}", {"service": service, "action": "hold",
                                               "why": why})


def no_data(service: str, cluster: str, missing: Sequence[str]) -> Decision:
    """No decision: some data it would rest on is missing or stale (named in ``missing``)."""
    listed = "; ".join(missing)
    return Decision("no-data", service, cluster, None, False, None,
                    f"no data: {service} stays on {cluster}: {listed}; no decision until data "
                    f"returns", {"service": service, "current": cluster, "action": "no-data",
                                 "missing": list(missing)})


def tier_rank(tier: str) -> int:
    """Closer tiers first; an unknown tier after cloud."""
    return TIERS.index(tier) if tier in TIERS else len(TIERS)


def rtt_between(rtt_ms: Mapping[tuple[str, str], float], a: str, b: str) -> float | None:
    """Measured RTT, looked up both ways; 0 within a cluster; None when never measured."""
    if a == b:
        return 0.0
    found = rtt_ms.get((a, b))
    return found if found is not None else rtt_ms.get((b, a))


def _mib(value: float) -> str:
    return f"{value / 2**20:.0f}Mi"


def _fit(kind: str, alloc: float, used: float, need: float, here: bool) -> tuple[float, str | None]:
    """Free fraction after the move, and why it does not fit (None if it does)."""
    if alloc <= 0:
        return 0.0, f"reports no allocatable {kind}"
    free_after = alloc - used - (0.0 if here else need)
    if free_after / alloc >= -EPS:  # relative: bytes are big numbers with big rounding
        return free_after / alloc, None
    if kind == "cpu":
        amounts = (f"{need:.2f} cores", f"{max(alloc - used, 0.0):.2f}", f"{alloc:.2f}",
                   f"{used:.2f}")
    else:
        amounts = (_mib(need), _mib(max(alloc - used, 0.0)), _mib(alloc), _mib(used))
    if here:
        return free_after / alloc, (f"{kind} overcommitted ({amounts[3]} of {amounts[2]} "
                                    f"in use)")
    return free_after / alloc, (f"{kind} would not fit (needs {amounts[0]}, {amounts[1]} of "
                                f"{amounts[2]} free)")


def _latency(service: ServiceView, cluster: str,
             rtt_ms: Mapping[tuple[str, str], float]) -> tuple[float | None, str | None]:
    """Client-weighted RTT to ``cluster`` plus the service's own time."""
    total_weight = sum(weight for _, weight in service.clients)
    if not service.clients or total_weight <= 0:
        return service.service_time_ms, None
    weighted = 0.0
    for client, weight in service.clients:
        rtt = rtt_between(rtt_ms, client, cluster)
        if rtt is None:
            return None, f"no RTT measured between {client} and {cluster}"
        weighted += weight * rtt
    return weighted / total_weight + service.service_time_ms, None


def _candidate(service: ServiceView, cluster: ClusterView,
               rtt_ms: Mapping[tuple[str, str], float], excluded: Mapping[str, str],
               stale: Mapping[str, str], settings: PlacementSettings) -> Candidate:
    here = cluster.name == service.cluster
    reasons: list[str] = []
    if cluster.name in excluded:
        reasons.append(f"excluded by {excluded[cluster.name]}")
    if cluster.name in stale:
        reasons.append(f"no fresh data ({stale[cluster.name]})")
    if cluster.tier not in service.allowed_tiers:
        reasons.append(f"tier {cluster.tier} not allowed (allowedTiers: "
                       f"{', '.join(service.allowed_tiers)})")
    latency, no_rtt = _latency(service, cluster.name, rtt_ms)
    if no_rtt:
        reasons.append(no_rtt)
    scale = service.max_latency_ms or DEFAULT_LATENCY_SCALE_MS
    if latency is not None and service.max_latency_ms is not None \
            and latency > service.max_latency_ms + EPS:
        reasons.append(f"latency {latency:.1f} ms above maxLatencyMs "
                       f"{service.max_latency_ms:g}")
    cpu_frac, cpu_bad = _fit("cpu", cluster.cpu_allocatable, cluster.cpu_used, service.cpu, here)
    mem_frac, mem_bad = _fit("memory", cluster.mem_allocatable, cluster.mem_used, service.mem,
                             here)
    reasons += [r for r in (cpu_bad, mem_bad) if r]
    headroom = min(cpu_frac, mem_frac)
    terms: dict[str, float] = {}
    score = None
    if latency is not None:
        latency_score = max(0.0, 1.0 - latency / scale)
        terms = {"headroom": settings.weight_headroom * headroom,
                 "latency": settings.weight_latency * latency_score}
        score = terms["headroom"] + terms["latency"]
    return Candidate(cluster.name, cluster.tier, "; ".join(reasons) or None, headroom, latency,
                     terms, score)


def _ranked(candidates: Iterable[Candidate]) -> list[Candidate]:
    """Unfiltered candidates, best first: score, then (within EPS) closer tier, then name."""
    pool = sorted((c for c in candidates if c.filtered is None and c.score is not None),
                  key=lambda c: (tier_rank(c.tier), c.cluster))
    ranked: list[Candidate] = []
    while pool:
        top = max(c.score for c in pool if c.score is not None)
        pick = next(c for c in pool if c.score is not None and c.score >= top - EPS)
        ranked.append(pick)
        pool.remove(pick)
    return ranked


def _versus(win: Candidate, other: Candidate) -> str:
    """Why ``win`` beats ``other``, term by term, biggest difference first."""
    diffs = sorted(((term, win.terms[term] - other.terms[term]) for term in win.terms),
                   key=lambda item: (-abs(item[1]), item[0]))
    ahead: list[str] = []
    behind: list[str] = []
    for term, diff in diffs:
        if abs(diff) <= EPS:
            continue
        if term == "latency":
            values = f"{win.latency_ms:.1f} ms vs {other.latency_ms:.1f} ms, {diff:+.2f}"
            (ahead if diff > 0 else behind).append(
                f"latency ({values})" if diff > 0 else f"higher latency ({values})")
        else:
            values = f"{win.headroom_after:.2f} vs {other.headroom_after:.2f}, {diff:+.2f}"
            (ahead if diff > 0 else behind).append(
                f"{term} ({values})" if diff > 0 else f"less {term} ({values})")
    if not ahead:
        return (f"{win.cluster} ties with {other.cluster} (score {win.score:.2f}) and wins the "
                f"tie (closer tier, then name)")
    text = f"{win.cluster} wins on {' and '.join(ahead)} over {other.cluster}"
    return text + (f" despite {' and '.join(behind)}" if behind else "")


def place(service: ServiceView, clusters: Sequence[ClusterView],
          rtt_ms: Mapping[tuple[str, str], float], excluded: Mapping[str, str],
          settings: PlacementSettings, *, stale: Mapping[str, str] | None = None) -> Placement:
    """Score every cluster for ``service`` and say whether it should move (ignoring time).

    ``excluded`` and ``stale`` map cluster names to why (a firing rule; missing data). The
    result does not depend on the order of ``clusters``. ValueError if the service's cluster
    is not among ``clusters`` or a name repeats (the caller's bug, not the user's).
    """
    names = [c.name for c in clusters]
    if len(set(names)) != len(names):
        raise ValueError(f"cluster names repeat: {sorted(names)}")
    if service.cluster not in names:
        raise ValueError(f"{service.key} runs on {service.cluster}, which is not among "
                         f"{sorted(names)}")
    candidates = tuple(sorted(
        (_candidate(service, c, rtt_ms, excluded, stale or {}, settings) for c in clusters),
        key=lambda c: (tier_rank(c.tier), c.cluster)))
    current = next(c for c in candidates if c.cluster == service.cluster)
    ranked = _ranked(candidates)
    best = ranked[0] if ranked else None
    svc, here = service.key, service.cluster

    def done(move: bool, reason: str, gain: float | None = None) -> Placement:
        return Placement(svc, here, candidates, best.cluster if best else None, gain,
                         current.filtered is not None, move, reason, settings,
                         service.max_latency_ms or DEFAULT_LATENCY_SCALE_MS)

    if current.filtered is not None:
        leave = f"must leave {here} ({current.filtered})"
        if best is None:
            others = [f"{c.cluster}: {c.filtered}" for c in candidates if c is not current]
            return done(False, f"nowhere to go: {svc} {leave} but "
                               f"{'; '.join(others) if others else 'there is no other cluster'}")
        runner = ranked[1] if len(ranked) > 1 else None
        others = [f"{c.cluster}: {c.filtered}" for c in candidates
                  if c.filtered is not None and c is not current]
        why = (_versus(best, runner) if runner is not None else
               f"{best.cluster} is the only cluster left (score {best.score:.2f})"
               + (f", as {'; '.join(others)}" if others else ""))
        return done(True, f"move {svc} {here} -> {best.cluster}: {leave}; {why}")
    assert best is not None and best.score is not None and current.score is not None  # noqa: S101
    gain = best.score - current.score
    if best is current:
        runner = ranked[1] if len(ranked) > 1 else None
        tail = f"; {_versus(current, runner)}" if runner is not None else \
            " (no other cluster qualifies)"
        return done(False, f"stay {svc} on {here}: it scores best "
                           f"({current.score:.2f}){tail}", gain)
    if gain >= settings.min_gain and gain > EPS:
        return done(True, f"move {svc} {here} -> {best.cluster}: gain {gain:+.3f} >= minGain "
                          f"{settings.min_gain:g}; {_versus(best, current)}", gain)
    return done(False, f"stay {svc} on {here}: {best.cluster} would gain only {gain:+.3f} "
                       f"< minGain {settings.min_gain:g}; {_versus(best, current)}", gain)


def gate(placement: Placement, *, forced: bool | None = None, now: float,
         last_move: float | None, cooldown: float, min_dwell: float,
         since: float | None = None) -> tuple[bool, str]:
    """Whether a move ``place`` wants may start now, and why (not).

    ``last_move``: when a migration of this service last started or ended (None: never);
    cooldown counts from it and holds every move. ``since``: when the service arrived where
    it is (default ``last_move``); minDwell counts from it and holds only voluntary moves
    (``forced`` defaults to ``placement.forced``): a forced move out of an excluded cluster
    waits only for cooldown.
    """
    forced = placement.forced if forced is None else forced
    arrived = since if since is not None else last_move
    if last_move is not None and now - last_move < cooldown:
        ago = max(now - last_move, 0.0)
        return False, (f"moved {human_duration(ago)} ago, cooldown "
                       f"{format_duration(cooldown)} ({human_duration(cooldown - ago)} left)")
    if not forced and arrived is not None and now - arrived < min_dwell:
        dwelt = max(now - arrived, 0.0)
        return False, (f"on {placement.current} for {human_duration(dwelt)}, a voluntary move "
                       f"needs minDwell {format_duration(min_dwell)} "
                       f"({human_duration(min_dwell - dwelt)} left)")
    if last_move is None and arrived is None:
        return True, "never moved before"
    if last_move is None:
        return True, "past minDwell" if not forced else "never moved before"
    return True, f"moved {human_duration(now - last_move)} ago, past cooldown" + (
        "" if forced else " and minDwell")


def decide(service: ServiceView, clusters: Sequence[ClusterView],
           rtt_ms: Mapping[tuple[str, str], float], excluded: Mapping[str, str],
           settings: PlacementSettings, *, now: float, last_move: float | None,
           cooldown: float, min_dwell: float, since: float | None = None,
           stale: Mapping[str, str] | None = None) -> Decision:
    """:func:`place` then :func:`gate`: the action for ``service`` this cycle, explained.
    ``last_move``/``since``: see :func:`gate`.

    ``no-data`` when the service's own cluster is missing from ``clusters`` or is ``stale``
    (its rules have no data): without knowing how it fares where it is, no move is judged.
    """
    svc, here = service.key, service.cluster
    stale = stale or {}
    if here not in {c.name for c in clusters}:
        return Decision("no-data", svc, here, None, False, None,
                        f"no data: {svc} runs on {here}, which has no fresh metrics; no "
                        f"decision until it does", {"service": svc, "current": here,
                                                    "action": "no-data"})
    p = place(service, clusters, rtt_ms, excluded, settings, stale=stale)
    table = p.to_dict()
    if here in stale:
        table["action"] = "no-data"
        return Decision("no-data", svc, here, None, False, None,
                        f"no data: {svc} stays on {here}: {stale[here]}; no decision until "
                        f"data returns", table)
    if not p.move:
        table["action"] = "stay"
        return Decision("stay", svc, here, None, p.forced, p.gain, p.reason, table)
    open_, why = gate(p, now=now, last_move=last_move, cooldown=cooldown, min_dwell=min_dwell,
                      since=since)
    table["gate"] = {"open": open_, "why": why, "lastMove": last_move, "since": since,
                     "now": now, "cooldown": cooldown, "minDwell": min_dwell}
    if open_:
        table["action"] = "move"
        return Decision("move", svc, here, p.best, p.forced, p.gain, p.reason, table)
    table["action"] = "hold"
    return Decision("hold", svc, here, p.best, p.forced, p.gain,
                    f"hold {svc} on {here}: {why}; wants to {p.reason}", table)


def limit_concurrency(decisions: Sequence[Decision], *, running: int,
                      max_concurrent: int) -> tuple[Decision, ...]:
    """The same decisions with moves beyond ``max_concurrent - running`` turned into holds.

    Forced moves go first, then the biggest gain, then the service name; order is kept.
    Each move is judged alone, so moves into one cluster in one cycle are not checked against
    each other's needs: keep ``maxConcurrent`` at 1, or re-decide after each move, to avoid it.
    """
    slots = max(max_concurrent - running, 0)
    moves = sorted((d for d in decisions if d.action == "move"),
                   key=lambda d: (not d.forced, -(d.gain or 0.0), d.service))
    admitted = {id(d) for d in moves[:slots]}
    out = []
    for d in decisions:
        if d.action == "move" and id(d) not in admitted:
            why = (f"waiting for a migration slot ({running} running, {len(moves)} due, "
                   f"maxConcurrent {max_concurrent})")
            table = dict(d.table, action="hold", concurrency=why)
            d = replace(d, action="hold", explanation=f"hold {d.service} on {d.source}: {why}; "
                                                      f"wants to {d.explanation}", table=table)
        out.append(d)
    return tuple(out)

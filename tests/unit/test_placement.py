"""Placement: filters, scores, ties, the move rule, the time gate and the decision table; and
the controller loop over time (rules -> exclusions -> decide) never flaps."""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Sequence
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubehop.domain.placement import (
    ClusterView,
    Decision,
    Placement,
    PlacementSettings,
    ServiceView,
    decide,
    gate,
    hold,
    limit_concurrency,
    no_data,
    place,
    rtt_between,
)
from kubehop.domain.policy import (
    TIERS,
    ClientSite,
    PlacementConfig,
    Rule,
    ServicePolicy,
    Weights,
)
from kubehop.domain.rules import INACTIVE, RuleState, evaluate, exclusions, missing_data

GI, MI = 2**30, 2**20
RTT = {("edge", "fog"): 10.0, ("fog", "cloud"): 30.0, ("edge", "cloud"): 40.0}
SETTINGS = PlacementSettings(weight_headroom=1.0, weight_latency=2.0, min_gain=0.05)
CPU, MEM = 0.1, 128 * MI
EDGE_EXCLUDED = {"edge": "edge-cpu-exhausted firing: cpu_headroom=0.05 below 0.2"}


def orc8r(on: str, **changes: object) -> ServiceView:
    fields: dict[str, object] = {"namespace": "orc8r-ns", "name": "orc8r", "cluster": on,
                                 "cpu": CPU, "mem": MEM, "clients": (("edge", 1.0),),
                                 "service_time_ms": 2.0}
    fields.update(changes)
    return ServiceView(**fields)  # type: ignore[arg-type]


def topology(*, on: str, edge: float = 0.3, fog: float = 0.6, cloud: float = 0.5,
             mem: tuple[float, float, float] = (1 * GI, 2 * GI, 4 * GI)) -> list[ClusterView]:
    """The paper's three tiers; loads are without orc8r, which is added where it runs."""
    out = []
    for (name, alloc_cpu, alloc_mem), load, mem_used in zip(
            [("edge", 1.0, 4 * GI), ("fog", 1.5, 8 * GI), ("cloud", 2.0, 16 * GI)],
            (edge, fog, cloud), mem, strict=True):
        here = name == on
        out.append(ClusterView(name, name, alloc_cpu, alloc_mem, load + (CPU if here else 0),
                               mem_used + (MEM if here else 0)))
    return out


SCENARIOS = [
    # id, service on, loads (edge, fog, cloud), excluded, best, move, forced
    ("edge overloaded and excluded: fog, not cloud (latency beats headroom)",
     "edge", (0.85, 0.6, 0.5), EDGE_EXCLUDED, "fog", True, True),
    ("edge unloaded again: back to the edge, the latency gain beats the margin",
     "fog", (0.3, 0.6, 0.5), {}, "edge", True, False),
    ("fog nearly full: cloud", "edge", (0.85, 1.45, 0.5), EDGE_EXCLUDED, "cloud", True, True),
    ("gain below the margin: stay", "fog", (0.42, 0.6, 0.5), {}, "edge", False, False),
    ("already best: stay", "edge", (0.3, 0.6, 0.5), {}, "edge", False, False),
    ("everything full: nowhere to go", "edge", (0.85, 1.45, 1.95), EDGE_EXCLUDED, None, False,
     True),
    ("edge overcommitted without any rule: forced out", "edge", (0.95, 0.6, 0.5), {}, "fog",
     True, True),
    ("cloud loaded, fog excluded: edge stays", "edge", (0.3, 0.6, 1.8),
     {"fog": "fog-down firing"}, "edge", False, False),
]


@pytest.mark.parametrize(("on", "loads", "excluded", "best", "move", "forced"),
                         [s[1:] for s in SCENARIOS], ids=[s[0] for s in SCENARIOS])
def test_scenarios(on: str, loads: tuple[float, float, float], excluded: dict[str, str],
                   best: str | None, move: bool, forced: bool) -> None:
    edge, fog, cloud = loads
    p = place(orc8r(on), topology(on=on, edge=edge, fog=fog, cloud=cloud), RTT, excluded,
              SETTINGS)
    assert (p.best, p.move, p.forced) == (best, move, forced), p.reason
    assert [c.cluster for c in p.candidates] == ["edge", "fog", "cloud"]
    assert (p.gain is None) == forced


def test_the_forced_move_explains_itself_term_by_term() -> None:
    p = place(orc8r("edge"), topology(on="edge", edge=0.85), RTT, EDGE_EXCLUDED, SETTINGS)
    assert p.reason == (
        "move orc8r-ns/orc8r edge -> fog: must leave edge (excluded by edge-cpu-exhausted "
        "firing: cpu_headroom=0.05 below 0.2); fog wins on latency (12.0 ms vs 42.0 ms, +0.30) "
        "over cloud despite less headroom (0.53 vs 0.70, -0.17)")
    fog = p.candidate("fog")
    assert fog.latency_ms == 12.0
    assert fog.headroom_after == pytest.approx((1.5 - 0.6 - 0.1) / 1.5)
    assert fog.terms == pytest.approx({"headroom": 0.8 / 1.5, "latency": 2 * (1 - 12 / 200)})
    assert fog.score == pytest.approx(sum(fog.terms.values()))


def test_voluntary_moves_and_stays_name_the_gain_and_the_margin() -> None:
    back = place(orc8r("fog"), topology(on="fog"), RTT, {}, SETTINGS)
    assert back.gain == pytest.approx((0.6 + 2 * 0.99) - (0.8 / 1.5 + 2 * 0.94))
    assert back.reason.startswith("move orc8r-ns/orc8r fog -> edge: gain +0.167 >= minGain "
                                  "0.05; edge wins on latency (2.0 ms vs 12.0 ms, +0.10) and "
                                  "headroom (0.60 vs 0.53, +0.07) over fog")
    small = place(orc8r("fog"), topology(on="fog", edge=0.42), RTT, {}, SETTINGS)
    assert small.reason.startswith("stay orc8r-ns/orc8r on fog: edge would gain only +0.047 < "
                                   "minGain 0.05")
    nowhere = place(orc8r("edge"), topology(on="edge", edge=0.85, fog=1.45, cloud=1.95), RTT,
                    EDGE_EXCLUDED, SETTINGS)
    assert nowhere.reason == (
        "nowhere to go: orc8r-ns/orc8r must leave edge (excluded by edge-cpu-exhausted firing: "
        "cpu_headroom=0.05 below 0.2) but fog: cpu would not fit (needs 0.10 cores, 0.05 of "
        "1.50 free); cloud: cpu would not fit (needs 0.10 cores, 0.05 of 2.00 free)")


@pytest.mark.parametrize(
    ("service", "clusters", "rtt", "stale", "cluster", "why"),
    [
        (orc8r("edge", allowed_tiers=("edge", "fog")), topology(on="edge"), RTT, {}, "cloud",
         "tier cloud not allowed (allowedTiers: edge, fog)"),
        (orc8r("cloud", mem=5 * GI), topology(on="cloud", mem=(1 * GI, 2 * GI, 0)), RTT, {},
         "edge", "memory would not fit (needs 5120Mi, 3072Mi of 4096Mi free)"),
        (orc8r("edge", max_latency_ms=20.0), topology(on="edge"), RTT, {}, "cloud",
         "latency 42.0 ms above maxLatencyMs 20"),
        (orc8r("edge"), topology(on="edge"), {("edge", "fog"): 10.0}, {}, "cloud",
         "no RTT measured between edge and cloud"),
        (orc8r("edge"), topology(on="edge"), RTT, {"fog": "metrics 45s old"}, "fog",
         "no fresh data (metrics 45s old)"),
        (orc8r("edge"), [*topology(on="edge")[:2], ClusterView("cloud", "cloud", 0, GI, 0, 0)],
         RTT, {}, "cloud", "reports no allocatable cpu"),
        (orc8r("edge"), topology(on="edge", edge=0.95), RTT, {}, "edge",
         "cpu overcommitted (1.05 of 1.00 in use)"),
        (orc8r("edge", allowed_tiers=("edge",)), topology(on="edge", fog=1.45), RTT,
         {"fog": "stale"}, "fog", "no fresh data (stale); tier fog not allowed (allowedTiers: "
                                  "edge); cpu would not fit (needs 0.10 cores, 0.05 of 1.50 "
                                  "free)"),
    ],
)
def test_hard_filters_say_why(service: ServiceView, clusters: list[ClusterView],
                              rtt: dict[tuple[str, str], float], stale: dict[str, str],
                              cluster: str, why: str) -> None:
    p = place(service, clusters, rtt, {}, SETTINGS, stale=stale)
    assert p.candidate(cluster).filtered == why
    assert p.best != cluster


@pytest.mark.parametrize(("fog_load", "fits"), [(1.4, True), (1.3, True), (1.41, False)])
def test_a_service_fits_exactly_into_what_is_free(fog_load: float, fits: bool) -> None:
    p = place(orc8r("edge"), topology(on="edge", fog=fog_load), RTT, EDGE_EXCLUDED, SETTINGS)
    assert (p.candidate("fog").filtered is None) == fits
    assert p.candidate("fog").headroom_after == pytest.approx((1.5 - fog_load - CPU) / 1.5)


def test_a_missing_rtt_leaves_latency_and_score_unknown() -> None:
    p = place(orc8r("edge"), topology(on="edge"), {("edge", "fog"): 10.0}, {}, SETTINGS)
    cloud = p.candidate("cloud")
    assert (cloud.latency_ms, cloud.score, dict(cloud.terms)) == (None, None, {})


def test_rtt_is_looked_up_both_ways_and_is_zero_within_a_cluster() -> None:
    assert rtt_between({("fog", "edge"): 7.0}, "edge", "fog") == 7.0
    assert rtt_between({}, "edge", "edge") == 0.0
    assert rtt_between({("a", "b"): 1.0}, "a", "c") is None
    reversed_rtt = {(b, a): v for (a, b), v in RTT.items()}
    assert place(orc8r("fog"), topology(on="fog"), reversed_rtt, {}, SETTINGS) == \
        place(orc8r("fog"), topology(on="fog"), RTT, {}, SETTINGS)


def test_latency_is_client_weighted_and_its_score_floors_at_zero() -> None:
    service = orc8r("edge", clients=(("edge", 3.0), ("cloud", 1.0)), service_time_ms=0.0)
    p = place(service, topology(on="edge"), {**RTT, ("edge", "cloud"): 800.0}, {}, SETTINGS)
    assert p.candidate("edge").latency_ms == pytest.approx(800 / 4)
    assert p.candidate("fog").latency_ms == pytest.approx((3 * 10 + 30) / 4)
    assert p.candidate("cloud").latency_ms == pytest.approx(3 * 800 / 4)
    assert p.candidate("cloud").terms["latency"] == 0.0


def test_max_latency_sets_the_latency_scale() -> None:
    p = place(orc8r("edge", max_latency_ms=50.0), topology(on="edge"), RTT, {}, SETTINGS)
    assert p.candidate("fog").terms["latency"] == pytest.approx(2 * (1 - 12 / 50))


def twins(*specs: tuple[str, str]) -> list[ClusterView]:
    return [ClusterView(name, tier, 2.0, 8 * GI, 0.5, GI) for name, tier in specs]


@pytest.mark.parametrize(
    ("clusters", "best"),
    [(twins(("x", "x-on"), ("c", "cloud"), ("f", "fog")), "f"),  # closer tier wins a tie
     (twins(("x", "x-on"), ("b", "fog"), ("a", "fog")), "a"),  # then the name
     (twins(("x", "x-on"), ("z", "edge"), ("a", "moon")), "z")],  # unknown tiers go last
)
def test_ties_break_toward_the_closer_tier_then_the_name(clusters: list[ClusterView],
                                                         best: str) -> None:
    service = ServiceView("ns", "svc", "x", 0.5, GI, (), 0.0, (*TIERS, "x-on", "moon"))
    p = place(service, clusters, {}, {"x": "gone"}, SETTINGS)
    assert p.best == best


def test_a_tie_with_the_current_cluster_is_no_reason_to_move_even_at_min_gain_zero() -> None:
    service = ServiceView("ns", "svc", "c", 0.5, GI)
    clusters = [ClusterView("c", "cloud", 2.0, 8 * GI, 1.0, 2 * GI),
                ClusterView("f", "fog", 2.0, 8 * GI, 0.5, GI)]
    p = place(service, clusters, {}, {}, PlacementSettings(1.0, 1.0, 0.0))
    assert (p.best, p.move) == ("f", False)
    assert p.gain == pytest.approx(0.0)


def test_weights_decide_between_headroom_and_latency() -> None:
    on_edge = topology(on="edge", edge=0.85)
    latency_only = place(orc8r("edge"), on_edge, RTT, EDGE_EXCLUDED,
                         PlacementSettings(0.0, 1.0, 0.05))
    headroom_only = place(orc8r("edge"), on_edge, RTT, EDGE_EXCLUDED,
                          PlacementSettings(1.0, 0.0, 0.05))
    assert (latency_only.best, headroom_only.best) == ("fog", "cloud")


def test_the_callers_mistakes_are_value_errors() -> None:
    with pytest.raises(ValueError, match="not among"):
        place(orc8r("mars"), topology(on="edge"), RTT, {}, SETTINGS)
    with pytest.raises(ValueError, match="repeat"):
        place(orc8r("edge"), topology(on="edge") * 2, RTT, {}, SETTINGS)


def test_views_from_the_policy() -> None:
    policy = ServicePolicy(name="orc8r", namespace="orc8r-ns",
                           clients=(ClientSite("edge", 2.0),), service_time_ms=2.0,
                           allowed_tiers=("edge", "fog"), max_latency_ms=100.0, cpu=0.1)
    view = ServiceView.from_policy(policy, cluster="edge", cpu=0.3, mem=64.0 * MI)
    assert view == ServiceView("orc8r-ns", "orc8r", "edge", 0.1, 64.0 * MI, (("edge", 2.0),),
                               2.0, ("edge", "fog"), 100.0)
    assert PlacementSettings.from_policy(
        PlacementConfig(weights=Weights(latency=3.0), min_gain=0.1)) == \
        PlacementSettings(1.0, 3.0, 0.1)


# ------------------------------------------------------------------ the time gate

@pytest.mark.parametrize(
    ("forced", "last_move", "now", "allowed", "why"),
    [(False, None, 0.0, True, "never moved before"),
     (True, 100.0, 130.0, False, "moved 30s ago, cooldown 1m (30s left)"),
     (True, 100.0, 170.0, True, "moved 1m10s ago, past cooldown"),
     (False, 100.0, 130.0, False, "moved 30s ago, cooldown 1m (30s left)"),
     (False, 100.0, 170.0, False, "on edge for 1m10s, a voluntary move needs minDwell 2m "
                                  "(50s left)"),
     (False, 100.0, 220.0, True, "moved 2m ago, past cooldown and minDwell")],
)
def test_gate(forced: bool, last_move: float | None, now: float, allowed: bool,
              why: str) -> None:
    p = place(orc8r("edge"), topology(on="edge"), RTT, {}, SETTINGS)
    assert gate(p, forced=forced, now=now, last_move=last_move, cooldown=60.0,
                min_dwell=120.0) == (allowed, why)


@pytest.mark.parametrize(
    ("forced", "last_move", "since", "allowed", "why"),
    [(False, 900.0, 950.0, False, "on edge for 50s, a voluntary move needs minDwell 2m (1m10s "
                                  "left)"),
     (True, 900.0, 950.0, True, "moved 1m40s ago, past cooldown"),
     (False, None, 950.0, False, "on edge for 50s, a voluntary move needs minDwell 2m (1m10s "
                                 "left)"),
     (False, None, 800.0, True, "past minDwell"),
     (False, 990.0, 800.0, False, "moved 10s ago, cooldown 1m (50s left)")],
)
def test_dwell_counts_from_arrival_and_cooldown_from_the_last_attempt(
        forced: bool, last_move: float | None, since: float, allowed: bool, why: str) -> None:
    p = place(orc8r("edge"), topology(on="edge"), RTT, {}, SETTINGS)
    assert gate(p, forced=forced, now=1000.0, last_move=last_move, cooldown=60.0,
                min_dwell=120.0, since=since) == (allowed, why)


def test_gate_takes_forced_from_the_placement_by_default() -> None:
    p = place(orc8r("edge"), topology(on="edge", edge=0.85), RTT, EDGE_EXCLUDED, SETTINGS)
    assert gate(p, now=170.0, last_move=100.0, cooldown=60.0, min_dwell=120.0)[0]


# ------------------------------------------------------------------ decide

def _decide(on: str, *, now: float = 1000.0, last_move: float | None = None,
            excluded: dict[str, str] | None = None, stale: dict[str, str] | None = None,
            clusters: list[ClusterView] | None = None, **loads: float) -> Decision:
    return decide(orc8r(on), clusters if clusters is not None else topology(on=on, **loads),
                  RTT, excluded or {}, SETTINGS, now=now, last_move=last_move, cooldown=60.0,
                  min_dwell=120.0, stale=stale)


def test_decide_moves_and_records_the_whole_table() -> None:
    d = _decide("edge", edge=0.85, excluded=EDGE_EXCLUDED)
    assert (d.action, d.source, d.target, d.forced, d.gain) == ("move", "edge", "fog", True,
                                                                None)
    assert d.explanation.startswith("move orc8r-ns/orc8r edge -> fog: must leave edge")
    table = json.loads(json.dumps(d.to_dict()))["table"]
    assert table["action"] == "move" and table["best"] == "fog" and table["gate"]["open"]
    rows = {row["cluster"]: row for row in table["candidates"]}
    assert set(rows) == {"edge", "fog", "cloud"}
    assert rows["edge"]["filtered"].startswith("excluded by edge-cpu-exhausted firing")
    assert [name for name, row in rows.items() if row["winner"]] == ["fog"]
    assert set(rows["cloud"]["terms"]) == {"headroom", "latency"}
    assert rows["cloud"]["score"] == pytest.approx(sum(rows["cloud"]["terms"].values()))


def test_decide_holds_a_due_move_during_cooldown_or_dwell() -> None:
    forced = _decide("edge", edge=0.85, excluded=EDGE_EXCLUDED, now=1000, last_move=980)
    assert (forced.action, forced.target) == ("hold", "fog")
    assert forced.explanation.startswith(
        "hold orc8r-ns/orc8r on edge: moved 20s ago, cooldown 1m (40s left); wants to move "
        "orc8r-ns/orc8r edge -> fog")
    voluntary = _decide("fog", now=1000, last_move=900)
    assert voluntary.action == "hold" and "minDwell 2m (20s left)" in voluntary.explanation
    assert _decide("fog", now=1000, last_move=880).action == "move"
    assert _decide("edge", excluded=EDGE_EXCLUDED, edge=0.85, now=1000,
                   last_move=930).action == "move"  # forced: cooldown only


def test_decide_stays_or_has_no_data() -> None:
    stay = _decide("edge")
    assert (stay.action, stay.target) == ("stay", None)
    assert stay.explanation.startswith("stay orc8r-ns/orc8r on edge: it scores best")
    nowhere = _decide("edge", edge=0.85, fog=1.45, cloud=1.95, excluded=EDGE_EXCLUDED)
    assert nowhere.action == "stay" and nowhere.explanation.startswith("nowhere to go")
    stale = _decide("edge", edge=0.85, excluded=EDGE_EXCLUDED, stale={"edge": "rule r has no "
                                                                              "data"})
    assert (stale.action, stale.target) == ("no-data", None)
    assert stale.explanation == ("no data: orc8r-ns/orc8r stays on edge: rule r has no data; no "
                                 "decision until data returns")
    unknown = _decide("edge", clusters=topology(on="edge")[1:])
    assert unknown.action == "no-data" and "no fresh metrics" in unknown.explanation


def test_holds_and_no_data_from_outside_placement() -> None:
    busy = hold("ns/a", ["edge", "fog"], "ready pods in edge, fog: not exactly one cluster")
    assert (busy.action, busy.source, busy.target) == ("hold", "edge, fog", None)
    assert busy.explanation == "hold ns/a: ready pods in edge, fog: not exactly one cluster"
    blind = no_data("ns/a", "edge", ["rule r on edge: no data", "cluster fog: metrics 40s old"])
    assert blind.action == "no-data" and blind.table["missing"] == [
        "rule r on edge: no data", "cluster fog: metrics 40s old"]
    assert blind.explanation == ("no data: ns/a stays on edge: rule r on edge: no data; cluster "
                                 "fog: metrics 40s old; no decision until data returns")
    json.dumps([busy.to_dict(), blind.to_dict()])


def _move(service: str, *, forced: bool, gain: float | None) -> Decision:
    return Decision("move", service, "edge", "fog", forced, gain, f"move {service}", {})


def test_limit_concurrency_admits_forced_moves_then_the_biggest_gains() -> None:
    stay = Decision("stay", "ns/s", "edge", None, False, 0.0, "stay", {})
    decisions = [_move("ns/a", forced=False, gain=0.1), stay,
                 _move("ns/b", forced=False, gain=0.3), _move("ns/c", forced=True, gain=None)]
    out = limit_concurrency(decisions, running=0, max_concurrent=2)
    assert [d.action for d in out] == ["hold", "stay", "move", "move"]
    assert out[0].explanation == ("hold ns/a on edge: waiting for a migration slot (0 running, "
                                  "3 due, maxConcurrent 2); wants to move ns/a")
    assert out[0].table["action"] == "hold"
    busy = limit_concurrency(decisions, running=1, max_concurrent=2)
    assert [d.action for d in busy] == ["hold", "stay", "hold", "move"]
    assert [d.action for d in limit_concurrency(decisions, running=5, max_concurrent=2)] == \
        ["hold", "stay", "hold", "hold"]


# ------------------------------------------------------------------ properties

NAMES = ["a", "b", "c", "d", "edge", "fog", "cloud"]


@st.composite
def worlds(draw: st.DrawFn) -> tuple[ServiceView, list[ClusterView],
                                     dict[tuple[str, str], float], dict[str, str],
                                     PlacementSettings]:
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=5, unique=True))
    here = draw(st.sampled_from(names))
    cpu = draw(st.floats(0.01, 1.0))
    mem = draw(st.floats(MI, 2 * GI))
    clusters = []
    for name in names:
        alloc_cpu, alloc_mem = draw(st.floats(0.5, 8.0)), draw(st.floats(GI, 16 * GI))
        used_cpu = draw(st.floats(0.0, alloc_cpu)) + (cpu if name == here else 0.0)
        used_mem = draw(st.floats(0.0, alloc_mem)) + (mem if name == here else 0.0)
        clusters.append(ClusterView(name, draw(st.sampled_from([*TIERS, "moon"])), alloc_cpu,
                                    alloc_mem, used_cpu, used_mem))
    rtt = {(a, b): draw(st.floats(0.0, 300.0)) for a in names for b in names
           if a < b and draw(st.integers(0, 9)) > 0}
    clients = tuple((c, draw(st.floats(0.1, 5.0)))
                    for c in draw(st.lists(st.sampled_from(names), max_size=3, unique=True)))
    service = ServiceView(
        "ns", "svc", here, cpu, mem, clients, draw(st.floats(0.0, 20.0)),
        tuple(draw(st.lists(st.sampled_from([*TIERS, "moon"]), min_size=1, unique=True))),
        draw(st.none() | st.floats(5.0, 300.0)))
    excluded = {n: "rule firing" for n in names if draw(st.integers(0, 4)) == 0}
    weights = PlacementSettings(draw(st.floats(0.0, 3.0)), draw(st.floats(0.0, 3.0)),
                                draw(st.floats(0.0, 0.5)))
    return service, clusters, rtt, excluded, weights


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(worlds(), st.randoms(use_true_random=False))
def test_place_is_deterministic_and_ignores_the_order_of_clusters(
        world: tuple[ServiceView, list[ClusterView], dict[tuple[str, str], float],
                     dict[str, str], PlacementSettings], rnd: random.Random) -> None:
    service, clusters, rtt, excluded, weights = world
    first = place(service, clusters, rtt, excluded, weights)
    shuffled = list(clusters)
    rnd.shuffle(shuffled)
    assert place(service, shuffled, rtt, excluded, weights) == first
    assert len(first.candidates) == len(clusters)
    if first.move:
        assert first.best is not None and first.candidate(first.best).filtered is None
    if first.best is not None:
        best = first.candidate(first.best).score
        assert best is not None
        assert all(c.score is not None and c.score <= best + 1e-9
                   for c in first.candidates if c.filtered is None)


def _after(p: Placement, service: ServiceView,
           clusters: Sequence[ClusterView]) -> tuple[ServiceView, list[ClusterView]]:
    """The world once the service has moved where ``p`` said: its use goes with it."""
    moved = []
    for c in clusters:
        sign = -1 if c.name == service.cluster else 1 if c.name == p.best else 0
        moved.append(ClusterView(c.name, c.tier, c.cpu_allocatable, c.mem_allocatable,
                                 c.cpu_used + sign * service.cpu,
                                 c.mem_used + sign * service.mem))
    assert p.best is not None
    return replace(service, cluster=p.best), moved


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(worlds())
def test_a_move_never_makes_the_way_back_look_better(
        world: tuple[ServiceView, list[ClusterView], dict[tuple[str, str], float],
                     dict[str, str], PlacementSettings]) -> None:
    """The table does not change when the service moves, so the next cycle stays put:
    no ping-pong on unchanged measurements, whatever the weights and margin."""
    service, clusters, rtt, excluded, weights = world
    p = place(service, clusters, rtt, excluded, weights)
    if not p.move:
        return
    service2, clusters2 = _after(p, service, clusters)
    again = place(service2, clusters2, rtt, excluded, weights)
    assert not again.move, again.reason
    assert again.best == p.best
    for before, after in zip(p.candidates, again.candidates, strict=True):
        assert (before.filtered is None) == (after.filtered is None)
        if before.score is not None:
            assert after.score == pytest.approx(before.score, abs=1e-6)


# ------------------------------------------------------------------ the loop over time

EDGE_CPU = Rule(name="edge-cpu-exhausted", scope="cluster", expr="cpu_headroom", below=0.2,
                for_seconds=10.0, keep_firing_for=60.0, clusters=("edge",))
STEP, COOLDOWN, DWELL = 5.0, 60.0, 120.0


def simulate(edge_loads: Sequence[float | None], weights: PlacementSettings = SETTINGS
             ) -> list[tuple[float, str, str, bool]]:
    """The controller loop, pure: measure, evaluate rules, exclude, decide, move at once."""
    on, last_move = "edge", None
    states: dict[str, RuleState] = {}
    moves: list[tuple[float, str, str, bool]] = []
    for i, load in enumerate(edge_loads):
        now = i * STEP
        clusters = topology(on=on, edge=0.3 if load is None else load)
        evaluations = []
        for c in clusters:
            if not EDGE_CPU.applies_to(c.name):
                continue
            value = None if load is None else (c.cpu_allocatable - c.cpu_used) / \
                c.cpu_allocatable
            states[c.name], e = evaluate(EDGE_CPU, states.get(c.name, INACTIVE), value, now,
                                         subject=c.name)
            evaluations.append(e)
        key = orc8r(on).key
        excluded = exclusions(evaluations, service=key, cluster=on)
        d = decide(orc8r(on), clusters, RTT, excluded, weights, now=now, last_move=last_move,
                   cooldown=COOLDOWN, min_dwell=DWELL,
                   stale=missing_data(evaluations, service=key, cluster=on))
        if d.action == "move":
            assert d.target is not None and d.target not in excluded
            moves.append((now, d.source, d.target, d.forced))
            on, last_move = d.target, now
    return moves


LATENCY_FIRST = PlacementSettings(weight_headroom=1.0, weight_latency=20.0, min_gain=0.05)
"""Latency outweighs headroom: orc8r leaves the edge only when a rule excludes it."""


def test_a_flickering_rule_never_moves_anything() -> None:
    """Overloaded every other cycle for ten minutes: for: 10s never holds, nothing moves."""
    assert simulate([0.85, 0.3] * 60, LATENCY_FIRST) == []


def test_a_sustained_overload_moves_once_and_comes_back_once() -> None:
    loads = [0.85] * 6 + [0.3] * 60  # overloaded for 30 s, then idle for 5 min
    moves = simulate(loads, LATENCY_FIRST)
    assert moves == [(10.0, "edge", "fog", True),  # fired after for: 10s
                     # the rule keeps firing 60 s after its last true (25 s): back at
                     # max(85 s, move + minDwell = 130 s)
                     (130.0, "fog", "edge", False)]


def test_missing_edge_data_while_on_the_edge_decides_nothing() -> None:
    assert simulate([0.85, 0.85, None, None, None, None, None], LATENCY_FIRST) == []


@settings(max_examples=200, deadline=None)
@given(st.lists(st.none() | st.sampled_from([0.1, 0.3, 0.5, 0.7, 0.85]), max_size=80),
       st.sampled_from([SETTINGS, LATENCY_FIRST, PlacementSettings(1.0, 1.0, 0.0)]))
def test_whatever_the_load_moves_are_spaced_by_cooldown_and_dwell(
        loads: list[float | None], weights: PlacementSettings) -> None:
    moves = simulate(loads, weights)
    for (t1, _, _, _), (t2, _, _, forced) in itertools.pairwise(moves):
        assert t2 - t1 >= COOLDOWN
        assert forced or t2 - t1 >= DWELL


@settings(max_examples=200, deadline=None)
@given(st.lists(st.none() | st.sampled_from([0.1, 0.3, 0.5, 0.7, 0.85]),
                max_size=int(COOLDOWN / STEP)))
def test_at_most_one_move_within_a_cooldown_of_oscillating_load(
        loads: list[float | None]) -> None:
    assert len(simulate(loads)) <= 1

"""The rule state machine: ``for:`` before firing, ``keepFiringFor`` after, missing data
neither fires nor clears, and the state survives a restart through its dict."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubehop.domain.policy import Rule
from kubehop.domain.rules import (
    INACTIVE,
    Evaluation,
    RuleState,
    evaluate,
    exclusions,
    missing_data,
)

CPU = Rule(name="edge-cpu-exhausted", scope="cluster", expr="cpu_headroom", below=0.2,
           for_seconds=10.0, keep_firing_for=60.0, clusters=("edge",))
LATENCY = Rule(name="slow", scope="service", expr="service_latency_ms", above=50.0)


def run(rule: Rule, samples: list[tuple[float, float | None]],
        state: RuleState = INACTIVE) -> list[Evaluation]:
    out = []
    for now, value in samples:
        state, evaluation = evaluate(rule, state, value, now, subject="edge")
        out.append(evaluation)
    return out


M = None  # a missing sample, for the tables

SEQUENCES: list[tuple[str, Rule, list[tuple[float, float | None]], list[str]]] = [
    ("fires once it has held for 10s",
     CPU, [(0, 0.1), (5, 0.1), (10, 0.1), (15, 0.1)],
     ["pending", "pending", "firing", "firing"]),
    ("a dip restarts the for: clock",
     CPU, [(0, 0.1), (5, 0.5), (10, 0.1), (15, 0.1), (20, 0.1)],
     ["pending", "inactive", "pending", "pending", "firing"]),
    ("the threshold itself does not hold (strictly below)",
     CPU, [(0, 0.2), (20, 0.2)], ["inactive", "inactive"]),
    ("keeps firing 60s after the last true evaluation, then clears",
     CPU, [(0, 0.1), (10, 0.1), (20, 0.9), (69, 0.9), (70, 0.9)],
     ["pending", "firing", "firing", "firing", "inactive"]),
    ("holding again while kept firing continues the same firing",
     CPU, [(0, 0.1), (10, 0.1), (40, 0.9), (60, 0.1), (110, 0.9), (130, 0.9)],
     ["pending", "firing", "firing", "firing", "firing", "inactive"]),
    ("missing data never fires, even after for: has passed",
     CPU, [(0, 0.1), (5, M), (30, M), (35, 0.1)],
     ["pending", "missing", "missing", "firing"]),
    ("missing data never clears a firing rule, whatever keepFiringFor says",
     CPU, [(0, 0.1), (10, 0.1), (15, M), (500, M), (505, 0.1)],
     ["pending", "firing", "missing", "missing", "firing"]),
    ("data back but not holding clears once keepFiringFor has passed since the last true",
     CPU, [(0, 0.1), (10, 0.1), (15, M), (50, 0.9), (71, 0.9)],
     ["pending", "firing", "missing", "firing", "inactive"]),
    ("pending timing is kept across missing data",
     CPU, [(0, 0.1), (4, M), (8, 0.1), (9, 0.1), (10, 0.1)],
     ["pending", "missing", "pending", "pending", "firing"]),
    ("NaN counts as missing", CPU, [(0, 0.1), (5, math.nan)], ["pending", "missing"]),
    ("for: 0 fires at once; keepFiringFor: 0 clears at once",
     LATENCY, [(0, 80), (5, 40), (10, 51)], ["firing", "inactive", "firing"]),
]


@pytest.mark.parametrize(("rule", "samples", "states"), [s[1:] for s in SEQUENCES],
                         ids=[s[0] for s in SEQUENCES])
def test_state_sequences(rule: Rule, samples: list[tuple[float, float | None]],
                         states: list[str]) -> None:
    assert [e.state for e in run(rule, samples)] == states


def test_the_detail_tells_the_whole_story() -> None:
    details = [e.detail for e in run(CPU, [(0, 0.12), (4, 0.12), (14, 0.12), (20, 0.5),
                                           (30, None), (100, 0.5)])]
    assert details == [
        "cpu_headroom=0.12 below 0.2 for 0s (for: 10s) -> pending",
        "cpu_headroom=0.12 below 0.2 for 4s (for: 10s) -> pending",
        "cpu_headroom=0.12 below 0.2 for 14s (for: 10s) -> firing",
        "cpu_headroom=0.5 not below 0.2 for 6s; keeps firing 54s more (keepFiringFor: 1m) "
        "-> firing",
        "cpu_headroom: no data (missing or stale) -> missing (was firing for 16s; no decision "
        "on it until data returns)",
        "cpu_headroom=0.5 not below 0.2 -> inactive (was firing)",
    ]


def test_an_evaluation_names_rule_subject_value_and_condition() -> None:
    _, e = evaluate(LATENCY, INACTIVE, 80.5, 3.0, subject="orc8r-ns/orc8r")
    assert (e.rule, e.scope, e.subject, e.value, e.holds, e.state) == (
        "slow", "service", "orc8r-ns/orc8r", 80.5, True, "firing")
    assert e.condition == "service_latency_ms=80.5 above 50"
    assert json.loads(json.dumps(e.to_dict()))["detail"] == e.detail
    _, missing = evaluate(LATENCY, INACTIVE, None, 3.0, subject="orc8r-ns/orc8r")
    assert (missing.holds, missing.value, missing.condition) == (
        None, None, "service_latency_ms: no data")


def test_a_long_promql_expression_is_shortened_in_explanations() -> None:
    rule = Rule(name="x", scope="cluster", expr="sum(rate(" + "a" * 80 + "[5m]))", above=1)
    _, e = evaluate(rule, INACTIVE, 2.0, 0.0, subject="fog")
    assert e.condition.startswith("sum(rate(aaaa") and "…=2 above 1" in e.condition


def test_state_timing_is_recorded() -> None:
    state, _ = evaluate(CPU, INACTIVE, 0.1, 100.0, subject="edge")
    assert state == RuleState("pending", 100.0, 100.0, None)
    state, _ = evaluate(CPU, state, 0.1, 111.0, subject="edge")
    assert state == RuleState("firing", 100.0, 111.0, 111.0)
    state, _ = evaluate(CPU, state, None, 120.0, subject="edge")
    assert state == RuleState("missing", 100.0, 111.0, 111.0)


@pytest.mark.parametrize(
    "data",
    [{"state": "firing"}, {"state": "burning", "activeSince": None, "lastTrue": None,
                           "firedAt": None},
     {"state": "pending", "activeSince": "yesterday", "lastTrue": 1.0, "firedAt": None},
     {"state": "firing", "activeSince": None, "lastTrue": None, "firedAt": None},
     {"state": "inactive", "activeSince": 1.0, "lastTrue": 1.0, "firedAt": None},
     {"state": "pending", "activeSince": True, "lastTrue": 1.0, "firedAt": None},
     [1, 2]],
)
def test_a_corrupt_stored_state_is_refused(data: object) -> None:
    with pytest.raises(ValueError, match="rule state"):
        RuleState.from_dict(data)  # type: ignore[arg-type]


def test_an_empty_stored_state_is_inactive_and_subject_may_be_positional() -> None:
    assert RuleState.from_dict({}) == INACTIVE
    state, e = evaluate(CPU, RuleState.from_dict({}), 0.1, 0.0, "edge")
    assert (state.state, e.subject) == ("pending", "edge")


def _ev(rule: str, scope: str, subject: str, state: str, condition: str = "c") -> Evaluation:
    return Evaluation(rule, scope, subject, 0.0, None, state, condition, "d")


def test_exclusions_and_missing_data_by_cluster() -> None:
    evaluations = [
        _ev("edge-cpu", "cluster", "edge", "firing", "cpu_headroom=0.05 below 0.2"),
        _ev("edge-mem", "cluster", "edge", "firing", "memory_headroom=0.01 below 0.1"),
        _ev("fog-cpu", "cluster", "fog", "pending"),
        _ev("cloud-cpu", "cluster", "cloud", "missing", "cpu_headroom: no data"),
        _ev("slow", "service", "orc8r-ns/orc8r", "firing", "service_latency_ms=80 above 50"),
        _ev("slow", "service", "magma/agw", "firing"),
    ]
    assert exclusions(evaluations, service="orc8r-ns/orc8r", cluster="fog") == {
        "edge": "edge-cpu firing: cpu_headroom=0.05 below 0.2; edge-mem firing: "
                "memory_headroom=0.01 below 0.1",
        "fog": "slow firing: service_latency_ms=80 above 50",
    }
    assert missing_data(evaluations, service="orc8r-ns/orc8r", cluster="fog") == {
        "cloud": "rule cloud-cpu has no data (cpu_headroom: no data)"}


# ------------------------------------------------------------------ properties

rules = st.builds(
    Rule, name=st.just("r"), scope=st.just("cluster"), expr=st.just("cpu_headroom"),
    below=st.sampled_from([0.2, 0.5]), for_seconds=st.sampled_from([0.0, 5.0, 10.0, 30.0]),
    keep_firing_for=st.sampled_from([0.0, 5.0, 60.0]))
samples = st.lists(st.tuples(st.integers(1, 20).map(float),
                             st.none() | st.floats(0, 1)), max_size=40)


def _timeline(steps: list[tuple[float, float | None]]) -> list[tuple[float, float | None]]:
    now, out = 0.0, []
    for step, value in steps:
        now += step
        out.append((now, value))
    return out


@settings(max_examples=300)
@given(rules, samples)
def test_the_machine_obeys_its_contract(rule: Rule, steps: list[tuple[float, float | None]]
                                        ) -> None:
    state = INACTIVE
    for now, value in _timeline(steps):
        before = state
        state, e = evaluate(rule, state, value, now, subject="edge")
        assert RuleState.from_dict(json.loads(json.dumps(state.to_dict()))) == state
        assert e.state == state.state
        if value is None:
            # missing: nothing fires, nothing clears, the timing is kept
            assert state == RuleState("missing", before.active_since, before.last_true,
                                      before.fired_at)
            continue
        assert e.holds == (value < 0.2 if rule.below == 0.2 else value < 0.5)
        if state.state == "firing" and before.fired_at is None:
            # it went firing now: it held now, for at least for:
            assert e.holds and state.active_since is not None
            assert now - state.active_since >= rule.for_seconds
        if state.state == "firing" and not e.holds:
            assert state.last_true is not None
            assert now - state.last_true < rule.keep_firing_for
        if before.fired_at is not None and state.state == "inactive":
            assert not e.holds and before.last_true is not None
            assert now - before.last_true >= rule.keep_firing_for


@settings(max_examples=200)
@given(rules, samples, st.integers(0, 40))
def test_a_restart_through_the_stored_dict_changes_nothing(
        rule: Rule, steps: list[tuple[float, float | None]], cut: int) -> None:
    timeline = _timeline(steps)
    straight = run(rule, timeline)
    state = INACTIVE
    for now, value in timeline[:cut]:
        state, _ = evaluate(rule, state, value, now, subject="edge")
    restored = RuleState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert run(rule, timeline[cut:], restored) == straight[cut:]


@settings(max_examples=200)
@given(st.lists(st.tuples(st.integers(1, 20).map(float), st.floats(0, 1)), max_size=40))
def test_without_missing_data_or_keep_firing_it_fires_iff_held_for_long_enough(
        steps: list[tuple[float, float]]) -> None:
    """Against a reference: firing iff every sample since some t0 held and now - t0 >= for."""
    rule = Rule(name="r", scope="cluster", expr="cpu_headroom", below=0.5, for_seconds=10.0)
    run_start: float | None = None
    for (now, value), e in zip(_timeline(list(steps)), run(rule, _timeline(list(steps))),
                               strict=True):
        run_start = (run_start if run_start is not None else now) if value < 0.5 else None
        expected = ("inactive" if run_start is None else
                    "firing" if now - run_start >= 10.0 else "pending")
        assert e.state == expected

"""The controller's cycle, fast: a real :class:`~kubehop.controller.loop.Controller` with the real
:class:`~kubehop.controller.observe.Observer`, rules, placement and a real store (SQLite in
tmp_path; one test on PostgreSQL too), over fake clusters, a fake Prometheus and a fake migration
runner (tests/unit/ctlfakes.py). Time is a fake clock the loop, the observer and the store all
read, so ``for:``, cooldown, minDwell and backoff are driven without sleeping.

The world: three clusters, edge (2 cores, 4Gi), fog and cloud (8 cores, 16Gi each); the
service orc8r-ns/orc8r (100m, 128Mi, its clients in edge) runs in edge; links edge-fog 30 ms,
edge-cloud 60 ms, fog-cloud 40 ms. The policy's rule ``edge-cpu`` fires when edge's cpu
headroom is below 0.2 for 10 s. With headroom weighted 0.2 and minGain 0.1 the service stays
in edge while edge is calm or only pending, must leave when the rule fires (fog beats cloud on
latency, both having room), and wants to come back once edge is calm again.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from kubehop.adapters import store as store_module
from kubehop.adapters.prometheus import Sample
from kubehop.adapters.store import Store
from kubehop.controller import loop
from kubehop.controller import observe as observe_module
from kubehop.controller.loop import Controller, CycleReport
from kubehop.controller.observe import Observer
from kubehop.domain.model import Status
from kubehop.domain.placement import Decision
from kubehop.domain.policy import Policy, parse_policy
from kubehop.errors import KubehopError

from .ctlfakes import GI, Clock, FakeMigrations, World

NS, SVC = "orc8r-ns", "orc8r"
KEY = f"{NS}/{SVC}"

POLICY = """\
apiVersion: kubehop.io/v1alpha1
kind: PlacementPolicy
interval: 5s
rules:
  - name: edge-cpu
    expr: cpu_headroom
    below: 0.2
    for: {for_}
    clusters: [edge]
placement:
  weights: {{headroom: 0.2, latency: 1}}
  minGain: 0.1
  cooldown: 30s
  minDwell: 60s
  maxConcurrent: {max_concurrent}
services:
  - name: orc8r
    namespace: orc8r-ns
    clients: [{{cluster: edge}}]
{more}"""

WEB = """\
  - name: web
    namespace: web-ns
    clients: [{cluster: edge}]
"""


def policy_text(*, for_: str = "10s", max_concurrent: int = 1, more: str = "") -> str:
    return POLICY.format(for_=for_, max_concurrent=max_concurrent, more=more)


class Rig:
    """One world, one store, one clock, and the controllers built on them."""

    def __init__(self, url: str, monkeypatch: pytest.MonkeyPatch) -> None:
        self.clock = Clock()
        for module in (loop, observe_module, store_module):
            monkeypatch.setattr(module, "time", self.clock)
        self.world = World()
        prom = self.world.prometheus
        prom.cpu = {"edge": 0.3, "fog": 1.0, "cloud": 1.0}
        prom.mem = {"edge": 0.5 * GI, "fog": 2.0 * GI, "cloud": 2.0 * GI}
        prom.rtt_s = {("edge", "fog"): 0.030, ("edge", "cloud"): 0.060,
                      ("fog", "cloud"): 0.040}
        self.world.deploy("edge", NS, SVC)
        self.store = Store(url)
        self.migrations = FakeMigrations(self.world, self.store)
        self.said: list[str] = []
        self.controllers: list[Controller] = []

    def controller(self, text: str | None = None, **kwargs: Any) -> Controller:
        policy = parse_policy(text or policy_text(), "policy.yaml")
        inventory = self.world.inventory()
        kube: Any = self.world.kube
        ctl = Controller(
            inventory=inventory, policy=policy, store=self.store,
            observer=Observer(inventory, kube, self.world.prometheus,  # type: ignore[arg-type]
                              max_age=policy.placement.max_data_age),
            clusters=kube, executor=self.migrations,  # type: ignore[arg-type]
            say=self.said.append, **kwargs)
        self.controllers.append(ctl)
        return ctl

    def hot_edge(self) -> None:
        """Edge's pods use 1.8 of its 2 cores: cpu headroom 0.1, below edge-cpu's 0.2."""
        self.world.prometheus.cpu["edge"] = 1.8

    def calm_edge(self) -> None:
        self.world.prometheus.cpu["edge"] = 0.2

    def finish(self, ctl: Controller) -> None:
        """Let the migrations in flight end, and wait until the controller has taken note."""
        futures = list(ctl.active.values())
        self.migrations.gate.set()
        for future in futures:
            future.result(timeout=5)
        self.migrations.gate.clear()
        assert not ctl.active

    def move_to_fog(self, ctl: Controller) -> CycleReport:
        """edge-cpu pending, then firing 10 s later: orc8r moves to fog (the migration ends)."""
        self.hot_edge()
        ctl.cycle()
        self.clock.advance(10)
        report = ctl.cycle()
        assert report.started == [f"m{self.migrations.count}"], report.decisions
        self.finish(ctl)
        assert self.world.running_in(NS, SVC) == ["fog"]
        return report

    def close(self) -> None:
        self.migrations.gate.set()
        for ctl in self.controllers:
            ctl.close()
        self.store.close()


@pytest.fixture
def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    r = Rig(f"sqlite:///{tmp_path / 'kubehop.db'}", monkeypatch)
    yield r
    r.close()


def metric(ctl: Controller, name: str, **labels: str) -> float:
    """One sample of the controller's own metrics."""
    value = ctl.metrics.registry.get_sample_value(name, labels or None)
    assert value is not None, name
    return value


def only(report: CycleReport, key: str = KEY) -> Any:
    found = [d for d in report.decisions if d.service == key]
    assert len(found) == 1, report.decisions
    return found[0]


# --- deciding -------------------------------------------------------------------------------


def test_calm_cluster_records_a_stay_with_its_candidate_table(rig: Rig) -> None:
    """Nothing firing and nothing to gain: one 'stay' decision, stored with the table of every
    candidate (scores, terms, who won), the rule evaluated inactive, nothing started, and the
    topology the cycle saw stored (clusters, links, the service, its first placement)."""
    ctl = rig.controller()
    report = ctl.cycle()

    assert report.missing == []
    assert [(e.rule, e.subject, e.state) for e in report.evaluations] == [
        ("edge-cpu", "edge", "inactive")]
    decision = only(report)
    assert decision.action == "stay"
    assert decision.explanation.startswith(f"stay {KEY} on edge: it scores best")
    assert report.started == [] and rig.migrations.started == []

    [stored] = rig.store.decisions()
    assert (stored.action, stored.source, stored.target, stored.migration_id) == (
        "stay", "edge", None, None)
    table = stored.table
    assert (table["current"], table["best"], table["action"]) == ("edge", "edge", "stay")
    rows = {c["cluster"]: c for c in table["candidates"]}
    assert set(rows) == {"edge", "fog", "cloud"}
    assert [c for c, row in rows.items() if row["winner"]] == ["edge"]
    assert all(row["filtered"] is None for row in rows.values())
    assert rows["edge"]["latencyMs"] == 0.0
    assert rows["fog"]["latencyMs"] == pytest.approx(30.0)
    assert rows["cloud"]["latencyMs"] == pytest.approx(60.0)
    assert rows["edge"]["score"] > rows["fog"]["score"] > rows["cloud"]["score"]

    assert [c.name for c in rig.store.clusters()] == ["cloud", "edge", "fog"]
    assert {k: round(v.rtt_ms, 3) for k, v in rig.store.latest_links().items()} == {
        ("edge", "fog"): 30.0, ("cloud", "edge"): 60.0, ("cloud", "fog"): 40.0}
    [svc] = rig.store.services()
    assert (svc.namespace, svc.name, svc.cluster) == (NS, SVC, "edge")
    assert [(p.cluster, p.since, p.migration_id) for p in rig.store.placements(NS, SVC)] == [
        ("edge", rig.clock.now, None)]


def test_a_steady_decision_is_stored_again_only_as_a_heartbeat(rig: Rig) -> None:
    """An unchanged 'stay' is decided every cycle but stored (and published) only when it is
    news or once per HEARTBEAT_S; a different action is news at once."""
    ctl = rig.controller()
    assert len(ctl.cycle().recorded) == 1
    rig.clock.advance(5)
    again = ctl.cycle()
    assert only(again).action == "stay" and again.recorded == []
    rig.clock.advance(loop.HEARTBEAT_S - 5)
    assert len(ctl.cycle().recorded) == 1
    assert [d.action for d in rig.store.decisions()] == ["stay", "stay"]
    rig.world.prometheus.down = "connection refused"
    rig.clock.advance(1)
    assert [d.action for d in ctl.cycle().recorded] == ["no-data"]


def test_a_rule_moves_nothing_before_its_for_and_then_forces_a_move_to_fog(rig: Rig) -> None:
    """edge-cpu holding for less than ``for: 10s`` is pending and moves nothing (the service
    stays: what it would gain elsewhere is below minGain). Once it has held 10 s it fires,
    edge is excluded, and orc8r moves to the best other cluster: fog, which beats cloud on
    latency (both have room). The explanation names the rule; the stored decision is linked
    to the migration's id; when the migration ends the placement history says fog, by that
    migration; Events tell the clusters that have the service's namespace."""
    ctl = rig.controller()
    rig.hot_edge()
    first = ctl.cycle()
    assert [e.state for e in first.evaluations] == ["pending"]
    assert only(first).action == "stay"
    rig.clock.advance(9.9)
    almost = ctl.cycle()
    assert [e.state for e in almost.evaluations] == ["pending"]
    assert only(almost).action == "stay"
    assert rig.migrations.started == []

    rig.clock.advance(0.1)
    report = ctl.cycle()
    assert [e.state for e in report.evaluations] == ["firing"]
    decision = only(report)
    assert (decision.action, decision.source, decision.target, decision.forced) == (
        "move", "edge", "fog", True)
    assert "edge-cpu firing" in decision.explanation
    assert "must leave edge" in decision.explanation
    assert "fog wins on latency" in decision.explanation and "over cloud" in decision.explanation
    rows = {c["cluster"]: c for c in decision.table["candidates"]}
    assert rows["edge"]["filtered"].startswith("excluded by edge-cpu firing")
    assert rows["fog"]["winner"] and not rows["cloud"]["winner"]
    assert rows["fog"]["terms"]["headroom"] == pytest.approx(rows["cloud"]["terms"]["headroom"])

    assert report.started == ["m1"] and decision.migration_id == "m1"
    assert rig.migrations.wait_started(1) == ["m1"]
    [(mid, request)] = rig.migrations.started
    assert (mid, request.service, request.namespace, request.source, request.target) == (
        "m1", SVC, NS, "edge", "fog")
    newest = rig.store.decisions(limit=1)[0]
    assert (newest.action, newest.target, newest.migration_id) == ("move", "fog", "m1")
    assert "edge-cpu" in newest.explanation

    rig.finish(ctl)
    moved_at = rig.clock.now
    # Reaction time: from the first evaluation edge-cpu held (10 s before) to the start.
    assert metric(ctl, "kubehop_controller_reaction_seconds_count") == 1
    assert metric(ctl, "kubehop_controller_reaction_seconds_sum") == pytest.approx(10.0)
    assert [(p.cluster, p.migration_id) for p in rig.store.placements(NS, SVC)] == [
        ("edge", None), ("fog", "m1")]
    assert rig.store.current_placement(NS, SVC).since == moved_at  # type: ignore[union-attr]
    assert rig.store.get("m1").status == Status.SUCCEEDED
    assert rig.world.kube["edge"].reasons() == ["KubehopDecision", "KubehopMigrated"]
    # fog had no orc8r-ns when the move was decided: an Event goes only where the namespace is.
    assert rig.world.kube["fog"].reasons() == ["KubehopMigrated"]
    assert rig.world.kube["cloud"].reasons() == []

    # The next cycle sees it in fog, where the placement already says it is.
    rig.clock.advance(5)
    after = ctl.cycle()
    assert only(after).source == "fog" and after.started == []
    assert len(rig.store.placements(NS, SVC)) == 2


def test_no_move_back_before_cooldown_nor_before_min_dwell(rig: Rig) -> None:
    """Back in fog after a forced move, with edge calm again orc8r wants to return to edge
    (its clients are there; the gain is above minGain). It is held while the cooldown (30 s
    since the migration ended) runs, then while minDwell (60 s since it arrived) runs, and
    moves back only after both."""
    ctl = rig.controller()
    rig.move_to_fog(ctl)
    ended = rig.clock.now
    rig.calm_edge()

    rig.clock.advance(10)
    held = only(ctl.cycle())
    assert (held.action, held.source, held.target) == ("hold", "fog", "edge")
    assert "cooldown 30s" in held.explanation and "20s left" in held.explanation
    assert "wants to move" in held.explanation
    assert held.table["gate"]["open"] is False and held.table["gate"]["lastMove"] == ended

    rig.clock.advance(21)  # 31 s after: past the cooldown, not past minDwell
    dwell = only(ctl.cycle())
    assert dwell.action == "hold" and "minDwell 1m" in dwell.explanation
    assert "29s left" in dwell.explanation
    assert len(rig.migrations.started) == 1

    rig.clock.advance(29)  # 60 s after
    back = ctl.cycle()
    decision = only(back)
    assert (decision.action, decision.source, decision.target, decision.forced) == (
        "move", "fog", "edge", False)
    assert "minGain 0.1" in decision.explanation
    assert back.started == ["m2"]
    rig.finish(ctl)
    assert [p.cluster for p in rig.store.placements(NS, SVC)] == ["edge", "fog", "edge"]


def test_a_failed_migration_doubles_the_wait_before_the_next_try(rig: Rig) -> None:
    """A migration that fails leaves the service where it was; the next try waits one
    cooldown, the one after that two (backoff), and the placement never changes."""
    ctl = rig.controller(policy_text(for_="0s"))
    rig.migrations.outcome = Status.FAILED
    rig.hot_edge()
    assert ctl.cycle().started == ["m1"]
    rig.finish(ctl)
    assert rig.store.get("m1").status == Status.FAILED

    rig.clock.advance(29)
    assert only(ctl.cycle()).action == "hold"
    rig.clock.advance(1)
    assert ctl.cycle().started == ["m2"]
    rig.finish(ctl)

    rig.clock.advance(59)
    waiting = only(ctl.cycle())
    assert waiting.action == "hold" and "cooldown 1m" in waiting.explanation
    rig.clock.advance(1)
    assert ctl.cycle().started == ["m3"]
    rig.finish(ctl)
    assert [p.cluster for p in rig.store.placements(NS, SVC)] == ["edge"]
    assert rig.world.kube["edge"].reasons().count("KubehopMigrationFailed") == 3

    # Backoff is learnt back from the store: a new controller waits the doubled-again 2 min.
    fresh = rig.controller(policy_text(for_="0s"))
    rig.clock.advance(119)
    assert only(fresh.cycle()).action == "hold"
    rig.clock.advance(1)
    assert fresh.cycle().started == ["m4"]
    rig.finish(fresh)


def test_a_pending_rule_survives_a_controller_restart(rig: Rig) -> None:
    """The rule's pending state lives in the store: a controller started 10 s after another
    saw edge-cpu begin to hold fires it at once instead of starting ``for:`` over."""
    rig.hot_edge()
    assert [e.state for e in rig.controller().cycle().evaluations] == ["pending"]
    rig.clock.advance(10)
    report = rig.controller().cycle()
    assert [e.state for e in report.evaluations] == ["firing"]
    assert only(report).action == "move" and report.started == ["m1"]


# --- missing data -----------------------------------------------------------------------------


def test_prometheus_unreachable_is_no_data_and_nothing_moves(rig: Rig) -> None:
    """With Prometheus down the cycle lacks every cluster's usage and every link: the decision
    is 'no-data' naming what is missing, nothing starts even though edge-cpu had held for
    almost its ``for:``, and the rule is 'missing' with its timing kept; a warning Event says
    so. When Prometheus answers again, still holding, the rule fires at once and the service
    moves."""
    ctl = rig.controller()
    rig.hot_edge()
    ctl.cycle()
    rig.clock.advance(8)
    rig.world.prometheus.down = "ConnectError: connection refused"
    rig.clock.advance(4)  # edge-cpu would have held 12 s: past its for:, were it known
    report = ctl.cycle()

    assert any(m.startswith("usage of every cluster: Prometheus at") for m in report.missing)
    assert any(m.startswith("link RTTs: Prometheus at") for m in report.missing)
    assert "rule edge-cpu on edge: no data" in report.missing
    assert [e.state for e in report.evaluations] == ["missing"]
    decision = only(report)
    assert (decision.action, decision.source, decision.target) == ("no-data", "edge", None)
    assert decision.explanation.startswith(f"no data: {KEY} stays on edge: ")
    assert "connection refused" in decision.explanation
    assert report.started == [] and rig.migrations.started == []
    assert rig.store.decisions(limit=1)[0].action == "no-data"
    assert rig.world.kube["edge"].reasons() == ["KubehopNoData"]
    state = rig.store.rule_states()[("edge-cpu", "edge")]
    assert state["state"] == "missing" and state["activeSince"] == rig.clock.now - 12

    rig.world.prometheus.down = None
    rig.clock.advance(1)
    back = ctl.cycle()
    assert [e.state for e in back.evaluations] == ["firing"]
    assert only(back).action == "move" and back.started == ["m1"]


@pytest.mark.parametrize("what", ["cluster-api", "link", "usage"])
def test_one_missing_fact_is_no_data_for_every_service(rig: Rig, what: str) -> None:
    """One cluster's API unreadable, one link never measured, or one cluster's usage absent:
    the cycle names it and decides nothing, although the rule on edge fires (the unknown fact
    could change the winner)."""
    ctl = rig.controller(policy_text(for_="0s"))
    rig.hot_edge()
    if what == "cluster-api":
        rig.world.kube["cloud"].down = "connection refused"
        expected = "cluster cloud: API not readable (cloud: connection refused)"
    elif what == "link":
        del rig.world.prometheus.rtt_s[("fog", "cloud")]
        expected = "link cloud-fog: no RTT measured in the last 30s"
    else:
        del rig.world.prometheus.cpu["fog"]
        expected = "cluster fog: no CPU/memory usage in Prometheus for the last 30s"
    report = ctl.cycle()
    assert expected in report.missing
    decision = only(report)
    assert decision.action == "no-data" and expected in decision.explanation
    assert report.started == [] and rig.migrations.started == []


# --- executing --------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [Status.RUNNING, Status.ROLLING_BACK])
def test_recover_resumes_what_a_killed_controller_left(rig: Rig, status: str) -> None:
    """A migration a killed controller started (its decision links the id) and left running
    or rolling back is resumed by the next controller's :meth:`Controller.recover` before its
    first cycle; the placement follows it, and the resumed migration counts as the last
    attempt, so the first cycle holds a move back for the cooldown. A migration no decision
    of the controller names (a manual ``kubehop migrate``) is left alone."""
    request = {"service": SVC, "namespace": NS, "source": "edge", "target": "fog",
               "target_namespace": NS, "strategy": "endpoints", "plan": ["copy"]}
    rig.store.create("m-killed", request)
    rig.store.set_status("m-killed", status)
    did = rig.store.add_decision(rig.clock.now, NS, SVC, "move", "edge", "fog", "move it", {})
    rig.store.set_decision_migration(did, "m-killed")
    rig.store.create("m-manual", {**request, "service": "other"})
    rig.calm_edge()

    rig.clock.advance(100)
    ctl = rig.controller()
    reports = ctl.recover()
    assert [(r.id, r.status) for r in reports] == [("m-killed", Status.SUCCEEDED)]
    assert rig.migrations.resumed == ["m-killed"]
    assert rig.store.get("m-manual").status == Status.RUNNING
    assert rig.store.current_placement(NS, SVC).cluster == "fog"  # type: ignore[union-attr]
    assert rig.store.current_placement(NS, SVC).migration_id == "m-killed"  # type: ignore[union-attr]
    assert any("resuming migration m-killed" in line for line in rig.said)

    rig.clock.advance(5)
    first = ctl.cycle()
    decision = only(first)
    assert (decision.action, decision.source, decision.target) == ("hold", "fog", "edge")
    assert "cooldown" in decision.explanation
    assert first.started == []
    assert ctl.recover() == [], "a finished migration is not resumed twice"


def test_a_standby_taking_over_learns_the_leaders_cooldowns_and_backoffs(rig: Rig) -> None:
    """A standby built before the leader acted learns, in :meth:`Controller.recover`, what the
    leader did meanwhile: the leader's failed migration 10 s ago holds the standby's first
    move for the rest of the cooldown."""
    standby = rig.controller(policy_text(for_="0s"))
    leader = rig.controller(policy_text(for_="0s"))
    rig.migrations.outcome = Status.FAILED
    rig.hot_edge()
    assert leader.cycle().started == ["m1"]
    rig.finish(leader)

    rig.clock.advance(10)
    assert standby.recover() == []
    assert standby.failures == {KEY: 1}
    held = only(standby.cycle())
    assert held.action == "hold" and "20s left" in held.explanation


def test_dry_run_decides_but_starts_nothing(rig: Rig) -> None:
    """--dry-run: the move is decided, explained and stored (without a migration id), but no
    migration starts, the service is not marked busy and its placement does not change; the
    next cycle decides the same move again."""
    ctl = rig.controller(policy_text(for_="0s"), dry_run=True)
    rig.hot_edge()
    report = ctl.cycle()
    decision = only(report)
    assert (decision.action, decision.target) == ("move", "fog")
    assert report.started == [] and ctl.active == {}
    assert rig.migrations.started == [] and rig.store.list() == []
    assert rig.store.decisions(limit=1)[0].migration_id is None
    rig.clock.advance(5)
    again = ctl.cycle()
    assert only(again).action == "move" and again.started == []
    assert [p.cluster for p in rig.store.placements(NS, SVC)] == ["edge"]
    assert [d.action for d in rig.store.decisions()] == ["move", "move"]


def test_a_replica_that_is_not_the_leader_starts_nothing(rig: Rig) -> None:
    """A controller whose lease is lost (``acting`` false) still records its decisions but
    starts no migration."""
    ctl = rig.controller(policy_text(for_="0s"), acting=lambda: False)
    rig.hot_edge()
    report = ctl.cycle()
    assert only(report).action == "move" and report.started == []
    assert rig.migrations.started == []
    assert any("not the leader any more" in line for line in rig.said)


def test_max_concurrent_one_holds_the_second_move_until_the_first_ends(rig: Rig) -> None:
    """Two services forced off edge with maxConcurrent 1: the first (by name) starts, the
    other is held 'waiting: at most 1 migrations at once'; while the first runs it is held as
    busy (never two migrations of one service) and the other still waits; once it has ended
    the other starts."""
    rig.world.deploy("edge", "web-ns", "web")
    ctl = rig.controller(policy_text(for_="0s", more=WEB))
    rig.hot_edge()
    report = ctl.cycle()
    assert report.started == ["m1"]
    assert only(report).action == "move"
    web = only(report, "web-ns/web")
    assert (web.action, web.target) == ("hold", "fog")
    assert web.explanation.startswith("waiting: at most 1 migrations at once; ")
    assert rig.migrations.wait_started(1) == ["m1"]

    rig.clock.advance(5)
    busy = ctl.cycle()
    assert only(busy).explanation == f"hold {KEY}: a migration of it is running"
    assert only(busy, "web-ns/web").action == "hold" and busy.started == []

    rig.finish(ctl)
    rig.clock.advance(5)
    after = ctl.cycle()
    assert after.started == ["m2"]
    assert only(after, "web-ns/web").action == "move"
    rig.finish(ctl)
    assert [r.service for _, r in rig.migrations.started] == [SVC, "web"]
    assert rig.world.running_in("web-ns", "web") == ["fog"]


def test_max_concurrent_two_runs_both_at_once(rig: Rig) -> None:
    """With maxConcurrent 2 both services start in one cycle and run side by side."""
    rig.world.deploy("edge", "web-ns", "web")
    ctl = rig.controller(policy_text(for_="0s", max_concurrent=2, more=WEB))
    rig.hot_edge()
    report = ctl.cycle()
    assert report.started == ["m1", "m2"]
    assert sorted(ctl.active) == [KEY, "web-ns/web"]
    assert rig.migrations.wait_started(2) == ["m1", "m2"]  # both in flight: none has ended
    rig.finish(ctl)
    assert rig.world.running_in(NS, SVC) == rig.world.running_in("web-ns", "web") == ["fog"]


def test_the_controller_cycle_on_both_databases(db_url: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The pending -> firing -> move -> placement path on SQLite and on PostgreSQL."""
    r = Rig(db_url, monkeypatch)
    try:
        ctl = r.controller()
        report = r.move_to_fog(ctl)
        assert only(report).target == "fog"
        assert r.store.decisions(limit=1)[0].migration_id == "m1"
        assert [(p.cluster, p.migration_id) for p in r.store.placements(NS, SVC)] == [
            ("edge", None), ("fog", "m1")]
        assert r.store.rule_states()[("edge-cpu", "edge")]["state"] == "firing"
    finally:
        r.close()


# --- more of the glue -------------------------------------------------------------------------


def test_a_service_is_not_sent_back_where_its_arrival_would_fire_the_rule(rig: Rig) -> None:
    """orc8r (400m) leaves edge when edge-cpu fires; its departure alone brings edge under the
    threshold, and edge would win on latency, but its return would make edge-cpu hold again:
    edge stays filtered out ('would fire on arrival') long after cooldown and minDwell, so the
    service does not ping-pong on its own load."""
    world, prom = rig.world, rig.world.prometheus
    world.kube["edge"].pods.clear()
    world.kube["edge"].services.clear()
    world.deploy("edge", NS, SVC, cpu="400m")
    prom.rtt_s = {("edge", "fog"): 0.080, ("edge", "cloud"): 0.120, ("fog", "cloud"): 0.040}
    ctl = rig.controller(policy_text(for_="0s"))
    prom.cpu["edge"] = 1.8
    assert ctl.cycle().started == ["m1"]
    rig.finish(ctl)
    prom.cpu["edge"] = 1.45  # without orc8r: headroom 0.275, so edge-cpu stops holding

    rig.clock.advance(300)
    report = ctl.cycle()
    assert [e.state for e in report.evaluations] == ["inactive"]
    decision = only(report)
    assert (decision.action, decision.source, decision.target) == ("stay", "fog", None)
    rows = {c["cluster"]: c for c in decision.table["candidates"]}
    assert rows["edge"]["filtered"] == ("excluded by edge-cpu would fire on arrival: "
                                        "cpu_headroom after the move 0.07 below 0.2")
    assert rows["edge"]["score"] > rows["fog"]["score"] + 0.1, "edge would win, were it allowed"
    assert report.started == []


def test_a_service_scope_promql_rule_moves_the_service_off_its_own_cluster(rig: Rig) -> None:
    """A PromQL rule of scope service is asked of Prometheus through the observer, matched to
    the service by its namespace and service labels; firing, it excludes the cluster the
    service runs in. A rule whose query fails is missing: no decision."""
    expr = "sum by (namespace, service) (rate(orc8r_errors_total[1m]))"
    text = policy_text(for_="0s").replace("placement:", f"""  - name: orc8r-errors
    scope: service
    expr: '{expr}'
    above: 1
placement:""")
    ctl = rig.controller(text)
    rig.world.prometheus.series[expr] = [Sample({"namespace": NS, "service": SVC}, 5.0, 0.0),
                                         Sample({"namespace": NS, "service": "other"}, 9.0, 0.0)]
    report = ctl.cycle()
    assert [(e.rule, e.subject, e.state) for e in report.evaluations] == [
        ("edge-cpu", "edge", "inactive"), ("orc8r-errors", KEY, "firing")]
    decision = only(report)
    assert (decision.action, decision.target, decision.forced) == ("move", "fog", True)
    assert "orc8r-errors firing" in decision.explanation
    assert expr in rig.world.prometheus.queries
    rig.finish(ctl)

    rig.world.prometheus.series.pop(expr)  # the query now answers no series: no data
    rig.clock.advance(5)
    silent = ctl.cycle()
    assert f"rule orc8r-errors on {KEY}: no data" in silent.missing
    assert only(silent).action == "no-data" and silent.started == []


def test_service_latency_rule_forces_a_move_despite_min_dwell(rig: Rig) -> None:
    """``service_latency_ms`` is computed by the loop (client-weighted RTT where the service
    runs plus its service time): orc8r in cloud with its clients in edge sees 60 ms, above the
    rule's 50 ms; the rule fires at once and forces the move to edge although orc8r has just
    arrived in cloud (minDwell holds only voluntary moves)."""
    rig.world.move(NS, SVC, "edge", "cloud")
    text = policy_text(for_="0s").replace("placement:", """  - name: slow
    expr: service_latency_ms
    above: 50
placement:""")
    ctl = rig.controller(text)
    report = ctl.cycle()
    slow = [e for e in report.evaluations if e.rule == "slow"]
    assert [(e.subject, e.state, e.value) for e in slow] == [(KEY, "firing", pytest.approx(60))]
    decision = only(report)
    assert (decision.action, decision.source, decision.target, decision.forced) == (
        "move", "cloud", "edge", True)
    assert "slow firing" in decision.explanation
    rig.finish(ctl)


@pytest.mark.parametrize(("where", "why"), [
    (("edge", "fog"), "ready pods in edge, fog: not exactly one cluster"),
    ((), "ready pods in no cluster: not exactly one cluster")])
def test_a_service_not_in_exactly_one_cluster_is_held(rig: Rig, where: tuple[str, ...],
                                                       why: str) -> None:
    """Ready pods in two clusters (a migration by someone else, half done) or in none: the
    controller holds, whatever the rules say, and records no placement."""
    rig.world.kube["edge"].pods.clear()
    rig.world.kube["edge"].services.clear()
    for cluster in where:
        rig.world.deploy(cluster, NS, SVC)
    ctl = rig.controller(policy_text(for_="0s"))
    rig.hot_edge()
    report = ctl.cycle()
    assert only(report).explanation == f"hold {KEY}: {why}"
    assert report.started == [] and rig.store.placements(NS, SVC) == []


def test_a_migration_that_cannot_start_fails_and_backs_off(rig: Rig,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    """The executor raising (say, a cluster unreachable at discovery) is a failed migration:
    reported, counted, backed off; the loop goes on."""
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise KubehopError("fog: connection refused")

    monkeypatch.setattr(rig.migrations, "start", broken)
    ctl = rig.controller(policy_text(for_="0s"))
    rig.hot_edge()
    assert ctl.cycle().started == ["m1"]
    rig.finish(ctl)
    assert any("m1 could not start: KubehopError: fog: connection refused" in line
               for line in rig.said)
    assert metric(ctl, "kubehop_controller_migrations_total", result="failed") == 1
    assert ctl.failures == {KEY: 1}
    rig.clock.advance(5)
    assert only(ctl.cycle()).action == "hold"


def test_run_survives_a_failing_cycle_and_stops_on_request(rig: Rig) -> None:
    """:meth:`Controller.run` cycles until stopped; a cycle that raises is counted and
    reported and the next one runs."""
    ctl = rig.controller()
    real = ctl.cycle
    stop = threading.Event()
    calls: list[int] = []

    def cycle() -> CycleReport:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")
        if len(calls) == 3:
            stop.set()
        return real()

    ctl.cycle = cycle  # type: ignore[method-assign]
    ctl.run(stop, interval=0.01)
    assert len(calls) == 3
    assert metric(ctl, "kubehop_controller_cycles_total", outcome="failed") == 1
    assert metric(ctl, "kubehop_controller_cycles_total", outcome="ok") == 2
    assert "cycle failed: RuntimeError: boom" in rig.said


class Source:
    """A policy source (PlacementPolicy resource) that hands out ``policies`` in turn and
    keeps what it is told to publish."""

    def __init__(self, *policies: Policy, fail: bool = False) -> None:
        self.policies = list(policies)
        self.published: list[tuple[list[str], float]] = []
        self.fail = fail

    def refresh(self) -> Policy:
        return self.policies.pop(0) if len(self.policies) > 1 else self.policies[0]

    def publish(self, decisions: Sequence[Decision], at: float) -> None:
        if self.fail:
            raise KubehopError("cloud: PlacementPolicy status not writable")
        self.published.append(([d.action for d in decisions], at))


def test_a_policy_source_is_followed_each_cycle_and_told_the_decisions(rig: Rig) -> None:
    """With a policy source, each cycle first refreshes the policy (here edge-cpu's ``for:``
    drops from 1h to 0s: the next cycle fires and moves) and then publishes what it recorded;
    a publish that fails is reported, not fatal."""
    slow, fast = (parse_policy(policy_text(for_=f), "p.yaml") for f in ("1h", "0s"))
    source = Source(slow, fast)
    ctl = rig.controller(policy_text(for_="1h"), source=source)
    rig.hot_edge()
    first = ctl.cycle()
    assert only(first).action == "stay"
    assert source.published == [(["stay"], rig.clock.now)]
    rig.clock.advance(5)
    second = ctl.cycle()
    assert ctl.policy is fast and only(second).action == "move"
    assert source.published[-1] == (["move"], rig.clock.now)
    rig.finish(ctl)

    source.fail = True
    rig.clock.advance(5)
    ctl.cycle()
    assert "decisions not published: cloud: PlacementPolicy status not writable" in rig.said

"""``kubehop controller explain``: what would make a service move, read off a decision's table."""

from __future__ import annotations

from kubehop.controller.loop import what_would_move
from kubehop.domain.placement import ClusterView, PlacementSettings, ServiceView, decide

CLUSTERS = [ClusterView("edge", "edge", 1.0, 4e9, 0.4, 1e9),
            ClusterView("fog", "fog", 1.5, 8e9, 0.3, 1e9),
            ClusterView("cloud", "cloud", 2.0, 16e9, 0.2, 1e9)]
RTT = {("edge", "fog"): 10.0, ("fog", "cloud"): 30.0, ("edge", "cloud"): 40.0}
ORC8R = ServiceView("orc8r-ns", "orc8r", "edge", 0.1, 64e6, (("edge", 1.0),), 2.0,
                    max_latency_ms=50)


def table(excluded: dict[str, str] | None = None) -> dict[str, object]:
    d = decide(ORC8R, CLUSTERS, RTT, excluded or {}, PlacementSettings(1.0, 2.0, 0.05),
               now=1000.0, last_move=None, cooldown=10, min_dwell=20, since=0.0)
    return dict(d.table)


def test_each_other_candidate_says_the_score_it_lacks_in_headroom_and_in_milliseconds() -> None:
    lines = what_would_move(table(), ["cpu-exhausted: cpu_headroom below 0.25"])
    fog = next(line for line in lines if line.startswith("fog:"))
    # edge 0.6 + 2*(1-2/50)=2.52; fog (0.8-0.0667)+2*(1-12/50)=2.253: lacks 0.317 (+0.05 margin)
    assert "needs 0.317 more score" in fog, fog
    assert "or 7.9 ms less latency" in fog, fog  # 0.317 / (2 / 50 ms)
    assert any(line.startswith("cloud:") for line in lines)
    assert lines[-1] == "edge: a firing rule would force a move (cpu-exhausted: cpu_headroom " \
                        "below 0.25)"


def test_a_filtered_candidate_says_why_and_no_rule_line_when_the_service_must_leave() -> None:
    lines = what_would_move(table({"edge": "cpu-exhausted firing"}), ["r"])
    assert not any("firing rule would force" in line for line in lines), lines
    excluded_fog = what_would_move(table({"fog": "memory-exhausted firing"}), [])
    assert any(line.startswith("fog: cannot be chosen while") and "memory-exhausted" in line
               for line in excluded_fog), excluded_fog


def test_no_cluster_where_the_arrival_would_make_a_headroom_rule_hold() -> None:
    """The service's own load must not send it back to where it would trip the rule at once."""
    from kubehop.controller.loop import arrival_exclusions
    from kubehop.domain.policy import Rule

    rule = Rule("cpu-exhausted", "cluster", "cpu_headroom", below=0.3)
    on_fog = ServiceView("orc8r-ns", "orc8r", "fog", 0.1, 64e6, (("edge", 1.0),))
    tight = [ClusterView("edge", "edge", 1.0, 4e9, 0.65, 1e9), *CLUSTERS[1:]]
    assert arrival_exclusions((rule,), tight, on_fog) == {
        "edge": "cpu-exhausted would fire on arrival: cpu_headroom after the move 0.25 below 0.3"}
    roomy = [ClusterView("edge", "edge", 1.0, 4e9, 0.55, 1e9), *CLUSTERS[1:]]
    assert arrival_exclusions((rule,), roomy, on_fog) == {}
    only_fog = Rule("cpu-exhausted", "cluster", "cpu_headroom", below=0.3, clusters=("fog",))
    assert arrival_exclusions((only_fog,), tight, on_fog) == {}, "the current cluster never"

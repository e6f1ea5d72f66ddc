"""The controller's own Prometheus metrics, in a registry of its own (so tests can make many
controllers in one process): evaluations, decisions by action, migrations by result and their
duration, reaction time, the last successful cycle."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from kubehop.domain.model import Status
from kubehop.domain.placement import ACTIONS

RESULTS: tuple[str, ...] = (Status.SUCCEEDED, Status.ROLLED_BACK, Status.FAILED)
"""How a controller's migration ends (``kubehop_controller_migrations_total{result}``)."""
OUTCOMES: tuple[str, ...] = ("ok", "missing-data", "failed")
"""How a cycle ends (``kubehop_controller_cycles_total{outcome}``)."""


class ControllerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.evaluations = Counter("kubehop_controller_rule_evaluations_total",
                                   "Rule evaluations, by rule and resulting state.",
                                   ["rule", "state"], registry=self.registry)
        self.decisions = Counter("kubehop_controller_decisions_total",
                                 "Placement decisions, by action.", ["action"],
                                 registry=self.registry)
        self.migrations = Counter("kubehop_controller_migrations_total",
                                  "Migrations the controller ran, by result.", ["result"],
                                  registry=self.registry)
        self.duration = Histogram("kubehop_controller_migration_duration_seconds",
                                  "Duration of the controller's migrations.",
                                  buckets=(1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144),
                                  registry=self.registry)
        self.reaction = Histogram("kubehop_controller_reaction_seconds",
                                  "From the first evaluation a rule held to the migration's "
                                  "start.", buckets=(0.5, 1, 2, 5, 10, 15, 20, 30, 60, 120),
                                  registry=self.registry)
        self.cycles = Counter("kubehop_controller_cycles_total", "Cycles, by outcome.",
                              ["outcome"], registry=self.registry)
        self.last_cycle = Gauge("kubehop_controller_last_successful_cycle_timestamp_seconds",
                                "When the last cycle with complete data ended.",
                                registry=self.registry)
        self.last_any = Gauge("kubehop_controller_last_cycle_timestamp_seconds",
                              "When the last cycle ended (complete data or not).",
                              registry=self.registry)
        # Every known label value starts at 0: an alert on increase() sees the first failed
        # migration only if the series existed before it (deploy/prometheus/kubehop-rules.yml).
        for action in ACTIONS:
            self.decisions.labels(action)
        for result in RESULTS:
            self.migrations.labels(result)
        for outcome in OUTCOMES:
            self.cycles.labels(outcome)
        self.leader = Gauge("kubehop_controller_leader",
                            "1 while this replica holds the leader Lease and acts; 0 on a "
                            "standby (always 1 without --leader-elect).",
                            registry=self.registry)
        self.leader.set(1)
        self.last_cycle_at: float | None = None
        """For the health check: when the last cycle ended, complete data or not."""

    def evaluated(self, rule: str, state: str) -> None:
        self.evaluations.labels(rule, state).inc()

    def decided(self, action: str) -> None:
        self.decisions.labels(action).inc()

    def migrated(self, result: str, seconds: float) -> None:
        self.migrations.labels(str(result)).inc()
        if seconds > 0:
            self.duration.observe(seconds)

    def reacted(self, seconds: float) -> None:
        self.reaction.observe(max(0.0, seconds))

    def cycle_done(self, at: float, missing: bool) -> None:
        self.last_cycle_at = at
        self.cycles.labels("missing-data" if missing else "ok").inc()
        self.last_any.set(at)
        if not missing:
            self.last_cycle.set(at)

    def cycle_failed(self) -> None:
        self.cycles.labels("failed").inc()

"""The placement policy's model: the frozen dataclasses a parsed policy file becomes.

Pure data with the few derived properties the rule engine and the placement scorer ask for;
reading (:mod:`kubehop.domain.policy_parse`) and writing back to a dict
(:func:`kubehop.domain.policy.policy_to_dict`) live apart, so the model needs no YAML machinery.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from kubehop.domain.quantities import format_number

API_VERSION = "kubehop.io/v1alpha1"
KIND = "PlacementPolicy"
TIERS: tuple[str, ...] = ("edge", "fog", "cloud")
"""Known tiers, closest to the clients first: placement ties break in this order."""
SCOPES: tuple[str, ...] = ("cluster", "service")
BUILTINS: Mapping[str, str] = {
    "cpu_headroom": "cluster",
    "memory_headroom": "cluster",
    "service_latency_ms": "service",
}
"""Builtin expressions the controller computes itself, by name, with the scope each needs.
``*_headroom`` is the fraction of allocatable that is free (0..1)."""
FRACTION_BUILTINS = frozenset({"cpu_headroom", "memory_headroom"})




@dataclass(frozen=True)
class Rule:
    """A condition on one cluster or one service that, while firing, excludes the cluster
    (scope cluster) or the service's current cluster (scope service) from placement."""

    name: str
    scope: str
    expr: str
    below: float | None = None
    above: float | None = None
    for_seconds: float = 0.0
    keep_firing_for: float = 0.0
    clusters: tuple[str, ...] | None = None

    @property
    def builtin(self) -> bool:
        return self.expr in BUILTINS

    @property
    def threshold(self) -> float:
        value = self.below if self.below is not None else self.above
        assert value is not None  # parse_policy guarantees exactly one  # noqa: S101
        return value

    @property
    def comparison(self) -> str:
        """``below 0.2`` or ``above 100``: the condition, for explanations."""
        return f"{'below' if self.below is not None else 'above'} {format_number(self.threshold)}"

    def holds(self, value: float) -> bool:
        """Strictly below/above, like a PromQL ``<``/``>`` comparison."""
        if self.below is not None:
            return value < self.below
        return value > self.threshold

    def applies_to(self, cluster: str) -> bool:
        """Whether a cluster-scope rule watches this cluster (no list = every cluster)."""
        return self.clusters is None or cluster in self.clusters


@dataclass(frozen=True)
class ClientSite:
    """Where some of a service's clients are, and how much of its traffic they make."""

    cluster: str
    weight: float = 1.0


@dataclass(frozen=True)
class ServicePolicy:
    """A service the controller may move, and what its placement must respect."""

    name: str
    namespace: str
    clients: tuple[ClientSite, ...] = ()
    service_time_ms: float = 0.0
    allowed_tiers: tuple[str, ...] = TIERS
    max_latency_ms: float | None = None
    cpu: float | None = None
    memory: int | None = None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Weights:
    """How much each term of the placement score counts."""

    headroom: float = 1.0
    latency: float = 1.0


@dataclass(frozen=True)
class PlacementConfig:
    """Score weights and the damping that keeps the controller from flapping."""

    weights: Weights = field(default_factory=Weights)
    min_gain: float = 0.05
    cooldown: float = 60.0
    min_dwell: float = 120.0
    max_concurrent: int = 1
    max_data_age: float = 30.0


@dataclass(frozen=True)
class Policy:
    interval: float = 5.0
    rules: tuple[Rule, ...] = ()
    placement: PlacementConfig = field(default_factory=PlacementConfig)
    services: tuple[ServicePolicy, ...] = ()
    lines: Mapping[str, int] = field(default_factory=dict, compare=False, repr=False)
    """The line of each field path (``rules[0].expr``) in the source, for errors found later
    (promtool's, an unknown cluster's); empty for a policy not parsed from text."""

    def rule(self, name: str) -> Rule | None:
        return next((r for r in self.rules if r.name == name), None)

    def service(self, namespace: str, name: str) -> ServicePolicy | None:
        return next((s for s in self.services if (s.namespace, s.name) == (namespace, name)),
                    None)

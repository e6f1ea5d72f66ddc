"""The placement policy file: its schema, its validation and its round trip to a dict.

The controller reads one YAML document (``kind: PlacementPolicy``) naming the rules that exclude
clusters, the weights of the placement score, the damping knobs (minGain, cooldown, minDwell,
maxConcurrent) and the services it may move. A mistake is reported as ONE line,
``<source>:<line>: <field path>: <what is wrong; what to do>``, with the line of the YAML node at
fault, so a user can fix the file without guessing. Parsing is pure: the caller reads the file.

PromQL is not checked here (an adapter runs promtool); an ``expr`` is either a builtin name
(:data:`BUILTINS`) or a non-empty PromQL string kept as is.

This module is the face every importer uses; the model lives in :mod:`.policy_model`, the
parser in :mod:`.policy_parse`, durations and quantities in :mod:`.quantities`.
"""


from __future__ import annotations

from typing import Any

from kubehop.domain.policy_model import (
    API_VERSION,
    BUILTINS,
    FRACTION_BUILTINS,
    KIND,
    SCOPES,
    TIERS,
    ClientSite,
    PlacementConfig,
    Policy,
    Rule,
    ServicePolicy,
    Weights,
)
from kubehop.domain.policy_parse import parse_policy
from kubehop.domain.quantities import (
    format_bytes,
    format_duration,
    format_value,
    human_duration,
    parse_bytes,
    parse_duration,
)

# ---------------------------------------------------------------- back to a dict


def policy_to_dict(policy: Policy) -> dict[str, Any]:
    """The policy as the YAML it came from (camelCase, durations like ``30s``), every default
    written out; ``parse_policy(yaml.safe_dump(policy_to_dict(p)), ...) == p``."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "interval": format_duration(policy.interval),
        "rules": [_rule_to_dict(r) for r in policy.rules],
        "placement": {
            "weights": {"headroom": policy.placement.weights.headroom,
                        "latency": policy.placement.weights.latency},
            "minGain": policy.placement.min_gain,
            "cooldown": format_duration(policy.placement.cooldown),
            "minDwell": format_duration(policy.placement.min_dwell),
            "maxConcurrent": policy.placement.max_concurrent,
            "maxDataAge": format_duration(policy.placement.max_data_age),
        },
        "services": [_service_to_dict(s) for s in policy.services],
    }


def _rule_to_dict(rule: Rule) -> dict[str, Any]:
    out: dict[str, Any] = {"name": rule.name, "scope": rule.scope, "expr": rule.expr}
    if rule.below is not None:
        out["below"] = rule.below
    else:
        out["above"] = rule.above
    out["for"] = format_duration(rule.for_seconds)
    out["keepFiringFor"] = format_duration(rule.keep_firing_for)
    if rule.clusters is not None:
        out["clusters"] = list(rule.clusters)
    return out


def _service_to_dict(service: ServicePolicy) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": service.name,
        "namespace": service.namespace,
        "clients": [{"cluster": c.cluster, "weight": c.weight} for c in service.clients],
        "serviceTimeMs": service.service_time_ms,
        "allowedTiers": list(service.allowed_tiers),
    }
    if service.max_latency_ms is not None:
        out["maxLatencyMs"] = service.max_latency_ms
    if service.cpu is not None:
        out["cpu"] = service.cpu
    if service.memory is not None:
        out["memory"] = format_bytes(service.memory)
    return out


__all__ = [
    "API_VERSION",
    "BUILTINS",
    "FRACTION_BUILTINS",
    "KIND",
    "SCOPES",
    "TIERS",
    "ClientSite",
    "PlacementConfig",
    "Policy",
    "Rule",
    "ServicePolicy",
    "Weights",
    "format_bytes",
    "format_duration",
    "format_value",
    "human_duration",
    "parse_bytes",
    "parse_duration",
    "parse_policy",
    "policy_to_dict",
]

"""Reading a placement policy file: the YAML walker and the schema, one field at a time.

Every mistake becomes ONE line, ``<source>:<line>: <field path>: <what is wrong; what to do>``,
with the line of the YAML node at fault (see :mod:`kubehop.domain.policy`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

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
from kubehop.domain.quantities import DURATION_HINT, format_number, parse_bytes, parse_duration
from kubehop.errors import UsageError

_RULE_NAME = re.compile(r"[a-z0-9-]+")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


# ---------------------------------------------------------------- the YAML walker


class _Walker:
    """Reads typed values out of composed YAML nodes, failing with the node's line."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._constructor = yaml.SafeLoader("")
        self.lines: dict[str, int] = {}

    def fail(self, node: Node, path: str, message: str) -> NoReturn:
        raise UsageError(f"{self.source}:{node.start_mark.line + 1}: {path}: {message}")

    def scalar(self, node: Node) -> Any:
        return self._constructor.construct_object(node, deep=True)

    def describe(self, node: Node) -> str:
        """What the user wrote, for a 'must be X, not Y' message."""
        if isinstance(node, MappingNode):
            return "a mapping"
        if isinstance(node, SequenceNode):
            return "a list"
        value = self.scalar(node)
        if value is None:
            return "empty"
        if isinstance(value, bool):
            return f"the boolean {node.value}"
        if isinstance(value, int | float):
            return f"the number {node.value}"
        if isinstance(value, str):
            return f"the string {value!r}"
        return f"{type(value).__name__} {node.value}"

    def mapping(self, node: Node, path: str, allowed: Sequence[str]) -> dict[str, Node]:
        if not isinstance(node, MappingNode):
            self.fail(node, path, f"must be a mapping of {', '.join(allowed)}, "
                                  f"not {self.describe(node)}")
        self._constructor.flatten_mapping(node)
        out: dict[str, Node] = {}
        for key_node, value_node in node.value:
            key = self.scalar(key_node) if isinstance(key_node, ScalarNode) else None
            if not isinstance(key, str):
                self.fail(key_node, path, f"keys must be field names, not "
                                          f"{self.describe(key_node)}")
            where = f"{path}.{key}" if path != "(document)" else key
            if key not in allowed:
                self.fail(key_node, where, f"unknown field {key!r}; allowed fields: "
                                           f"{', '.join(allowed)}")
            if key in out:
                self.fail(key_node, where, f"duplicate field {key!r}; keep only one")
            out[key] = value_node
            self.lines[where] = key_node.start_mark.line + 1
        return out

    def sequence(self, node: Node, path: str, what: str) -> list[Node]:
        if isinstance(node, ScalarNode) and self.scalar(node) is None:
            return []
        if not isinstance(node, SequenceNode):
            self.fail(node, path, f"must be a list of {what}, not {self.describe(node)}")
        for i, item in enumerate(node.value):
            self.lines[f"{path}[{i}]"] = item.start_mark.line + 1
        return list(node.value)

    def string(self, node: Node, path: str, hint: str = "") -> str:
        value = self.scalar(node) if isinstance(node, ScalarNode) else None
        if not isinstance(value, str):
            self.fail(node, path, f"must be a string, not {self.describe(node)}"
                                  f"{'; ' + hint if hint else '; quote it'}")
        if not value.strip():
            self.fail(node, path, f"must not be empty{'; ' + hint if hint else ''}")
        return value

    def number(self, node: Node, path: str, *, minimum: float | None = 0.0,
               positive: bool = False, hint: str = "") -> float:
        value = self.scalar(node) if isinstance(node, ScalarNode) else None
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(node, path, f"must be a number, not {self.describe(node)}"
                                  f"{'; ' + hint if hint else ''}")
        if not math.isfinite(value):
            self.fail(node, path, f"must be a finite number, not {node.value}")
        self._check_range(node, path, float(value), minimum, positive)
        return float(value)

    def integer(self, node: Node, path: str, *, minimum: int) -> int:
        value = self.scalar(node) if isinstance(node, ScalarNode) else None
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(node, path, f"must be a whole number, not {self.describe(node)}")
        if value < minimum:
            self.fail(node, path, f"must be at least {minimum}, not {value}")
        return value

    def _check_range(self, node: Node, path: str, value: float, minimum: float | None,
                     positive: bool) -> None:
        if positive and value <= 0:
            self.fail(node, path, f"must be greater than 0, not {node.value}")
        if minimum is not None and value < minimum:
            what = "must not be negative" if minimum == 0 else f"must be at least {minimum}"
            self.fail(node, path, f"{what}, not {node.value}")

    def duration(self, node: Node, path: str, *, positive: bool = False) -> float:
        value = self.scalar(node) if isinstance(node, ScalarNode) else None
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            self.fail(node, path, f"must be a duration, not {self.describe(node)}; "
                                  f"{DURATION_HINT}")
        if isinstance(value, str):
            try:
                seconds = parse_duration(value)
            except ValueError as exc:
                self.fail(node, path, f"{exc}" if "negative" not in str(exc)
                          else f"must not be negative, not {value}; {DURATION_HINT}")
        else:
            if not math.isfinite(value):
                self.fail(node, path, f"must be a finite duration, not {node.value}")
            if value < 0:
                self.fail(node, path, f"must not be negative, not {node.value}; "
                                      f"{DURATION_HINT}")
            seconds = float(value)
        if positive and seconds <= 0:
            self.fail(node, path, f"must be longer than 0, not {node.value}; {DURATION_HINT}")
        return seconds

    def tier(self, node: Node, path: str) -> str:
        value = self.scalar(node) if isinstance(node, ScalarNode) else None
        if value not in TIERS:
            shown = repr(value) if isinstance(value, str) else self.describe(node)
            self.fail(node, path, f"unknown tier {shown}; tiers are {', '.join(TIERS)}")
        return str(value)

    def require(self, fields: Mapping[str, Node], parent: Node, path: str, key: str,
                hint: str) -> Node:
        if key not in fields:
            where = f"{path}.{key}" if path != "(document)" else key
            self.fail(parent, where, f"missing; {hint}")
        return fields[key]


# ---------------------------------------------------------------- the schema

_TOP = ("apiVersion", "kind", "interval", "rules", "placement", "services")
_RULE = ("name", "scope", "expr", "below", "above", "for", "keepFiringFor", "clusters")
_PLACEMENT = ("weights", "minGain", "cooldown", "minDwell", "maxConcurrent", "maxDataAge")
_WEIGHTS = ("headroom", "latency")
_SERVICE = ("name", "namespace", "clients", "serviceTimeMs", "allowedTiers", "maxLatencyMs",
            "cpu", "memory")
_CLIENT = ("cluster", "weight")


def parse_policy(text: str, source: str) -> Policy:
    """The policy in ``text`` (read from ``source``, named in errors), fully validated.

    Raises :class:`UsageError` with one line naming the file, the line, the field and the fix.
    """
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        said = " ".join(str(part) for part in (exc.context, exc.problem) if part)
        problem = " ".join((said or "malformed YAML").split())
        raise UsageError(f"{source}:{line}: (yaml): {problem}; fix the YAML syntax") from exc
    except yaml.YAMLError as exc:
        raise UsageError(f"{source}:1: (yaml): {' '.join(str(exc).split())}; "
                         f"fix the YAML syntax") from exc
    if root is None:
        raise UsageError(f"{source}:1: (document): the policy is empty; start it with "
                         f"'apiVersion: {API_VERSION}' and 'kind: {KIND}'")
    w = _Walker(source)
    try:
        return _policy(w, root)
    except yaml.YAMLError as exc:  # a tag SafeLoader refuses, met while constructing a scalar
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
        raise UsageError(f"{source}:{line}: (yaml): {problem}; use plain YAML values") from exc


def _policy(w: _Walker, root: Node) -> Policy:
    top = w.mapping(root, "(document)", _TOP)
    for key, expected in (("apiVersion", API_VERSION), ("kind", KIND)):
        node = w.require(top, root, "(document)", key, f"add '{key}: {expected}'")
        if not isinstance(node, ScalarNode) or w.scalar(node) != expected:
            w.fail(node, key, f"must be {expected}, not {w.describe(node)}")
    interval = w.duration(top["interval"], "interval", positive=True) if "interval" in top \
        else Policy.interval
    rules = tuple(_rule(w, n, f"rules[{i}]")
                  for i, n in enumerate(w.sequence(top["rules"], "rules", "rules")
                                        if "rules" in top else []))
    seen: dict[str, int] = {}
    for i, rule in enumerate(rules):
        if rule.name in seen:
            node = w.sequence(top["rules"], "rules", "rules")[i]
            w.fail(node, f"rules[{i}].name", f"duplicate rule name {rule.name!r} (also "
                                             f"rules[{seen[rule.name]}]); give each rule its "
                                             f"own name")
        seen[rule.name] = i
    placement = _placement(w, top["placement"]) if "placement" in top else PlacementConfig()
    service_nodes = w.sequence(top["services"], "services", "services") \
        if "services" in top else []
    services = tuple(_service(w, n, f"services[{i}]") for i, n in enumerate(service_nodes))
    keys: dict[str, int] = {}
    for i, service in enumerate(services):
        if service.key in keys:
            w.fail(service_nodes[i], f"services[{i}]",
                   f"duplicate service {service.key} (also services[{keys[service.key]}]); "
                   f"list each service once")
        keys[service.key] = i
    return Policy(interval=interval, rules=rules, placement=placement, services=services,
                  lines=dict(w.lines))


def _rule(w: _Walker, node: Node, path: str) -> Rule:
    f = w.mapping(node, path, _RULE)
    name = w.string(w.require(f, node, path, "name", "name the rule, e.g. name: edge-cpu"),
                    f"{path}.name")
    if not _RULE_NAME.fullmatch(name):
        w.fail(f["name"], f"{path}.name", f"{name!r} is not a rule name; use lower-case "
                                          f"letters, digits and '-'")
    expr = w.string(w.require(f, node, path, "expr",
                              f"give a builtin ({', '.join(BUILTINS)}) or a PromQL expression"),
                    f"{path}.expr", hint=f"give a builtin ({', '.join(BUILTINS)}) or a PromQL "
                                         f"expression")
    builtin_scope = BUILTINS.get(expr)
    if "scope" in f:
        scope = w.string(f["scope"], f"{path}.scope")
        if scope not in SCOPES:
            w.fail(f["scope"], f"{path}.scope", f"unknown scope {scope!r}; scopes are "
                                                f"{', '.join(SCOPES)}")
        if builtin_scope is not None and scope != builtin_scope:
            w.fail(f["scope"], f"{path}.scope", f"{expr} is a {builtin_scope}-scope builtin; "
                                                f"set scope: {builtin_scope}")
    elif builtin_scope is not None:
        scope = builtin_scope
    else:
        w.fail(node, f"{path}.scope", f"missing; a PromQL rule needs scope: "
                                      f"{' or scope: '.join(SCOPES)}")
    if "below" in f and "above" in f:
        w.fail(f["above"], f"{path}.above", "give only one of below: or above: per rule; "
                                            "split the condition into two rules")
    if "below" not in f and "above" not in f:
        w.fail(node, f"{path}.below", "missing; give the threshold as below: or above:")
    key = "below" if "below" in f else "above"
    threshold = w.number(f[key], f"{path}.{key}", minimum=None)
    if expr in FRACTION_BUILTINS and not 0 <= threshold <= 1:
        w.fail(f[key], f"{path}.{key}",
               f"{expr} is a fraction of allocatable (0..1); "
               f"give a threshold between 0 and 1, not {format_number(threshold)}")
    clusters: tuple[str, ...] | None = None
    if "clusters" in f:
        if scope != "cluster":
            w.fail(f["clusters"], f"{path}.clusters", "only a cluster-scope rule picks clusters; "
                                                      "remove clusters: or set scope: cluster")
        items = w.sequence(f["clusters"], f"{path}.clusters", "cluster names")
        clusters = _unique_strings(w, items, f"{path}.clusters", "cluster")
        if not clusters:
            w.fail(f["clusters"], f"{path}.clusters", "is empty; name at least one cluster or "
                                                      "drop the field to watch every cluster")
    return Rule(
        name=name, scope=scope, expr=expr,
        below=threshold if key == "below" else None,
        above=threshold if key == "above" else None,
        for_seconds=w.duration(f["for"], f"{path}.for") if "for" in f else 0.0,
        keep_firing_for=(w.duration(f["keepFiringFor"], f"{path}.keepFiringFor")
                         if "keepFiringFor" in f else 0.0),
        clusters=clusters,
    )


def _unique_strings(w: _Walker, items: list[Node], path: str, what: str) -> tuple[str, ...]:
    out: list[str] = []
    for i, item in enumerate(items):
        value = w.string(item, f"{path}[{i}]")
        if value in out:
            w.fail(item, f"{path}[{i}]", f"{what} {value!r} is listed twice; list it once")
        out.append(value)
    return tuple(out)


def _placement(w: _Walker, node: Node) -> PlacementConfig:
    path = "placement"
    f = w.mapping(node, path, _PLACEMENT)
    d = PlacementConfig()
    weights = w.mapping(f["weights"], f"{path}.weights", _WEIGHTS) if "weights" in f else {}
    return PlacementConfig(
        weights=Weights(
            headroom=(w.number(weights["headroom"], f"{path}.weights.headroom")
                      if "headroom" in weights else d.weights.headroom),
            latency=(w.number(weights["latency"], f"{path}.weights.latency")
                     if "latency" in weights else d.weights.latency)),
        min_gain=w.number(f["minGain"], f"{path}.minGain") if "minGain" in f else d.min_gain,
        cooldown=w.duration(f["cooldown"], f"{path}.cooldown") if "cooldown" in f
        else d.cooldown,
        min_dwell=w.duration(f["minDwell"], f"{path}.minDwell") if "minDwell" in f
        else d.min_dwell,
        max_concurrent=(w.integer(f["maxConcurrent"], f"{path}.maxConcurrent", minimum=1)
                        if "maxConcurrent" in f else d.max_concurrent),
        max_data_age=(w.duration(f["maxDataAge"], f"{path}.maxDataAge", positive=True)
                      if "maxDataAge" in f else d.max_data_age),
    )


def _service(w: _Walker, node: Node, path: str) -> ServicePolicy:
    f = w.mapping(node, path, _SERVICE)
    names: dict[str, str] = {}
    for key in ("name", "namespace"):
        value = w.string(w.require(f, node, path, key, f"give the service's {key}"),
                         f"{path}.{key}")
        if not _DNS_LABEL.fullmatch(value):
            w.fail(f[key], f"{path}.{key}", f"{value!r} is not a Kubernetes name; use at most "
                                            f"63 lower-case letters, digits and '-'")
        names[key] = value
    clients: list[ClientSite] = []
    client_nodes = w.sequence(f["clients"], f"{path}.clients",
                              "{cluster: NAME, weight: N} entries") if "clients" in f else []
    for i, client_node in enumerate(client_nodes):
        where = f"{path}.clients[{i}]"
        c = w.mapping(client_node, where, _CLIENT)
        cluster = w.string(w.require(c, client_node, where, "cluster",
                                     "name the cluster its clients are in"), f"{where}.cluster")
        if any(existing.cluster == cluster for existing in clients):
            w.fail(client_node, f"{where}.cluster", f"cluster {cluster!r} is listed twice; "
                                                    f"add the weights into one entry")
        weight = w.number(c["weight"], f"{where}.weight", positive=True) if "weight" in c \
            else 1.0
        clients.append(ClientSite(cluster=cluster, weight=weight))
    allowed = TIERS
    if "allowedTiers" in f:
        items = w.sequence(f["allowedTiers"], f"{path}.allowedTiers", "tiers")
        tiers = [w.tier(item, f"{path}.allowedTiers[{i}]") for i, item in enumerate(items)]
        if not tiers:
            w.fail(f["allowedTiers"], f"{path}.allowedTiers",
                   f"is empty; allow at least one of {', '.join(TIERS)} or drop the field")
        if len(set(tiers)) != len(tiers):
            w.fail(f["allowedTiers"], f"{path}.allowedTiers", "lists a tier twice; list each "
                                                              "once")
        allowed = tuple(t for t in TIERS if t in tiers)
    return ServicePolicy(
        name=names["name"], namespace=names["namespace"], clients=tuple(clients),
        service_time_ms=(w.number(f["serviceTimeMs"], f"{path}.serviceTimeMs")
                         if "serviceTimeMs" in f else 0.0),
        allowed_tiers=allowed,
        max_latency_ms=(w.number(f["maxLatencyMs"], f"{path}.maxLatencyMs", positive=True)
                        if "maxLatencyMs" in f else None),
        cpu=_cpu(w, f["cpu"], f"{path}.cpu") if "cpu" in f else None,
        memory=_memory(w, f["memory"], f"{path}.memory") if "memory" in f else None,
    )


def _cpu(w: _Walker, node: Node, path: str) -> float:
    """Cores as a number (0.1) or Kubernetes millicores (``100m``)."""
    value = w.scalar(node) if isinstance(node, ScalarNode) else None
    if isinstance(value, str) and re.fullmatch(r"\d+(\.\d+)?m", value.strip()):
        cores = float(value.strip()[:-1]) / 1000
    else:
        cores = w.number(node, path, hint="give cores like 0.1 or millicores like 100m")
    if cores <= 0:
        w.fail(node, path, f"must be greater than 0, not {node.value}")
    return cores


def _memory(w: _Walker, node: Node, path: str) -> int:
    value = w.scalar(node) if isinstance(node, ScalarNode) else None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        w.fail(node, path, f"must be a memory quantity like 128Mi, not {w.describe(node)}")
    if isinstance(value, float) and not math.isfinite(value):
        w.fail(node, path, f"must be a memory quantity like 128Mi, not {node.value}")
    try:
        size = parse_bytes(str(value) if not isinstance(value, float) else repr(value))
    except ValueError as exc:
        w.fail(node, path, str(exc))
    if size <= 0:
        w.fail(node, path, f"must be greater than 0, not {node.value}")
    return size

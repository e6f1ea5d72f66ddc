"""The placement policy file: parsed when right; one line with file, line, field and fix when
wrong; and written back to the same policy."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubehop.domain.policy import (
    BUILTINS,
    TIERS,
    ClientSite,
    PlacementConfig,
    Policy,
    Rule,
    ServicePolicy,
    Weights,
    format_duration,
    parse_bytes,
    parse_duration,
    parse_policy,
    policy_to_dict,
)
from kubehop.errors import UsageError

GOOD = """\
apiVersion: kubehop.io/v1alpha1
kind: PlacementPolicy
interval: 5s
rules:
  - name: edge-cpu-exhausted
    scope: cluster
    expr: cpu_headroom
    below: 0.2
    for: 10s
    keepFiringFor: 60s
    clusters: [edge]
  - name: orc8r-slow
    scope: service
    expr: histogram_quantile(0.9, rate(http_request_duration_seconds_bucket[1m])) * 1000
    above: 50
placement:
  weights: {headroom: 1.0, latency: 2.0}
  minGain: 0.05
  cooldown: 60s
  minDwell: 120s
  maxConcurrent: 2
  maxDataAge: 30s
services:
  - name: orc8r
    namespace: orc8r-ns
    clients: [{cluster: edge, weight: 1}]
    serviceTimeMs: 2
    allowedTiers: [edge, fog, cloud]
    maxLatencyMs: 100
    cpu: 0.1
    memory: 128Mi
"""

ERROR_LINE = re.compile(r"^p\.yaml:\d+: [^\n]+: [^\n]+$")
"""file:line, the field's path (a YAML key may hold spaces), the message: one line."""


def parse(text: str) -> Policy:
    return parse_policy(text, "p.yaml")


def error(text: str) -> str:
    with pytest.raises(UsageError) as caught:
        parse(text)
    message = str(caught.value)
    assert ERROR_LINE.match(message), message
    return message


def test_the_documented_example_parses_to_every_field() -> None:
    policy = parse(GOOD)
    assert policy.interval == 5.0
    assert policy.rules[0] == Rule(name="edge-cpu-exhausted", scope="cluster",
                                   expr="cpu_headroom", below=0.2, above=None, for_seconds=10.0,
                                   keep_firing_for=60.0, clusters=("edge",))
    slow = policy.rules[1]
    assert (slow.scope, slow.above, slow.below, slow.for_seconds, slow.clusters) == (
        "service", 50.0, None, 0.0, None)
    assert not slow.builtin and policy.rules[0].builtin
    assert policy.placement == PlacementConfig(weights=Weights(headroom=1.0, latency=2.0),
                                               min_gain=0.05, cooldown=60.0, min_dwell=120.0,
                                               max_concurrent=2, max_data_age=30.0)
    assert policy.services == (ServicePolicy(
        name="orc8r", namespace="orc8r-ns", clients=(ClientSite("edge", 1.0),),
        service_time_ms=2.0, allowed_tiers=TIERS, max_latency_ms=100.0, cpu=0.1,
        memory=128 * 2**20),)
    assert policy.service("orc8r-ns", "orc8r") is policy.services[0]
    assert policy.rule("orc8r-slow") is slow and policy.rule("nope") is None


def test_the_policy_knows_the_line_of_every_field() -> None:
    lines = parse(GOOD).lines
    assert lines["rules[1].expr"] == 14
    assert lines["rules[0]"] == 5
    assert lines["placement.weights.latency"] == 17
    assert lines["services[0].clients[0].cluster"] == 26


def test_a_minimal_policy_takes_the_defaults() -> None:
    policy = parse("apiVersion: kubehop.io/v1alpha1\nkind: PlacementPolicy\n")
    assert policy == Policy()
    assert policy.interval == 5.0 and policy.placement.max_concurrent == 1


def test_builtin_rules_take_their_scope_and_service_defaults_apply() -> None:
    policy = parse("""\
apiVersion: kubehop.io/v1alpha1
kind: PlacementPolicy
rules:
  - {name: mem, expr: memory_headroom, above: 0.9}
  - {name: lat, expr: service_latency_ms, above: 80}
services:
  - {name: agw, namespace: magma, allowedTiers: [cloud, edge]}
""")
    assert [r.scope for r in policy.rules] == ["cluster", "service"]
    agw = policy.services[0]
    assert agw.clients == () and agw.service_time_ms == 0 and agw.cpu is None
    assert agw.allowed_tiers == ("edge", "cloud")  # kept in tier order, closest first


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30.0), ("2m", 120.0), ("1h", 3600.0), ("500ms", 0.5), ("1m30s", 90.0),
     ("1.5m", 90.0), ("0.1s", 0.1), ("1d", 86400.0), ("0s", 0.0)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize("value", ["10", "7.5", "0"])
def test_plain_numbers_are_seconds(value: str) -> None:
    policy = parse(GOOD.replace("for: 10s", f"for: {value}"))
    assert policy.rules[0].for_seconds == float(value)


@pytest.mark.parametrize(
    ("text", "size"),
    [("128Mi", 128 * 2**20), ("1.5Gi", 3 * 2**29), ("1G", 10**9), ("4096", 4096),
     ("0.5Ki", 512), ("0.1Ki", 103), ("2Ti", 2 * 2**40), ("3k", 3000)],
)
def test_memory_quantities_are_bytes_rounded_up(text: str, size: int) -> None:
    assert parse_bytes(text) == size
    assert parse(GOOD.replace("memory: 128Mi", f"memory: {text}")).services[0].memory == size


@pytest.mark.parametrize(("text", "cores"), [("0.1", 0.1), ("100m", 0.1), ("2", 2.0),
                                             ("1500m", 1.5)])
def test_cpu_in_cores_or_millicores(text: str, cores: float) -> None:
    assert parse(GOOD.replace("cpu: 0.1", f"cpu: {text}")).services[0].cpu == cores


BAD: list[tuple[str, str, str]] = [
    # (replace this, with that, expected whole message)
    ("apiVersion: kubehop.io/v1alpha1", "apiVersion: v1",
     "p.yaml:1: apiVersion: must be kubehop.io/v1alpha1, not the string 'v1'"),
    ("apiVersion: kubehop.io/v1alpha1\n", "",
     "p.yaml:1: apiVersion: missing; add 'apiVersion: kubehop.io/v1alpha1'"),
    ("kind: PlacementPolicy", "kind: Placement",
     "p.yaml:2: kind: must be PlacementPolicy, not the string 'Placement'"),
    ("interval: 5s", "interval: 0s",
     "p.yaml:3: interval: must be longer than 0, not 0s; write it like 30s, 2m, 1h, 500ms or "
     "a number of seconds"),
    ("interval: 5s", "intervall: 5s",
     "p.yaml:3: intervall: unknown field 'intervall'; allowed fields: apiVersion, kind, "
     "interval, rules, placement, services"),
    ("    for: 10s", "    for: -10s",
     "p.yaml:9: rules[0].for: must not be negative, not -10s; write it like 30s, 2m, 1h, "
     "500ms or a number of seconds"),
    ("    for: 10s", "    for: -3",
     "p.yaml:9: rules[0].for: must not be negative, not -3; write it like 30s, 2m, 1h, 500ms "
     "or a number of seconds"),
    ("    for: 10s", "    for: 10 s",
     "p.yaml:9: rules[0].for: '10 s' is not a duration; write it like 30s, 2m, 1h, 500ms or "
     "a number of seconds"),
    ("    keepFiringFor: 60s", "    keepFiringFor: true",
     "p.yaml:10: rules[0].keepFiringFor: must be a duration, not the boolean true; write it "
     "like 30s, 2m, 1h, 500ms or a number of seconds"),
    ("    scope: cluster\n", "    scope: cluster\n    severity: high\n",
     "p.yaml:7: rules[0].severity: unknown field 'severity'; allowed fields: name, scope, "
     "expr, below, above, for, keepFiringFor, clusters"),
    ("    scope: cluster", "    scope: node",
     "p.yaml:6: rules[0].scope: unknown scope 'node'; scopes are cluster, service"),
    ("    scope: cluster", "    scope: service",
     "p.yaml:6: rules[0].scope: cpu_headroom is a cluster-scope builtin; set scope: cluster"),
    ("    scope: service\n", "",
     "p.yaml:12: rules[1].scope: missing; a PromQL rule needs scope: cluster or scope: "
     "service"),
    ("    below: 0.2", "    below: 0.2\n    above: 0.9",
     "p.yaml:9: rules[0].above: give only one of below: or above: per rule; split the "
     "condition into two rules"),
    ("    below: 0.2\n", "",
     "p.yaml:5: rules[0].below: missing; give the threshold as below: or above:"),
    ("    below: 0.2", "    below: 20",
     "p.yaml:8: rules[0].below: cpu_headroom is a fraction of allocatable (0..1); give a "
     "threshold between 0 and 1, not 20"),
    ("    below: 0.2", "    below: '0.2'",
     "p.yaml:8: rules[0].below: must be a number, not the string '0.2'"),
    ("    below: 0.2", "    below: .nan",
     "p.yaml:8: rules[0].below: must be a finite number, not .nan"),
    ("    expr: cpu_headroom", "    expr: ''",
     "p.yaml:7: rules[0].expr: must not be empty; give a builtin (cpu_headroom, "
     "memory_headroom, service_latency_ms) or a PromQL expression"),
    ("    expr: cpu_headroom", "    expr: 42",
     "p.yaml:7: rules[0].expr: must be a string, not the number 42; give a builtin "
     "(cpu_headroom, memory_headroom, service_latency_ms) or a PromQL expression"),
    ("  - name: edge-cpu-exhausted", "  - name: Edge_CPU",
     "p.yaml:5: rules[0].name: 'Edge_CPU' is not a rule name; use lower-case letters, digits "
     "and '-'"),
    ("  - name: orc8r-slow", "  - name: edge-cpu-exhausted",
     "p.yaml:12: rules[1].name: duplicate rule name 'edge-cpu-exhausted' (also rules[0]); "
     "give each rule its own name"),
    ("    clusters: [edge]", "    clusters: []",
     "p.yaml:11: rules[0].clusters: is empty; name at least one cluster or drop the field to "
     "watch every cluster"),
    ("    clusters: [edge]", "    clusters: [edge, edge]",
     "p.yaml:11: rules[0].clusters[1]: cluster 'edge' is listed twice; list it once"),
    ("    clusters: [edge]", "    clusters: edge",
     "p.yaml:11: rules[0].clusters: must be a list of cluster names, not the string 'edge'"),
    ("    above: 50", "    above: 50\n    clusters: [edge]",
     "p.yaml:16: rules[1].clusters: only a cluster-scope rule picks clusters; remove "
     "clusters: or set scope: cluster"),
    ("  weights: {headroom: 1.0, latency: 2.0}", "  weights: {headroom: 1.0, latncy: 2.0}",
     "p.yaml:17: placement.weights.latncy: unknown field 'latncy'; allowed fields: headroom, "
     "latency"),
    ("  weights: {headroom: 1.0, latency: 2.0}", "  weights: {headroom: -1, latency: 2.0}",
     "p.yaml:17: placement.weights.headroom: must not be negative, not -1"),
    ("  minGain: 0.05", "  minGain: -0.05",
     "p.yaml:18: placement.minGain: must not be negative, not -0.05"),
    ("  maxConcurrent: 2", "  maxConcurrent: 0",
     "p.yaml:21: placement.maxConcurrent: must be at least 1, not 0"),
    ("  maxConcurrent: 2", "  maxConcurrent: 1.5",
     "p.yaml:21: placement.maxConcurrent: must be a whole number, not the number 1.5"),
    ("  maxDataAge: 30s", "  maxDataAge: 0",
     "p.yaml:22: placement.maxDataAge: must be longer than 0, not 0; write it like 30s, 2m, "
     "1h, 500ms or a number of seconds"),
    ("  cooldown: 60s", "  cooldown: 1 minute",
     "p.yaml:19: placement.cooldown: '1 minute' is not a duration; write it like 30s, 2m, 1h, "
     "500ms or a number of seconds"),
    ("    namespace: orc8r-ns\n", "",
     "p.yaml:24: services[0].namespace: missing; give the service's namespace"),
    ("    namespace: orc8r-ns", "    namespace: Orc8r_NS",
     "p.yaml:25: services[0].namespace: 'Orc8r_NS' is not a Kubernetes name; use at most 63 "
     "lower-case letters, digits and '-'"),
    ("    clients: [{cluster: edge, weight: 1}]", "    clients: [{cluster: edge, weight: 0}]",
     "p.yaml:26: services[0].clients[0].weight: must be greater than 0, not 0"),
    ("    clients: [{cluster: edge, weight: 1}]",
     "    clients: [{cluster: edge}, {cluster: edge, weight: 2}]",
     "p.yaml:26: services[0].clients[1].cluster: cluster 'edge' is listed twice; add the "
     "weights into one entry"),
    ("    clients: [{cluster: edge, weight: 1}]", "    clients: [{weight: 1}]",
     "p.yaml:26: services[0].clients[0].cluster: missing; name the cluster its clients are in"),
    ("    serviceTimeMs: 2", "    serviceTimeMs: -2",
     "p.yaml:27: services[0].serviceTimeMs: must not be negative, not -2"),
    ("    allowedTiers: [edge, fog, cloud]", "    allowedTiers: [edge, moon]",
     "p.yaml:28: services[0].allowedTiers[1]: unknown tier 'moon'; tiers are edge, fog, "
     "cloud"),
    ("    allowedTiers: [edge, fog, cloud]", "    allowedTiers: []",
     "p.yaml:28: services[0].allowedTiers: is empty; allow at least one of edge, fog, cloud "
     "or drop the field"),
    ("    allowedTiers: [edge, fog, cloud]", "    allowedTiers: [edge, edge]",
     "p.yaml:28: services[0].allowedTiers: lists a tier twice; list each once"),
    ("    maxLatencyMs: 100", "    maxLatencyMs: 0",
     "p.yaml:29: services[0].maxLatencyMs: must be greater than 0, not 0"),
    ("    cpu: 0.1", "    cpu: 0",
     "p.yaml:30: services[0].cpu: must be greater than 0, not 0"),
    ("    cpu: 0.1", "    cpu: lots",
     "p.yaml:30: services[0].cpu: must be a number, not the string 'lots'; give cores like "
     "0.1 or millicores like 100m"),
    ("    memory: 128Mi", "    memory: 128MB",
     "p.yaml:31: services[0].memory: '128MB' is not a memory quantity; write bytes or a "
     "number with Ki, Mi, Gi, Ti (or k, M, G, T), e.g. 128Mi"),
    ("    memory: 128Mi", "    memory: [128Mi]",
     "p.yaml:31: services[0].memory: must be a memory quantity like 128Mi, not a list"),
    ("    memory: 128Mi", "    memory: 128Mi\n  - {name: orc8r, namespace: orc8r-ns}",
     "p.yaml:32: services[1]: duplicate service orc8r-ns/orc8r (also services[0]); list each "
     "service once"),
    ("    cpu: 0.1", "    cpu: 0.1\n    cpu: 0.2",
     "p.yaml:31: services[0].cpu: duplicate field 'cpu'; keep only one"),
]


@pytest.mark.parametrize(("old", "new", "message"), BAD, ids=[b[2][7:40] for b in BAD])
def test_a_bad_policy_is_one_line_naming_line_field_and_fix(old: str, new: str,
                                                            message: str) -> None:
    assert old in GOOD
    assert error(GOOD.replace(old, new, 1)) == message


HEAD = "apiVersion: kubehop.io/v1alpha1\nkind: PlacementPolicy\n"


@pytest.mark.parametrize(
    ("tail", "message"),
    [("placement: fast\n", "p.yaml:3: placement: must be a mapping of weights, minGain, "
      "cooldown, minDwell, maxConcurrent, maxDataAge, not the string 'fast'"),
     ("rules: 3\n", "p.yaml:3: rules: must be a list of rules, not the number 3"),
     ("services: [orc8r]\n", "p.yaml:3: services[0]: must be a mapping of name, namespace, "
      "clients, serviceTimeMs, allowedTiers, maxLatencyMs, cpu, memory, not the string "
      "'orc8r'"),
     ("rules:\n  - {expr: cpu_headroom, below: 0.1}\n",
      "p.yaml:4: rules[0].name: missing; name the rule, e.g. name: edge-cpu")],
)
def test_a_section_of_the_wrong_shape(tail: str, message: str) -> None:
    assert error(HEAD + tail) == message


@pytest.mark.parametrize(
    ("text", "fragment"),
    [("", "p.yaml:1: (document): the policy is empty"),
     ("apiVersion: [\n", "p.yaml:2: (yaml): "),
     ("a: 1\n---\nb: 2\n", "(yaml): expected a single document"),
     ("- 1\n- 2\n", "p.yaml:1: (document): must be a mapping of apiVersion"),
     ("apiVersion: kubehop.io/v1alpha1\nkind: PlacementPolicy\ninterval: !!python/name:os.system"
      " x\n", "p.yaml:3: (yaml): "),
     ("apiVersion: kubehop.io/v1alpha1\nkind: PlacementPolicy\n? [a]\n: 1\n",
      "p.yaml:3: (document): keys must be field names, not a list")],
)
def test_broken_yaml_is_one_line_too(text: str, fragment: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse(text)
    assert fragment in str(caught.value)
    assert "\n" not in str(caught.value)


def test_an_anchor_merge_is_read_like_plain_fields() -> None:
    text = GOOD.replace("  - name: orc8r-slow\n",
                        "  - <<: {for: 5s}\n    name: orc8r-slow\n")
    assert parse(text).rules[1].for_seconds == 5.0


def test_the_round_trip_keeps_the_example() -> None:
    policy = parse(GOOD)
    written = policy_to_dict(policy)
    assert written["rules"][0]["keepFiringFor"] == "1m"
    assert written["services"][0]["memory"] == "128Mi"
    assert parse(yaml.safe_dump(written)) == policy


# ------------------------------------------------------------------ properties

names = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
free_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Zl", "Zp")),
                    min_size=1, max_size=20).filter(lambda s: s.strip() != "")
non_negative = st.floats(0, 1e9, allow_nan=False)
positive = st.floats(1e-6, 1e9, allow_nan=False)
durations = st.one_of(st.floats(0, 1e7, allow_nan=False),
                      st.integers(0, 10**9).map(lambda ms: ms / 1000))


@st.composite
def rules(draw: st.DrawFn, name: str) -> Rule:
    expr = draw(st.one_of(st.sampled_from(sorted(BUILTINS)), free_text))
    scope = BUILTINS.get(expr) or draw(st.sampled_from(["cluster", "service"]))
    fraction = expr in ("cpu_headroom", "memory_headroom")
    threshold = draw(st.floats(0, 1) if fraction else st.floats(-1e9, 1e9))
    below = draw(st.booleans())
    clusters = draw(st.none() | st.lists(free_text, min_size=1, max_size=3, unique=True)
                    .map(tuple)) if scope == "cluster" else None
    return Rule(name=name, scope=scope, expr=expr, below=threshold if below else None,
                above=None if below else threshold, for_seconds=draw(durations),
                keep_firing_for=draw(durations), clusters=clusters)


@st.composite
def services(draw: st.DrawFn, key: tuple[str, str]) -> ServicePolicy:
    clients = draw(st.lists(st.tuples(free_text, positive), max_size=3,
                            unique_by=lambda c: c[0]))
    tiers = draw(st.lists(st.sampled_from(TIERS), min_size=1, unique=True))
    return ServicePolicy(
        namespace=key[0], name=key[1],
        clients=tuple(ClientSite(c, w) for c, w in clients),
        service_time_ms=draw(non_negative),
        allowed_tiers=tuple(t for t in TIERS if t in tiers),
        max_latency_ms=draw(st.none() | positive), cpu=draw(st.none() | positive),
        memory=draw(st.none() | st.integers(1, 2**50)))


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    rule_names = draw(st.lists(st.from_regex(r"[a-z0-9-]{1,12}", fullmatch=True), max_size=4,
                               unique=True))
    keys = draw(st.lists(st.tuples(names, names), max_size=3, unique=True))
    return Policy(
        interval=draw(durations.filter(lambda d: d > 0)),
        rules=tuple(draw(rules(n)) for n in rule_names),
        placement=PlacementConfig(
            weights=Weights(draw(non_negative), draw(non_negative)),
            min_gain=draw(non_negative), cooldown=draw(durations), min_dwell=draw(durations),
            max_concurrent=draw(st.integers(1, 100)),
            max_data_age=draw(durations.filter(lambda d: d > 0))),
        services=tuple(draw(services(k)) for k in keys))


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(policies())
def test_any_valid_policy_survives_the_round_trip(policy: Policy) -> None:
    assert parse(yaml.safe_dump(policy_to_dict(policy))) == policy


@given(durations)
def test_format_duration_parses_back_exactly(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


yaml_values = st.one_of(st.none(), st.booleans(), st.integers(-10, 10**6),
                        st.floats(allow_nan=True), free_text, st.sampled_from(
                            ["10s", "-1s", "1Gi", "edge", "moon", "cpu_headroom", "", "100m"]),
                        st.lists(st.integers(), max_size=2),
                        st.dictionaries(free_text, st.integers(), max_size=2))


def _paths(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(data, dict):
        for key, value in data.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            out += _paths(value, (*prefix, i))
    return out


BASE = yaml.safe_load(GOOD)
PATHS = _paths(BASE)


@settings(max_examples=300)
@given(st.sampled_from(PATHS), yaml_values)
def test_any_mutation_parses_or_fails_in_one_located_line(path: tuple[Any, ...],
                                                          value: Any) -> None:
    data = yaml.safe_load(GOOD)
    holder = data
    for step in path[:-1]:
        holder = holder[step]
    holder[path[-1]] = value
    try:
        parse(yaml.safe_dump(data))
    except UsageError as exc:
        assert ERROR_LINE.match(str(exc)), str(exc)

"""The PlacementPolicy object: its spec validated as a policy file, and the controller's latest
decisions published on it (status, bounded, and Events).

The reconciler validates specs with :func:`policy_from_spec`; the controller's policy source
reads the object and publishes its decisions with :func:`publish_decisions`.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Sequence

import yaml

from kubehop.adapters.kube import KubeCluster
from kubehop.adapters.prometheus import promql_error
from kubehop.controller import events
from kubehop.controller.crds import GROUP, NAMESPACE, VERSION, Manifest, cut_text, rfc3339
from kubehop.domain.placement import Decision
from kubehop.domain.policy import API_VERSION, BUILTINS, KIND, Policy, parse_policy
from kubehop.errors import KubehopError, UsageError

MAX_DECISIONS = 20
"""A policy's status keeps this many latest decisions (the store keeps them all)."""

_LINE = re.compile(r"^spec:\d+: ")


def policy_from_spec(spec: Manifest, *, check_promql: bool = True) -> Policy:
    """A PlacementPolicy's spec as the controller's :class:`Policy`, validated exactly as a
    policy file is (schema, then PromQL when promtool is there). Errors name the field under
    ``spec.`` (line numbers of a YAML the user never wrote would mislead)."""
    text = yaml.safe_dump({"apiVersion": API_VERSION, "kind": KIND, **spec}, sort_keys=False)
    try:
        policy = parse_policy(text, "spec")
    except UsageError as exc:
        message = _LINE.sub("", str(exc))
        raise UsageError(message if message.startswith("(") else f"spec.{message}") from exc
    if check_promql:
        for i, rule in enumerate(policy.rules):
            if rule.expr in BUILTINS:
                continue
            try:
                problem = promql_error(rule.expr)
            except KubehopError:
                break  # no promtool here: the controller checks it where it runs
            if problem:
                raise UsageError(f"spec.rules[{i}].expr: not valid PromQL ({problem}); use "
                                 f"PromQL or one of {', '.join(sorted(BUILTINS))}")
    return policy


def decision_entry(decision: Decision, at: float) -> Manifest:
    return {"at": rfc3339(at), "service": decision.service, "action": decision.action,
            "source": decision.source, "target": decision.target or "",
            "explanation": cut_text(decision.explanation),
            "migrationId": decision.migration_id or ""}


def latest_decisions(old: Sequence[Manifest], new: Sequence[Manifest], *,
                     limit: int = MAX_DECISIONS) -> list[Manifest]:
    """Newest first, at most ``limit``: the new ones (in the order given, newest last) ahead
    of what the status had."""
    return [*reversed(list(new)), *old][:limit]


def publish_decisions(kube: KubeCluster, policy_name: str, decisions: Sequence[Decision], *,
                      namespace: str = NAMESPACE, at: float | None = None) -> None:
    """Record the controller's decisions in the PlacementPolicy's status (the latest
    :data:`MAX_DECISIONS`) and as Events on it (``kubectl describe placementpolicy``)."""
    if not decisions:
        return
    at = time.time() if at is None else at
    obj = kube.get("PlacementPolicy", policy_name, namespace)
    if obj is None:
        raise UsageError(f"no PlacementPolicy {namespace}/{policy_name} in {kube.name}; "
                         "create it (kubectl apply) first")
    old = list((obj.get("status") or {}).get("decisions") or [])
    entries = [decision_entry(d, at) for d in decisions]
    kube.patch_status("PlacementPolicy", policy_name, namespace,
                      {"status": {"decisions": latest_decisions(old, entries)}})
    involved = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "PlacementPolicy",
                "name": policy_name, "namespace": namespace,
                "uid": obj["metadata"].get("uid", "")}
    for d in decisions:
        target = f" to {d.target}" if d.target else ""
        events.post([kube], events.object_event(
            involved, reason=f"Decision{d.action.title().replace('-', '')}",
            message=f"{d.action} {d.service} (in {d.source}){target}: {d.explanation}",
            warning=False, at=at, unique=uuid.uuid4().hex[:4]))

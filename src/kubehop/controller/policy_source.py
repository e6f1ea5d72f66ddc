"""Where the controller's policy comes from: a file (read once, at start) or a PlacementPolicy
object in the management cluster (read again at the start of every cycle, so ``kubectl apply``
of a new version takes effect at the next cycle, and its decisions published on it).

The controller asks its source for the policy before each cycle and hands it the decisions it
recorded after; a source never stops the controller once it has started: a new version that
does not validate, or an API server out of reach, keeps the last good policy and says why.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from kubehop.adapters.kube import KubeCluster
from kubehop.adapters.prometheus import promql_error
from kubehop.controller import resources
from kubehop.domain.placement import Decision
from kubehop.domain.policy import BUILTINS, Policy, parse_policy
from kubehop.errors import KubehopError, UsageError

Say = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def load_file(path: Path) -> Policy:
    """The policy file, validated: its schema (line-numbered errors), then every PromQL
    expression through Prometheus's own parser. Any problem stops the controller before it
    starts."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise UsageError(f"cannot read policy {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise UsageError(f"policy {path} is not UTF-8 text") from exc
    policy = parse_policy(text, str(path))
    for i, rule in enumerate(policy.rules):
        if rule.expr in BUILTINS:
            continue
        problem = promql_error(rule.expr)
        if problem:
            line = policy.lines.get(f"rules[{i}].expr", 0)
            raise UsageError(f"{path}:{line}: rules[{i}].expr: not valid PromQL ({problem}); "
                             f"use PromQL or one of {', '.join(sorted(BUILTINS))}")
    return policy


class PolicySource(Protocol):
    """What the controller needs from wherever its policy lives."""

    def refresh(self) -> Policy:
        """The policy for the cycle about to run (the last good one if the new is bad)."""
        ...

    def publish(self, decisions: Sequence[Decision], at: float) -> None:
        """Show the decisions a cycle recorded where the policy lives (may raise
        KubehopError: the controller reports it and goes on)."""
        ...


class FilePolicy:
    """A policy file: validated once at start; changing it needs a restart (as before)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.policy = load_file(path)

    def refresh(self) -> Policy:
        return self.policy

    def publish(self, decisions: Sequence[Decision], at: float) -> None:
        pass  # the store has them; a file has nowhere to show them


class ResourcePolicy:
    """The PlacementPolicy ``name`` in ``namespace`` of the management cluster.

    Constructing it reads and validates the object: missing or invalid raises UsageError, so
    the controller does not start on a policy it cannot follow. After that, :meth:`refresh`
    re-validates only when ``metadata.generation`` changed (a status write does not bump it,
    and promtool is not run every cycle)."""

    def __init__(self, kube: KubeCluster, name: str, *, namespace: str = resources.NAMESPACE,
                 check_promql: bool = True, say: Say = _quiet) -> None:
        self.kube = kube
        self.name = name
        self.namespace = namespace
        self.check_promql = check_promql
        self.say = say
        self.ref = f"PlacementPolicy {namespace}/{name} in {kube.name}"
        obj = kube.get("PlacementPolicy", name, namespace)
        if obj is None:
            raise UsageError(f"no {self.ref}; apply it first (kubectl apply -f POLICY.yaml, "
                             "after 'kubehop controller crds install')")
        self.policy = self._validate(obj)
        self.generation = obj["metadata"].get("generation")
        self.problem = ""
        """The last refresh's problem, said once (not every cycle) until it changes."""

    def _validate(self, obj: resources.Manifest) -> Policy:
        try:
            return resources.policy_from_spec(obj.get("spec") or {},
                                              check_promql=self.check_promql)
        except UsageError as exc:
            raise UsageError(f"{self.ref}: {exc}") from exc

    def refresh(self) -> Policy:
        try:
            obj = self.kube.get("PlacementPolicy", self.name, self.namespace)
            if obj is None:
                raise UsageError(f"{self.ref} is gone")
            generation = obj["metadata"].get("generation")
            if generation != self.generation:
                policy = self._validate(obj)
                self.policy, self.generation = policy, generation
                self.say(f"policy: {self.ref} generation {generation} in effect "
                         f"({len(policy.rules)} rules, {len(policy.services)} services)")
            self.problem = ""
        except KubehopError as exc:
            if str(exc) != self.problem:
                self.say(f"policy: {exc}; keeping the last good policy (generation "
                         f"{self.generation})")
            self.problem = str(exc)
        return self.policy

    def publish(self, decisions: Sequence[Decision], at: float) -> None:
        resources.publish_decisions(self.kube, self.name, decisions, namespace=self.namespace,
                                    at=at)


__all__ = ["FilePolicy", "PolicySource", "ResourcePolicy", "load_file"]

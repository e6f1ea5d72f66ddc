"""Where the controller's policy comes from: a PlacementPolicy read at start (missing or invalid:
one line, nothing started) and again every cycle (a new generation in effect at the next cycle;
a bad one, or the object gone, keeps the last good policy and says so once)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, cast

import pytest

from kubehop.adapters.kube import KubeCluster, KubeError
from kubehop.controller.policy_source import FilePolicy, ResourcePolicy
from kubehop.errors import UsageError

SPEC: dict[str, Any] = {
    "interval": "2s",
    "rules": [{"name": "cpu-exhausted", "scope": "cluster", "expr": "cpu_headroom",
               "below": 0.3, "for": "4s"}],
    "services": [{"name": "orc8r", "namespace": "orc8r-ns", "clients": [{"cluster": "edge"}]}],
}


class OneObject:
    """The API server's copy of one PlacementPolicy (for the pure refresh logic only)."""

    name = "cloud"

    def __init__(self, spec: dict[str, Any] | None) -> None:
        self.obj: dict[str, Any] | None = None
        self.error: str | None = None
        if spec is not None:
            self.obj = {"metadata": {"name": "paper", "generation": 1}, "spec": spec}

    def update(self, spec: dict[str, Any]) -> None:
        assert self.obj is not None
        self.obj["spec"] = spec
        self.obj["metadata"]["generation"] += 1

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        assert (kind, name, namespace) == ("PlacementPolicy", "paper", "kubehop-system")
        if self.error:
            raise KubeError(self.error)
        return copy.deepcopy(self.obj)


def source(kube: OneObject) -> tuple[ResourcePolicy, list[str]]:
    said: list[str] = []
    return ResourcePolicy(cast(KubeCluster, kube), "paper", check_promql=False,
                          say=said.append), said


def test_missing_policy_says_to_apply_it() -> None:
    with pytest.raises(UsageError) as err:
        source(OneObject(None))
    assert str(err.value).startswith("no PlacementPolicy kubehop-system/paper in cloud; apply it")


def test_invalid_policy_at_start_names_the_object_and_the_field() -> None:
    bad = copy.deepcopy(SPEC)
    bad["rules"][0]["below"] = 3
    with pytest.raises(UsageError) as err:
        source(OneObject(bad))
    message = str(err.value)
    assert message.startswith("PlacementPolicy kubehop-system/paper in cloud: spec.rules[0].below")
    assert "\n" not in message


def test_new_generation_takes_effect_and_a_bad_one_keeps_the_last_good() -> None:
    kube = OneObject(SPEC)
    src, said = source(kube)
    first = src.refresh()
    assert first.interval == 2.0 and said == []
    assert src.refresh() is first, "an unchanged generation is not parsed again"

    kube.update({**SPEC, "interval": "5s"})
    second = src.refresh()
    assert second.interval == 5.0
    assert said == ["policy: PlacementPolicy kubehop-system/paper in cloud generation 2 in "
                    "effect (1 rules, 1 services)"]

    bad = copy.deepcopy(SPEC)
    bad["rules"][0]["colour"] = "red"
    kube.update(bad)
    assert src.refresh() is second and src.refresh() is second
    assert len(said) == 2, "a bad version is reported once, not every cycle"
    assert "spec.rules[0]" in said[1] and "colour" in said[1]
    assert said[1].endswith("keeping the last good policy (generation 2)")

    kube.error = "cloud: get PlacementPolicy: connection refused"
    assert src.refresh() is second
    assert "connection refused" in said[2] and "keeping the last good policy" in said[2]

    kube.error = None
    kube.update({**SPEC, "interval": "7s"})
    assert src.refresh().interval == 7.0
    assert "generation 4 in effect" in said[3]

    kube.obj = None
    assert src.refresh().interval == 7.0
    assert "is gone; keeping the last good policy (generation 4)" in said[4]


def test_file_policy_is_read_once(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("apiVersion: kubehop.io/v1alpha1\nkind: PlacementPolicy\ninterval: 3s\n")
    src = FilePolicy(path)
    path.write_text("not: [a policy")
    assert src.refresh().interval == 3.0
    with pytest.raises(UsageError):
        FilePolicy(tmp_path / "missing.yaml")

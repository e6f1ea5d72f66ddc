"""``kubehop controller run --policy-resource NAME`` on the real testbed: the policy comes from
a PlacementPolicy in kubehop-system of the cloud cluster (the same policy test_controller.py
runs from a file), and the cycle's decision shows in the object's status and as an Event on it.
A missing or invalid object stops the controller before it starts, in one line."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubehop.adapters.store import Store
from kubehop.testbed import testbed as tb
from tests.conftest import KUBEHOP, assert_one_line_error

from .kube import kubectl
from .test_controller import NS as ORC8R_NS
from .test_controller import POLICY, decisions
from .test_migrate import fresh_sample
from .test_resources import CLOUD, NS, get, kubectl_run
from .test_resources import crds as crds

pytestmark = pytest.mark.usefixtures("testbed", "crds")

NAME = "policy-resource-test"
BROKEN = "policy-resource-broken"


def manifest(name: str, policy: str = POLICY) -> dict[str, Any]:
    """A PlacementPolicy whose spec is the policy file without its apiVersion and kind."""
    spec = {k: v for k, v in yaml.safe_load(policy).items() if k not in ("apiVersion", "kind")}
    return {"apiVersion": "kubehop.io/v1alpha1", "kind": "PlacementPolicy",
            "metadata": {"name": name, "namespace": NS}, "spec": spec}


def run_once(name: str, db: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBEHOP_INVENTORY": str(tb.inventory_file())}
    return subprocess.run([KUBEHOP, "controller", "run", "--policy-resource", name,
                           "--cluster", "cloud", "--once", "--dry-run", "--db",
                           f"sqlite:///{db}", "--listen", ""], capture_output=True, text=True,
                          env=env, timeout=300, check=False)


def policy_events(name: str) -> list[dict[str, Any]]:
    items = json.loads(kubectl(CLOUD, "get", "events", "-n", NS, "--field-selector",
                               f"involvedObject.name={name},involvedObject.kind=PlacementPolicy",
                               "-o", "json"))["items"]
    return list(items)


def remove(name: str) -> None:
    kubectl_run("delete", "placementpolicy", name, "-n", NS, "--ignore-not-found", "--wait=true")
    kubectl_run("delete", "events", "-n", NS, "--field-selector",
                f"involvedObject.name={name}")


@pytest.fixture
def applied() -> Iterator[None]:
    for name in (NAME, BROKEN):
        remove(name)
    try:
        yield
    finally:
        for name in (NAME, BROKEN):
            remove(name)


def test_decisions_are_published_on_the_policy_object(applied: None, tmp_path: Path) -> None:
    kubectl(CLOUD, "apply", "-f", "-", stdin=yaml.safe_dump(manifest(NAME)))
    fresh_sample()
    db = tmp_path / "controller.db"
    result = run_once(NAME, db)
    assert result.returncode == 0, result.stderr + result.stdout

    store = Store(f"sqlite:///{db}")
    try:
        recorded = decisions(store)
    finally:
        store.close()
    assert len(recorded) == 1, (recorded, result.stdout)
    action = str(recorded[0]["action"])
    assert f"{action:8} {ORC8R_NS}/orc8r" in result.stdout, result.stdout

    status = (get("placementpolicy", NAME) or {}).get("status") or {}
    published = status.get("decisions") or []
    assert [(d["action"], d["service"], d["source"]) for d in published] == [
        (action, f"{ORC8R_NS}/orc8r", recorded[0]["source"])], status
    assert published[0]["explanation"] == str(recorded[0]["explanation"])[:1024]

    events = policy_events(NAME)
    reason = f"Decision{action.title().replace('-', '')}"
    assert [(e["reason"], e["message"].split(":")[0]) for e in events] == [
        (reason, f"{action} {ORC8R_NS}/orc8r (in {recorded[0]['source']})"
         + (f" to {recorded[0]['target']}" if recorded[0]["target"] else ""))], events


def test_missing_policy_object_is_one_line_and_starts_nothing(applied: None,
                                                              tmp_path: Path) -> None:
    db = tmp_path / "controller.db"
    result = run_once("no-such-policy", db)
    assert result.returncode == 2, result
    assert_one_line_error(result, "no PlacementPolicy kubehop-system/no-such-policy in cloud",
                          "apply it")
    assert not db.exists(), "the controller must not start (nor make its store)"


def test_invalid_policy_object_names_the_field(applied: None, tmp_path: Path) -> None:
    kubectl(CLOUD, "apply", "-f", "-",
            stdin=yaml.safe_dump(manifest(BROKEN, POLICY.replace("below: 0.3", "below: 3"))))
    db = tmp_path / "controller.db"
    result = run_once(BROKEN, db)
    assert result.returncode == 2, result
    assert_one_line_error(result, f"PlacementPolicy kubehop-system/{BROKEN} in cloud: "
                          "spec.rules[0].below")
    assert not db.exists()
    assert not ((get("placementpolicy", BROKEN) or {}).get("status") or {}).get("decisions")

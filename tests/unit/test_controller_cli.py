"""A bad policy stops ``kubehop controller run`` before it starts: one line naming the file, the
line and the field (PromQL checked by Prometheus's own parser), a non-zero exit."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import assert_one_line_error, kubehop

GOOD = """\
apiVersion: kubehop.io/v1alpha1
kind: PlacementPolicy
interval: 2s
rules:
  - name: cpu-exhausted
    scope: cluster
    expr: cpu_headroom
    below: 0.25
    for: 4s
services:
  - name: orc8r
    namespace: orc8r-ns
    clients: [{cluster: edge}]
    allowedTiers: [edge, fog, cloud]
"""


@pytest.mark.parametrize(("change", "fragments"), [
    (("    for: 4s\n", "    for: 4s\n    colour: red\n"), (":10: rules[0]", "colour")),
    (("expr: cpu_headroom", "expr: sum(rate(x[5m]) by"), (":7: rules[0].expr", "PromQL")),
    (("[edge, fog, cloud]", "[edge, mars]"), (":14: services[0].allowedTiers", "mars")),
    (("for: 4s", "for: -4s"), (":9: rules[0].for",)),
], ids=["unknown-field", "bad-promql", "unknown-tier", "negative-duration"])
def test_bad_policy_is_one_line_naming_file_line_and_field(
        tmp_path: Path, change: tuple[str, str], fragments: tuple[str, ...]) -> None:
    path = tmp_path / "policy.yaml"
    assert change[0] in GOOD
    path.write_text(GOOD.replace(change[0], change[1]))
    for command in (("controller", "run", "--policy", str(path), "--db",
                     f"sqlite:///{tmp_path / 'c.db'}"), ("controller", "check", str(path))):
        result = kubehop(*command, timeout=60)
        assert result.returncode == 2, result
        assert_one_line_error(result, str(path), *fragments)
    assert not (tmp_path / "c.db").exists(), "the controller must not start (nor make its store)"


def test_good_policy_checks(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(GOOD)
    result = kubehop("controller", "check", str(path), timeout=60)
    assert result.returncode == 0, result.stderr
    assert "ok (1 rules, 1 services)" in result.stdout


def test_repository_policy_is_valid() -> None:
    policy = Path(__file__).resolve().parents[2] / "policies" / "paper.yaml"
    result = kubehop("controller", "check", str(policy), timeout=60)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("command", [["crds", "install"], ["reconcile"]])
def test_resources_commands_refuse_a_cluster_not_in_the_inventory(
        tmp_path: Path, command: list[str]) -> None:
    inv = tmp_path / "inventory.yaml"
    inv.write_text("kubeconfig: /dev/null\nclusters:\n  - {name: edge, context: edge, tier: edge, "
                   "loadBalancer: 10.0.0.10}\n")
    result = kubehop("controller", *command, "--cluster", "mars", "--inventory", str(inv))
    assert_one_line_error(result, "--cluster 'mars' is not in the inventory", "edge")


def test_rbac_grants_secrets_only_in_the_managed_namespaces() -> None:
    result = kubehop("controller", "rbac", "--manage", "orc8r-ns", "--manage", "shop")
    assert result.returncode == 0, result.stderr
    docs = list(yaml.safe_load_all(result.stdout))
    by = {(d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]): d for d in docs}
    assert docs[0]["kind"] == "Namespace" and docs[0]["metadata"]["name"] == "kubehop-system"
    cluster_rules = by[("ClusterRole", "", "kubehop-controller")]["rules"]
    assert not [r for r in cluster_rules if "secrets" in r["resources"]]
    assert not [r for r in cluster_rules if {"create", "update", "patch", "delete"}
                & set(r["verbs"]) and "pods" in r["resources"]]
    grants = {ns for (kind, ns, _), d in by.items() if kind == "RoleBinding"
              and d["roleRef"]["name"] == "kubehop-controller-namespace"}
    assert grants == {"orc8r-ns", "shop"}
    bound = by[("ClusterRoleBinding", "", "kubehop-controller")]
    assert bound["roleRef"]["name"] == "kubehop-controller"  # not the namespace role


def test_rbac_refuses_to_manage_a_system_namespace() -> None:
    assert_one_line_error(kubehop("controller", "rbac", "--manage", "kube-system"),
                          "kube-system", "cannot be managed")


@pytest.mark.parametrize("args", [
    [],
    ["--policy", "policy.yaml", "--policy-resource", "paper"],
], ids=["neither", "both"])
def test_run_needs_exactly_one_policy_source(tmp_path: Path, args: list[str]) -> None:
    (tmp_path / "policy.yaml").write_text(GOOD)
    args = [str(tmp_path / a) if a == "policy.yaml" else a for a in args]
    result = kubehop("controller", "run", *args, "--db", f"sqlite:///{tmp_path / 'c.db'}")
    assert_one_line_error(result, "give exactly one of --policy FILE and --policy-resource NAME")
    assert result.returncode == 2
    assert not (tmp_path / "c.db").exists()


def test_policy_resource_needs_a_management_cluster_in_the_inventory(tmp_path: Path) -> None:
    inv = tmp_path / "inventory.yaml"
    inv.write_text("kubeconfig: /dev/null\nprometheus: http://127.0.0.1:9\nclusters:\n"
                   "  - {name: edge, context: edge, tier: edge, loadBalancer: 10.0.0.10}\n")
    result = kubehop("controller", "run", "--policy-resource", "paper", "--cluster", "mars",
                     "--inventory", str(inv), "--db", f"sqlite:///{tmp_path / 'c.db'}")
    assert_one_line_error(result, "--cluster 'mars' is not in the inventory", "edge")
    assert not (tmp_path / "c.db").exists()

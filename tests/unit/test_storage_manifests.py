"""The testbed's storage manifests: per-cluster volume directory, images, default class, RBAC."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from kubehop.testbed import builds, layout, storage

PROV = "10.250.0.1:5000/kubehop/local-path-provisioner:abc"
HELPER = "10.250.0.1:5000/kubehop/volume-helper:def"


def _docs(c: layout.ClusterLayout, helper: str = HELPER) -> dict[str, dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(storage.manifests(c, PROV, helper)) if d]
    return {f"{d['kind']}/{d['metadata']['name']}": d for d in docs}


@pytest.fixture
def fog(monkeypatch: pytest.MonkeyPatch) -> layout.ClusterLayout:
    monkeypatch.setenv("KUBEHOP_STATE", "/srv/tb")
    return layout.layouts(("edge", "fog"))[1]


def test_volumes_live_in_the_clusters_own_state_directory(fog: layout.ClusterLayout) -> None:
    cm = _docs(fog)["ConfigMap/local-path-config"]
    config = json.loads(cm["data"]["config.json"])
    assert config == {"nodePathMap": [{"node": storage.ALL_NODES,
                                       "paths": ["/srv/tb/clusters/fog/volumes"]}]}
    assert "rm -rf \"$VOL_DIR\"" in cm["data"]["teardown"]
    assert "mkdir -m 0777 -p \"$VOL_DIR\"" in cm["data"]["setup"]


def test_images_and_helper_pod(fog: layout.ClusterLayout) -> None:
    docs = _docs(fog)
    dep = docs["Deployment/local-path-provisioner"]
    assert dep["metadata"]["namespace"] == storage.NAMESPACE
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == PROV
    assert container["args"] == ["start", "--config", "/etc/config/config.json",
                                 "--helper-image", HELPER]
    helper = yaml.safe_load(docs["ConfigMap/local-path-config"]["data"]["helperPod.yaml"])
    assert helper["spec"]["containers"][0]["image"] == HELPER
    assert helper["spec"]["securityContext"]["runAsUser"] == 0, "must remove any uid's files"


def test_default_storage_class(fog: layout.ClusterLayout) -> None:
    sc = _docs(fog)["StorageClass/local-path"]
    assert sc["metadata"]["annotations"] == {storage.DEFAULT_CLASS_ANNOTATION: "true"}
    assert sc["provisioner"] == storage.PROVISIONER
    assert sc["volumeBindingMode"] == "WaitForFirstConsumer"
    assert sc["reclaimPolicy"] == "Delete"


def test_rbac_is_upstreams_least_privilege(fog: layout.ClusterLayout) -> None:
    docs = _docs(fog)
    role = docs["Role/local-path-provisioner-role"]
    assert role["metadata"]["namespace"] == storage.NAMESPACE
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": [
        "get", "list", "watch", "create", "patch", "update", "delete"]}]
    cluster_rules = docs["ClusterRole/local-path-provisioner-role"]["rules"]
    writable = {r for rule in cluster_rules if set(rule["verbs"]) & {"create", "delete"}
                for r in rule["resources"]}
    assert writable == {"persistentvolumes", "events"}
    assert not any("*" in rule["verbs"] or "*" in rule["resources"] for rule in cluster_rules)
    sa = docs["ServiceAccount/local-path-provisioner-service-account"]["metadata"]
    for binding in ("RoleBinding/local-path-provisioner-bind",
                    "ClusterRoleBinding/local-path-provisioner-bind"):
        assert docs[binding]["subjects"] == [
            {"kind": "ServiceAccount", "name": sa["name"], "namespace": sa["namespace"]}]


def test_a_new_helper_image_restarts_the_provisioner(fog: layout.ClusterLayout) -> None:
    def config_hash(helper: str) -> str:
        dep = _docs(fog, helper)["Deployment/local-path-provisioner"]
        return str(dep["spec"]["template"]["metadata"]["annotations"][
            storage.CONFIG_HASH_ANNOTATION])

    assert config_hash(HELPER) == config_hash(HELPER)
    assert config_hash(HELPER) != config_hash(HELPER + "x")


def test_namespace_comes_first() -> None:
    c = layout.layouts(("edge",))[0]
    first = next(d for d in yaml.safe_load_all(storage.manifests(c, PROV, HELPER)) if d)
    assert (first["kind"], first["metadata"]["name"]) == ("Namespace", storage.NAMESPACE)


def test_provisioner_build_pins_the_version() -> None:
    comp = builds.local_path_provisioner()
    assert comp.key == f"local-path-provisioner-v{layout.LOCAL_PATH_PROVISIONER_VERSION}"
    assert f"github.com/rancher/local-path-provisioner v{layout.LOCAL_PATH_PROVISIONER_VERSION}" \
        in comp.go_mod
    assert comp in builds.all_components()

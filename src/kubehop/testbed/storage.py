"""Storage in every testbed cluster: Rancher's local-path-provisioner and a default class.

PVCs then bind as on a managed cluster: a claim without ``storageClassName`` gets the default
class ``local-path``; once a pod uses it, the provisioner's helper pod makes a directory under
the cluster's state (``clusters/<name>/volumes``, removed by ``down``) and a hostPath volume
bound to the node; deleting the claim deletes the directory (reclaim ``Delete``). The kubelets
run in the host's mount namespace, so the helper pods and the volumes see host paths directly.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import yaml

from kubehop.testbed import images
from kubehop.testbed.layout import ClusterLayout

NAMESPACE = "local-path-storage"
DEPLOYMENT = "local-path-provisioner"
CONFIG_MAP = "local-path-config"
STORAGE_CLASS = "local-path"
PROVISIONER = "rancher.io/local-path"
DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"
CONFIG_HASH_ANNOTATION = "kubehop.io/config-hash"
ALL_NODES = "DEFAULT_PATH_FOR_NON_LISTED_NODES"
"""upstream's key in ``nodePathMap`` for every node not listed (the testbed has one per
cluster)."""


def config_json(c: ClusterLayout) -> str:
    """The provisioner's ``config.json``: every volume of ``c`` under its volume directory."""
    return json.dumps({"nodePathMap": [{"node": ALL_NODES, "paths": [str(c.volumes_dir)]}]},
                      indent=2)


def helper_pod(helper_image: str) -> dict[str, Any]:
    """The template of the pods that make and remove volume directories. They run as root so
    ``rm -rf`` removes whatever a pod of any uid left in its volume; the provisioner adds the
    hostPath of the volume directory, the scripts, the command and the node."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "helper-pod"},
        "spec": {
            "priorityClassName": "system-node-critical",
            "tolerations": [{"key": "node.kubernetes.io/disk-pressure", "operator": "Exists",
                             "effect": "NoSchedule"}],
            "securityContext": {"runAsUser": 0, "runAsGroup": 0},
            "containers": [{"name": "helper-pod", "image": helper_image,
                            "imagePullPolicy": "IfNotPresent"}],
        },
    }


def manifests(c: ClusterLayout, provisioner_image: str, helper_image: str) -> str:
    """Everything the provisioner needs in cluster ``c`` (namespace, RBAC as upstream's,
    default StorageClass, ConfigMap, Deployment), as one YAML stream in apply order."""
    docs = [d for d in yaml.safe_load_all(
        images.asset("manifests", "local-path-storage.yaml").read_text()) if d]
    by_kind = {d["kind"]: d for d in docs}
    config = by_kind["ConfigMap"]["data"]
    config["config.json"] = config_json(c)
    config["helperPod.yaml"] = yaml.safe_dump(helper_pod(helper_image), sort_keys=False)
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]
    template = by_kind["Deployment"]["spec"]["template"]
    template["metadata"]["annotations"] = {CONFIG_HASH_ANNOTATION: digest}
    container = template["spec"]["containers"][0]
    container["image"] = provisioner_image
    container["args"][container["args"].index("--helper-image") + 1] = helper_image
    return yaml.safe_dump_all(docs, sort_keys=False)

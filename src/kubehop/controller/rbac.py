"""The controller's least-privilege RBAC in the management cluster (docs/rbac.md says why each
rule is there): the static objects from ``assets/rbac.yaml``, plus one RoleBinding per managed
namespace, which is the only place the controller may touch Secrets, Pods and workloads."""

from __future__ import annotations

from importlib import resources
from typing import Any

import yaml

from kubehop.errors import UsageError

NAMESPACE = "kubehop-system"
SERVICE_ACCOUNT = "kubehop-controller"
NAMESPACE_ROLE = "kubehop-controller-namespace"
USER = f"system:serviceaccount:{NAMESPACE}:{SERVICE_ACCOUNT}"
"""The name the API server authorizes the controller's requests as."""

LABELS = {"app.kubernetes.io/name": "kubehop-controller", "app.kubernetes.io/managed-by": "kubehop"}


def manifests(managed_namespaces: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Everything to apply, in order: the namespace, the static RBAC, the namespace grants."""
    for ns in managed_namespaces:
        if ns in (NAMESPACE, "kube-system", "kube-public", "kube-node-lease", "default"):
            raise UsageError(f"namespace {ns!r} cannot be managed by kubehop (a system or its "
                             "own namespace); manage the namespaces of your services")
    text = resources.files("kubehop.controller").joinpath("assets", "rbac.yaml").read_text()
    static = [d for d in yaml.safe_load_all(text) if d]
    grants = [{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": "kubehop-controller", "namespace": ns, "labels": LABELS},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                           "name": NAMESPACE_ROLE},
               "subjects": [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT,
                             "namespace": NAMESPACE}]}
              for ns in sorted(set(managed_namespaces))]
    namespace = {"apiVersion": "v1", "kind": "Namespace",
                 "metadata": {"name": NAMESPACE, "labels": LABELS}}
    return [namespace, *static, *grants]

"""The controller's RBAC in the management cluster (cloud): it can do its job, and it cannot read
Secrets in namespaces it does not manage, checked by the API server's authorizer
(``kubectl auth can-i --as``) and by real requests with a token of its ServiceAccount."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from kubehop.adapters.kube import KubeCluster
from kubehop.adapters.lease import LeaderElector
from kubehop.controller import rbac
from kubehop.controller.crds import install_crds
from kubehop.testbed import testbed as tb

from .kube import kubectl

pytestmark = pytest.mark.usefixtures("testbed")

MANAGED = "kubehop-rbac-managed"


@pytest.fixture(scope="module")
def installed() -> Iterator[None]:
    kubectl("cloud", "apply", "-f", "-", stdin=yaml.safe_dump(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": MANAGED}}))
    with KubeCluster(kubeconfig=str(tb.kubeconfig_file()), context="cloud",
                     name="cloud") as cloud:
        # The grants name kubehop's own kinds: the authorizer says yes only to kinds that
        # exist, so the CRDs come first (no other module may be relied on to have installed
        # them).
        install_crds(cloud)
        cloud.apply_yaml(yaml.safe_dump_all(rbac.manifests((MANAGED,))))
    yield
    kubectl("cloud", "delete", "namespace", MANAGED, "--ignore-not-found", "--wait=false")
    kubectl("cloud", "-n", rbac.NAMESPACE, "delete", "lease", "rbac-test-lease",
            "--ignore-not-found")


def can_i(*args: str) -> bool:
    argv = [str(tb.kubectl_binary()), "--kubeconfig", str(tb.kubeconfig_file()), "--context",
            "cloud", "auth", "can-i", *args, f"--as={rbac.USER}"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    answer = result.stdout.strip()
    assert answer in ("yes", "no"), (args, answer, result.stderr[-300:])
    return answer == "yes"


ALLOWED = [
    ("get", "leases.coordination.k8s.io", "-n", rbac.NAMESPACE),
    ("update", "leases.coordination.k8s.io", "-n", rbac.NAMESPACE),
    ("get", "secrets", "-n", rbac.NAMESPACE),  # its kubeconfig Secrets
    ("create", "configmaps", "-n", rbac.NAMESPACE),
    ("list", "migrations.kubehop.io", "-A"),
    ("update", "migrations.kubehop.io/status", "-n", rbac.NAMESPACE),
    ("update", "placementpolicies.kubehop.io/finalizers", "-n", rbac.NAMESPACE),
    ("list", "pods", "-A"),
    ("list", "nodes"),
    ("create", "events", "-n", "default"),
    ("create", "namespaces"),
    ("get", "secrets", "-n", MANAGED),
    ("create", "secrets", "-n", MANAGED),
    ("create", "pods/proxy", "-n", MANAGED),
    ("patch", "statefulsets.apps/scale", "-n", MANAGED),
    ("create", "ingressroutes.traefik.io", "-n", MANAGED),
    ("create", "networkpolicies.networking.k8s.io", "-n", MANAGED),
    ("delete", "networkpolicies.networking.k8s.io", "-n", MANAGED),
]
DENIED = [
    ("get", "secrets", "-n", "kube-system"),
    ("list", "secrets", "-n", "kube-system"),
    ("get", "secrets", "-n", "default"),
    ("list", "secrets", "-n", "default"),
    ("list", "secrets", "-A"),
    ("create", "secrets", "-n", rbac.NAMESPACE),
    ("create", "pods", "-n", "kube-system"),  # a pod could mount kube-system's Secrets
    ("create", "deployments.apps", "-n", "default"),
    ("create", "rolebindings.rbac.authorization.k8s.io", "-n", MANAGED),  # no escalation
    ("delete", "namespaces"),
    ("list", "leases.coordination.k8s.io", "-n", "kube-system"),
]


@pytest.mark.usefixtures("installed")
def test_authorizer_grants_the_job_and_refuses_foreign_secrets() -> None:
    wrong_yes = [a for a in DENIED if can_i(*a)]
    wrong_no = [a for a in ALLOWED if not can_i(*a)]
    assert not wrong_yes and not wrong_no, {"allowed but must not be": wrong_yes,
                                            "refused but needed": wrong_no}


def _as_controller(token: str) -> KubeCluster:
    """The cloud cluster reached with a token of the controller's ServiceAccount."""
    config: dict[str, Any] = yaml.safe_load(tb.kubeconfig_file().read_text())
    cluster = next(c for c in config["clusters"] if c["name"] == "cloud")
    return KubeCluster(kubeconfig={
        "apiVersion": "v1", "kind": "Config", "clusters": [cluster],
        "users": [{"name": "controller", "user": {"token": token}}],
        "contexts": [{"name": "controller",
                      "context": {"cluster": "cloud", "user": "controller"}}],
        "current-context": "controller"}, context="controller", name="cloud-as-controller")


@pytest.mark.usefixtures("installed")
def test_a_token_of_the_service_account_gets_403_on_foreign_secrets() -> None:
    # TokenRequest API (kubectl create token); the token stays in memory, never printed.
    token = kubectl("cloud", "-n", rbac.NAMESPACE, "create", "token", rbac.SERVICE_ACCOUNT,
                    "--duration", "10m").strip()
    assert token.count(".") == 2
    with _as_controller(token) as kube:
        for ns in ("kube-system", "default"):
            code, _ = kube.get_path(f"/api/v1/namespaces/{ns}/secrets")
            assert code == 403, (ns, code)
            code, _ = kube.get_path(f"/api/v1/namespaces/{ns}/secrets/anything")
            assert code == 403, (ns, code)
        code, _ = kube.get_path(f"/api/v1/namespaces/{MANAGED}/secrets")
        assert code == 200, code
        code, _ = kube.get_path(f"/api/v1/namespaces/{rbac.NAMESPACE}/secrets")
        assert code == 200, code
        # What it needs works with nothing more: leader election on its Lease.
        elector = LeaderElector(kube, "rbac-test-lease", rbac.NAMESPACE, "rbac-test",
                                lease_seconds=4, renew_every=1)
        assert elector.try_acquire_or_renew() == "acquired", elector.last_error
        assert elector.try_acquire_or_renew() == "renewed", elector.last_error
        assert elector.release()

"""``kubehop controller install``: the controller as a Deployment in the management cluster.

What goes in (namespace ``kubehop-system``):

- the CRDs, and the controller's ServiceAccount with its least-privilege RBAC
  (``docs/rbac.md``);
- a Secret ``kubehop-members``: the inventory and a kubeconfig for the member clusters. In the
  management cluster itself the controller uses its ServiceAccount's token, not a copy of the
  user's credentials;
- its store: a URL given by the user (Secret ``kubehop-db``), or a PostgreSQL StatefulSet on a
  claim with a generated password (the password never leaves the cluster's Secret);
- a Deployment of two replicas running ``kubehop controller reconcile --leader-elect``: both
  run, the one holding the ``Lease`` acts, the other takes over when the lease expires.

The manifests are built by pure functions, so what ``install`` applies can be read and tested
without a cluster.
"""

from __future__ import annotations

import copy
import secrets
from collections.abc import Callable
from typing import Any

import yaml

from kubehop.adapters.kube import KubeCluster, KubeError, Manifest
from kubehop.controller.rbac import SERVICE_ACCOUNT
from kubehop.controller.resources import NAMESPACE, install_crds
from kubehop.errors import UsageError
from kubehop.waiting import wait_for

MEMBERS_SECRET = "kubehop-members"  # noqa: S105 (a name)
DB_SECRET = "kubehop-db"  # noqa: S105 (a name)
DB_SERVICE = "kubehop-db"
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
CONFIG_DIR = "/etc/kubehop"
HTTP_PORT = 9180
"""The API and dashboard in each controller pod (``kubectl port-forward`` reaches it)."""
LABELS = {"app.kubernetes.io/name": "kubehop-controller"}
DB_LABELS = {"app.kubernetes.io/name": "kubehop-db"}


def in_cluster_config(inventory: dict[str, Any], kubeconfig: dict[str, Any], management: str
                      ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The inventory and kubeconfig the controller's pods read: the inventory points at the
    mounted kubeconfig and drops ``proxyRules`` (node commands a pod cannot run); the
    management cluster's context authenticates with the pod's ServiceAccount token (its CA
    from the same mount), the members' keep the credentials the user gave."""
    inv = copy.deepcopy(inventory)
    inv["kubeconfig"] = f"{CONFIG_DIR}/kubeconfig"
    if (inv.get("dns") or {}).get("tsigKeyFile"):
        inv["dns"]["tsigKeyFile"] = f"{CONFIG_DIR}/tsig.key"
    context_of = {}
    for c in inv.get("clusters") or []:
        c.pop("proxyRules", None)
        context_of[c["name"]] = c.get("context", c["name"])
    if management not in context_of:
        raise UsageError(f"--cluster {management!r} is not in the inventory; clusters are "
                         f"{', '.join(sorted(context_of))}")
    wanted = set(context_of.values())
    contexts = [c for c in kubeconfig.get("contexts") or [] if c["name"] in wanted]
    clusters = {c["context"]["cluster"] for c in contexts}
    users = {c["context"].get("user") for c in contexts if c["name"] != context_of[management]}
    mgmt = next((c for c in contexts if c["name"] == context_of[management]), None)
    mgmt_cluster = None if mgmt is None else next(
        (c for c in kubeconfig.get("clusters") or []
         if c["name"] == mgmt["context"]["cluster"]), None)
    if mgmt is None or mgmt_cluster is None:
        raise UsageError(f"the kubeconfig has no context {context_of[management]!r} (with its "
                         f"cluster) for --cluster {management}; fix the inventory's context")
    own_cluster = {"name": "kubehop-in-cluster", "cluster": {
        "server": mgmt_cluster["cluster"]["server"],
        "certificate-authority": f"{SA_DIR}/ca.crt"}}
    own_user = {"name": "kubehop-in-cluster", "user": {"tokenFile": f"{SA_DIR}/token"}}
    mgmt = {"name": mgmt["name"], "context": {"cluster": "kubehop-in-cluster",
                                              "user": "kubehop-in-cluster"}}
    out = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [c for c in kubeconfig.get("clusters") or [] if c["name"] in clusters
                     and c["name"] != mgmt_cluster["name"]] + [own_cluster],
        "users": [u for u in kubeconfig.get("users") or [] if u["name"] in users]
                 + [own_user],
        "contexts": [c for c in contexts if c["name"] != mgmt["name"]] + [mgmt],
        "current-context": mgmt["name"],
    }
    return inv, out


FILE_KEYS = {"certificate-authority": "certificate-authority-data",
             "client-certificate": "client-certificate-data", "client-key": "client-key-data"}


def inline_files(kubeconfig: dict[str, Any], read: Callable[[str], bytes]) -> dict[str, Any]:
    """The kubeconfig with every file it names (CA, client certificate and key) carried inside
    it, base64 as kubeconfig wants: a pod has none of the user's files."""
    import base64

    out = copy.deepcopy(kubeconfig)
    for entry in [*(out.get("clusters") or []), *(out.get("users") or [])]:
        body = entry.get("cluster") or entry.get("user") or {}
        for key, data_key in FILE_KEYS.items():
            if body.get(key) and not body.get(data_key):
                try:
                    body[data_key] = base64.b64encode(read(body.pop(key))).decode()
                except OSError as exc:
                    raise UsageError(f"kubeconfig {entry.get('name')}: cannot read {key} "
                                     f"({exc.strerror}); fix the path or embed {data_key}"
                                     ) from exc
    return out


def members_secret(inventory: dict[str, Any], kubeconfig: dict[str, Any],
                   tsig_key: str | None = None) -> Manifest:
    """The inventory, the kubeconfig and the DNS update key, mounted at ``CONFIG_DIR``."""
    data = {"inventory.yaml": yaml.safe_dump(inventory, sort_keys=False),
            "kubeconfig": yaml.safe_dump(kubeconfig, sort_keys=False)}
    if tsig_key is not None:
        data["tsig.key"] = tsig_key
    return {"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": MEMBERS_SECRET, "namespace": NAMESPACE, "labels": LABELS},
            "type": "Opaque", "stringData": data}


def db_secret(url: str, password: str | None = None) -> Manifest:
    data = {"url": url}
    if password is not None:
        data["password"] = password
    return {"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": DB_SECRET, "namespace": NAMESPACE, "labels": DB_LABELS},
            "type": "Opaque", "stringData": data}


def postgres_url(password: str) -> str:
    return (f"postgresql+psycopg://kubehop:{password}@{DB_SERVICE}.{NAMESPACE}.svc."
            "cluster.local:5432/postgres")


def postgres_manifests(image: str, *, storage: str = "1Gi") -> list[Manifest]:
    """One PostgreSQL on a claim, reached through a Service in the namespace only."""
    return [
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": DB_SERVICE, "namespace": NAMESPACE, "labels": DB_LABELS},
         "spec": {"selector": DB_LABELS, "ports": [{"name": "pg", "port": 5432}]}},
        {"apiVersion": "apps/v1", "kind": "StatefulSet",
         "metadata": {"name": DB_SERVICE, "namespace": NAMESPACE, "labels": DB_LABELS},
         "spec": {
             "serviceName": DB_SERVICE, "replicas": 1, "selector": {"matchLabels": DB_LABELS},
             "template": {"metadata": {"labels": DB_LABELS}, "spec": {
                 "automountServiceAccountToken": False,
                 "terminationGracePeriodSeconds": 10,
                 "containers": [{
                     "name": "postgres", "image": image,
                     "terminationMessagePolicy": "FallbackToLogsOnError",
                     "ports": [{"name": "pg", "containerPort": 5432}],
                     "readinessProbe": {"tcpSocket": {"port": 5432}, "periodSeconds": 2},
                     "resources": {"requests": {"cpu": "50m", "memory": "64Mi"},
                                   "limits": {"memory": "512Mi"}},
                     "volumeMounts": [
                         {"name": "data", "mountPath": "/var/lib/postgresql/data"},
                         {"name": "password", "mountPath": "/etc/kubehop-db",
                          "readOnly": True}]}],
                 "volumes": [{"name": "password", "secret": {
                     "secretName": DB_SECRET, "items": [{"key": "password",
                                                         "path": "password"}]}}]}},
             "volumeClaimTemplates": [{
                 "metadata": {"name": "data", "labels": DB_LABELS},
                 "spec": {"accessModes": ["ReadWriteOnce"],
                          "resources": {"requests": {"storage": storage}}}}]}},
    ]


def controller_manifests(image: str, management: str, *, replicas: int = 2,
                         policy: str | None = None) -> list[Manifest]:
    """The controller's Deployment: ``replicas`` pods electing a leader on one Lease. The
    leader runs the Migrations applied in ``kubehop-system``; with ``policy`` (a
    PlacementPolicy's name) it also decides on its own where services run."""
    common = ["--cluster", management, "--inventory", f"{CONFIG_DIR}/inventory.yaml",
              "--leader-elect", "--listen", f"0.0.0.0:{HTTP_PORT}"]
    args = (["controller", "reconcile", *common] if policy is None else
            ["controller", "run", "--policy-resource", policy, "--reconcile", *common])
    return [{
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "kubehop-controller", "namespace": NAMESPACE, "labels": LABELS},
        "spec": {
            "replicas": replicas, "selector": {"matchLabels": LABELS},
            "template": {"metadata": {"labels": LABELS}, "spec": {
                "serviceAccountName": SERVICE_ACCOUNT,
                "terminationGracePeriodSeconds": 30,
                "containers": [{
                    "name": "controller", "image": image,
                    "terminationMessagePolicy": "FallbackToLogsOnError",
                    "args": args,
                    "ports": [{"name": "http", "containerPort": HTTP_PORT}],
                    "livenessProbe": {"httpGet": {"path": "/healthz", "port": HTTP_PORT},
                                      "periodSeconds": 10, "failureThreshold": 6},
                    "env": [
                        {"name": "KUBEHOP_DB", "valueFrom": {"secretKeyRef": {
                            "name": DB_SECRET, "key": "url"}}},
                        {"name": "POD_NAME", "valueFrom": {"fieldRef": {
                            "fieldPath": "metadata.name"}}}],
                    "resources": {"requests": {"cpu": "50m", "memory": "128Mi"},
                                  "limits": {"memory": "512Mi"}},
                    "volumeMounts": [{"name": "members", "mountPath": CONFIG_DIR,
                                      "readOnly": True}]}],
                "volumes": [{"name": "members", "secret": {"secretName": MEMBERS_SECRET}}]}},
        },
    }]


def existing_password(kube: KubeCluster) -> str | None:
    """The generated database password of an earlier install: a re-run keeps it (the data on
    the claim was initialised with it)."""
    found = kube.get("Secret", DB_SECRET, NAMESPACE)
    data = (found or {}).get("data") or {}
    if "password" not in data:
        return None
    import base64
    return base64.b64decode(data["password"]).decode()


def install(kube: KubeCluster, *, inventory: dict[str, Any], kubeconfig: dict[str, Any],
            tsig_key: str | None, management: str, image: str, rbac: list[Manifest],
            postgres_image: Callable[[], str] | None, db_url: str | None, replicas: int = 2,
            policy: str | None = None,
            say: Callable[[str], None] = lambda _: None, timeout: float = 300) -> None:
    """Apply everything (idempotent) and wait until the database and the controller run.
    Nothing secret is said."""
    if replicas < 1:
        raise UsageError("--replicas must be at least 1")
    inv, kc = in_cluster_config(inventory, kubeconfig, management)
    for line in install_crds(kube):
        say(f"applied {line}")
    for manifest in rbac:
        ns = manifest["metadata"].get("namespace")
        if ns and ns != NAMESPACE and kube.ensure_namespace(ns):
            say(f"created namespace {ns} (managed: its RoleBinding lives there)")
        kube.apply(manifest)
        say(f"applied {manifest['kind']} {manifest['metadata']['name']}")
    kube.apply(members_secret(inv, kc, tsig_key))
    say(f"applied Secret {MEMBERS_SECRET} (inventory and member kubeconfigs)")
    if db_url is None:
        if postgres_image is None:
            raise UsageError("give --db URL, or a PostgreSQL image to run in the cluster")
        password = existing_password(kube) or secrets.token_urlsafe(24)
        kube.apply(db_secret(postgres_url(password), password))
        for manifest in postgres_manifests(postgres_image()):
            kube.apply(manifest)
        say(f"applied Secret {DB_SECRET}, StatefulSet and Service {DB_SERVICE}")
        kube.wait_rollout("StatefulSet", DB_SERVICE, NAMESPACE, timeout=timeout)
        say(f"PostgreSQL ready: {DB_SERVICE}.{NAMESPACE}")
    else:
        kube.apply(db_secret(db_url))
        say(f"applied Secret {DB_SECRET} (the given --db URL)")
    for manifest in controller_manifests(image, management, replicas=replicas, policy=policy):
        kube.apply(manifest)
    say(f"applied Deployment kubehop-controller ({replicas} replicas)")
    kube.wait_rollout("Deployment", "kubehop-controller", NAMESPACE, timeout=timeout)
    say(f"controller running; dashboard: kubectl -n {NAMESPACE} port-forward "
        f"deploy/kubehop-controller {HTTP_PORT}, then http://127.0.0.1:{HTTP_PORT}/")


def uninstall(kube: KubeCluster, *, delete_data: bool = False,
              say: Callable[[str], None] = lambda _: None, timeout: float = 120) -> None:
    """Remove the controller's pods, its database and Secrets; the CRDs and Migrations stay
    (they are the users'), and so do the database's claim and its password's Secret (the data
    was initialised with it: a new install finds both) unless ``delete_data``. Waits until no
    controller pod runs, so nothing reconciles after it returns."""
    gone = [("Deployment", "kubehop-controller"), ("StatefulSet", DB_SERVICE),
            ("Service", DB_SERVICE), ("Secret", MEMBERS_SECRET)]
    for kind, name in gone + ([("Secret", DB_SECRET)] if delete_data else []):
        if kube.delete(kind, name, NAMESPACE):
            say(f"deleted {kind} {name}")
    if delete_data:
        for pvc in kube.find("PersistentVolumeClaim", NAMESPACE, DB_LABELS):
            kube.delete("PersistentVolumeClaim", pvc["metadata"]["name"], NAMESPACE)
            say(f"deleted PersistentVolumeClaim {pvc['metadata']['name']}")
    wait_for(lambda: not kube.find("Pod", NAMESPACE, LABELS)
             and not kube.find("Pod", NAMESPACE, DB_LABELS), timeout=timeout, interval=0.5,
             what="the controller's and database's pods to be gone", error=KubeError)
    say("uninstalled (CRDs and Migrations kept)")

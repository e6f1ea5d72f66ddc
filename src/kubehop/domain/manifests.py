"""Pure manifest work: what to copy, how to clean it, and the objects kubehop itself creates.

Everything here takes and returns plain dicts (Kubernetes JSON), so the rules can be read and
unit-tested without a cluster.
"""

from __future__ import annotations

import copy
from typing import Any

Manifest = dict[str, Any]

MANAGED_BY = "kubehop"
LABEL_MIGRATION = "kubehop.io/migration"
LABEL_ALIAS_OF = "kubehop.io/alias-of"
LABEL_ROLE = "kubehop.io/role"
ANNOTATION_ORIGINAL = "kubehop.io/original-service"

_CLUSTER_OWNED_METADATA = (
    "uid", "resourceVersion", "creationTimestamp", "generation", "managedFields",
    "ownerReferences", "selfLink", "deletionTimestamp", "deletionGracePeriodSeconds",
)
_CLUSTER_OWNED_ANNOTATIONS = (
    "kubectl.kubernetes.io/last-applied-configuration",
    "deployment.kubernetes.io/revision",
    "pv.kubernetes.io/bind-completed",
    "pv.kubernetes.io/bound-by-controller",
    "volume.kubernetes.io/selected-node",
    "volume.beta.kubernetes.io/storage-provisioner",
    "volume.kubernetes.io/storage-provisioner",
)


def strip(obj: Manifest, *, namespace: str, migration_id: str) -> Manifest:
    """A copy of ``obj`` fit to apply elsewhere: cluster-owned fields gone, namespace mapped,
    labelled with the migration that made it."""
    out = copy.deepcopy(obj)
    out.pop("status", None)
    meta = out.setdefault("metadata", {})
    for key in _CLUSTER_OWNED_METADATA:
        meta.pop(key, None)
    notes = meta.get("annotations") or {}
    for key in _CLUSTER_OWNED_ANNOTATIONS:
        notes.pop(key, None)
    if notes:
        meta["annotations"] = notes
    else:
        meta.pop("annotations", None)
    meta["namespace"] = namespace
    meta.setdefault("labels", {})[LABEL_MIGRATION] = migration_id
    kind = out.get("kind")
    spec = out.get("spec", {})
    if kind == "Service":
        for key in ("clusterIP", "clusterIPs", "healthCheckNodePort", "ipFamilies",
                    "ipFamilyPolicy", "internalTrafficPolicy"):
            spec.pop(key, None)
        for port in spec.get("ports", []):
            port.pop("nodePort", None)
    elif kind in {"Deployment", "StatefulSet"}:
        spec.get("template", {}).get("spec", {}).pop("nodeName", None)
    elif kind == "PersistentVolumeClaim":
        spec.pop("volumeName", None)
    elif kind == "ServiceAccount":
        out.pop("secrets", None)
    if kind == "Secret" and out.get("type") == SA_TOKEN:
        return _fresh_token_request(out)
    return out


SA_TOKEN = "kubernetes.io/service-account-token"  # noqa: S105 - a Secret type, not a secret
SA_NAME_ANNOTATION = "kubernetes.io/service-account.name"


def _fresh_token_request(secret: Manifest) -> Manifest:
    """A service-account token is the source cluster's credential: useless in the target and a
    leak if copied. Instead ask the target's token controller for a token of its own, for the
    ServiceAccount of the same name (copied before it), under the same Secret name."""
    meta = secret["metadata"]
    account = (secret.get("metadata", {}).get("annotations") or {}).get(SA_NAME_ANNOTATION)
    if not account:
        raise ValueError(f"secret {meta.get('name')} is a service-account token without the "
                         f"{SA_NAME_ANNOTATION} annotation")
    return {"apiVersion": "v1", "kind": "Secret", "type": SA_TOKEN,
            "metadata": {"name": meta["name"], "namespace": meta["namespace"],
                         "labels": meta.get("labels", {}),
                         "annotations": {SA_NAME_ANNOTATION: account}}}


def token_account(secret: Manifest) -> str | None:
    """The ServiceAccount a token Secret belongs to (it must exist in the target first)."""
    if secret.get("type") != SA_TOKEN:
        return None
    return (secret.get("metadata", {}).get("annotations") or {}).get(SA_NAME_ANNOTATION)


COPY_ORDER = ("ServiceAccount", "ConfigMap", "Secret", "PersistentVolumeClaim")
"""ServiceAccounts first: the token controller deletes a token Secret whose account is missing."""


def selector_matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def pod_dependencies(pod_spec: Manifest) -> dict[str, set[str]]:
    """ConfigMaps, Secrets, PVCs and the ServiceAccount a pod template needs."""
    deps: dict[str, set[str]] = {"ConfigMap": set(), "Secret": set(),
                                 "PersistentVolumeClaim": set(), "ServiceAccount": set()}
    sa = pod_spec.get("serviceAccountName")
    if sa and sa != "default":
        deps["ServiceAccount"].add(sa)
    for vol in pod_spec.get("volumes", []):
        if "configMap" in vol:
            deps["ConfigMap"].add(vol["configMap"]["name"])
        if "secret" in vol:
            deps["Secret"].add(vol["secret"]["secretName"])
        if "persistentVolumeClaim" in vol:
            deps["PersistentVolumeClaim"].add(vol["persistentVolumeClaim"]["claimName"])
        for src in vol.get("projected", {}).get("sources", []):
            if "configMap" in src:
                deps["ConfigMap"].add(src["configMap"]["name"])
            if "secret" in src:
                deps["Secret"].add(src["secret"]["name"])
    for container in [*pod_spec.get("containers", []), *pod_spec.get("initContainers", [])]:
        for env_from in container.get("envFrom", []):
            if "configMapRef" in env_from:
                deps["ConfigMap"].add(env_from["configMapRef"]["name"])
            if "secretRef" in env_from:
                deps["Secret"].add(env_from["secretRef"]["name"])
        for env in container.get("env", []):
            ref = env.get("valueFrom", {})
            if "configMapKeyRef" in ref:
                deps["ConfigMap"].add(ref["configMapKeyRef"]["name"])
            if "secretKeyRef" in ref:
                deps["Secret"].add(ref["secretKeyRef"]["name"])
    for secret in pod_spec.get("imagePullSecrets", []):
        deps["Secret"].add(secret["name"])
    deps["ConfigMap"].discard("kube-root-ca.crt")
    return deps


def host_names(service: str, namespace: str, cluster_domain: str) -> list[str]:
    """Every name a client in the source cluster may use for the Service."""
    return [service, f"{service}.{namespace}", f"{service}.{namespace}.svc",
            f"{service}.{namespace}.svc.{cluster_domain}"]


def alias_fqdn(service: str, namespace: str, zone: str) -> str:
    """The name in the private zone that follows the service wherever it runs."""
    return f"{service}.{namespace}.{zone}"


def alias_key(service: str, namespace: str) -> str:
    return f"{namespace}.{service}"


def alias_slice_name(service: str) -> str:
    return f"{service}-kubehop"[:63]


def drain_service_name(service: str) -> str:
    return f"{service}-kubehop-drain"[:63]


def backend_service_name(service: str) -> str:
    """The Service Traefik routes to in the target: kubehop's own, so the user-facing Service
    there can stay an alias until the switch."""
    return f"kubehop-{service}"[:63]


def backend_service(service: Manifest, *, namespace: str, migration_id: str) -> Manifest:
    """A headless Service with the original's selector and ports, for Traefik to route to.

    Traefik reads its EndpointSlices, never its address, so it takes no ClusterIP: allocating
    one is the slowest part of creating a Service, and 64 migrations at once timed out on it."""
    name = service["metadata"]["name"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": backend_service_name(name),
            "namespace": namespace,
            "labels": {LABEL_MIGRATION: migration_id, LABEL_ROLE: "backend",
                       LABEL_ALIAS_OF: alias_key(name, namespace)},
            "annotations": {ANNOTATION_ORIGINAL: name},
        },
        "spec": {
            "type": "ClusterIP",
            "clusterIP": "None",
            "selector": dict(service["spec"]["selector"]),
            "ports": [{k: v for k, v in p.items() if k != "nodePort"}
                      for p in service["spec"]["ports"]],
        },
    }


def early_slice_name(service: str) -> str:
    """The backend's slice of pods kubehop admitted before the kubelet called them ready."""
    return f"{backend_service_name(service)[:57]}-early"


def readiness_http(pod_spec: Manifest) -> tuple[int, str] | None:
    """(port number, path) of the pod's first HTTP readiness probe, a named port resolved;
    None when no container has one (then only the kubelet can say a pod is ready)."""
    for container in pod_spec.get("containers", []):
        get = (container.get("readinessProbe") or {}).get("httpGet") or {}
        if "port" not in get:
            continue
        port = get["port"]
        if isinstance(port, str) and not port.isdigit():
            named = [p["containerPort"] for p in container.get("ports") or []
                     if p.get("name") == port]
            if not named:
                return None
            port = named[0]
        return int(port), str(get.get("path") or "/")
    return None


def target_port(port: Manifest, pod_spec: Manifest) -> int | None:
    """The container port a Service port leads to (its targetPort, a name resolved)."""
    target = port["targetPort"] if "targetPort" in port else port["port"]
    if isinstance(target, int) or str(target).isdigit():
        return int(target)
    return next((int(p["containerPort"]) for c in pod_spec.get("containers", [])
                 for p in c.get("ports") or [] if p.get("name") == target), None)


def early_endpoint_slice(*, service: Manifest, namespace: str, addresses: list[str],
                         pod_spec: Manifest, migration_id: str) -> Manifest:
    """Pods that answered the readiness probe's request, made endpoints of the backend
    Service (Traefik's) before the kubelet's next probe would: kubehop's readiness gate."""
    name = service["metadata"]["name"]
    ports = [{"name": p.get("name", ""), "port": target_port(p, pod_spec),
              "protocol": p.get("protocol", "TCP")} for p in service["spec"]["ports"]]
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": early_slice_name(name),
            "namespace": namespace,
            "labels": {"kubernetes.io/service-name": backend_service_name(name),
                       "endpointslice.kubernetes.io/managed-by": MANAGED_BY,
                       LABEL_MIGRATION: migration_id},
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [a], "conditions": {"ready": True}} for a in addresses],
        "ports": [p for p in ports if p["port"] is not None],
    }


def ingress_route(*, name: str, namespace: str, hosts: list[str], backend: str,
                  ports: list[int], entrypoint: str, migration_id: str,
                  alias: str) -> Manifest:
    """A Traefik IngressRoute sending the old host names to the backend Service."""
    match = " || ".join(f"Host(`{h}`)" for h in hosts)
    return {
        "apiVersion": "traefik.io/v1alpha1",
        "kind": "IngressRoute",
        "metadata": {"name": name, "namespace": namespace,
                     "labels": {LABEL_MIGRATION: migration_id, LABEL_ALIAS_OF: alias}},
        "spec": {
            "entryPoints": [entrypoint],
            "routes": [{"match": match, "kind": "Rule",
                        "services": [{"name": backend, "port": p} for p in ports[:1]]}],
        },
    }


def alias_endpoint_slice(*, service: str, namespace: str, address: str,
                         ports: list[Manifest], alias: str, migration_id: str) -> Manifest:
    """An EndpointSlice, owned by kubehop, making ``service``'s ClusterIP lead to ``address``.

    kube-proxy merges every slice labelled with the Service's name, so this slice can join the
    Service's own before its selector goes: traffic overlaps, never gaps.
    """
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": alias_slice_name(service),
            "namespace": namespace,
            "labels": {"kubernetes.io/service-name": service,
                       "endpointslice.kubernetes.io/managed-by": MANAGED_BY,
                       LABEL_ALIAS_OF: alias, LABEL_MIGRATION: migration_id},
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
        "ports": [{"name": p.get("name", ""), "port": int(p["port"]),
                   "protocol": p.get("protocol", "TCP")} for p in ports],
    }


def drain_service(*, service: str, namespace: str, cluster_ip: str, ports: list[Manifest],
                  alias: str, migration_id: str) -> Manifest:
    """Holds a Service's old ClusterIP (with the alias slice behind it) after the Service became
    an ExternalName, so clients with a cached A record keep being served during the drain."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": drain_service_name(service),
            "namespace": namespace,
            "labels": {LABEL_ALIAS_OF: alias, LABEL_MIGRATION: migration_id,
                       LABEL_ROLE: "drain"},
        },
        "spec": {"type": "ClusterIP", "clusterIP": cluster_ip,
                 "ports": [{k: v for k, v in p.items() if k not in {"nodePort", "targetPort"}}
                           for p in ports]},
    }

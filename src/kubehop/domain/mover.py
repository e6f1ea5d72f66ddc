"""What moves a service's volume data: the mover pods, their credentials, their route. Pure.

A *receiver* pod in the target mounts the new PVCs and runs an rsync daemon behind stunnel; a
*sender* pod in the source mounts the old PVCs read-only and pushes to it. The data crosses
between the clusters only through the target's load balancer (a Traefik TCP route picked by
the TLS server name, passed through untouched), encrypted and authenticated with a pre-shared
key made for this migration alone: both Secrets are deleted with the pods. kubehop drives the
pods through the API server's pod proxy, so no mover port is exposed beyond the transfer route.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

Manifest = dict[str, Any]

TRANSFER_PORT = 8873
API_PORT = 8080
DATA_DIR = "/data"
LABEL_MOVER = "kubehop.io/mover"
FREEZE_HOOK = "kubehop.io/freeze-hook"
THAW_HOOK = "kubehop.io/thaw-hook"


def _tail(migration_id: str) -> str:
    return migration_id.rsplit("-", 1)[-1].lower()


def pod_name(migration_id: str, role: str) -> str:
    """``kubehop-sender-<tail>`` / ``kubehop-receiver-<tail>``."""
    return f"kubehop-{role}-{_tail(migration_id)}"


def secret_name(migration_id: str) -> str:
    return f"kubehop-mover-{_tail(migration_id)}"


def server_name(migration_id: str) -> str:
    """The TLS server name the sender asks for; the target's Traefik routes on it."""
    return f"{migration_id.lower()}.mover.kubehop"


def proxy_path(namespace: str, pod: str, port: int, path: str) -> str:
    """A pod's port through the API server (``pods/proxy``)."""
    return f"/api/v1/namespaces/{namespace}/pods/{pod}:{port}/proxy{path}"


def hook(value: str) -> tuple[int, str]:
    """(port, path) of a freeze/thaw hook annotation such as ``http://:8080/admin/freeze``.

    kubehop POSTs to that port and path of every pod, through the API server. Raises
    ValueError naming what is wrong."""
    parts = urlsplit(value.strip())
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"{value!r} has a bad port") from exc
    if parts.scheme != "http" or port is None or not parts.path.startswith("/"):
        raise ValueError(f"{value!r} is not of the form http://:PORT/PATH")
    return port, parts.path + (f"?{parts.query}" if parts.query else "")


def psk_secret(*, name: str, namespace: str, psk: str, migration_id: str) -> Manifest:
    """The pre-shared key in stunnel's ``identity:key`` form, for one migration's two pods."""
    return {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": name, "namespace": namespace,
                     "labels": {"kubehop.io/migration": migration_id,
                                LABEL_MOVER: _tail(migration_id)}},
        "stringData": {"psk": f"kubehop:{psk}"},
    }


def mover_pod(*, role: str, migration_id: str, namespace: str, image: str,
              claims: list[str], secret: str, target: str = "", sni: str = "") -> Manifest:
    """A mover pod: the receiver (target) or the sender (source, volumes read-only).

    It runs as root because rsync must read files of any owner and set any owner on arrival;
    it gets no service account token and restarts never (a dead mover is a failed pass)."""
    env = [{"name": "MOVER_ROLE", "value": role}, {"name": "MOVER_DATA", "value": DATA_DIR},
           {"name": "MOVER_PSK_FILE", "value": "/secret/psk"},
           {"name": "MOVER_API_PORT", "value": str(API_PORT)}]
    if role == "sender":
        env += [{"name": "MOVER_TARGET", "value": target}, {"name": "MOVER_SNI", "value": sni}]
    mounts: list[Manifest] = [{"name": f"v{i}", "mountPath": f"{DATA_DIR}/{c}",
                               "readOnly": role == "sender"} for i, c in enumerate(claims)]
    mounts.append({"name": "psk", "mountPath": "/secret", "readOnly": True})
    volumes: list[Manifest] = [
        {"name": f"v{i}", "persistentVolumeClaim": {"claimName": c, "readOnly": role == "sender"}}
        for i, c in enumerate(claims)]
    volumes.append({"name": "psk", "secret": {"secretName": secret, "defaultMode": 0o400}})
    ports = [{"name": "api", "containerPort": API_PORT}]
    if role == "receiver":
        ports.append({"name": "transfer", "containerPort": TRANSFER_PORT})
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": pod_name(migration_id, role), "namespace": namespace,
                     "labels": {"kubehop.io/migration": migration_id,
                                LABEL_MOVER: _tail(migration_id), "kubehop.io/role": role}},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "mover", "image": image, "env": env, "ports": ports,
                "volumeMounts": mounts,
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": API_PORT},
                                   "periodSeconds": 1},
                "securityContext": {"allowPrivilegeEscalation": False},
                "resources": {"requests": {"cpu": "50m", "memory": "32Mi"},
                              "limits": {"memory": "256Mi"}},
            }],
            "volumes": volumes,
        },
    }


def receiver_service(*, migration_id: str, namespace: str) -> Manifest:
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": pod_name(migration_id, "receiver"), "namespace": namespace,
                     "labels": {"kubehop.io/migration": migration_id}},
        "spec": {"selector": {LABEL_MOVER: _tail(migration_id), "kubehop.io/role": "receiver"},
                 "ports": [{"name": "transfer", "port": TRANSFER_PORT,
                            "targetPort": TRANSFER_PORT}]},
    }


def receiver_route(*, migration_id: str, namespace: str, entrypoint: str) -> Manifest:
    """Traefik passes the TLS stream through untouched (it never holds the key), picked by the
    server name so concurrent migrations to one target each reach their own receiver."""
    return {
        "apiVersion": "traefik.io/v1alpha1", "kind": "IngressRouteTCP",
        "metadata": {"name": pod_name(migration_id, "receiver"), "namespace": namespace,
                     "labels": {"kubehop.io/migration": migration_id}},
        "spec": {
            "entryPoints": [entrypoint],
            "routes": [{"match": f"HostSNI(`{server_name(migration_id)}`)",
                        "services": [{"name": pod_name(migration_id, "receiver"),
                                      "port": TRANSFER_PORT}]}],
            "tls": {"passthrough": True},
        },
    }


def template_claims(workload: Manifest) -> list[str]:
    """The PVCs a StatefulSet's volumeClaimTemplates made for its replicas
    (``<template>-<statefulset>-<ordinal>``). Copied under the same names before the target's
    StatefulSet scales up, they are the ones its controller adopts, data included."""
    spec = workload.get("spec") or {}
    replicas = int(spec.get("replicas", 1))
    name = (workload.get("metadata") or {}).get("name", "")
    return [f"{t['metadata']['name']}-{name}-{i}"
            for t in spec.get("volumeClaimTemplates") or [] for i in range(replicas)]


PREPULL_COMMAND = "/kubehop-prepull-only"
"""Where a pre-pull pod's containers point their command: a path no image has, so the kubelet
pulls every image and then fails to start them, running none of the service's code."""


def prepull_pod(*, migration_id: str, namespace: str, pod_spec: Manifest) -> Manifest:
    """A pod that only makes the target's kubelet pull the workload's images while the data is
    copied, so the real pods start without waiting for a pull. It keeps the template's pull
    secrets and placement (node selector, affinity, tolerations) so it pulls where they run."""
    images = list(dict.fromkeys(c["image"] for key in ("initContainers", "containers")
                                for c in pod_spec.get(key) or []))
    spec: Manifest = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 0,
        "containers": [{"name": f"image-{i}", "image": image, "command": [PREPULL_COMMAND],
                        "resources": {"requests": {"cpu": "1m", "memory": "1Mi"}}}
                       for i, image in enumerate(images)],
    }
    for key in ("imagePullSecrets", "nodeSelector", "affinity", "tolerations"):
        if pod_spec.get(key):
            spec[key] = pod_spec[key]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": pod_name(migration_id, "prepull"), "namespace": namespace,
                         "labels": {"kubehop.io/migration": migration_id,
                                    "kubehop.io/role": "prepull"}},
            "spec": spec}


def images_pulled(pod: Manifest) -> bool | None:
    """Whether a pre-pull pod's images are all on the node: True once every container has
    an image ID or was tried (the start failing is expected), None while pulling; raises
    ValueError naming the image that cannot be pulled."""
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    if len(statuses) < len(pod["spec"]["containers"]):
        return None
    for cs in statuses:
        state = cs.get("state") or {}
        reason = (state.get("waiting") or {}).get("reason", "")
        if reason in {"ErrImagePull", "ImagePullBackOff", "InvalidImageName"}:
            raise ValueError(f"image {cs.get('image')} cannot be pulled ({reason})")
        if not (cs.get("imageID") or "terminated" in state
                or reason in {"RunContainerError", "CreateContainerError", "StartError"}):
            return None
    return True

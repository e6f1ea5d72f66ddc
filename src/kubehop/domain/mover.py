"""What moves a service's volume data: the mover pods, their credentials, their route. Pure.

A *receiver* pod in the target mounts the new PVCs and runs an rsync daemon behind stunnel; a
*sender* pod in the source mounts the old PVCs read-only and pushes to it. The data crosses
between the clusters only through the target's load balancer (a Traefik TCP route picked by
the TLS server name, passed through untouched), encrypted and authenticated with a pre-shared
key made for this migration alone. kubehop drives the pods through the API server's pod proxy,
sending a second per-migration secret, the API token, with every call: any other pod that can
reach a mover's API port is refused. Both secrets live in one Secret per namespace, deleted with
the pods; a NetworkPolicy per pod admits only the ports each role serves.
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

Manifest = dict[str, Any]

TRANSFER_PORT = 8873
API_PORT = 8080
DATA_DIR = "/data"
WORK_DIR = "/work"
SECRET_DIR = "/secret"  # noqa: S105 (a mount path)
TOKEN_HEADER = "X-Kubehop-Mover-Token"  # noqa: S105 (a header's name)
"""The header carrying the API token. Not ``Authorization``: the API server consumes that one
(it authenticates kubehop there) and would not pass it on through the pod proxy."""
PSK_KEY = "psk"
TOKEN_KEY = "token"  # noqa: S105 (a key of the Secret)
MEMORY_LIMIT = "256Mi"
"""Each mover's; what its manifest walk holds is measured in results/mover/manifest-1m.txt."""
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


def mover_secret(*, name: str, namespace: str, psk: str, token: str,
                 migration_id: str) -> Manifest:
    """One migration's two secrets for its two pods: the pre-shared TLS key in stunnel's
    ``identity:key`` form, and the token the movers require on every API request."""
    return {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": name, "namespace": namespace,
                     "labels": {"kubehop.io/migration": migration_id,
                                LABEL_MOVER: _tail(migration_id)}},
        "stringData": {PSK_KEY: f"kubehop:{psk}", TOKEN_KEY: token},
    }


CAPABILITIES = {
    # Writes every file as its owner had it: chown (CHOWN), modes, times, ACLs and xattrs on
    # files it no longer owns (FOWNER), set-group-ID bits of groups it is not in (FSETID), into
    # directories whose modes shut root out (DAC_OVERRIDE), file capabilities (SETFCAP, the
    # security.capability xattr). The rsync daemon as root always calls setgroups(2) for its
    # module's group (SETGID) and chroots into the data (SYS_CHROOT, see mover.py).
    "receiver": ("CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "SETFCAP", "SETGID",
                 "SYS_CHROOT"),
    # Reads every file whatever its mode. DAC_OVERRIDE, not the narrower-sounding
    # DAC_READ_SEARCH: that one also grants open_by_handle_at(2), which reads any file of the
    # node's filesystem behind a volume (the "shocker" escape), and Pod Security's baseline
    # profile refuses it. Every volume the sender mounts is read-only, its root too.
    "sender": ("DAC_OVERRIDE",),
}


def security_context(role: str) -> Manifest:
    """The mover container's: root (owners of any uid are read and set), every capability
    dropped but the role's, no privilege escalation, the runtime's seccomp profile, a read-only
    root (its workdir is an emptyDir)."""
    return {
        "runAsUser": 0, "runAsGroup": 0, "runAsNonRoot": False,
        "privileged": False, "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"], "add": list(CAPABILITIES[role])},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _mover_env(role: str, target: str, sni: str) -> list[Manifest]:
    env = [{"name": "MOVER_ROLE", "value": role}, {"name": "MOVER_DATA", "value": DATA_DIR},
           {"name": "MOVER_PSK_FILE", "value": f"{SECRET_DIR}/{PSK_KEY}"},
           {"name": "MOVER_TOKEN_FILE", "value": f"{SECRET_DIR}/{TOKEN_KEY}"},
           {"name": "MOVER_API_PORT", "value": str(API_PORT)},
           {"name": "TMPDIR", "value": WORK_DIR}]
    if role == "sender":
        env += [{"name": "MOVER_TARGET", "value": target}, {"name": "MOVER_SNI", "value": sni}]
    return env


def _mover_volumes(role: str, claims: list[str], secret: str
                   ) -> tuple[list[Manifest], list[Manifest]]:
    """(volumeMounts, volumes): the claims (read-only for the sender) under an emptyDir at
    DATA_DIR (rsync sets the times of the tree's root, which the read-only root filesystem
    would refuse: exit 23), the Secret, the workdir."""
    mounts: list[Manifest] = [{"name": "tree", "mountPath": DATA_DIR, "readOnly": False}]
    mounts += [{"name": f"v{i}", "mountPath": f"{DATA_DIR}/{c}",
                "readOnly": role == "sender"} for i, c in enumerate(claims)]
    mounts += [{"name": "secret", "mountPath": SECRET_DIR, "readOnly": True},
               {"name": "work", "mountPath": WORK_DIR, "readOnly": False}]
    volumes: list[Manifest] = [{"name": "tree", "emptyDir": {}}]
    volumes += [
        {"name": f"v{i}", "persistentVolumeClaim": {"claimName": c, "readOnly": role == "sender"}}
        for i, c in enumerate(claims)]
    volumes += [{"name": "secret", "secret": {"secretName": secret, "defaultMode": 0o400}},
                {"name": "work", "emptyDir": {}}]
    return mounts, volumes


def mover_pod(*, role: str, migration_id: str, namespace: str, image: str,
              claims: list[str], secret: str, target: str = "", sni: str = "") -> Manifest:
    """A mover pod: the receiver (target) or the sender (source, volumes read-only).

    It runs as root with a few capabilities (:data:`CAPABILITIES`), gets no service account
    token and restarts never (a dead mover is a failed pass). Its readiness probe reaches the
    one API path that needs no token, ``/healthz``, which says only ready or not."""
    mounts, volumes = _mover_volumes(role, claims, secret)
    ports = [{"name": "api", "containerPort": API_PORT}]
    if role == "receiver":
        ports.append({"name": "transfer", "containerPort": TRANSFER_PORT})
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": pod_name(migration_id, role), "namespace": namespace,
                     "labels": _pod_labels(migration_id, role)},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "mover", "image": image, "env": _mover_env(role, target, sni),
                "ports": ports, "volumeMounts": mounts,
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": API_PORT},
                                   "periodSeconds": 1},
                "securityContext": security_context(role),
                "resources": {"requests": {"cpu": "50m", "memory": "32Mi"},
                              "limits": {"memory": MEMORY_LIMIT}},
            }],
            "volumes": volumes,
        },
    }


def _pod_labels(migration_id: str, role: str) -> dict[str, str]:
    return {"kubehop.io/migration": migration_id, LABEL_MOVER: _tail(migration_id),
            "kubehop.io/role": role}


def _sender_egress(target: str) -> list[Manifest]:
    """The sender connects to the target's load balancer and nowhere else: to that address
    when it is one, else to that port anywhere plus DNS to resolve the name."""
    host, _, port = target.rpartition(":")
    host = host.strip("[]")
    to_port = [{"protocol": "TCP", "port": int(port)}] if port.isdigit() else []
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        dns = [{"protocol": p, "port": 53} for p in ("UDP", "TCP")]
        return [{"ports": to_port}, {"ports": dns}]
    cidr = f"{address}/{32 if address.version == 4 else 128}"
    return [{"to": [{"ipBlock": {"cidr": cidr}}], "ports": to_port}]


def network_policy(*, role: str, migration_id: str, namespace: str,
                   target: str = "") -> Manifest:
    """What may reach a mover pod, and where it may connect: both admit the API port (the API
    server's pod proxy, whose address differs from cluster to cluster, so no source is named;
    the API token is what guards it), the receiver also the transfer port (the sender's
    connection, through the target's Traefik); the receiver connects nowhere, the sender only
    to the target's load balancer. Enforcing it is the cluster's network plugin's job."""
    ports = [{"protocol": "TCP", "port": API_PORT}]
    if role == "receiver":
        ports.append({"protocol": "TCP", "port": TRANSFER_PORT})
    return {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": pod_name(migration_id, role), "namespace": namespace,
                     "labels": {"kubehop.io/migration": migration_id,
                                LABEL_MOVER: _tail(migration_id)}},
        "spec": {
            "podSelector": {"matchLabels": {LABEL_MOVER: _tail(migration_id),
                                            "kubehop.io/role": role}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"ports": ports}],
            "egress": _sender_egress(target) if role == "sender" else [],
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

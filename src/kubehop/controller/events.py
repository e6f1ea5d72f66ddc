"""Kubernetes Events on the managed Service, in both clusters of a decision or a migration, so
``kubectl describe svc`` tells an operator what the controller decided and why."""

from __future__ import annotations

import datetime as dt
import socket
from typing import Any

from kubehop.adapters.kube import KubeCluster
from kubehop.errors import KubehopError

COMPONENT = "kubehop-controller"
MAX_MESSAGE = 1024
"""The API server refuses longer Event messages."""


def event(namespace: str, service: str, *, reason: str, message: str, warning: bool,
          at: float) -> dict[str, Any]:
    """An Event about Service ``namespace/service`` (name unique per millisecond)."""
    return object_event({"apiVersion": "v1", "kind": "Service", "name": service,
                         "namespace": namespace},
                        reason=reason, message=message, warning=warning, at=at)


def object_event(involved: dict[str, Any], *, reason: str, message: str, warning: bool,
                 at: float, unique: str = "") -> dict[str, Any]:
    """An Event about any object (``involved``: apiVersion, kind, name, namespace and, so that
    ``kubectl describe`` finds it, uid). ``unique`` tells apart Events of one millisecond."""
    stamp = dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": f"{involved['name']}.kubehop.{int(at * 1000):x}{unique}",
                     "namespace": involved["namespace"]},
        "involvedObject": dict(involved),
        "reason": reason,
        "message": message if len(message) <= MAX_MESSAGE else message[:MAX_MESSAGE - 1] + "…",
        "type": "Warning" if warning else "Normal",
        "source": {"component": COMPONENT},
        "reportingComponent": f"kubehop.io/{COMPONENT}",
        "reportingInstance": socket.gethostname()[:128],
        "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
    }


def post(clusters: list[KubeCluster], manifest: dict[str, Any]) -> list[str]:
    """Post the Event in each cluster that has the namespace; what failed, as text (an Event
    lost is reported, never a reason to stop deciding or migrating)."""
    problems = []
    for kube in clusters:
        try:
            if kube.get("Namespace", manifest["metadata"]["namespace"]) is not None:
                kube.apply(manifest)
        except KubehopError as exc:
            problems.append(str(exc))
    return problems

"""What a pod's status says, read the one way every layer agrees on. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def pod_is_ready(pod: Mapping[str, Any]) -> bool:
    """The kubelet's verdict: the condition ``Ready`` is ``"True"`` (what a Service's endpoints
    follow). A Node reports its readiness with the same condition, so this reads a Node too.
    Written once so that no caller reads a missing ``status`` or ``conditions`` differently."""
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def pod_identity(pod: Mapping[str, Any]) -> list[Any]:
    """[uid, restarts]: what tells one running process from its replacement. A freeze held in
    a process's memory is lost when the pod is replaced (new uid) or a container restarts."""
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return [pod["metadata"].get("uid", ""), sum(int(c.get("restartCount") or 0)
                                                 for c in statuses)]


def unfrozen_writers(frozen: Mapping[str, list[Any]], pods: Sequence[Mapping[str, Any]]
                     ) -> list[str]:
    """Why the running pods are not exactly the ones a freeze stopped (empty: they are). Any
    running pod not frozen as it is now — new, replaced or restarted — may be writing."""
    problems = []
    for pod in pods:
        if (pod.get("status") or {}).get("phase") not in ("Running", "Pending"):
            continue
        name = pod["metadata"]["name"]
        uid, restarts = pod_identity(pod)
        was = frozen.get(name)
        if was is None:
            problems.append(f"pod {name} was not there when the writes stopped")
        elif was[0] != uid:
            problems.append(f"pod {name} was replaced since the writes stopped")
        elif was[1] != restarts:
            problems.append(f"pod {name} restarted since the writes stopped")
    return problems

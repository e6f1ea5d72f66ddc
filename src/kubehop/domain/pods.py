"""What a pod's status says, read the one way every layer agrees on. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def pod_is_ready(pod: Mapping[str, Any]) -> bool:
    """The kubelet's verdict: the condition ``Ready`` is ``"True"`` (what a Service's endpoints
    follow). A Node reports its readiness with the same condition, so this reads a Node too.
    Written once so that no caller reads a missing ``status`` or ``conditions`` differently."""
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)

"""Where a running testbed keeps what later commands find by name: the record of its clusters,
the kubeconfig and inventory it hands out, and the pid files of its processes.

Only paths and the record ``up`` writes; every other testbed module looks things up here rather
than in one another, so that none of them needs the lifecycle module.
"""

from __future__ import annotations

import json
from pathlib import Path

from kubehop.testbed import builds, clouddns, layout, monitoring
from kubehop.testbed.layout import ClusterLayout


def state_file() -> Path:
    return layout.state_dir() / "testbed.json"


def kubeconfig_file() -> Path:
    return layout.state_dir() / "kubeconfig"


def inventory_file() -> Path:
    return layout.state_dir() / "inventory.yaml"


def kubectl_binary() -> Path:
    return builds.kubernetes().binary("kubectl")


def recorded_clusters() -> tuple[str, ...]:
    """Clusters of the testbed as ``up`` recorded them; empty when there is none."""
    try:
        return tuple(json.loads(state_file().read_text())["clusters"])
    except (OSError, ValueError, KeyError):
        return ()


def run_dir(c: ClusterLayout) -> Path:
    return c.dir / "run"


def registry_pidfile() -> Path:
    return layout.state_dir() / "registry" / "registry.pid"


def clouddns_pidfile() -> Path:
    return clouddns.run_dir() / "named.pid"


def monitoring_pidfiles() -> tuple[Path, Path]:
    run = monitoring.monitoring_dir() / "run"
    return run / "prometheus.pid", run / "clusterexporter.pid"

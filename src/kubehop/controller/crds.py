"""kubehop's CRDs (group ``kubehop.io``, version ``v1alpha1``): their names, their install, and
the few conventions every status kubehop writes follows (RFC 3339 times, bounded messages).

Shared by the Migration reconciler, the PlacementPolicy helpers and ``kubehop controller
install``, none of which should need the others to know where the CRDs live.
"""

from __future__ import annotations

import datetime as dt
from importlib import resources as pkg
from typing import Any

from kubehop.adapters.kube import KubeCluster

Manifest = dict[str, Any]

GROUP = "kubehop.io"
VERSION = "v1alpha1"
NAMESPACE = "kubehop-system"
FINALIZER = "kubehop.io/migration"
CRD_FILES = ("migration.yaml", "placementpolicy.yaml")
CRD_NAMES = ("migrations.kubehop.io", "placementpolicies.kubehop.io")
MAX_TEXT = 1024
"""Longer messages in a status are cut: the object must stay small (etcd's 1.5 MiB limit is
shared by every field)."""


def rfc3339(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def cut_text(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT - 1] + "…"


# --- the CRDs ---------------------------------------------------------------------------------


def crd_yaml() -> str:
    """The CRDs as one multi-document YAML (package data; deploy/crds/ links to the same)."""
    base = pkg.files("kubehop") / "assets" / "crds"
    return "\n---\n".join(base.joinpath(name).read_text() for name in CRD_FILES)


def install_crds(kube: KubeCluster, *, namespace: str = NAMESPACE,
                 timeout: float = 60) -> list[str]:
    """Apply kubehop's namespace and CRDs (server-side apply: running it again changes
    nothing) and wait until the API server serves the kinds. Returns what was applied."""
    kube.apply({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": namespace,
                             "labels": {"app.kubernetes.io/part-of": "kubehop"}}})
    applied = kube.apply_yaml(crd_yaml())
    kube.wait_crds_established(list(CRD_NAMES), timeout=timeout)
    return [f"Namespace {namespace}",
            *(f"{o['kind']} {o['metadata']['name']}" for o in applied)]


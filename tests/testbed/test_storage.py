"""Storage in every testbed cluster: a PVC without a class binds to the default class once a pod
uses it, keeps its data across pods, and deleting it removes its directory on the host."""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubehop.testbed import images, storage
from kubehop.testbed import testbed as tb
from kubehop.waiting import NotYet, wait_for

from .conftest import BY_NAME, CLUSTERS
from .kube import fresh_namespaces, kubectl

pytestmark = pytest.mark.usefixtures("testbed")

NS = "kh-storage-test"
USER = 1234
"""Pods write as a uid of their own; the helper pod must still remove what they left."""


def _pvc() -> str:
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data", "namespace": NS},
        "spec": {"accessModes": ["ReadWriteOnce"],
                 "resources": {"requests": {"storage": "16Mi"}}},
    })


def _pod(name: str, script: str) -> str:
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "securityContext": {"runAsUser": USER, "runAsGroup": USER},
            "containers": [{"name": "main", "image": images.httpd_image().ref(),
                            "command": ["sh", "-c", script],
                            "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}],
        },
    })


def _get(cluster: str, *what: str) -> Any:
    return json.loads(kubectl(cluster, "get", *what, "-o", "json"))


def _succeeded(cluster: str, pod: str) -> bool:
    phase = _get(cluster, "-n", NS, "pod", pod).get("status", {}).get("phase")
    if phase == "Failed":
        raise AssertionError(f"pod {pod} failed: {kubectl(cluster, '-n', NS, 'logs', pod)}")
    if phase != "Succeeded":
        raise NotYet(f"pod {pod} is {phase}")
    return True


def _run(cluster: str, pod: str, script: str) -> str:
    """Run ``script`` in a pod using the claim until it ends; its output."""
    kubectl(cluster, "apply", "-f", "-", stdin=_pod(pod, script))
    wait_for(lambda: _succeeded(cluster, pod), timeout=120, interval=0.5,
             what=f"pod {pod} in {cluster} to succeed")
    out = kubectl(cluster, "-n", NS, "logs", pod)
    kubectl(cluster, "-n", NS, "delete", "pod", pod, "--wait=true")
    return out


def test_claim_binds_keeps_data_and_is_removed_with_its_directory() -> None:
    """In every cluster at once (each has its own provisioner; one at a time tripled the
    wait for nothing): the first failure is raised with its cluster's name."""
    with ThreadPoolExecutor(max_workers=len(CLUSTERS)) as pool:
        for name, done in [(name, pool.submit(_claim_lifecycle, name)) for name in CLUSTERS]:
            try:
                done.result()
            except Exception as exc:
                raise AssertionError(f"{name}: {exc}") from exc


def _claim_lifecycle(name: str) -> None:
    c = BY_NAME[name]
    fresh_namespaces(name, NS)
    kubectl(name, "create", "namespace", NS)
    token = uuid.uuid4().hex
    try:
        kubectl(name, "apply", "-f", "-", stdin=_pvc())
        pvc = _get(name, "-n", NS, "pvc", "data")
        assert pvc["spec"]["storageClassName"] == storage.STORAGE_CLASS
        assert pvc["status"]["phase"] == "Pending", "WaitForFirstConsumer: no pod yet"

        _run(name, "writer", f"echo {token} > /data/token")
        pvc = _get(name, "-n", NS, "pvc", "data")
        assert pvc["status"]["phase"] == "Bound"
        pv = _get(name, "pv", pvc["spec"]["volumeName"])
        host = Path(pv["spec"]["hostPath"]["path"])
        assert host.parent == c.volumes_dir, host
        assert (host / "token").read_text().strip() == token
        assert (host / "token").stat().st_uid == USER

        assert _run(name, "reader", "cat /data/token").strip() == token, \
            "a new pod on the same claim sees the data"

        kubectl(name, "-n", NS, "delete", "pvc", "data", "--wait=true", "--timeout=60s")

        def removed() -> bool:
            if host.exists():
                raise NotYet(f"{host} still exists")
            pvs = {p["metadata"]["name"] for p in _get(name, "pv")["items"]}
            if pv["metadata"]["name"] in pvs:
                raise NotYet("the PV still exists")
            return True

        wait_for(removed, timeout=120, interval=0.5,
                 what=f"the volume directory and PV of {name} to be deleted")
    finally:
        kubectl(name, "delete", "namespace", NS, "--ignore-not-found", "--wait=false")


def test_status_reports_storage_ready() -> None:
    st = tb.status()
    assert [c.storage_ready for c in st.clusters] == [True] * len(st.clusters)
    assert st.versions["local-path-provisioner"]

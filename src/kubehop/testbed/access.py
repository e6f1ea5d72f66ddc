"""The testbed's clusters as the host reaches them: their APIs and what they report.

Below the lifecycle module on purpose: the cluster exporter (a process of its own) and the
status report need only this, not the code that starts and stops the testbed.
"""

from __future__ import annotations

from lightkube.utils.quantity import parse_quantity

from kubehop.adapters.kube import KubeCluster
from kubehop.errors import TestbedError
from kubehop.testbed import components, layout, storage
from kubehop.testbed.layout import ClusterLayout


def kube(c: ClusterLayout, identity: str = "admin") -> KubeCluster:
    """The API of cluster ``c`` as ``identity`` (admin, or e.g. the read-only prometheus),
    reached from the host as a user reaches it. Built from the cluster's certificate files
    (no copies of its keys), not the combined kubeconfig: that one does not exist yet while the
    control planes start, and it holds the admin identity only."""
    files = {name: c.pki_dir / name for name in ("ca.crt", f"{identity}.crt", f"{identity}.key")}
    missing = [str(f) for f in files.values() if not f.is_file()]
    if missing:
        raise TestbedError(f"cluster {c.name} has no {missing[0]}; is the testbed up?")
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": c.name,
        "clusters": [{"name": c.name, "cluster": {
            "server": c.api_url, "certificate-authority": str(files["ca.crt"])}}],
        "users": [{"name": c.name, "user": {
            "client-certificate": str(files[f"{identity}.crt"]),
            "client-key": str(files[f"{identity}.key"])}}],
        "contexts": [{"name": c.name, "context": {"cluster": c.name, "user": c.name}}],
    }
    return KubeCluster(kubeconfig=config, context=c.name, name=c.name)


def api_ready(c: ClusterLayout) -> bool:
    with kube(c) as k:
        return k.get_path("/readyz", timeout=5)[0] == 200


def node_ready(c: ClusterLayout) -> bool:
    with kube(c) as k:
        return k.node_ready(c.node_name)


def deployment_available(c: ClusterLayout, namespace: str, name: str) -> bool:
    with kube(c) as k:
        dep = k.get("Deployment", name, namespace)
    if dep is None:
        return False
    want = int(dep.get("spec", {}).get("replicas", 1))
    return int((dep.get("status") or {}).get("availableReplicas") or 0) >= want


def storage_ready(c: ClusterLayout) -> bool:
    """The provisioner runs and its class is the default one."""
    if not deployment_available(c, storage.NAMESPACE, storage.DEPLOYMENT):
        return False
    with kube(c) as k:
        sc = k.get("StorageClass", storage.STORAGE_CLASS)
    annotations = ((sc or {}).get("metadata") or {}).get("annotations") or {}
    return annotations.get(storage.DEFAULT_CLASS_ANNOTATION) == "true"


def node_resources(c: ClusterLayout, key: str = "allocatable") -> tuple[int, int] | None:
    """The node's (millicores, bytes) of ``allocatable`` or ``capacity``; None before the
    kubelet has reported them."""
    with kube(c) as k:
        node = k.get("Node", c.node_name)
    values = ((node or {}).get("status") or {}).get(key) or {}
    if "cpu" not in values or "memory" not in values:
        return None
    cpu = parse_quantity(values["cpu"])
    memory = parse_quantity(values["memory"])
    if cpu is None or memory is None:
        return None
    return int(cpu * 1000), int(memory)


def expected_allocatable(c: ClusterLayout) -> tuple[int, int]:
    """What the node of ``c`` should offer its pods on this machine: its tier's shape."""
    cpu, memory = components.machine_capacity()
    shape = layout.allocatable(layout.tier_of(c.name), cpu_millis=cpu, memory=memory)
    return shape.cpu_millis, shape.memory


def node_shaped(c: ClusterLayout, want: tuple[int, int]) -> bool:
    return node_resources(c) == want and node_ready(c)

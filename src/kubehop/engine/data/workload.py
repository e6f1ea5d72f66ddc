"""What the data steps do to the workload's own pods, whichever engine moves the data: call the
application's freeze and thaw hooks (annotations ``kubehop.io/freeze-hook``, ``thaw-hook``), stop
the writers when it declares none, and pre-pull its images in the target while the data moves.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kubehop.adapters.kube import KubeCluster
from kubehop.domain import mover as mv
from kubehop.engine.data.interface import DataError
from kubehop.waiting import NotYet, wait_for

Manifest = dict[str, Any]


def running_pods(cluster: KubeCluster, namespace: str, selector: dict[str, str]
                 ) -> list[Manifest]:
    """The running, not terminating pods behind ``selector``, by name."""
    return sorted((p for p in cluster.find("Pod", namespace, selector)
                   if (p.get("status") or {}).get("phase") == "Running"
                   and not p["metadata"].get("deletionTimestamp")),
                  key=lambda p: str(p["metadata"]["name"]))


def workload_pods(cluster: KubeCluster, namespace: str, selector: dict[str, str]) -> list[str]:
    """Names of the running, not terminating pods behind ``selector``."""
    return [p["metadata"]["name"] for p in running_pods(cluster, namespace, selector)]


def call_hook(cluster: KubeCluster, namespace: str, pods: list[str], annotation: str) -> float:
    """POST the hook to every pod at once (freeze: each returns once its writes have stopped);
    the seconds it took. A pod that does not answer 2xx fails the step."""
    port, path = mv.hook(annotation)
    start = time.monotonic()

    def call(pod: str) -> None:
        code, body = cluster.post_path(mv.proxy_path(namespace, pod, port, path), timeout=30)
        if not 200 <= code < 300:
            raise DataError(f"the hook {annotation} of pod {namespace}/{pod} in {cluster.name} "
                            f"answered HTTP {code}: {body[:200]}")

    with ThreadPoolExecutor(max_workers=max(1, min(8, len(pods)))) as pool:
        for done in [pool.submit(call, pod) for pod in pods]:
            done.result()  # every pod at once; the first failure fails the step
    return time.monotonic() - start


def wait_no_pods(cluster: KubeCluster, namespace: str, selector: dict[str, str], *,
                 timeout: float) -> None:
    """Until no pod behind ``selector`` exists: the writers are gone (the no-hook freeze)."""
    def gone() -> bool:
        left = [p["metadata"]["name"] for p in cluster.find("Pod", namespace, selector)]
        if left:
            raise NotYet(f"still there: {', '.join(left)}")
        return True

    wait_for(gone, timeout=timeout, interval=0.1, error=DataError,
             what=f"the pods of {namespace} behind {selector} in {cluster.name} to stop")


def start_prepull(cluster: KubeCluster, namespace: str, migration_id: str,
                  workload: Manifest) -> str:
    """A pod that makes the target's kubelet pull the workload's images while the data is
    copied (the workload itself waits at 0 replicas for its data); its name."""
    pod = mv.prepull_pod(migration_id=migration_id, namespace=namespace,
                         pod_spec=workload["spec"]["template"]["spec"])
    cluster.apply(pod)
    return str(pod["metadata"]["name"])


def finish_prepull(cluster: KubeCluster, namespace: str, name: str, *, timeout: float) -> float:
    """Until the pre-pull pod's images are on the node, then remove it; when they were (unix
    time). An image that cannot be pulled fails here, before any pod is scaled up."""
    def pulled() -> bool | None:
        pod = cluster.get("Pod", name, namespace)
        if pod is None:
            raise DataError(f"the pre-pull pod {namespace}/{name} in {cluster.name} vanished")
        try:
            return mv.images_pulled(pod)
        except ValueError as exc:
            raise DataError(f"{cluster.name}: {exc}") from exc

    wait_for(pulled, timeout=timeout, interval=0.1, error=DataError,
             what=f"the workload's images to be pulled in {cluster.name}")
    done = time.time()
    cluster.delete("Pod", name, namespace)
    return done

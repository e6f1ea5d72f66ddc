"""``kubehop testbed stress``: load one testbed cluster with real pods, for placement work.

One pod, ``stress`` in namespace ``kubehop-stress``, burns CPU in busy loops capped by its CPU
limit (request = limit, so the scheduler accounts exactly what it burns) and holds a number of
bytes it has written to, so they are resident. It runs the Python of the tests' httpd image: no
registry but the testbed's own is reachable. With a duration the process ends by itself (and
``activeDeadlineSeconds`` backs that up); without one it runs until ``--stop``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from lightkube.utils.quantity import parse_quantity

from kubehop.adapters.kube import KubeCluster
from kubehop.errors import KubehopError, TestbedError, UsageError
from kubehop.testbed import images, layout
from kubehop.testbed import testbed as tb
from kubehop.testbed.layout import MIB, ClusterLayout
from kubehop.waiting import NotYet, WaitTimeoutError, wait_for

NAMESPACE = "kubehop-stress"
POD = "stress"
MEMORY_OVERHEAD = 64 * MIB
"""Requested (and allowed) on top of the held bytes: the Python processes themselves."""
DEADLINE_SLACK_S = 60
"""activeDeadlineSeconds counts from the pod's start, before the image is even pulled."""
MAX_SECONDS = 7 * 24 * 3600

# argv: busy processes, bytes to hold, seconds (0: until stopped). The busy processes are forked
# before the bytes are written, so they share none of them. PID 1 ignores SIGTERM unless it
# handles it: without the handler every stop would wait for the grace period.
SCRIPT = """\
import os, signal, sys, time
workers, size, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
start = time.monotonic()
pids = []
for _ in range(workers):
    pid = os.fork()
    if pid == 0:
        while True:
            pass
    pids.append(pid)
def end(*_):
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    os._exit(0)
signal.signal(signal.SIGTERM, end)
held = b"\\x01" * size
print(f"stress: {workers} busy processes, {size} bytes held", flush=True)
if seconds > 0:
    time.sleep(max(0.0, seconds - (time.monotonic() - start)))
    end()
while True:
    signal.pause()
"""

_CPU = re.compile(r"^(-?(?:\d+(?:\.\d*)?|\.\d+))(m?)$")
_SIZE = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)\s*(Ki|Mi|Gi|Ti|k|K|M|G|T)?(B)?$")
_FACTORS = {None: 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
            "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def parse_cpu(text: str) -> int:
    """``--cpu``: cores (``0.5``) or millicores (``500m``), as millicores > 0."""
    m = _CPU.match(text.strip())
    if not m:
        raise UsageError(f"--cpu {text!r} is not a number of cores; use e.g. 0.5 or 500m")
    millis = float(m.group(1)) * (1 if m.group(2) else 1000)
    if millis < 1:
        raise UsageError(f"--cpu {text} is not more than 0; use at least 1m (0.001 cores)")
    return round(millis)


def parse_size(text: str) -> int:
    """``--memory``: bytes, with an optional binary (Ki, Mi, Gi, Ti) or decimal (k, M, G, T)
    suffix and an optional B (``512Mi``, ``1GiB``, ``200M``)."""
    m = _SIZE.match(text.strip())
    if not m:
        raise UsageError(f"--memory {text!r} is not a size; use e.g. 512Mi, 1Gi or 200M")
    size = int(float(m.group(1)) * _FACTORS[m.group(2)])
    if size < 1:
        raise UsageError(f"--memory {text} is not more than 0 bytes; use e.g. 512Mi")
    return size


def parse_seconds(text: str) -> int:
    """``--for``: whole seconds, 1 to a week."""
    if not text.strip().isdigit() or not 1 <= int(text) <= MAX_SECONDS:
        raise UsageError(f"--for {text!r} is not a number of seconds from 1 to {MAX_SECONDS}; "
                         "use e.g. --for 60")
    return int(text)


def manifests(*, cpu_millis: int, memory: int, seconds: int | None,
              image: str) -> list[dict[str, Any]]:
    """The namespace and the pod that burn ``cpu_millis`` and hold ``memory`` bytes, for
    ``seconds`` (None: until deleted)."""
    need = memory + MEMORY_OVERHEAD
    resources = {"cpu": f"{cpu_millis}m",
                 "memory": f"{need // MIB}Mi" if need % MIB == 0 else str(need)}
    labels = {"app.kubernetes.io/name": "kubehop-stress", "app.kubernetes.io/managed-by": "kubehop"}
    spec: dict[str, Any] = {
        # Always (until --stop) the load stays even if the process dies; Never, it ends.
        "restartPolicy": "Never" if seconds else "Always",
        "terminationGracePeriodSeconds": 2,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "containers": [{
            "name": "stress",
            "image": image,
            "command": ["python3", "-c", SCRIPT, str(math.ceil(cpu_millis / 1000)), str(memory),
                        str(seconds or 0)],
            "resources": {"requests": dict(resources), "limits": dict(resources)},
        }],
    }
    if seconds:
        spec["activeDeadlineSeconds"] = seconds + DEADLINE_SLACK_S
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": POD, "namespace": NAMESPACE, "labels": labels,
                      "annotations": {"kubehop.io/stress-cpu": f"{cpu_millis}m",
                                      "kubehop.io/stress-memory": str(memory),
                                      "kubehop.io/stress-seconds": str(seconds or "")}},
         "spec": spec},
    ]


def _quantity(value: Any, scale: int) -> int:
    parsed = parse_quantity(str(value)) if value is not None else None
    return int(parsed * scale) if parsed is not None else 0


def requested(pods: list[dict[str, Any]], *, node: str,
              exclude_namespace: str | None = None) -> tuple[int, int]:
    """(millicores, bytes) the scheduler counts as taken on ``node`` by these pods: those bound
    to it and not finished, each the larger of its containers' sum and its biggest init
    container, plus its overhead."""
    cpu = memory = 0
    for pod in pods:
        spec, meta = pod.get("spec") or {}, pod.get("metadata") or {}
        if spec.get("nodeName") != node or meta.get("namespace") == exclude_namespace:
            continue
        if (pod.get("status") or {}).get("phase") in {"Succeeded", "Failed"}:
            continue

        def total(containers: list[dict[str, Any]], key: str, scale: int) -> list[int]:
            return [_quantity(((c.get("resources") or {}).get("requests") or {}).get(key), scale)
                    for c in containers]

        for key, scale in (("cpu", 1000), ("memory", 1)):
            used = max(sum(total(spec.get("containers") or [], key, scale)),
                       max(total(spec.get("initContainers") or [], key, scale), default=0))
            used += _quantity((spec.get("overhead") or {}).get(key), scale)
            if key == "cpu":
                cpu += used
            else:
                memory += used
    return cpu, memory


def _mib(size: int) -> str:
    return f"{size // MIB}Mi"


def check_fits(cluster: str, *, cpu_millis: int, memory: int, allocatable: tuple[int, int],
               taken: tuple[int, int]) -> None:
    """UsageError unless a stress of ``cpu_millis`` and ``memory`` (bytes, plus the overhead)
    fits in the node's ``allocatable`` beside what other pods request (``taken``)."""
    cpu_alloc, mem_alloc = allocatable
    need_mem = memory + MEMORY_OVERHEAD
    if cpu_millis > cpu_alloc:
        raise UsageError(f"--cpu {cpu_millis / 1000:g} is more than {cluster}'s allocatable "
                         f"{cpu_alloc / 1000:g} CPU; use at most {cpu_alloc / 1000:g}")
    if need_mem > mem_alloc:
        raise UsageError(f"--memory {_mib(memory)} (plus {_mib(MEMORY_OVERHEAD)} for the "
                         f"processes) is more than {cluster}'s allocatable {_mib(mem_alloc)}; "
                         f"use at most {_mib(max(mem_alloc - MEMORY_OVERHEAD, 0))}")
    free_cpu, free_mem = cpu_alloc - taken[0], mem_alloc - taken[1]
    if cpu_millis > free_cpu:
        raise UsageError(f"--cpu {cpu_millis / 1000:g} does not fit on {cluster}: other pods "
                         f"request {taken[0] / 1000:g} of its {cpu_alloc / 1000:g} CPU; use "
                         f"--cpu {max(free_cpu, 0)}m or less, or stop what runs there")
    if need_mem > free_mem:
        raise UsageError(f"--memory {_mib(memory)} does not fit on {cluster}: other pods "
                         f"request {_mib(taken[1])} of its {_mib(mem_alloc)}; use at most "
                         f"{_mib(max(free_mem - MEMORY_OVERHEAD, 0))}")


@dataclass
class Stress:
    """A stress as started: where, how much, for how long (None: until stopped)."""

    cluster: str
    cpu_millis: int
    memory: int
    seconds: int | None
    pod: str = f"{NAMESPACE}/{POD}"


def _cluster(name: str) -> ClusterLayout:
    from kubehop.testbed import sample

    return sample.cluster_layout(name)


def start(cluster: str, *, cpu_millis: int, memory: int = 0, seconds: int | None = None,
          timeout: float = 120) -> Stress:
    """Replace any stress on ``cluster`` with a new one; return once its pod runs. Input that
    cannot work (an unknown cluster, more than fits on the node) changes nothing."""
    if cpu_millis < 1 or memory < 0 or (seconds is not None and seconds < 1):
        raise UsageError("stress needs --cpu > 0, --memory >= 0 and --for >= 1")
    c = _cluster(cluster)
    with tb.kube(c) as k:
        allocatable = tb.node_resources(c)
        if allocatable is None:
            raise TestbedError(f"node {c.node_name} reports no allocatable resources yet; "
                               "check 'kubehop testbed status'")
        taken = requested(k.find("Pod"), node=c.node_name, exclude_namespace=NAMESPACE)
        check_fits(cluster, cpu_millis=cpu_millis, memory=memory, allocatable=allocatable,
                   taken=taken)
        image = images.build_and_push(images.httpd_image())
        namespace, pod = manifests(cpu_millis=cpu_millis, memory=memory, seconds=seconds,
                                   image=image)
        k.ensure_namespace(NAMESPACE)
        k.delete_all(("Pod",), NAMESPACE, timeout=60)
        k.apply(namespace)
        k.apply(pod)
        _wait_running(k, c, timeout=timeout)
    return Stress(cluster=cluster, cpu_millis=cpu_millis, memory=memory, seconds=seconds)


def _wait_running(k: KubeCluster, c: ClusterLayout, *, timeout: float) -> None:
    """Until the pod's process runs (or already ended, for a very short stress); a pod that
    cannot start fails at once with the reason."""

    def running() -> bool:
        pod = k.get("Pod", POD, NAMESPACE)
        status = (pod or {}).get("status") or {}
        if status.get("phase") in {"Running", "Succeeded"}:
            return True
        for cond in status.get("conditions") or []:
            if cond.get("reason") == "Unschedulable":
                raise TestbedError(f"the stress pod cannot be scheduled on {c.name}: "
                                   f"{cond.get('message', '')}")
        problems = k.pod_problems(NAMESPACE, {"app.kubernetes.io/name": "kubehop-stress"})
        if problems:
            raise TestbedError(f"the stress pod cannot start on {c.name}: {problems[0]}")
        raise NotYet(str(status.get("phase", "not created")))

    try:
        wait_for(running, timeout=timeout, interval=0.25, what=f"the stress pod in {c.name}")
    except WaitTimeoutError as exc:
        raise TestbedError(f"{exc}; see 'kubectl -n {NAMESPACE} describe pod {POD}' in "
                           f"context {c.name}") from exc


def stop(cluster: str | None = None, *, timeout: float = 120) -> list[str]:
    """Remove the stress from ``cluster`` (every cluster if None) and wait until its pod is
    gone; return the clusters that had one."""
    clusters = [_cluster(cluster)] if cluster else layout.layouts(tb.recorded_clusters())
    if not clusters:
        raise UsageError("the testbed is not up; start it with 'kubehop testbed up'")
    stopped = []
    for c in clusters:
        try:
            with tb.kube(c) as k:
                if k.delete_namespaces(NAMESPACE, timeout=timeout):
                    stopped.append(c.name)
        except KubehopError as exc:
            raise TestbedError(f"could not stop the stress on {c.name}: {exc}") from exc
    return stopped

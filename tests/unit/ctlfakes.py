"""In-memory fakes of what the controller observes and runs, for its unit tests: clusters whose
API answers Nodes, Pods and Services (and takes Events), a Prometheus answering the queries the
real :class:`~kubehop.controller.observe.Observer` makes, a clock the controller, the observer
and the store all read, and a migration runner that moves a service's pods between the fake
clusters and journals like the real executor (``Controller(executor=...)`` takes a factory)."""

from __future__ import annotations

import copy
import threading
import time
from dataclasses import asdict
from typing import Any

from kubehop.adapters.prometheus import MonitoringError, Sample
from kubehop.adapters.store import Store
from kubehop.domain.model import ClusterInfo, Inventory, MigrationRequest, Status
from kubehop.engine.report import Report
from kubehop.errors import KubehopError

Manifest = dict[str, Any]
GI = 2**30
MI = 2**20


class Clock:
    """Wall-clock seconds under the test's control (``monotonic`` stays real: only
    :meth:`Controller.run` reads it, to pace cycles)."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def time(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now

    @staticmethod
    def monotonic() -> float:
        return time.monotonic()


def node(cpu: str, memory: str) -> Manifest:
    return {"kind": "Node", "metadata": {"name": "n1"},
            "status": {"capacity": {"cpu": cpu, "memory": memory},
                       "allocatable": {"cpu": cpu, "memory": memory}}}


def pod(namespace: str, app: str, *, cpu: str = "100m", memory: str = "128Mi",
        ready: bool = True, phase: str = "Running", name: str | None = None) -> Manifest:
    return {"kind": "Pod",
            "metadata": {"name": name or f"{app}-0", "namespace": namespace,
                         "labels": {"app": app}},
            "spec": {"nodeName": "n1", "containers": [
                {"name": app, "resources": {"requests": {"cpu": cpu, "memory": memory}}}]},
            "status": {"phase": phase, "conditions": [
                {"type": "Ready", "status": "True" if ready else "False"}]}}


def service(namespace: str, name: str, *, selector: dict[str, str] | None = None,
            labels: dict[str, str] | None = None,
            annotations: dict[str, str] | None = None) -> Manifest:
    spec: Manifest = {"ports": [{"port": 80}]}
    if selector is not None:
        spec["selector"] = selector
    else:  # what a migration leaves in the source: an alias, no pods of its own
        spec.update(type="ExternalName", externalName=f"{name}.{namespace}.example")
    return {"kind": "Service",
            "metadata": {"name": name, "namespace": namespace, "labels": labels or {},
                         "annotations": annotations or {}},
            "spec": spec}


class FakeKube:
    """One cluster's API: ``find`` of Nodes, Pods and Services; Events posted are kept."""

    def __init__(self, name: str, *, cpu: str, memory: str) -> None:
        self.name = name
        self.nodes = [node(cpu, memory)]
        self.pods: list[Manifest] = []
        self.services: list[Manifest] = []
        self.namespaces: set[str] = set()
        self.events: list[Manifest] = []
        self.down: str | None = None
        """Set to a reason: every read fails like an unreachable API server."""

    def find(self, kind: str, namespace: str | None = None,
             labels: dict[str, str] | None = None) -> list[Manifest]:
        if self.down is not None:
            raise KubehopError(f"{self.name}: {self.down}")
        objects = {"Node": self.nodes, "Pod": self.pods, "Service": self.services}[kind]
        return copy.deepcopy(objects)

    def get(self, kind: str, name: str, namespace: str | None = None) -> Manifest | None:
        if self.down is not None:
            raise KubehopError(f"{self.name}: {self.down}")
        if kind == "Namespace":
            return {"kind": "Namespace", "metadata": {"name": name}} \
                if name in self.namespaces else None
        return None

    def apply(self, manifest: Manifest) -> Manifest:
        assert manifest["kind"] == "Event", manifest  # the controller writes only Events
        self.events.append(copy.deepcopy(manifest))
        return manifest

    def reasons(self) -> list[str]:
        return [e["reason"] for e in self.events]


class FakePrometheus:
    """Answers the observer's usage and RTT queries from dicts; any other expression from
    ``series`` (a rule's PromQL). ``down``: every query fails like an unreachable server."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = {}
        self.mem: dict[str, float] = {}
        self.rtt_s: dict[tuple[str, str], float] = {}
        self.series: dict[str, list[Sample]] = {}
        self.down: str | None = None
        self.queries: list[str] = []

    def query(self, expr: str, *, at: float | None = None) -> list[Sample]:
        self.queries.append(expr)
        if self.down is not None:
            raise MonitoringError(f"Prometheus at http://prometheus.test did not answer: "
                                  f"{self.down}")
        if "container_cpu_usage_seconds_total" in expr:
            return [Sample({"cluster": c}, v, 0.0) for c, v in self.cpu.items()]
        if "container_memory_working_set_bytes" in expr:
            return [Sample({"cluster": c}, v, 0.0) for c, v in self.mem.items()]
        if "kubehop_link_rtt_seconds" in expr:
            return [Sample({"source": a, "target": b}, v, 0.0)
                    for (a, b), v in self.rtt_s.items()]
        return list(self.series.get(expr, []))


class World:
    """The fake clusters (edge, fog, cloud: one tier each) and their Prometheus."""

    def __init__(self, sizes: dict[str, tuple[str, str]] | None = None) -> None:
        sizes = sizes or {"edge": ("2", "4Gi"), "fog": ("8", "16Gi"), "cloud": ("8", "16Gi")}
        self.kube = {name: FakeKube(name, cpu=cpu, memory=mem)
                     for name, (cpu, mem) in sizes.items()}
        self.prometheus = FakePrometheus()
        self.lock = threading.Lock()

    def inventory(self) -> Inventory:
        return Inventory(
            kubeconfig="/dev/null",
            clusters={n: ClusterInfo(name=n, context=n, tier=n, load_balancer=f"10.0.0.{i + 1}")
                      for i, n in enumerate(self.kube)},
            dns=None, prometheus="http://prometheus.test")

    def deploy(self, cluster: str, namespace: str, name: str, *, cpu: str = "100m",
               memory: str = "128Mi", replicas: int = 1) -> None:
        """The service's Service and ready pods in ``cluster``."""
        kube = self.kube[cluster]
        kube.namespaces.add(namespace)
        kube.services.append(service(namespace, name, selector={"app": name}))
        kube.pods += [pod(namespace, name, cpu=cpu, memory=memory, name=f"{name}-{i}")
                      for i in range(replicas)]

    def move(self, namespace: str, name: str, source: str, target: str) -> None:
        """What a successful migration leaves: the pods and the selector Service in the target,
        an alias Service (no selector) in the source."""
        with self.lock:
            src, dst = self.kube[source], self.kube[target]
            mine = [p for p in src.pods if p["metadata"]["namespace"] == namespace
                    and p["metadata"]["labels"].get("app") == name]
            svc = next(s for s in src.services if (s["metadata"]["namespace"],
                                                    s["metadata"]["name"]) == (namespace, name))
            src.pods = [p for p in src.pods if p not in mine]
            src.services = [s for s in src.services if s is not svc]
            src.services.append(service(namespace, name))
            dst.namespaces.add(namespace)
            dst.pods += mine
            dst.services = [s for s in dst.services if (s["metadata"]["namespace"],
                                                        s["metadata"]["name"]) != (namespace, name)]
            dst.services.append(svc)

    def running_in(self, namespace: str, name: str) -> list[str]:
        return sorted(c for c, k in self.kube.items()
                      if any(p["metadata"]["namespace"] == namespace
                             and p["metadata"]["labels"].get("app") == name for p in k.pods))


class FakeMigrations:
    """The controller's executor factory: every migration journals a row as the real
    :class:`~kubehop.engine.executor.Executor` does (``running``, then its end status), moves
    the pods in the world when it succeeds, and waits for :attr:`gate` first, so a test sees
    it in flight and decides when it ends (:meth:`finish`)."""

    def __init__(self, world: World, store: Store) -> None:
        self.world = world
        self.store = store
        self.outcome: str = Status.SUCCEEDED
        self.gate = threading.Event()
        self.entered = threading.Condition()
        self.started: list[tuple[str, MigrationRequest]] = []
        """The migrations whose runner has begun (in the controller's worker threads)."""
        self.resumed: list[str] = []
        self.count = 0

    def __call__(self) -> FakeMigrations:
        return self

    def new_id(self) -> str:
        self.count += 1
        return f"m{self.count}"

    def _report(self, migration_id: str, request: dict[str, Any], status: str) -> Report:
        return Report(id=migration_id, service=request["service"],
                      namespace=request["namespace"], source=request["source"],
                      target=request["target"], target_namespace=request["target_namespace"],
                      strategy=str(request.get("strategy", "endpoints")), status=status,
                      error=None if status == Status.SUCCEEDED else "the fake said so")

    def start(self, inventory: Inventory, request: MigrationRequest, *,
              migration_id: str) -> Report:
        with self.entered:
            self.started.append((migration_id, request))
            self.entered.notify_all()
        row = {**asdict(request), "strategy": str(request.strategy), "plan": ["copy"]}
        self.store.create(migration_id, row)
        if not self.gate.wait(timeout=5):
            raise TimeoutError("the test never let the migration end")
        if self.outcome == Status.SUCCEEDED:
            self.world.move(request.namespace, request.service, request.source, request.target)
        self.store.set_status(migration_id, self.outcome, None if self.outcome ==
                              Status.SUCCEEDED else "the fake said so")
        return self._report(migration_id, row, self.outcome)

    def wait_started(self, count: int) -> list[str]:
        """The ids of the migrations begun, once ``count`` have (the controller starts them
        in worker threads: its cycle may return before they run)."""
        with self.entered:
            if not self.entered.wait_for(lambda: len(self.started) >= count, timeout=5):
                raise TimeoutError(f"{len(self.started)} migrations began, not {count}")
            return [m for m, _ in self.started]

    def resume(self, inventory: Inventory, migration_id: str) -> Report:
        self.resumed.append(migration_id)
        request = self.store.get(migration_id).request
        self.world.move(request["namespace"], request["service"], request["source"],
                        request["target"])
        self.store.set_status(migration_id, Status.SUCCEEDED)
        return self._report(migration_id, request, Status.SUCCEEDED)

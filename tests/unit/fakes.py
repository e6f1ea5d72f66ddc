"""In-memory fakes of the clusters, the DNS zone and the probe path, for the executor's unit
tests: just enough Kubernetes behaviour (the EndpointSlice controller, Traefik routes) to say,
after every write, whether each cluster's clients can still reach the service.

For stateful moves, also: the workload controllers' pods, PVCs bound to in-memory volumes
(``{path: bytes}``, gone with their claim, as with reclaim ``Delete``), the kubelet's view of
bare pods (movers, pre-pull), the application's freeze/thaw hooks answered through the pod
proxy, and :class:`MemoryEngine`, a data engine that copies those volumes."""

from __future__ import annotations

import base64
import contextlib
import copy
import hashlib
import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock

from kubehop.domain import manifests as mf
from kubehop.domain import mover as mv
from kubehop.domain.model import TRANSFER_ENTRYPOINT, ClusterInfo, DnsZoneInfo, Inventory
from kubehop.domain.volumes import diff_manifests, manifest_key
from kubehop.engine.data import registry
from kubehop.engine.data.interface import DataError, DataSetup, Pass, Verification
from kubehop.errors import KubehopError

Manifest = dict[str, Any]
SERVICE, NS = "orc8r", "orc8r-ns"
ZONE = "testnetwork.internal"
FQDN = f"{SERVICE}.{NS}.{ZONE}"


class World:
    """Every fake cluster and the DNS zone, with a record of moments nobody could be served."""

    def __init__(self, names: tuple[str, ...] = ("edge", "cloud", "fog")) -> None:
        self.clusters = {n: FakeCluster(self, n, f"10.0.0.{i + 1}") for i, n in enumerate(names)}
        self.records: dict[str, list[str]] = {}
        self.outages: list[str] = []
        self.watch: set[str] = set()
        self.calls = 0
        self.events: list[tuple[Any, ...]] = []
        """What the application and the data engine saw, in order: ("freeze" | "thaw",
        cluster, pod), ("pass", final, source writers, target writers), ("verify", ...), and
        whatever a test's seam adds."""
        self.hook_status: dict[tuple[str, ...], int] = {}
        """(cluster, "freeze" | "thaw"[, pod]) -> the HTTP status that hook answers (of that
        pod, or of every pod there) instead of 200."""
        self.unpullable: set[str] = set()
        """Images no kubelet can pull."""
        self.pass_errors: list[str] = []
        """Each data pass first pops one of these and fails with it (rsync's error)."""
        self.before_pass: list[Callable[[bool], None]] = []
        """Called with ``final`` as each pass starts: the application writing meanwhile."""
        self.after_pass: list[Callable[[bool], None]] = []
        """Called with ``final`` once each pass has copied (to damage the copy, say)."""

    def inventory(self, *, mover_image: str | None = None) -> Inventory:
        """With ``mover_image``, stateful moves are possible: every cluster has a transfer
        entry point too."""
        entrypoints = {80: "web"}
        if mover_image:
            entrypoints[8873] = TRANSFER_ENTRYPOINT
        return Inventory(
            kubeconfig="/dev/null",
            clusters={n: ClusterInfo(name=n, context=n, tier=n, load_balancer=c.lb,
                                     entrypoints=dict(entrypoints))
                      for n, c in self.clusters.items()},
            dns=DnsZoneInfo(zone=ZONE, server="10.0.0.100", port=53, key_file="/dev/null"),
            mover_image=mover_image)

    def by_lb(self, address: str) -> FakeCluster | None:
        return next((c for c in self.clusters.values() if c.lb == address), None)

    def changed(self, where: str) -> None:
        self.calls += 1
        for name in sorted(self.watch):
            if not self.clusters[name].client_served():
                self.outages.append(f"{name} unserved after a write in {where} "
                                    f"(call {self.calls})")


class FakeCluster:
    def __init__(self, world: World, name: str, lb: str) -> None:
        self.world = world
        self.name = name
        self.lb = lb
        self.objects: dict[tuple[str, str, str], Manifest] = {}
        self.ips = 0
        self.volumes: dict[tuple[str, str], dict[str, bytes]] = {}
        """(namespace, claim) -> the files of the volume bound to that PVC."""
        self.frozen: set[tuple[str, str]] = set()
        """(namespace, pod) of the application pods whose freeze hook was called (and no thaw
        since): they acknowledge no write."""

    # --- what the engine calls --------------------------------------------------------------

    def get(self, kind: str, name: str, namespace: str | None = None) -> Manifest | None:
        obj = self.objects.get((kind, namespace or "", name))
        return copy.deepcopy(obj) if obj is not None else None

    def find(self, kind: str, namespace: str | None = None,
             labels: dict[str, str] | None = None) -> list[Manifest]:
        return [copy.deepcopy(o) for (k, ns, _), o in sorted(self.objects.items())
                if k == kind and (namespace is None or ns == namespace)
                and all(o["metadata"].get("labels", {}).get(a) == b
                        for a, b in (labels or {}).items())]

    def apply(self, manifest: Manifest) -> Manifest:
        obj = copy.deepcopy(manifest)
        key = self._key(obj)
        if obj["kind"] == "Service":
            old = self.objects.get(key)
            spec = obj.setdefault("spec", {})
            if spec.get("type") != "ExternalName" and "clusterIP" not in spec:
                spec["clusterIP"] = (old or {}).get("spec", {}).get("clusterIP") or self._ip()
            elif spec.get("clusterIP") and any(
                    o["spec"].get("clusterIP") == spec["clusterIP"]
                    for k, o in self.objects.items() if k[0] == "Service" and k != key):
                raise KubehopError(f"{self.name}: clusterIP {spec['clusterIP']} in use")
        if obj["kind"] == "Secret" and obj.get("type") == mf.SA_TOKEN:
            account = obj["metadata"]["annotations"][mf.SA_NAME_ANNOTATION]
            if account != "default" and self.get("ServiceAccount", account,
                                                 obj["metadata"]["namespace"]) is None:
                return obj  # the token controller deletes it at once
        if obj["kind"] == "Pod" and "status" not in obj:
            obj["status"] = self._kubelet(obj)
        if obj["kind"] == "Pod":
            obj["metadata"].setdefault("uid", uuid.uuid4().hex)
        if obj["kind"] == "Secret" and "stringData" in obj:  # as the API server stores it
            obj["data"] = {**(obj.get("data") or {}), **{
                k: base64.b64encode(v.encode()).decode() for k, v in obj.pop("stringData").items()}}
        self._store(key, obj)
        return obj

    def merge_patch(self, kind: str, name: str, namespace: str, patch: Manifest) -> Manifest:
        obj = self.objects[(kind, namespace, name)]
        for key, value in patch.get("spec", {}).items():
            if value is None:
                obj["spec"].pop(key, None)
            else:
                obj["spec"][key] = value
        self._store((kind, namespace, name), obj)
        return copy.deepcopy(obj)

    def replace(self, manifest: Manifest) -> Manifest:
        obj = copy.deepcopy(manifest)
        key = self._key(obj)
        if key not in self.objects:
            raise KubehopError(f"{self.name}: replace of a missing {key}")
        spec = obj["spec"]
        if spec.get("type") == "ExternalName":
            spec.pop("clusterIP", None)
        elif spec.get("clusterIP") and any(
                o["spec"].get("clusterIP") == spec["clusterIP"]
                for k, o in self.objects.items() if k[0] == "Service" and k != key):
            raise KubehopError(f"{self.name}: clusterIP {spec['clusterIP']} in use")
        self._store(key, obj)
        return copy.deepcopy(obj)

    def delete(self, kind: str, name: str, namespace: str | None = None) -> bool:
        key = (kind, namespace or "", name)
        if key not in self.objects:
            return False
        del self.objects[key]
        if kind == "Namespace":
            for k in [k for k in self.objects if k[1] == name]:
                del self.objects[k]
        self._reconcile()
        self.world.changed(self.name)
        return True

    def namespace_terminating(self, name: str) -> bool:
        return False

    def ensure_namespace(self, name: str) -> bool:
        if ("Namespace", "", name) in self.objects:
            return False
        self.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        return True

    def has_ingressroute_crd(self) -> bool:
        return True

    def wait_ready(self, kind: str, name: str, namespace: str, selector: dict[str, str], *,
                   timeout: float) -> None:
        if self.get(kind, name, namespace) is None:
            raise KubehopError(f"{self.name}: {kind} {namespace}/{name} is missing")

    def wait_started(self, namespace: str, selector: dict[str, str], want: int, *,
                     timeout: float) -> None:
        """The fake's pods run the moment their workload asks for them: ``want`` must run."""
        running = self.app_pods(namespace, selector)
        if len(running) < want:
            raise KubehopError(f"{self.name}: {len(running)} of {want} pods for {namespace} "
                               f"{selector} run")

    def scale(self, kind: str, name: str, namespace: str, replicas: int) -> Manifest:
        return self.merge_patch(kind, name, namespace, {"spec": {"replicas": replicas}})

    def get_path(self, path: str, *, params: dict[str, str] | None = None,
                 headers: dict[str, str] | None = None, timeout: float = 10) -> tuple[int, str]:
        return 404, "404 page not found"

    def post_path(self, path: str, *, params: dict[str, str] | None = None,
                  body: dict[str, Any] | None = None, headers: dict[str, str] | None = None,
                  timeout: float = 10) -> tuple[int, str]:
        """The API server's pod proxy to an application pod's freeze or thaw hook."""
        found = re.fullmatch(r"/api/v1/namespaces/([^/]+)/pods/([^/:]+):(\d+)/proxy(/.*)", path)
        if found is None:
            return 404, "404 page not found"
        ns, name, port, rest = found.group(1), found.group(2), int(found.group(3)), found.group(4)
        pod = self.objects.get(("Pod", ns, name))
        if pod is None:
            return 404, f'pods "{name}" not found'
        if (pod.get("status") or {}).get("phase") != "Running":
            return 503, "error trying to reach service: no endpoints"
        notes = pod["metadata"].get("annotations") or {}
        for which, annotation in (("freeze", mv.FREEZE_HOOK), ("thaw", mv.THAW_HOOK)):
            if annotation in notes and mv.hook(notes[annotation]) == (port, rest):
                status = self.world.hook_status.get(
                    (self.name, which, name), self.world.hook_status.get((self.name, which), 200))
                if status != 200:
                    return status, f"{which} failed"
                if which == "freeze":
                    self.frozen.add((ns, name))
                else:
                    self.frozen.discard((ns, name))
                self.world.events.append((which, self.name, name))
                return 200, "{}"
        return 404, "no such handler"

    # --- the application ----------------------------------------------------------------------

    def app_pods(self, namespace: str = NS, selector: dict[str, str] | None = None
                 ) -> list[str]:
        """Running pods of the application's workloads (not movers, not pre-pull pods)."""
        return sorted(
            name for (kind, ns, name), pod in self.objects.items()
            if kind == "Pod" and ns == namespace and pod["metadata"].get("ownerReferences")
            and (pod.get("status") or {}).get("phase") == "Running"
            and mf.selector_matches(selector or {"app": "orc8r"},
                                    pod["metadata"].get("labels", {})))

    def writers(self, namespace: str = NS) -> list[str]:
        """Application pods that would acknowledge a write now: running, not frozen."""
        return [p for p in self.app_pods(namespace) if (namespace, p) not in self.frozen]

    def app_write(self, path: str, data: bytes, *, claim: str = "orc8r-db",
                  namespace: str = NS) -> bool:
        """A client's write reaching the application here: stored and acknowledged (True) if
        a pod takes writes, refused (False) otherwise."""
        if not self.writers(namespace) or (namespace, claim) not in self.volumes:
            return False
        self.volumes[(namespace, claim)][path] = data
        return True

    # --- the controllers and the data path ----------------------------------------------------

    def _key(self, obj: Manifest) -> tuple[str, str, str]:
        meta = obj["metadata"]
        return obj["kind"], meta.get("namespace", "") or "", meta["name"]

    def _ip(self) -> str:
        self.ips += 1
        return f"10.96.{len(self.name)}.{self.ips}"

    def _store(self, key: tuple[str, str, str], obj: Manifest) -> None:
        obj["metadata"]["resourceVersion"] = str(self.world.calls)
        self.objects[key] = obj
        self._reconcile()
        self.world.changed(self.name)

    def workload_for(self, selector: dict[str, str], namespace: str) -> bool:
        """Whether a running pod is behind ``selector``."""
        return any(k[0] == "Pod" and k[1] == namespace
                   and (o.get("status") or {}).get("phase") == "Running"
                   and mf.selector_matches(selector, o["metadata"].get("labels", {}))
                   for k, o in self.objects.items())

    def _kubelet(self, pod: Manifest) -> Manifest:
        """A bare pod's status: a pre-pull pod's images pulled (its start failing, as
        intended) unless unpullable; any other pod running and ready."""
        containers = pod["spec"].get("containers") or []
        if any(c.get("command") == [mv.PREPULL_COMMAND] for c in containers):
            statuses = []
            for c in containers:
                if c["image"] in self.world.unpullable:
                    statuses.append({"image": c["image"],
                                     "state": {"waiting": {"reason": "ErrImagePull"}}})
                else:
                    statuses.append({"image": c["image"], "imageID": f"sha256:{c['image']}",
                                     "state": {"waiting": {"reason": "RunContainerError"}}})
            return {"phase": "Pending", "containerStatuses": statuses}
        return {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}

    def _run_workloads(self) -> None:
        """The Deployment and StatefulSet controllers and the kubelet: pods ``<name>-<i>``
        for each replica, running at once (replaced when the template changes); a
        StatefulSet's missing claims made from its templates; pods of a gone workload, or
        beyond its replicas, deleted."""
        want: dict[tuple[str, str], Manifest] = {}
        for (kind, ns, name), wl in list(self.objects.items()):
            if kind not in {"Deployment", "StatefulSet"}:
                continue
            template = wl["spec"]["template"]
            for i in range(int(wl["spec"].get("replicas", 1))):
                pod_name = f"{name}-{i}"
                meta: Manifest = {"name": pod_name, "namespace": ns,
                                  "labels": dict(template["metadata"].get("labels", {})),
                                  "ownerReferences": [{"kind": kind, "name": name}]}
                if template["metadata"].get("annotations"):
                    meta["annotations"] = dict(template["metadata"]["annotations"])
                want[(ns, pod_name)] = {
                    "apiVersion": "v1", "kind": "Pod", "metadata": meta,
                    "spec": copy.deepcopy(template["spec"]),
                    "status": {"phase": "Running",
                               "conditions": [{"type": "Ready", "status": "True"}]}}
                for claim in (wl["spec"].get("volumeClaimTemplates") or []
                              if kind == "StatefulSet" else []):
                    pvc_name = f"{claim['metadata']['name']}-{name}-{i}"
                    if ("PersistentVolumeClaim", ns, pvc_name) not in self.objects:
                        self.objects[("PersistentVolumeClaim", ns, pvc_name)] = {
                            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                            "metadata": {"name": pvc_name, "namespace": ns,
                                         "labels": dict(template["metadata"].get("labels", {}))},
                            "spec": copy.deepcopy(claim["spec"])}
        for (kind, ns, name), pod in list(self.objects.items()):
            if kind == "Pod" and pod["metadata"].get("ownerReferences") and (ns, name) not in want:
                del self.objects[(kind, ns, name)]
                self.frozen.discard((ns, name))
        for (ns, name), pod in want.items():
            old = self.objects.get(("Pod", ns, name))
            old_meta = {k: v for k, v in (old or {}).get("metadata", {}).items() if k != "uid"}
            if old is None or old_meta != pod["metadata"] or old["spec"] != pod["spec"]:
                pod["metadata"]["uid"] = uuid.uuid4().hex  # a new pod: a changed template rolls
                self.objects[("Pod", ns, name)] = pod
                self.frozen.discard((ns, name))

    def _bind_volumes(self) -> None:
        """The provisioner: a claim binds to a new empty volume when its StorageClass exists
        (or it names none); a volume goes with its claim (reclaim policy Delete)."""
        claims = {(ns, name): pvc for (kind, ns, name), pvc in self.objects.items()
                  if kind == "PersistentVolumeClaim"}
        for key, pvc in claims.items():
            sc = pvc["spec"].get("storageClassName")
            if key not in self.volumes and (sc is None
                                            or ("StorageClass", "", sc) in self.objects):
                self.volumes[key] = {}
            pvc["status"] = {"phase": "Bound" if key in self.volumes else "Pending"}
        for key in [k for k in self.volumes if k not in claims]:
            del self.volumes[key]

    def _reconcile(self) -> None:
        """The controllers. The EndpointSlice controller: a selector Service with pods gets a
        slice of them; one without pods loses it; a Service without a selector is left alone
        (stale slices stay)."""
        self._run_workloads()
        self._bind_volumes()
        for (kind, ns, name), svc in list(self.objects.items()):
            if kind != "Service" or not svc["spec"].get("selector"):
                continue
            key = ("EndpointSlice", ns, f"{name}-auto")
            if self.workload_for(svc["spec"]["selector"], ns):
                self.objects[key] = {
                    "kind": "EndpointSlice",
                    "metadata": {"name": f"{name}-auto", "namespace": ns, "labels": {
                        "kubernetes.io/service-name": name,
                        "endpointslice.kubernetes.io/managed-by": "endpointslice-controller"}},
                    "endpoints": [{"addresses": ["pod"], "conditions": {"ready": True}}]}
            else:
                self.objects.pop(key, None)
        for (kind, ns, name) in list(self.objects):
            if kind == "EndpointSlice" and name.endswith("-auto") and (
                    "Service", ns, name[:-5]) not in self.objects:
                del self.objects[(kind, ns, name)]

    def routed(self, host_fqdn: str) -> bool:
        """Traefik here answers for the service: a route for the name and pods behind it."""
        for (kind, ns, _), route in self.objects.items():
            if kind != "IngressRoute" or host_fqdn not in route["spec"]["routes"][0]["match"]:
                continue
            backend = self.get("Service", route["spec"]["routes"][0]["services"][0]["name"], ns)
            if backend and self.workload_for(backend["spec"]["selector"], ns):
                return True
        return False

    def reaches(self, addresses: list[str], via: str) -> bool:
        for address in addresses:
            if address == "pod" and self.workload_for(via_selector(self), NS):
                return True
            other = self.world.by_lb(address)
            if other is not None and other.routed(FQDN):
                return True
        return False

    def client_served(self) -> bool:
        """Can a client in this cluster reach ``orc8r.orc8r-ns`` now (by ClusterIP or name)?"""
        svc = self.objects.get(("Service", NS, SERVICE))
        if svc is None:
            return False
        if svc["spec"].get("type") == "ExternalName":
            return self.reaches(self.world.records.get(FQDN, []), "dns")
        addresses = [a for s in self.find("EndpointSlice", NS,
                                          {"kubernetes.io/service-name": SERVICE})
                     for e in s.get("endpoints") or [] if (e.get("conditions") or {}).get("ready")
                     for a in e["addresses"]]
        return self.reaches(addresses, "clusterip")


def via_selector(cluster: FakeCluster) -> dict[str, str]:
    return {"app": "orc8r"}


class FakeDns:
    def __init__(self, world: World) -> None:
        self.world = world

    def check_zone(self) -> None:
        pass

    def lookup_a(self, fqdn: str) -> list[str]:
        return list(self.world.records.get(fqdn, []))

    def set_a(self, fqdn: str, address: str, *, ttl: int = 5) -> None:
        self.world.records[fqdn] = [address]
        self.world.changed("dns")

    def delete(self, fqdn: str) -> None:
        self.world.records.pop(fqdn, None)
        self.world.changed("dns")


class FakeConnector:
    def __init__(self, world: World) -> None:
        self.world = world

    def cluster(self, inventory: Inventory, name: str) -> FakeCluster:
        return self.world.clusters[name]

    def dns(self, info: DnsZoneInfo) -> FakeDns:
        return FakeDns(self.world)

    def http_get(self, url: str, host: str) -> tuple[int, str]:
        lb = url.split("//", 1)[1].split(":", 1)[0]
        target = self.world.by_lb(lb)
        if target is not None and target.routed(FQDN):
            return 200, "ok"
        return 404, "404 page not found"


def deploy_orc8r(cluster: FakeCluster) -> None:
    """The sample as deploy-sample makes it: namespace, ConfigMap, Deployment, Service."""
    cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    cluster.apply({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "orc8r-config", "namespace": NS}, "data": {"a": "b"}})
    cluster.apply({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "orc8r", "namespace": NS},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "orc8r"}},
                 "template": {"metadata": {"labels": {"app": "orc8r"}}, "spec": {
                     "volumes": [{"name": "c", "configMap": {"name": "orc8r-config"}}],
                     "containers": [{"name": "orc8r", "image": "orc8r",
                                     "readinessProbe": {"httpGet": {"path": "/healthz"}}}]}}}})
    cluster.apply({"apiVersion": "v1", "kind": "Service",
                   "metadata": {"name": SERVICE, "namespace": NS},
                   "spec": {"selector": {"app": "orc8r"},
                            "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}})


# --- stateful services ------------------------------------------------------------------------

MOVER_IMAGE = "kubehop/mover:test"
CLAIM = "orc8r-db"
STORAGE_CLASS = "local-path"
FREEZE = "http://:8080/admin/freeze"
THAW = "http://:8080/admin/thaw"


def make_stateful(cluster: FakeCluster, files: dict[str, bytes], *, hooks: bool = True) -> None:
    """orc8r as ``deploy-sample --stateful`` makes it: its database on a PVC (``orc8r-db``)
    holding ``files``, shared by its 2 replicas, with freeze/thaw hooks unless not ``hooks``.
    Every cluster gets the StorageClass the claim names."""
    for each in cluster.world.clusters.values():
        each.apply({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                    "metadata": {"name": STORAGE_CLASS}, "provisioner": "rancher.io/local-path",
                    "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer"})
    cluster.apply({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                   "metadata": {"name": CLAIM, "namespace": NS},
                   "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": STORAGE_CLASS,
                            "resources": {"requests": {"storage": "1Gi"}}}})
    cluster.volumes[(NS, CLAIM)].update(files)
    dep = cluster.get("Deployment", "orc8r", NS)
    assert dep is not None
    template = dep["spec"]["template"]
    template["spec"]["volumes"].append({"name": "db", "persistentVolumeClaim":
                                        {"claimName": CLAIM}})
    if hooks:
        template["metadata"]["annotations"] = {mv.FREEZE_HOOK: FREEZE, mv.THAW_HOOK: THAW}
    cluster.apply(dep)


class MemoryEngine:
    """A :class:`~kubehop.engine.data.interface.DataEngine` over the fake clusters' volumes.

    Like the file engine it keeps nothing itself (every handle is fresh): its movers are pods
    and a key Secret named after the migration, in the clusters, so a leak shows in them; a pass
    is rsync ``--delete``'s effect (the target's volumes become the source's) and fails if a
    mover is gone or a claim is unbound; the verification compares manifests built as the
    mover builds them, with the domain's own ``diff_manifests``."""

    name = "memory"

    def __init__(self, setup: DataSetup) -> None:
        self.setup = setup
        self.src: FakeCluster = setup.src  # type: ignore[assignment]
        self.dst: FakeCluster = setup.dst  # type: ignore[assignment]
        self.world = self.src.world
        self.sender = mv.pod_name(setup.migration_id, "sender")
        self.receiver = mv.pod_name(setup.migration_id, "receiver")
        self.secret = mv.secret_name(setup.migration_id)

    def start(self, *, timeout: float) -> None:
        s = self.setup
        self.remove()
        for cluster, ns, role in ((self.dst, s.target_namespace, "receiver"),
                                  (self.src, s.source_namespace, "sender")):
            cluster.apply(mv.mover_secret(name=self.secret, namespace=ns, psk="test",
                                          token="test", migration_id=s.migration_id))
            cluster.apply(mv.network_policy(role=role, migration_id=s.migration_id,
                                            namespace=ns, target=s.target_address))
        self.dst.apply(mv.mover_pod(role="receiver", migration_id=s.migration_id,
                                    namespace=s.target_namespace, image=s.image,
                                    claims=s.claims, secret=self.secret))
        self.src.apply(mv.mover_pod(role="sender", migration_id=s.migration_id,
                                    namespace=s.source_namespace, image=s.image,
                                    claims=s.claims, secret=self.secret,
                                    target=s.target_address, sni=mv.server_name(s.migration_id)))
        self.world.events.append(("movers", self.src.name, self.dst.name))

    def first_pass(self) -> tuple[Pass, list[str]]:
        failures: list[str] = []
        while True:
            try:
                return self.run_pass(final=False), failures
            except DataError as exc:
                if len(failures) >= 5:
                    raise
                failures.append(str(exc))

    def _volumes(self) -> Iterator[tuple[str, dict[str, bytes], dict[str, bytes]]]:
        s = self.setup
        for claim in s.claims:
            src = self.src.volumes.get((s.source_namespace, claim))
            dst = self.dst.volumes.get((s.target_namespace, claim))
            if src is None or dst is None:
                raise DataError(f"PVC {claim} is not bound in "
                                f"{self.src.name if src is None else self.dst.name}")
            yield claim, src, dst

    def run_pass(self, *, final: bool) -> Pass:
        s = self.setup
        for hook in list(self.world.before_pass):
            hook(final)
        if self.src.get("Pod", self.sender, s.source_namespace) is None or self.dst.get(
                "Pod", self.receiver, s.target_namespace) is None:
            raise DataError("rsync failed (exit 10): a mover is gone")
        if self.world.pass_errors:
            raise DataError(self.world.pass_errors.pop(0))
        sent = files = 0
        for _, src, dst in self._volumes():
            changed = {p: b for p, b in src.items() if dst.get(p) != b}
            sent += sum(len(b) for b in changed.values())
            files += len(changed)
            dst.clear()
            dst.update(src)
        self.world.events.append(("pass", final, self.src.writers(s.source_namespace),
                                  self.dst.writers(s.target_namespace)))
        for hook in list(self.world.after_pass):
            hook(final)
        return Pass(sent, files, 0.0, final)

    def prepare_verify(self) -> None:
        self.world.events.append(("prepare-verify",))

    def verify(self) -> Verification:
        source: list[dict[str, Any]] = []
        target: list[dict[str, Any]] = []
        for claim, src, dst in self._volumes():
            source += manifest(claim, src)
            target += manifest(claim, dst)
        self.world.events.append(("verify", self.src.writers(self.setup.source_namespace)))
        files = [e for e in source if e["type"] == "file"]
        return Verification(diff_manifests(source, target), len(files),
                            sum(e["size"] for e in files))

    def remove(self) -> None:
        s = self.setup
        self.src.delete("Pod", self.sender, s.source_namespace)
        self.src.delete("NetworkPolicy", self.sender, s.source_namespace)
        self.src.delete("Secret", self.secret, s.source_namespace)
        self.dst.delete("Pod", self.receiver, s.target_namespace)
        self.dst.delete("NetworkPolicy", self.receiver, s.target_namespace)
        self.dst.delete("Secret", self.secret, s.target_namespace)

    def wait_removed(self, *, timeout: float) -> None:
        s = self.setup
        if self.src.get("Pod", self.sender, s.source_namespace) is not None or self.dst.get(
                "Pod", self.receiver, s.target_namespace) is not None:
            raise DataError("a mover is still there")
        self.world.events.append(("movers-gone",))


def manifest(claim: str, files: dict[str, bytes]) -> list[dict[str, Any]]:
    """A volume's entries as the mover lists them (its directory, then each file)."""
    out: list[dict[str, Any]] = [{"path": claim, "type": "dir", "uid": 0, "gid": 0,
                                  "mode": 0o755}]
    for path, data in sorted(files.items(), key=lambda item: manifest_key(item[0])):
        out.append({"path": f"{claim}/{path}", "type": "file", "uid": 999, "gid": 999,
                    "mode": 0o600, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    return out


@contextlib.contextmanager
def memory_engine() -> Iterator[None]:
    """Every migration's data moved by :class:`MemoryEngine`: registered in the engine
    registry and made the default, as a new engine would be (``Migration.data_engine`` picks
    ``registry.DEFAULT``)."""
    with mock.patch.dict(registry.ENGINES, {MemoryEngine.name: MemoryEngine}), \
            mock.patch.object(registry, "DEFAULT", MemoryEngine.name):
        yield

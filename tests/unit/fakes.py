"""In-memory fakes of the clusters, the DNS zone and the probe path, for the executor's unit
tests: just enough Kubernetes behaviour (the EndpointSlice controller, Traefik routes) to say,
after every write, whether each cluster's clients can still reach the service."""

from __future__ import annotations

import copy
from typing import Any

from kubehop.domain import manifests as mf
from kubehop.domain.model import ClusterInfo, DnsZoneInfo, Inventory
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

    def inventory(self) -> Inventory:
        return Inventory(
            kubeconfig="/dev/null",
            clusters={n: ClusterInfo(name=n, context=n, tier=n, load_balancer=c.lb)
                      for n, c in self.clusters.items()},
            dns=DnsZoneInfo(zone=ZONE, server="10.0.0.100", port=53, key_file="/dev/null"))

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
        """The fake's workloads run the moment they exist: one must exist for the selector."""
        if not any(o["kind"] in {"Deployment", "StatefulSet"}
                   and o["metadata"].get("namespace") == namespace
                   and o["spec"]["selector"].get("matchLabels") == selector
                   for o in self.objects.values()):
            raise KubehopError(f"{self.name}: no workload for {namespace} {selector}")

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
        return any(k[0] in {"Deployment", "StatefulSet"} and k[1] == namespace
                   and mf.selector_matches(selector, o["spec"]["template"]["metadata"].get(
                       "labels", {}))
                   for k, o in self.objects.items())

    def _reconcile(self) -> None:
        """The EndpointSlice controller: a selector Service with pods gets a slice of them; one
        without pods loses it; a Service without a selector is left alone (stale slices stay)."""
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

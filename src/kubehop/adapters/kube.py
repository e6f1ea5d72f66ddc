"""Kubernetes, through lightkube: one client per kubeconfig context.

Works on plain dicts (the domain's manifests) and hides lightkube's and httpx's exceptions behind
:class:`KubeError`, which carries the cause and names the cluster.
"""

from __future__ import annotations

import time
from typing import Any

from lightkube import ApiError, Client, KubeConfig, codecs
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.apps_v1 import Deployment, StatefulSet
from lightkube.resources.core_v1 import (
    ConfigMap,
    Endpoints,
    Namespace,
    PersistentVolumeClaim,
    Pod,
    Secret,
    Service,
    ServiceAccount,
)
from lightkube.resources.discovery_v1 import EndpointSlice
from lightkube.types import PatchType

from kubehop.errors import KubehopError

Manifest = dict[str, Any]
FIELD_MANAGER = "kubehop"

IngressRoute = create_namespaced_resource("traefik.io", "v1alpha1", "IngressRoute",
                                          "ingressroutes")

KINDS: dict[str, Any] = {
    "ConfigMap": ConfigMap, "Secret": Secret, "ServiceAccount": ServiceAccount,
    "PersistentVolumeClaim": PersistentVolumeClaim, "Service": Service, "Pod": Pod,
    "Deployment": Deployment, "StatefulSet": StatefulSet, "EndpointSlice": EndpointSlice,
    "IngressRoute": IngressRoute, "Namespace": Namespace, "Endpoints": Endpoints,
}


class KubeError(KubehopError):
    """A Kubernetes API call failed; the message names the cluster and the object."""


def _to_dict(obj: Any) -> Manifest:
    data: Manifest = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
    return data


class KubeCluster:
    """The API of one cluster, reached through one kubeconfig context."""

    def __init__(self, *, kubeconfig: str, context: str, name: str) -> None:
        self.name = name
        try:
            config = KubeConfig.from_file(kubeconfig).get(context_name=context)
        except Exception as exc:
            raise KubeError(f"cannot load context {context!r} from {kubeconfig}: {exc}") from exc
        if config is None:
            raise KubeError(f"no context {context!r} in {kubeconfig}")
        self.client = Client(config=config, field_manager=FIELD_MANAGER)

    def _fail(self, what: str, exc: Exception) -> KubeError:
        detail = exc.status.message if isinstance(exc, ApiError) else str(exc)
        return KubeError(f"{self.name}: {what} failed: {detail}")

    def get(self, kind: str, name: str, namespace: str | None = None) -> Manifest | None:
        """The object, or None if it does not exist."""
        try:
            return _to_dict(self.client.get(KINDS[kind], name, namespace=namespace))
        except ApiError as exc:
            if exc.status.code == 404:
                return None
            raise self._fail(f"get {kind} {namespace}/{name}", exc) from exc
        except Exception as exc:
            raise self._fail(f"get {kind} {namespace}/{name}", exc) from exc

    def find(self, kind: str, namespace: str | None = None,
             labels: dict[str, str] | None = None) -> list[Manifest]:
        try:
            selector: dict[str, Any] = dict(labels or {})
            return [_to_dict(o) for o in self.client.list(
                KINDS[kind], namespace=namespace or "*", labels=selector or None)]
        except Exception as exc:
            raise self._fail(f"list {kind} in {namespace or 'all namespaces'}", exc) from exc

    def apply(self, manifest: Manifest, *, dry_run: bool = False) -> Manifest:
        """Server-side apply, as kubehop's field manager (taking over conflicting fields)."""
        meta = manifest["metadata"]
        what = f"apply {manifest['kind']} {meta.get('namespace', '')}/{meta['name']}"
        try:
            obj = codecs.from_dict(manifest)
            return _to_dict(self.client.apply(obj, force=True, dry_run=dry_run))
        except Exception as exc:
            raise self._fail(what, exc) from exc

    def merge_patch(self, kind: str, name: str, namespace: str, patch: Manifest) -> Manifest:
        try:
            return _to_dict(self.client.patch(KINDS[kind], name, patch, namespace=namespace,
                                              patch_type=PatchType.MERGE))
        except Exception as exc:
            raise self._fail(f"patch {kind} {namespace}/{name}", exc) from exc

    def replace(self, manifest: Manifest) -> Manifest:
        """Replace (PUT): for changes server-side apply cannot express, like a Service's type."""
        meta = manifest["metadata"]
        try:
            return _to_dict(self.client.replace(codecs.from_dict(manifest)))
        except Exception as exc:
            raise self._fail(f"replace {manifest['kind']} {meta['namespace']}/{meta['name']}",
                             exc) from exc

    def delete(self, kind: str, name: str, namespace: str | None = None) -> bool:
        """Delete; False if it was already gone."""
        try:
            self.client.delete(KINDS[kind], name, namespace=namespace)
        except ApiError as exc:
            if exc.status.code == 404:
                return False
            raise self._fail(f"delete {kind} {namespace}/{name}", exc) from exc
        except Exception as exc:
            raise self._fail(f"delete {kind} {namespace}/{name}", exc) from exc
        return True

    def namespace_terminating(self, name: str) -> bool:
        ns = self.get("Namespace", name)
        return ns is not None and (ns.get("status") or {}).get("phase") == "Terminating"

    def ensure_namespace(self, name: str, *, timeout: float = 120) -> bool:
        """Create the namespace unless it exists; wait out one still being deleted (a rolled
        back migration deletes the namespace it made). True if it was created here."""
        deadline = time.monotonic() + timeout
        while self.namespace_terminating(name):
            if time.monotonic() > deadline:
                raise KubeError(f"{self.name}: namespace {name} is still being deleted after "
                                f"{timeout:.0f}s")
            time.sleep(0.5)
        if self.get("Namespace", name) is not None:
            return False
        self.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        return True

    def has_ingressroute_crd(self) -> bool:
        try:
            self.client.list(IngressRoute, namespace="default")
        except ApiError as exc:
            if exc.status.code == 404:
                return False
            raise self._fail("list IngressRoutes", exc) from exc
        except Exception as exc:
            raise self._fail("list IngressRoutes", exc) from exc
        return True

    def workload_ready(self, kind: str, name: str, namespace: str) -> tuple[bool, str]:
        """(ready, why not): every replica updated, ready and available."""
        obj = self.get(kind, name, namespace)
        if obj is None:
            return False, f"{kind} {namespace}/{name} is missing"
        spec, status = obj.get("spec", {}), obj.get("status") or {}
        want = int(spec.get("replicas", 1))
        if int(status.get("observedGeneration") or 0) < int(obj["metadata"].get("generation", 0)):
            return False, "not observed yet"
        ready = int(status.get("readyReplicas") or 0)
        updated = int(status.get("updatedReplicas") or 0)
        if ready >= want and updated >= want:
            return True, ""
        return False, f"{ready}/{want} replicas ready"

    def pod_problems(self, namespace: str, selector: dict[str, str]) -> list[str]:
        """Waiting reasons that will not resolve by themselves (image pull errors, crash loops)."""
        problems = []
        for pod in self.find("Pod", namespace, selector):
            for cs in (pod.get("status") or {}).get("containerStatuses") or []:
                waiting = (cs.get("state") or {}).get("waiting") or {}
                reason = waiting.get("reason", "")
                if reason in {"ErrImagePull", "ImagePullBackOff", "InvalidImageName",
                              "CrashLoopBackOff", "CreateContainerConfigError"}:
                    problems.append(f"{pod['metadata']['name']}: {reason}")
        return problems

    def wait_ready(self, kind: str, name: str, namespace: str, selector: dict[str, str], *,
                   timeout: float) -> None:
        deadline = time.monotonic() + timeout
        why = ""
        while time.monotonic() < deadline:
            ok, why = self.workload_ready(kind, name, namespace)
            if ok:
                return
            problems = self.pod_problems(namespace, selector)
            if problems:
                raise KubeError(f"{self.name}: {kind} {namespace}/{name} cannot become ready: "
                                f"{'; '.join(problems[:3])}")
            time.sleep(0.25)
        raise KubeError(f"{self.name}: {kind} {namespace}/{name} not ready after "
                        f"{timeout:.0f}s ({why})")



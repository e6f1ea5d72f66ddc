"""Kubernetes, through lightkube: one client per kubeconfig context.

Works on plain dicts (the domain's manifests) and hides lightkube's and httpx's exceptions behind
:class:`KubeError`, which carries the cause and names the cluster.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx2
from lightkube import ApiError, Client, KubeConfig, codecs
from lightkube.config import client_adapter
from lightkube.core.resource import NamespacedResource
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition
from lightkube.resources.apps_v1 import Deployment, StatefulSet
from lightkube.resources.core_v1 import (
    ConfigMap,
    Endpoints,
    Event,
    Namespace,
    Node,
    PersistentVolumeClaim,
    Pod,
    Secret,
    Service,
    ServiceAccount,
)
from lightkube.resources.discovery_v1 import EndpointSlice
from lightkube.resources.networking_v1 import NetworkPolicy
from lightkube.resources.storage_v1 import StorageClass
from lightkube.types import PatchType

from kubehop.domain.pods import pod_is_ready
from kubehop.errors import KubehopError
from kubehop.waiting import NotYet, PollBudget, wait_for

Manifest = dict[str, Any]
FIELD_MANAGER = "kubehop"
API_TIMEOUT_S = 30.0
"""How long one API call may take. lightkube's 10 s was too short for a control plane on two
shared cores creating 64 Services at once (ClusterIP allocation); the API server's own limit
is 60 s."""

IngressRoute = create_namespaced_resource("traefik.io", "v1alpha1", "IngressRoute",
                                          "ingressroutes")
IngressRouteTCP = create_namespaced_resource("traefik.io", "v1alpha1", "IngressRouteTCP",
                                             "ingressroutetcps")
MigrationResource = create_namespaced_resource("kubehop.io", "v1alpha1", "Migration",
                                              "migrations")
PlacementPolicyResource = create_namespaced_resource("kubehop.io", "v1alpha1",
                                                     "PlacementPolicy", "placementpolicies")

KINDS: dict[str, Any] = {
    "ConfigMap": ConfigMap, "Secret": Secret, "ServiceAccount": ServiceAccount,
    "PersistentVolumeClaim": PersistentVolumeClaim, "Service": Service, "Pod": Pod,
    "Deployment": Deployment, "StatefulSet": StatefulSet, "EndpointSlice": EndpointSlice,
    "IngressRoute": IngressRoute, "IngressRouteTCP": IngressRouteTCP, "Namespace": Namespace,
    "Endpoints": Endpoints, "Node": Node, "NetworkPolicy": NetworkPolicy,
    "Event": Event, "StorageClass": StorageClass,
    "CustomResourceDefinition": CustomResourceDefinition,
    "Migration": MigrationResource, "PlacementPolicy": PlacementPolicyResource,
}


POLLS = PollBudget(0.05)
"""Waits for pods (start, readiness): within 0.05 s for one migration, and no more requests a
second for 64 at once."""


class KubeError(KubehopError):
    """A Kubernetes API call failed; the message names the cluster and the object."""


class KubeConflictError(KubeError):
    """409: the object changed since it was read (an update named an old resourceVersion), or
    someone else created it first. For optimistic concurrency: the caller lost the race."""


LEASES = "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"


def _to_dict(obj: Any) -> Manifest:
    data: Manifest = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
    return data


def _last_exit(status: Manifest) -> str:
    """How a crash-looping container last ended (exit code, and the tail of its termination
    message: its logs with ``terminationMessagePolicy: FallbackToLogsOnError``), so the error a
    user reads says why, not only that, it crashed."""
    ended = ((status.get("lastState") or {}).get("terminated")) or {}
    if not ended:
        return ""
    message = " ".join(str(ended.get("message") or "").split())[-300:]
    reason = f"{ended['reason']}, " if ended.get("reason") else ""
    return f" ({reason}exit {ended.get('exitCode')}{': ' + message if message else ''})"


def _ref(kind: str, name: str, namespace: str | None) -> str:
    return f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"


class KubeCluster:
    """The API of one cluster, reached through one kubeconfig context.

    ``kubeconfig`` is a file, or the kubeconfig itself as a dict (for an identity that has no
    file usable from here, like the testbed's read-only monitoring identity). Close it (or use it
    as a context manager) when done, so its connections do not outlive it.
    """

    def __init__(self, *, kubeconfig: str | dict[str, Any], context: str, name: str) -> None:
        self.name = name
        where = kubeconfig if isinstance(kubeconfig, str) else "the given kubeconfig"
        try:
            loaded = (KubeConfig.from_file(kubeconfig) if isinstance(kubeconfig, str)
                      else KubeConfig.from_dict(kubeconfig))
            config = loaded.get(context_name=context)
        except Exception as exc:
            raise KubeError(f"cannot load context {context!r} from {where}: {exc}") from exc
        if config is None:
            raise KubeError(f"no context {context!r} in {where}")
        try:
            self.client = Client(config=config, field_manager=FIELD_MANAGER,
                                 timeout=httpx2.Timeout(API_TIMEOUT_S))
        except Exception as exc:
            raise KubeError(f"cannot use context {context!r} from {where}: {exc}") from exc
        self._http: Any = None

    def close(self) -> None:
        self.client.close()
        if self._http is not None:
            self._http.close()

    def __enter__(self) -> KubeCluster:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

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
            raise self._fail(f"get {_ref(kind, name, namespace)}", exc) from exc
        except Exception as exc:
            raise self._fail(f"get {_ref(kind, name, namespace)}", exc) from exc

    def find(self, kind: str, namespace: str | None = None,
             labels: dict[str, str] | None = None) -> list[Manifest]:
        """Objects of ``kind`` in ``namespace`` (all namespaces if None), optionally by labels."""
        res = KINDS[kind]
        everywhere = "*" if issubclass(res, NamespacedResource) else None
        try:
            selector: dict[str, Any] = dict(labels or {})
            return [_to_dict(o) for o in self.client.list(
                res, namespace=namespace or everywhere, labels=selector or None)]
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

    def patch_status(self, kind: str, name: str, namespace: str, patch: Manifest) -> Manifest:
        """Merge-patch the status subresource of a custom resource (its controller's part of
        the object: users' writes to .status are ignored there, and ours never touch .spec)."""
        try:
            return _to_dict(self.client.patch(KINDS[kind].Status, name, patch,
                                              namespace=namespace,
                                              patch_type=PatchType.MERGE))
        except Exception as exc:
            raise self._fail(f"patch {kind} {namespace}/{name} status", exc) from exc

    def crd_established(self, name: str) -> tuple[bool, str]:
        """(established, why not) of a CustomResourceDefinition: until the API server says
        Established, its kind cannot be created or listed."""
        crd = self.get("CustomResourceDefinition", name)
        if crd is None:
            return False, "missing"
        for c in (crd.get("status") or {}).get("conditions") or []:
            if c.get("type") == "Established":
                return c.get("status") == "True", c.get("message", "")
        return False, "not established yet"

    def wait_crds_established(self, names: list[str], *, timeout: float = 60) -> None:
        def established() -> bool:
            for name in names:
                ok, why = self.crd_established(name)
                if not ok:
                    raise NotYet(f"{name}: {why}")
            return True

        wait_for(established, timeout=timeout, interval=0.2, error=KubeError,
                 what=f"CRDs {', '.join(names)} in {self.name} to be established")

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
            raise self._fail(f"delete {_ref(kind, name, namespace)}", exc) from exc
        except Exception as exc:
            raise self._fail(f"delete {_ref(kind, name, namespace)}", exc) from exc
        return True

    def namespace_terminating(self, name: str) -> bool:
        ns = self.get("Namespace", name)
        return ns is not None and (ns.get("status") or {}).get("phase") == "Terminating"

    def settle_namespace(self, name: str, *, timeout: float = 120) -> None:
        """Wait out a deletion of the namespace in progress (nothing can be created in it)."""
        wait_for(lambda: not self.namespace_terminating(name), timeout=timeout, interval=0.5,
                 what=f"namespace {name} in {self.name} to finish being deleted", error=KubeError)

    def ensure_namespace(self, name: str, *, timeout: float = 120) -> bool:
        """Create the namespace unless it exists; wait out one still being deleted (a rolled
        back migration deletes the namespace it made). True if it was created here."""
        self.settle_namespace(name, timeout=timeout)
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
                    problems.append(f"{pod['metadata']['name']}: {reason}{_last_exit(cs)}")
        return problems

    def pods_started(self, namespace: str, selector: dict[str, str], want: int) -> tuple[bool, str]:
        """(started, why not): ``want`` pods of the selector, not terminating, every container
        running (scheduled, images pulled, processes started), ready or not."""
        pods = [p for p in self.find("Pod", namespace, selector)
                if not p["metadata"].get("deletionTimestamp")]
        running = [p for p in pods
                   if (cs := (p.get("status") or {}).get("containerStatuses") or [])
                   and all("running" in (c.get("state") or {}) for c in cs)]
        if len(running) >= want:
            return True, ""
        return False, f"{len(running)}/{want} pods running"

    def wait_started(self, namespace: str, selector: dict[str, str], want: int, *,
                     timeout: float) -> None:
        """Wait until ``want`` pods run (see :meth:`pods_started`); fail at once on a pod
        problem that will not resolve by itself."""

        self._wait_pods(lambda: self.pods_started(namespace, selector, want), namespace,
                        selector, failing=f"the pods of {namespace} {selector} cannot start",
                        what=f"{want} pods {selector} in {namespace} of {self.name} to start",
                        timeout=timeout)

    def _wait_pods(self, check: Callable[[], tuple[bool, str]], namespace: str,
                   selector: dict[str, str], *, failing: str, what: str,
                   timeout: float) -> None:
        """Poll ``check`` (within the pods' shared budget) until it holds; a pod problem that
        will not resolve by itself (image pull, crash loop) fails at once, saying ``failing``."""

        def done() -> bool:
            ok, why = check()
            if ok:
                return True
            problems = self.pod_problems(namespace, selector)
            if problems:
                raise KubeError(f"{self.name}: {failing}: {'; '.join(problems[:3])}")
            raise NotYet(why)

        with POLLS.waiting():
            wait_for(done, timeout=timeout, interval=POLLS.interval, error=KubeError, what=what)

    def wait_ready_or_answering(self, kind: str, name: str, namespace: str,
                                selector: dict[str, str], want: int, probe: tuple[int, str], *,
                                timeout: float) -> dict[str, str]:
        """Like :meth:`wait_ready`, but a running pod that answers its HTTP readiness probe's
        request (``probe``: port, path; 2xx or 3xx, as the kubelet judges it, sent through the
        API server's pod proxy) counts as ready before the kubelet's next probe says so.
        Returns those pods (name -> IP) that the kubelet had not yet called ready."""
        admitted: dict[str, str] = {}
        port, path = probe

        def ready() -> bool:
            ok, why = self.workload_ready(kind, name, namespace)
            if ok:
                admitted.clear()
                return True
            problems = self.pod_problems(namespace, selector)
            if problems:
                raise KubeError(f"{self.name}: {kind} {namespace}/{name} cannot become ready: "
                                f"{'; '.join(problems[:3])}")
            counted = 0
            for pod in self.find("Pod", namespace, selector):
                meta, status = pod["metadata"], pod.get("status") or {}
                if meta.get("deletionTimestamp"):
                    continue
                if pod_is_ready(pod):
                    admitted.pop(meta["name"], None)
                    counted += 1
                elif meta["name"] in admitted:
                    counted += 1
                elif status.get("podIP") and status.get("phase") == "Running":
                    try:
                        code, _ = self.get_path(f"/api/v1/namespaces/{namespace}/pods/"
                                                f"{meta['name']}:{port}/proxy{path}", timeout=1)
                    except KubeError:
                        code = 0  # not answering yet
                    if 200 <= code < 400:
                        admitted[meta["name"]] = status["podIP"]
                        counted += 1
            if counted >= want:
                return True
            raise NotYet(why)

        with POLLS.waiting():
            wait_for(ready, timeout=timeout, interval=POLLS.interval, error=KubeError,
                     what=f"{kind} {namespace}/{name} in {self.name} to become ready")
        return admitted

    def wait_ready(self, kind: str, name: str, namespace: str, selector: dict[str, str], *,
                   timeout: float) -> None:
        """Wait until every replica is ready; fail at once on a pod problem that will not
        resolve by itself (so a missing image fails in seconds, not after the timeout)."""

        self._wait_pods(lambda: self.workload_ready(kind, name, namespace), namespace, selector,
                        failing=f"{kind} {namespace}/{name} cannot become ready",
                        what=f"{kind} {namespace}/{name} in {self.name} to become ready",
                        timeout=timeout)

    def wait_rollout(self, kind: str, name: str, namespace: str, *, timeout: float) -> None:
        """Like ``kubectl rollout status``: wait until the workload's replicas are all ready
        (its pods found through its own selector)."""
        obj = wait_for(lambda: self.get(kind, name, namespace), timeout=timeout, interval=0.25,
                       what=f"{kind} {namespace}/{name} in {self.name} to exist", error=KubeError)
        selector = dict(obj["spec"]["selector"].get("matchLabels") or {})
        self.wait_ready(kind, name, namespace, selector, timeout=timeout)

    def apply_yaml(self, text: str) -> list[Manifest]:
        """Server-side apply every document of a multi-document YAML, in order (what
        ``kubectl apply --server-side --force-conflicts -f`` does); CRDs in the stream make
        their kinds known for the documents after them."""
        try:
            objs = codecs.load_all_yaml(text, create_resources_for_crds=True)
        except Exception as exc:
            raise KubeError(f"{self.name}: cannot read the manifests to apply: {exc}") from exc
        applied = []
        for obj in objs:
            meta = _to_dict(obj).get("metadata") or {}
            where = f"{meta['namespace']}/" if meta.get("namespace") else ""
            what = f"apply {obj.kind} {where}{meta.get('name', '')}"
            try:
                applied.append(_to_dict(self.client.apply(obj, force=True)))
            except Exception as exc:
                raise self._fail(what, exc) from exc
        return applied

    def delete_all(self, kinds: tuple[str, ...], namespace: str, *,
                   timeout: float | None = None) -> None:
        """Delete every object of ``kinds`` in ``namespace``; with ``timeout``, wait until
        they are gone (``kubectl delete KINDS --all --wait``)."""
        deleted = [(kind, o["metadata"]["name"]) for kind in kinds
                   for o in self.find(kind, namespace)
                   if self.delete(kind, o["metadata"]["name"], namespace)]
        if timeout is not None and deleted:
            wait_for(lambda: all(self.get(k, n, namespace) is None for k, n in deleted),
                     timeout=timeout, interval=0.25, error=KubeError,
                     what=f"the {', '.join(kinds)} of {namespace} in {self.name} to be deleted")

    def delete_namespaces(self, *names: str, timeout: float | None = 180) -> list[str]:
        """Delete namespaces and everything in them (those that exist: returned); with
        ``timeout``, wait until all of them are gone."""
        deleted = [n for n in names if self.delete("Namespace", n)]
        if timeout is not None and deleted:
            wait_for(lambda: all(self.get("Namespace", n) is None for n in deleted),
                     timeout=timeout, interval=0.5, error=KubeError,
                     what=f"namespace {', '.join(deleted)} in {self.name} to be deleted")
        return deleted

    def scale(self, kind: str, name: str, namespace: str, replicas: int) -> Manifest:
        return self.merge_patch(kind, name, namespace, {"spec": {"replicas": replicas}})

    def node_ready(self, name: str) -> bool:
        return pod_is_ready(self.get("Node", name) or {})

    def get_path(self, path: str, *, params: dict[str, str] | None = None,
                 headers: dict[str, str] | None = None, timeout: float = 10) -> tuple[int, str]:
        """(HTTP status, body) of a GET of ``path`` on the API server, for what has no
        resource type: ``/readyz``, a service's proxy subresource. ``headers`` go with the
        request (the API server's proxy passes them on, all but ``Authorization``)."""
        return self._raw("GET", path, params=params, headers=headers, timeout=timeout)

    def post_path(self, path: str, *, params: dict[str, str] | None = None,
                  body: dict[str, Any] | None = None, headers: dict[str, str] | None = None,
                  timeout: float = 10) -> tuple[int, str]:
        """(HTTP status, body) of a POST (of ``body`` as JSON) to ``path``: a pod's proxy
        subresource (an application's freeze hook, a mover's API), reached with the API
        server's credentials so no pod port is exposed."""
        return self._raw("POST", path, params=params, body=body, headers=headers,
                         timeout=timeout)

    def stream_lines(self, path: str, *, headers: dict[str, str] | None = None,
                     timeout: float = 60) -> Iterator[str]:
        """The lines of a GET of ``path`` as they arrive (a pod proxy's streamed answer), so a
        long answer is never held whole; ``timeout`` is how long to wait for the next bytes.
        A status other than 200 raises :class:`KubeError` with it and the start of the body.
        Nothing is requested until the first line is asked for; closing the iterator early
        closes the connection."""
        what = f"GET {path}"
        try:
            with self._client().stream("GET", path, headers=headers,
                                       timeout=timeout) as reply:
                if reply.status_code != 200:
                    body = reply.read()[:300].decode(errors="replace")
                    raise KubeError(f"{self.name}: {what} answered HTTP {reply.status_code}: "
                                    f"{body}")
                yield from reply.iter_lines()
        except KubeError:
            raise
        except Exception as exc:
            raise self._fail(what, exc) from exc

    def get_lease(self, name: str, namespace: str, *, timeout: float) -> Manifest | None:
        """The ``coordination.k8s.io/v1`` Lease, or None. Lease calls take their own short
        ``timeout``: a leader must learn within its lease time that it cannot renew, not after
        the client's 30 s."""
        code, body = self._raw("GET", f"{LEASES.format(namespace=namespace)}/{name}",
                               params=None, timeout=timeout)
        if code == 404:
            return None
        return self._lease_reply(f"get Lease {namespace}/{name}", code, body)

    def create_lease(self, manifest: Manifest, *, timeout: float) -> Manifest:
        """Create the Lease; :class:`KubeConflictError` if it exists already (someone was first)."""
        meta = manifest["metadata"]
        code, body = self._raw("POST", LEASES.format(namespace=meta["namespace"]),
                               params=None, body=manifest, timeout=timeout)
        return self._lease_reply(f"create Lease {meta['namespace']}/{meta['name']}", code, body)

    def update_lease(self, manifest: Manifest, *, timeout: float) -> Manifest:
        """Replace (PUT) the Lease as read: ``metadata.resourceVersion`` must be the one read,
        so a write after someone else's fails with :class:`KubeConflictError`."""
        meta = manifest["metadata"]
        if not meta.get("resourceVersion"):
            raise KubeError(f"{self.name}: update Lease {meta['name']}: no resourceVersion "
                            "(an update must name the version it read)")
        path = f"{LEASES.format(namespace=meta['namespace'])}/{meta['name']}"
        code, body = self._raw("PUT", path, params=None, body=manifest, timeout=timeout)
        return self._lease_reply(f"update Lease {meta['namespace']}/{meta['name']}", code, body)

    def _lease_reply(self, what: str, code: int, body: str) -> Manifest:
        try:
            data: Manifest = json.loads(body) if body else {}
        except ValueError:
            data = {}
        if 200 <= code < 300:
            return data
        detail = data.get("message") or body[:200] or f"HTTP {code}"
        if code == 409:
            raise KubeConflictError(f"{self.name}: {what} failed (409 Conflict): {detail}")
        raise KubeError(f"{self.name}: {what} failed (HTTP {code}): {detail}")

    def _client(self) -> Any:
        """The HTTP client of the raw calls (lightkube's, with the context's credentials)."""
        if self._http is None:
            self._http = client_adapter.Client(self.client.config,
                                               client_adapter.ConnectionParams())
        return self._http

    def _raw(self, method: str, path: str, *, params: dict[str, str] | None,
             body: dict[str, Any] | None = None, headers: dict[str, str] | None = None,
             timeout: float) -> tuple[int, str]:
        try:
            reply = self._client().request(method, path, params=params, json=body,
                                           headers=headers, timeout=timeout)
        except Exception as exc:
            raise self._fail(f"{method} {path}", exc) from exc
        return int(reply.status_code), str(reply.text)

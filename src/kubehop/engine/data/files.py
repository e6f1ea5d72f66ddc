"""The file engine ("files"): a volume's files moved by rsync over TLS between mover pods.

The mover pods' lifecycle, rsync passes and manifests. The steps in
:mod:`kubehop.engine.steps.data` decide *when* (pre-copy while the source serves, the final
delta inside the freeze); this module knows *how*. Every object it makes has a name derived
from the migration id, so removing them is idempotent and needs no record: undo, cleanup and a
resumed run all call :meth:`FileMover.remove`, whatever state a crash left.
"""

from __future__ import annotations

import json
import secrets
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kubehop.adapters.kube import KubeCluster
from kubehop.domain import mover as mv
from kubehop.domain.pods import pod_is_ready
from kubehop.domain.volumes import diff_manifests
from kubehop.engine.data.interface import DataError, DataSetup, Pass, Verification
from kubehop.waiting import NotYet, wait_for

Manifest = dict[str, Any]


class FileMover:
    """The sender (source) and receiver (target) pods of one migration: a
    :class:`~kubehop.engine.data.interface.DataEngine`."""

    name = "files"

    def __init__(self, setup: DataSetup) -> None:
        self.src, self.dst = setup.src, setup.dst
        self.id = setup.migration_id
        self.src_ns, self.dst_ns = setup.source_namespace, setup.target_namespace
        self.image = setup.image
        self.claims = setup.claims
        self.target_address = setup.target_address
        self.entrypoint = setup.entrypoint
        self.sender = mv.pod_name(self.id, "sender")
        self.receiver = mv.pod_name(self.id, "receiver")
        self.secret = mv.secret_name(self.id)

    def start(self, *, timeout: float) -> None:
        """Fresh pods with a fresh key (a resumed run replaces whatever an earlier one left),
        both ready: the receiver's daemons listen and the sender's tunnel is up."""
        self.remove()
        for cluster, ns, pod in ((self.dst, self.dst_ns, self.receiver),
                                 (self.src, self.src_ns, self.sender)):
            _wait_pod_gone(cluster, ns, pod, timeout=timeout)  # same name: not the dying one
        psk = secrets.token_hex(32)
        for cluster, ns in ((self.dst, self.dst_ns), (self.src, self.src_ns)):
            cluster.apply(mv.psk_secret(name=self.secret, namespace=ns, psk=psk,
                                        migration_id=self.id))
        self.dst.apply(mv.receiver_service(migration_id=self.id, namespace=self.dst_ns))
        self.dst.apply(mv.receiver_route(migration_id=self.id, namespace=self.dst_ns,
                                         entrypoint=self.entrypoint))
        self.dst.apply(mv.mover_pod(role="receiver", migration_id=self.id,
                                    namespace=self.dst_ns, image=self.image, claims=self.claims,
                                    secret=self.secret))
        self.src.apply(mv.mover_pod(role="sender", migration_id=self.id, namespace=self.src_ns,
                                    image=self.image, claims=self.claims, secret=self.secret,
                                    target=self.target_address,
                                    sni=mv.server_name(self.id)))
        for cluster, ns, pod in ((self.dst, self.dst_ns, self.receiver),
                                 (self.src, self.src_ns, self.sender)):
            _wait_pod_ready(cluster, ns, pod, timeout=timeout)

    def first_pass(self, *, timeout: float = 30) -> tuple[Pass, list[str]]:
        """The first pass, retried while the target's Traefik has not yet picked up the new
        TCP route (the connection is reset until then); rsync passes are idempotent. Returns
        the pass and why each earlier attempt failed (an attempt may have moved data before
        failing: the report says so rather than hiding it)."""
        failures: list[str] = []

        def attempt() -> Pass:
            try:
                return self.run_pass(final=False)
            except DataError as exc:
                failures.append(str(exc)[:300])
                raise NotYet(str(exc)) from exc

        done = wait_for(attempt, timeout=timeout, interval=0.5, error=DataError,
                        what=f"the first copy from {self.src.name} to {self.dst.name}")
        return done, failures

    def run_pass(self, *, final: bool, timeout: float = 3600) -> Pass:
        """One rsync pass; any non-zero exit (23: some files not transferred, 24: vanished
        files, ...) is a failure, never a warning."""
        reply = self._call(self.src, self.src_ns, self.sender, "POST",
                           "/pass?final=1" if final else "/pass", timeout=timeout)
        if int(reply.get("rc", -1)) != 0:
            raise DataError(f"rsync from {self.src.name} to {self.dst.name} failed (exit "
                            f"{reply.get('rc')}): {str(reply.get('error', ''))[-300:]}")
        return Pass(int(reply.get("bytes", 0)), int(reply.get("files", 0)),
                    float(reply.get("seconds", 0.0)), final)

    def manifests(self) -> tuple[list[Manifest], list[Manifest]]:
        """Every file's owner, mode, size and sha256 on each side, both read at once. Each
        mover keeps the hash of a file it has not seen change, so after a first call (made at
        the end of the pre-copy) only what changed since is read again."""
        with ThreadPoolExecutor(max_workers=2) as pool:
            source = pool.submit(self._call, self.src, self.src_ns, self.sender, "GET",
                                 "/manifest", timeout=600)
            target = pool.submit(self._call, self.dst, self.dst_ns, self.receiver, "GET",
                                 "/manifest", timeout=600)
            return list(source.result()["entries"]), list(target.result()["entries"])

    def prepare_verify(self) -> None:
        """Hashes every file now, so the freeze only reads what changes."""
        self.manifests()

    def verify(self) -> Verification:
        """Every file's checksum, owner, mode and size compared on both sides."""
        source, target = self.manifests()
        problems = diff_manifests(source, target)
        return Verification(
            problems=problems,
            files=sum(1 for e in source if e.get("type") == "file"),
            bytes=sum(int(e.get("size") or 0) for e in source if e.get("type") == "file"))

    def remove(self) -> None:
        """Pods, route, Service and both copies of the key: gone, whatever happened."""
        self.src.delete("Pod", self.sender, self.src_ns)
        self.src.delete("Secret", self.secret, self.src_ns)
        self.dst.delete("Pod", self.receiver, self.dst_ns)
        self.dst.delete("IngressRouteTCP", self.receiver, self.dst_ns)
        self.dst.delete("Service", self.receiver, self.dst_ns)
        self.dst.delete("Secret", self.secret, self.dst_ns)

    def wait_removed(self, *, timeout: float) -> None:
        """Both mover pods gone (deleted and their processes ended)."""
        for cluster, ns, pod in ((self.src, self.src_ns, self.sender),
                                 (self.dst, self.dst_ns, self.receiver)):
            _wait_pod_gone(cluster, ns, pod, timeout=timeout)

    def _call(self, cluster: KubeCluster, ns: str, pod: str, method: str, path: str, *,
              timeout: float) -> dict[str, Any]:
        url = mv.proxy_path(ns, pod, mv.API_PORT, path)
        if method == "POST":
            code, body = cluster.post_path(url, timeout=timeout)
        else:
            code, body = cluster.get_path(url, timeout=timeout)
        if code != 200:
            raise DataError(f"the mover {pod} in {cluster.name} answered HTTP {code} to "
                            f"{method} {path}: {body[:200]}")
        data: dict[str, Any] = json.loads(body)
        return data


def _wait_pod_ready(cluster: KubeCluster, namespace: str, name: str, *, timeout: float) -> None:
    def ready() -> bool:
        pod = cluster.get("Pod", name, namespace) or {}
        status = pod.get("status") or {}
        if status.get("phase") in ("Failed", "Succeeded"):
            raise DataError(f"the mover {name} in {cluster.name} exited "
                            f"({status.get('phase')}); see 'kubectl logs -n {namespace} {name}'")
        if pod_is_ready(pod):
            return True
        waiting = [(c.get("state") or {}).get("waiting", {}).get("reason", "")
                   for c in status.get("containerStatuses") or []]
        raise NotYet(f"{name}: {status.get('phase', 'not created')} {' '.join(waiting)}")

    wait_for(ready, timeout=timeout, interval=0.2, error=DataError,
             what=f"the mover {name} in {cluster.name} to be ready")


def _wait_pod_gone(cluster: KubeCluster, namespace: str, name: str, *, timeout: float) -> None:
    def gone() -> bool:
        if cluster.get("Pod", name, namespace) is not None:
            raise NotYet(f"{name} is still terminating")
        return True

    wait_for(gone, timeout=timeout, interval=0.2, error=DataError,
             what=f"the earlier mover {name} in {cluster.name} to be gone")

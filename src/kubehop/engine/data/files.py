"""The file engine ("files"): a volume's files moved by rsync over TLS between mover pods.

The mover pods' lifecycle, rsync passes and manifests. The steps in
:mod:`kubehop.engine.steps.data` decide *when* (pre-copy while the source serves, the final
delta inside the freeze); this module knows *how*. Every object it makes has a name derived
from the migration id, so removing them is idempotent and needs no record: undo, cleanup and a
resumed run all call :meth:`FileMover.remove`, whatever state a crash left.

Every call to a mover's API carries the migration's API token (``X-Kubehop-Mover-Token``).
:meth:`FileMover.start` makes it with the TLS key and keeps it in memory only; a FileMover made
later (each step makes its own, and a resumed run starts from nothing) reads it back from the
migration's Secret, the one place it is kept. It is never logged, printed or journalled.
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
from collections.abc import Iterable, Iterator
from typing import Any

from kubehop.adapters.kube import KubeCluster, KubeError
from kubehop.domain import mover as mv
from kubehop.domain.pods import pod_is_ready
from kubehop.domain.volumes import iter_differences, read_manifest
from kubehop.engine.data.interface import DataError, DataSetup, Pass, Verification
from kubehop.engine.data.streams import Prefetch
from kubehop.waiting import NotYet, wait_for

Entry = dict[str, Any]
LISTED = 100
"""Differences a verification lists; it counts the rest."""
MANIFEST_WAIT = 600.0
"""How long a manifest may send nothing (the mover hashing one big file) before it is given
up."""


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
        self._tokens: dict[tuple[str, str], str] = {}
        """(cluster, namespace) -> the API token of the mover there, once known."""

    def __repr__(self) -> str:
        return f"FileMover({self.id})"  # never the token

    def start(self, *, timeout: float) -> None:
        """Fresh pods with a fresh key and token (a resumed run replaces whatever an earlier
        one left), each behind its NetworkPolicy, both ready: the receiver's daemons listen
        and the sender's tunnel is up."""
        self.remove()
        for cluster, ns, pod in ((self.dst, self.dst_ns, self.receiver),
                                 (self.src, self.src_ns, self.sender)):
            _wait_pod_gone(cluster, ns, pod, timeout=timeout)  # same name: not the dying one
        psk, token = secrets.token_hex(32), secrets.token_urlsafe(32)
        for cluster, ns in ((self.dst, self.dst_ns), (self.src, self.src_ns)):
            cluster.apply(mv.mover_secret(name=self.secret, namespace=ns, psk=psk, token=token,
                                          migration_id=self.id))
            self._tokens[(cluster.name, ns)] = token
        self.dst.apply(mv.receiver_service(migration_id=self.id, namespace=self.dst_ns))
        self.dst.apply(mv.receiver_route(migration_id=self.id, namespace=self.dst_ns,
                                         entrypoint=self.entrypoint))
        self._apply_pods()
        for cluster, ns, pod in ((self.dst, self.dst_ns, self.receiver),
                                 (self.src, self.src_ns, self.sender)):
            _wait_pod_ready(cluster, ns, pod, timeout=timeout)

    def _apply_pods(self) -> None:
        """Each pod after its NetworkPolicy, so it never runs unguarded where one is enforced."""
        self.dst.apply(mv.network_policy(role="receiver", migration_id=self.id,
                                         namespace=self.dst_ns))
        self.dst.apply(mv.mover_pod(role="receiver", migration_id=self.id,
                                    namespace=self.dst_ns, image=self.image, claims=self.claims,
                                    secret=self.secret))
        self.src.apply(mv.network_policy(role="sender", migration_id=self.id,
                                         namespace=self.src_ns, target=self.target_address))
        self.src.apply(mv.mover_pod(role="sender", migration_id=self.id, namespace=self.src_ns,
                                    image=self.image, claims=self.claims, secret=self.secret,
                                    target=self.target_address,
                                    sni=mv.server_name(self.id)))

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

    @contextlib.contextmanager
    def _manifests(self) -> Iterator[tuple[Iterator[Entry], Iterator[Entry]]]:
        """Both sides' manifests (every path's type, owner, mode, size, sha256, symlink target,
        xattrs and hard-link group), each read as it streams by a thread of its own, at most a
        few thousand entries ahead. Each mover keeps the hash of a file it has not seen change,
        so after a first walk (at the end of the pre-copy) only what changed since is read
        again. Any failure to read them is a DataError."""
        ends = [(cluster, ns, pod, side, self._headers(cluster, ns))  # before any thread
                for cluster, ns, pod, side in ((self.src, self.src_ns, self.sender, "source"),
                                               (self.dst, self.dst_ns, self.receiver, "target"))]
        sides = [Prefetch(self._manifest(cluster, ns, pod, side, headers),
                          name=f"manifest-{side}")
                 for cluster, ns, pod, side, headers in ends]
        try:
            yield sides[0], sides[1]
        except (KubeError, ValueError) as exc:
            raise DataError(f"the manifests of {self.src.name} and {self.dst.name} could not "
                            f"be compared: {exc}") from exc
        finally:
            for side in sides:
                side.close()

    @staticmethod
    def _manifest(cluster: KubeCluster, ns: str, pod: str, side: str,
                  headers: dict[str, str]) -> Iterator[Entry]:
        lines = cluster.stream_lines(mv.proxy_path(ns, pod, mv.API_PORT, "/manifest"),
                                     headers=headers, timeout=MANIFEST_WAIT)
        return read_manifest(lines, f"{side} ({pod} in {cluster.name})")

    def prepare_verify(self) -> None:
        """Hashes every file now, so the freeze only reads what changes."""
        with self._manifests() as (source, target):
            for _ in iter_differences(source, target):
                pass  # the copy is still behind a serving source: differences are expected

    def verify(self) -> Verification:
        """Every file's checksum, owner, mode, size, xattrs and hard links compared on both
        sides, the first differences listed."""
        with self._manifests() as (source, target):
            counted = _Counted(source)
            problems: list[str] = []
            more = 0
            for problem in iter_differences(counted, target):
                if len(problems) < LISTED:
                    problems.append(problem)
                else:
                    more += 1
        return Verification(problems=problems, files=counted.files, bytes=counted.bytes,
                            more=more)

    def remove(self) -> None:
        """Pods, their NetworkPolicies, route, Service and both copies of the key and token:
        gone, whatever happened."""
        self.src.delete("Pod", self.sender, self.src_ns)
        self.src.delete("NetworkPolicy", self.sender, self.src_ns)
        self.src.delete("Secret", self.secret, self.src_ns)
        self.dst.delete("Pod", self.receiver, self.dst_ns)
        self.dst.delete("NetworkPolicy", self.receiver, self.dst_ns)
        self.dst.delete("IngressRouteTCP", self.receiver, self.dst_ns)
        self.dst.delete("Service", self.receiver, self.dst_ns)
        self.dst.delete("Secret", self.secret, self.dst_ns)
        self._tokens.clear()

    def _headers(self, cluster: KubeCluster, ns: str) -> dict[str, str]:
        """The API token of the mover in ``cluster``/``ns``: the one :meth:`start` made, or
        read from the Secret it is mounted from there."""
        token = self._tokens.get((cluster.name, ns))
        if token is None:
            try:
                secret = cluster.get("Secret", self.secret, ns) or {}
            except KubeError as exc:
                raise DataError(f"the movers' API token cannot be read: {exc}") from exc
            encoded = (secret.get("data") or {}).get(mv.TOKEN_KEY)
            if not encoded:
                raise DataError(f"the movers' Secret {ns}/{self.secret} in {cluster.name} is "
                                "gone or holds no API token: the movers must be started anew")
            token = self._tokens[(cluster.name, ns)] = base64.b64decode(encoded).decode()
        return {mv.TOKEN_HEADER: token}

    def wait_removed(self, *, timeout: float) -> None:
        """Both mover pods gone (deleted and their processes ended)."""
        for cluster, ns, pod in ((self.src, self.src_ns, self.sender),
                                 (self.dst, self.dst_ns, self.receiver)):
            _wait_pod_gone(cluster, ns, pod, timeout=timeout)

    def _call(self, cluster: KubeCluster, ns: str, pod: str, method: str, path: str, *,
              timeout: float) -> dict[str, Any]:
        url = mv.proxy_path(ns, pod, mv.API_PORT, path)
        headers = self._headers(cluster, ns)
        if method == "POST":
            code, body = cluster.post_path(url, headers=headers, timeout=timeout)
        else:
            code, body = cluster.get_path(url, headers=headers, timeout=timeout)
        if code != 200:
            raise DataError(f"the mover {pod} in {cluster.name} answered HTTP {code} to "
                            f"{method} {path}: {body[:200]}")
        data: dict[str, Any] = json.loads(body)
        return data


class _Counted:
    """The source's entries, counting its files and their bytes (the report's figures) as
    they go by."""

    def __init__(self, entries: Iterable[Entry]) -> None:
        self.entries = entries
        self.files = self.bytes = 0

    def __iter__(self) -> Iterator[Entry]:
        for entry in self.entries:
            if entry.get("type") == "file":
                self.files += 1
                self.bytes += int(entry.get("size") or 0)
            yield entry


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

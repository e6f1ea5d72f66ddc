"""The data engines' registry and the file engine, without a cluster: the steps see only
:class:`~kubehop.engine.data.interface.DataEngine`, so what they read from it is checked here.
The file engine talks to real movers (mover.py's HTTP API, served in-process over temp
directories) through a stand-in for the API server's pod proxy."""

from __future__ import annotations

import base64
import copy
import json
import re
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from kubehop.adapters.kube import KubeCluster, KubeError
from kubehop.domain import mover as mv
from kubehop.domain.volumes import MANIFEST_FORMAT
from kubehop.engine.data import files, registry
from kubehop.engine.data.files import FileMover
from kubehop.engine.data.interface import DataError, DataSetup

from .fakes import World
from .test_mover import mover, tree

MID = "20261203-000000-abc123"
HTTP = httpx.Client(timeout=10)
PROXY = re.compile(r"/api/v1/namespaces/([^/]+)/pods/([^/:]+):(\d+)/proxy(/.*)")


class Proxied:
    """A cluster whose pod proxy reaches movers served on localhost (pod name -> base URL),
    keeping the objects applied to it as the API server does (a Secret's ``stringData`` read
    back as base64 ``data``) and every header it passed on."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.pods: dict[str, str] = {}
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.sent: list[tuple[str, str, dict[str, str]]] = []
        self.http = HTTP

    def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        obj = copy.deepcopy(manifest)
        if "stringData" in obj:
            obj["data"] = {k: base64.b64encode(v.encode()).decode()
                           for k, v in obj.pop("stringData").items()}
        meta = obj["metadata"]
        self.objects[(obj["kind"], meta["namespace"], meta["name"])] = obj
        return obj

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        return copy.deepcopy(self.objects.get((kind, namespace or "", name)))

    def delete(self, kind: str, name: str, namespace: str | None = None) -> bool:
        return self.objects.pop((kind, namespace or "", name), None) is not None

    def _url(self, method: str, path: str, headers: dict[str, str] | None) -> str:
        found = PROXY.fullmatch(path)
        assert found is not None and int(found.group(3)) == mv.API_PORT, path
        self.sent.append((method, found.group(4), dict(headers or {})))
        return self.pods[found.group(2)] + found.group(4)

    def get_path(self, path: str, *, headers: dict[str, str] | None = None,
                 timeout: float = 10) -> tuple[int, str]:
        reply = self.http.get(self._url("GET", path, headers), headers=headers)
        return reply.status_code, reply.text

    def post_path(self, path: str, *, headers: dict[str, str] | None = None,
                  timeout: float = 10) -> tuple[int, str]:
        reply = self.http.post(self._url("POST", path, headers), headers=headers)
        return reply.status_code, reply.text

    def stream_lines(self, path: str, *, headers: dict[str, str] | None = None,
                     timeout: float = 60) -> Iterator[str]:
        """As KubeCluster.stream_lines: lazily, KubeError on a status other than 200."""
        with self.http.stream("GET", self._url("GET", path, headers),
                              headers=headers) as reply:
            if reply.status_code != 200:
                raise KubeError(f"{self.name}: GET {path} answered HTTP {reply.status_code}: "
                                f"{reply.read()[:100].decode()}")
            yield from reply.iter_lines()


def serve(role: str, data: Path, token: str, hashes: Path) -> tuple[str, ThreadingHTTPServer]:
    env = {"MOVER_ROLE": role, "MOVER_DATA": str(data)}
    if role == "sender":
        env |= {"MOVER_TARGET": "10.0.0.1:8873", "MOVER_SNI": "x"}
    handler = mover.api(mover.Config.from_env(env), token=token.encode(), ready=lambda: "",
                        cache=tree.HashCache(hashes))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}", server


def setup(src: Any, dst: Any) -> DataSetup:
    return DataSetup(cast(KubeCluster, src), cast(KubeCluster, dst), migration_id=MID,
                     source_namespace="ns", target_namespace="ns", image="mover:1",
                     claims=["data"], target_address="10.0.0.1:9000", entrypoint="transfer")


TOKEN = "T" * 43


@pytest.fixture
def movers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
           ) -> Iterator[tuple[Proxied, Proxied, Path, Path, list[bool]]]:
    """Source and target clusters, each with its mover serving a volume (``data``) and the
    migration's Secret holding ``TOKEN``, as FileMover.start leaves them; the sender's rsync
    is a stand-in that records each pass."""
    passes: list[bool] = []
    monkeypatch.setattr(mover, "run_pass", lambda cfg, *, final: passes.append(final) or {
        "rc": 0, "bytes": 5, "files": 1, "seconds": 0.5, "error": ""})
    src, dst = Proxied("edge"), Proxied("cloud")
    servers = []
    for cluster, role in ((src, "sender"), (dst, "receiver")):
        volume = tmp_path / role / "data"
        volume.mkdir(parents=True)
        (volume / "db").write_bytes(b"hello")
        url, server = serve(role, tmp_path / role, TOKEN, tmp_path / f"{role}.hashes")
        cluster.pods[mv.pod_name(MID, role)] = url
        servers.append(server)
        cluster.apply(mv.mover_secret(name=mv.secret_name(MID), namespace="ns", psk="ab" * 32,
                                      token=TOKEN, migration_id=MID))
    yield src, dst, tmp_path / "sender" / "data", tmp_path / "receiver" / "data", passes
    for server in servers:
        server.shutdown()
        server.server_close()


def test_files_is_the_default_engine_and_an_unknown_name_is_refused() -> None:
    engine = registry.data_engine(registry.DEFAULT, setup(Proxied("a"), Proxied("b")))
    assert registry.DEFAULT == "files"
    assert isinstance(engine, FileMover)
    with pytest.raises(DataError, match="no data engine 'pg'"):
        registry.data_engine("pg", setup(Proxied("a"), Proxied("b")))


def test_a_later_engine_reads_the_token_from_the_secret_and_sends_it_on_every_call(
        movers: tuple[Proxied, Proxied, Path, Path, list[bool]]) -> None:
    src, dst, _, _, passes = movers
    engine = FileMover(setup(src, dst))  # made after start: nothing in memory
    assert engine.run_pass(final=True).seconds == 0.5 and passes == [True]
    check = engine.verify()
    assert check.problems == [] and (check.files, check.bytes) == (1, 5)
    sent = src.sent + dst.sent
    assert [(m, p) for m, p, _ in sent] == [("POST", "/pass?final=1"), ("GET", "/manifest"),
                                            ("GET", "/manifest")]
    assert all(headers == {mv.TOKEN_HEADER: TOKEN} for _, _, headers in sent)
    assert TOKEN not in repr(engine)


def test_verify_reports_what_differs_in_the_files_and_counts_the_source(
        movers: tuple[Proxied, Proxied, Path, Path, list[bool]]) -> None:
    src, dst, source, target, _ = movers
    (source / "sub").mkdir()
    (source / "sub" / "big").write_bytes(b"x" * 1000)
    (target / "db").write_bytes(b"hellO")
    check = FileMover(setup(src, dst)).verify()
    assert check.problems == ["data/db: sha256 differs", "missing in target: data/sub",
                              "missing in target: data/sub/big"]
    assert (check.files, check.bytes, check.more) == (2, 1005, 0)


def test_a_mover_refusing_the_token_fails_the_verification(
        movers: tuple[Proxied, Proxied, Path, Path, list[bool]]) -> None:
    src, dst, _, _, _ = movers
    dst.apply(mv.mover_secret(name=mv.secret_name(MID), namespace="ns", psk="ab" * 32,
                              token="W" * 43, migration_id=MID))
    with pytest.raises(DataError, match=r"could not be compared.*HTTP 403") as info:
        FileMover(setup(src, dst)).verify()
    assert "W" * 43 not in str(info.value) and TOKEN not in str(info.value)


def test_without_its_secret_no_mover_is_called(
        movers: tuple[Proxied, Proxied, Path, Path, list[bool]]) -> None:
    src, dst, _, _, passes = movers
    src.delete("Secret", mv.secret_name(MID), "ns")
    for call in (FileMover(setup(src, dst)).verify,
                 lambda: FileMover(setup(src, dst)).run_pass(final=False)):
        with pytest.raises(DataError, match="holds no API token: the movers must be started"):
            call()
    assert src.sent == dst.sent == [] and passes == []


def test_a_manifest_cut_short_fails_the_verification(
        movers: tuple[Proxied, Proxied, Path, Path, list[bool]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    src, dst, _, _, _ = movers
    real = mover.manifest_lines

    def short(root: Path, cache: object = None) -> Iterator[bytes]:
        yield from list(real(root, cache))[:-1]  # no end line

    monkeypatch.setattr(mover, "manifest_lines", short)
    with pytest.raises(DataError, match="ended after 2 entries without its end line"):
        FileMover(setup(src, dst)).verify()


class Streams:
    """A cluster whose movers stream the given entries (no HTTP): for what the engine does
    with many of them."""

    def __init__(self, name: str, entries: list[dict[str, Any]]) -> None:
        self.name, self.entries = name, entries
        self.secret = mv.mover_secret(name=mv.secret_name(MID), namespace="ns", psk="p",
                                      token=TOKEN, migration_id=MID)

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        return {"data": {k: base64.b64encode(v.encode()).decode()
                         for k, v in self.secret["stringData"].items()}}

    def stream_lines(self, path: str, *, headers: dict[str, str], timeout: float
                     ) -> Iterator[str]:
        assert headers == {mv.TOKEN_HEADER: TOKEN}
        yield json.dumps({"format": MANIFEST_FORMAT})
        yield from (json.dumps(e) for e in self.entries)
        yield json.dumps({"end": True, "entries": len(self.entries)})


def test_verify_lists_the_first_differences_and_counts_the_rest() -> None:
    entries = [{"path": f"f{i:05}", "type": "file", "size": 2, "sha256": "s"}
               for i in range(files.LISTED + 50)]
    check = FileMover(setup(Streams("edge", entries), Streams("cloud", []))).verify()
    assert len(check.problems) == files.LISTED and check.more == 50
    assert check.problems[0] == "missing in target: f00000"
    assert (check.files, check.bytes) == (files.LISTED + 50, 2 * (files.LISTED + 50))


def test_prepare_verify_reads_both_manifests_to_their_end() -> None:
    entries = [{"path": f"f{i:05}", "type": "file", "size": 1} for i in range(10_000)]
    src, dst = Streams("edge", entries), Streams("cloud", entries[:5])
    FileMover(setup(src, dst)).prepare_verify()  # differences expected: no error

    class Broken(Streams):
        def stream_lines(self, path: str, *, headers: dict[str, str], timeout: float
                         ) -> Iterator[str]:
            yield from list(super().stream_lines(path, headers=headers, timeout=timeout))[:-1]

    with pytest.raises(DataError, match=r"target .*ended after 5 entries"):
        FileMover(setup(src, Broken("cloud", entries[:5]))).prepare_verify()


def test_start_guards_each_pod_with_its_policy_and_remove_leaves_nothing() -> None:
    world = World()
    edge, cloud = world.clusters["edge"], world.clusters["cloud"]
    applied: list[tuple[str, str]] = []
    for cluster in (edge, cloud):
        def record(manifest: dict[str, Any], real: Any = cluster.apply,
                   where: str = cluster.name) -> dict[str, Any]:
            applied.append((where, manifest["kind"]))
            return cast(dict[str, Any], real(manifest))

        cluster.apply = record  # type: ignore[method-assign]
    engine = FileMover(setup(edge, cloud))
    engine.start(timeout=5)
    for where in ("edge", "cloud"):
        kinds = [kind for w, kind in applied if w == where]
        assert kinds.index("NetworkPolicy") < kinds.index("Pod"), kinds
    names = {role: mv.pod_name(MID, role) for role in ("sender", "receiver")}
    assert edge.get("NetworkPolicy", names["sender"], "ns") is not None
    assert cloud.get("NetworkPolicy", names["receiver"], "ns") is not None
    secrets = [c.get("Secret", mv.secret_name(MID), "ns") for c in (edge, cloud)]
    tokens = {base64.b64decode(s["data"][mv.TOKEN_KEY]).decode() for s in secrets if s}
    psks = {base64.b64decode(s["data"][mv.PSK_KEY]).decode() for s in secrets if s}
    assert len(tokens) == 1 and len(psks) == 1  # one of each, in both namespaces
    (token,) = tokens
    assert len(token) >= 32 and token not in next(iter(psks))
    assert engine._headers(cast(KubeCluster, edge), "ns") == {mv.TOKEN_HEADER: token}
    engine.remove()
    left = [k for c in (edge, cloud) for k in c.objects if k[1] == "ns"]
    assert left == []
    again = FileMover(setup(edge, cloud))
    again.start(timeout=5)
    fresh = base64.b64decode(edge.get("Secret", mv.secret_name(MID), "ns")["data"]["token"])
    assert fresh.decode() != token  # a new start, a new token

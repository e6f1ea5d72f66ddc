"""The mover's HTTP API, served in-process on a random localhost port over a temp directory: it
refuses every request without the migration's token or with another one, and streams its
manifest to the one that has it. (In the pods it listens on 0.0.0.0, behind the pod proxy.)"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from kubehop.domain.mover import TOKEN_HEADER
from kubehop.domain.volumes import read_manifest

from .test_mover import mover, tree

TOKEN = "k" * 43


@pytest.fixture
def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, list[bool]]]:
    """(base URL, the ``final`` of every pass the sender ran) of a sender over ``tmp_path/v``
    whose rsync is a stand-in."""
    (tmp_path / "v" / "claim").mkdir(parents=True)
    (tmp_path / "v" / "claim" / "db").write_bytes(b"0123456789")
    passes: list[bool] = []

    def run_pass(cfg: Any, *, final: bool) -> dict[str, Any]:
        passes.append(final)
        return {"rc": 0, "bytes": 10, "files": 1, "seconds": 0.1, "error": ""}

    monkeypatch.setattr(mover, "run_pass", run_pass)
    cfg = mover.Config.from_env({"MOVER_ROLE": "sender", "MOVER_DATA": str(tmp_path / "v"),
                                 "MOVER_TARGET": "10.0.0.1:8873", "MOVER_SNI": "x"})
    handler = mover.api(cfg, token=TOKEN.encode(), ready=lambda: "",
                        cache=tree.HashCache(tmp_path / "hashes"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", passes
    finally:
        server.shutdown()
        server.server_close()


HTTP = httpx.Client(timeout=10)


def call(method: str, url: str, token: str | None) -> httpx.Response:
    headers = {TOKEN_HEADER: token} if token is not None else {}
    return HTTP.request(method, url, headers=headers)


@pytest.mark.parametrize(("method", "path"), [("GET", "/manifest"), ("GET", "/usage"),
                                              ("POST", "/pass"), ("POST", "/pass?final=1"),
                                              ("GET", "/nothing-here")])
def test_every_request_without_the_token_or_with_another_is_refused(
        api: tuple[str, list[bool]], method: str, path: str) -> None:
    base, passes = api
    missing = call(method, base + path, None)
    wrong = call(method, base + path, "w" * 43)
    prefix = call(method, base + path, TOKEN[:-1])
    assert (missing.status_code, wrong.status_code, prefix.status_code) == (401, 403, 403)
    assert missing.headers["connection"] == wrong.headers["connection"] == "close"
    assert "tree" not in missing.text and "claim" not in wrong.text  # nothing listed
    assert passes == []  # no rsync ran


def test_the_right_token_is_let_through(api: tuple[str, list[bool]]) -> None:
    base, passes = api
    assert call("POST", base + "/pass?final=1", TOKEN).json()["rc"] == 0
    assert passes == [True]
    assert call("GET", base + "/usage", TOKEN).json() == {"bytes": 10, "files": 1}
    assert call("GET", base + "/nothing-here", TOKEN).status_code == 404


def test_the_manifest_streams_chunked_to_the_token_holder(api: tuple[str, list[bool]]) -> None:
    base, _ = api
    with HTTP.stream("GET", base + "/manifest", headers={TOKEN_HEADER: TOKEN}) as reply:
        assert reply.status_code == 200
        assert reply.headers["transfer-encoding"] == "chunked"
        entries = list(read_manifest(reply.iter_lines(), "source"))
    assert [(e["path"], e["type"]) for e in entries] == [("claim", "dir"), ("claim/db", "file")]
    assert entries[1]["size"] == 10


def test_healthz_needs_no_token_and_says_nothing_but_ready(
        api: tuple[str, list[bool]]) -> None:
    base, _ = api
    reply = call("GET", base + "/healthz", None)
    assert (reply.status_code, reply.json()) == (200, {"ok": True})


def test_healthz_answers_503_while_a_daemon_is_down(tmp_path: Path) -> None:
    cfg = mover.Config.from_env({"MOVER_ROLE": "receiver", "MOVER_DATA": str(tmp_path)})
    handler = mover.api(cfg, token=TOKEN.encode(), ready=lambda: "rsync not listening",
                        cache=None)
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        reply = call("GET", f"http://127.0.0.1:{server.server_address[1]}/healthz", None)
        assert (reply.status_code, reply.json()) == (503, {"ok": False})
    finally:
        server.shutdown()
        server.server_close()

"""KubeCluster's raw paths (what the pod proxy is reached through) against a stand-in API server
on localhost: headers go with the request, a streamed answer arrives line by line, and an
answer other than 200 or a dead server is a KubeError naming the cluster."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from kubehop.adapters.kube import KubeCluster, KubeError


class Server(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: ClassVar[list[tuple[str, str, dict[str, str]]]] = []

    def _answer(self) -> None:
        type(self).seen.append((self.command, self.path, dict(self.headers)))
        if self.path.startswith("/stream"):
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for chunk in (b'{"a": 1}\n{"b"', b': 2}\n', b'{"c": 3}\n'):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.write(b"0\r\n\r\n")
            return
        body = b"denied" if self.path.startswith("/denied") else b"{}"
        self.send_response(403 if self.path.startswith("/denied") else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def cluster() -> Iterator[KubeCluster]:
    Server.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Server)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {
            "server": f"http://127.0.0.1:{server.server_address[1]}"}}],
        "users": [{"name": "u", "user": {"token": "api-server-credential"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}
    with KubeCluster(kubeconfig=config, context="c", name="edge") as k:
        yield k
    server.shutdown()
    server.server_close()


def test_headers_go_with_get_and_post_beside_the_clusters_credentials(
        cluster: KubeCluster) -> None:
    assert cluster.get_path("/a", headers={"X-Kubehop-Mover-Token": "t1"}) == (200, "{}")
    assert cluster.post_path("/b", headers={"X-Kubehop-Mover-Token": "t2"})[0] == 200
    assert cluster.get_path("/c") == (200, "{}")
    sent = [(m, p, h.get("X-Kubehop-Mover-Token"), h.get("Authorization"))
            for m, p, h in Server.seen]
    assert sent == [("GET", "/a", "t1", "Bearer api-server-credential"),
                    ("POST", "/b", "t2", "Bearer api-server-credential"),
                    ("GET", "/c", None, "Bearer api-server-credential")]


def test_a_streamed_answer_arrives_line_by_line_and_only_when_read(
        cluster: KubeCluster) -> None:
    lines = cluster.stream_lines("/stream", headers={"X-Kubehop-Mover-Token": "t"})
    assert Server.seen == []  # nothing asked yet
    assert list(lines) == ['{"a": 1}', '{"b": 2}', '{"c": 3}']
    assert Server.seen[0][2]["X-Kubehop-Mover-Token"] == "t"


def test_a_refusal_or_a_dead_server_is_a_kube_error(cluster: KubeCluster) -> None:
    with pytest.raises(KubeError, match="edge: GET /denied answered HTTP 403: denied"):
        list(cluster.stream_lines("/denied"))
    dead = KubeCluster(kubeconfig={
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:9"}}],
        "users": [{"name": "u", "user": {"token": "x"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]},
        context="c", name="cloud")
    with dead, pytest.raises(KubeError, match="cloud: GET /x failed"):
        list(dead.stream_lines("/x", timeout=2))

"""The dashboard's HTTP face without a browser: ``/api/v1/series`` refuses what it does not
know and explains a missing Prometheus in its answer; the page and its vendored library are
served as packaged; ``kubehop dashboard`` refuses a bad port in one line."""

from __future__ import annotations

import hashlib
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from kubehop.adapters.store import Store
from kubehop.web import api
from tests.conftest import assert_one_line_error, kubehop


def client(tmp_path: Path, prometheus: str | None = None) -> TestClient:
    store = Store(f"sqlite:///{tmp_path / 'k.db'}")
    return TestClient(api.create_app(store, CollectorRegistry(), lambda: (True, "ok"),
                                     prometheus=prometheus))


@pytest.fixture
def web(tmp_path: Path) -> Iterator[TestClient]:
    with client(tmp_path) as c:
        yield c


def test_unknown_series_is_400_naming_the_known_ones(web: TestClient) -> None:
    r = web.get("/api/v1/series", params={"query": "sum(rate(x[5m]))", "range": 600})
    assert r.status_code == 400
    detail = r.json()["detail"]
    assert detail.startswith("unknown series 'sum(rate(x[5m]))'"), detail
    for name in api.SERIES:
        assert name in detail


def test_series_without_a_name_is_400(web: TestClient) -> None:
    r = web.get("/api/v1/series")
    assert r.status_code == 400
    assert "unknown series None; ask for one of cpu" in r.json()["detail"]


@pytest.mark.parametrize("seconds", [0, 59, 86401, -5])
def test_range_out_of_bounds_is_400(web: TestClient, seconds: int) -> None:
    r = web.get("/api/v1/series", params={"query": "cpu", "range": seconds})
    assert r.status_code == 400
    assert r.json()["detail"] == (f"range {seconds} is out of bounds; use 60 to 86400 seconds")


def test_no_prometheus_is_an_answer_with_the_reason(web: TestClient) -> None:
    """200, not 5xx: the page shows the reason in the chart's place, and a failed fetch would
    be a console error in the browser."""
    r = web.get("/api/v1/series", params={"query": "latency", "range": 300})
    assert r.status_code == 200
    body = r.json()
    assert body["series"] == []
    assert body["unit"] == "ms"
    assert body["error"].startswith("no Prometheus configured: start the dashboard with "
                                    "--prometheus URL")
    assert body["end"] - body["start"] == pytest.approx(300)


def test_unreachable_prometheus_is_an_answer_with_the_reason(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with client(tmp_path, f"http://127.0.0.1:{port}") as c:
        r = c.get("/api/v1/series", params={"query": "cpu", "range": 300})
    assert r.status_code == 200
    assert r.json()["error"].startswith(f"Prometheus at http://127.0.0.1:{port} did not "
                                        "answer: ConnectError")


def test_page_and_vendored_library_are_served(web: TestClient) -> None:
    page = web.get("/")
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    scripts = re.findall(r'<script src="([^"]+)"', page.text)
    assert scripts == ["static/vendor/chart.umd.min.js",
                       "static/vendor/chartjs-plugin-annotation.min.js", "static/app.js"]
    assert "http" not in " ".join(scripts)  # nothing from a CDN: the page works offline
    readme = (api.STATIC / "vendor" / "README.md").read_text()
    for src in scripts:
        r = web.get("/" + src)
        assert r.status_code == 200, src
        if "/vendor/" in src:
            # the file is the one the README records (name, version, licence, sha256)
            assert hashlib.sha256(r.content).hexdigest() in readme, src
    assert web.get("/static/dashboard.css").status_code == 200


def test_topology_answers_on_an_empty_store(web: TestClient) -> None:
    r = web.get("/api/v1/topology")
    assert r.status_code == 200
    assert r.json() == {"clusters": [], "links": [], "services": []}


@pytest.mark.parametrize("port", ["0", "65536"])
def test_dashboard_bad_port_is_one_line(port: str) -> None:
    assert_one_line_error(kubehop("dashboard", "--port", port), f"--port {port} is out of "
                          "range; use 1 to 65535")

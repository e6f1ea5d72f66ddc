"""The dashboard in a real browser (Debian's chromium, headless, driven by Selenium through the
system chromedriver) against the real testbed: what a real controller cycle recorded, charts
from the testbed's Prometheus, and a real migration of the sample shown as it happens.

``kubehop dashboard`` runs as users run it, in its own process, over the store the controller
(and the migration) write.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from kubehop.adapters.kube import KubeCluster
from kubehop.adapters.store import Store
from kubehop.domain.model import STEPS, MigrationRequest
from kubehop.engine.executor import Executor
from kubehop.testbed import monitoring, sample
from kubehop.testbed import testbed as tb
from kubehop.waiting import NotYet, wait_for

from ..conftest import KUBEHOP, results_dir
from .conftest import BY_NAME, CLUSTERS
from .test_migrate import fresh_sample

pytestmark = pytest.mark.usefixtures("testbed")

NS = sample.ORC8R_NAMESPACE
EDGE = BY_NAME["edge"]
SCREENSHOT = results_dir("dashboard") / "dashboard.png"
CHROMEDRIVER = "/usr/bin/chromedriver"
POLICY = """\
apiVersion: kubehop.io/v1alpha1
kind: PlacementPolicy
interval: 2s
rules:
  - name: cpu-exhausted
    scope: cluster
    expr: cpu_headroom
    below: 0.05
placement:
  weights: {headroom: 1.0, latency: 2.0}
  maxDataAge: 20s
services:
  - name: orc8r
    namespace: orc8r-ns
    clients: [{cluster: edge, weight: 1}]
    serviceTimeMs: 2
    maxLatencyMs: 50
"""


def orc8r_runs_in() -> list[str]:
    found = []
    for name in ("edge", "cloud"):
        kube = KubeCluster(kubeconfig=str(tb.kubeconfig_file()), context=name, name=name)
        try:
            if kube.get("Deployment", "orc8r", NS):
                found.append(name)
        finally:
            kube.close()
    return found


def env() -> dict[str, str]:
    return {**os.environ, "KUBEHOP_INVENTORY": str(tb.inventory_file())}


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A store a real controller cycle has written: clusters (with tiers), measured link RTTs,
    where orc8r runs, and a decision with its candidate table."""
    fresh_sample()  # orc8r in edge only, agw answered
    tmp = tmp_path_factory.mktemp("dashboard")
    url = f"sqlite:///{tmp / 'kubehop.db'}"
    policy = tmp / "policy.yaml"
    policy.write_text(POLICY)
    store = Store(url)

    def observed() -> bool:
        result = subprocess.run([KUBEHOP, "controller", "run", "--policy", str(policy), "--db",
                                 url, "--once", "--dry-run", "--listen", ""],
                                capture_output=True, text=True, env=env(), timeout=300,
                                check=False)
        assert result.returncode == 0, result.stderr
        # the link probers may need a cycle or two to have an RTT for every pair
        if len(store.latest_links()) < 3 or not store.services():
            raise NotYet(f"links {sorted(store.latest_links())}, services "
                         f"{store.services()}: {result.stdout}")
        return True

    wait_for(observed, timeout=240, interval=2, what="a controller cycle that saw every link")
    store.close()
    yield url


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def serve(db: str, prometheus: str, log: Path) -> Iterator[str]:
    """``kubehop dashboard`` in its own process; its URL while it runs."""
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen([KUBEHOP, "dashboard", "--port", str(port), "--db", db,
                                 "--prometheus", prometheus],
                                stdout=out, stderr=subprocess.STDOUT, env=env())
    url = f"http://127.0.0.1:{port}/"

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"kubehop dashboard exited: {log.read_text()}")
        try:
            return httpx.get(url + "healthz", timeout=2).status_code == 200
        except httpx.HTTPError as exc:
            raise NotYet(str(exc)) from exc

    try:
        wait_for(up, timeout=30, interval=0.2, what="the dashboard to answer")
        assert f"dashboard on {url} " in log.read_text()
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def dashboard(db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``kubehop dashboard`` over that store and the testbed's Prometheus; its URL."""
    log = tmp_path_factory.mktemp("dashboard-log") / "dashboard.log"
    with serve(db, monitoring.prometheus_url(), log) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=1400,1900"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def console_problems(driver: webdriver.Chrome) -> list[dict[str, Any]]:
    """Console errors and warnings since the last call (the log is drained when read)."""
    return [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]


def chart_lines(driver: webdriver.Chrome, name: str) -> dict[str, int]:
    """The chart's lines as Chart.js holds them: label -> number of points."""
    got: dict[str, int] = driver.execute_script(
        "const c = Chart.getChart(document.getElementById(arguments[0]));"
        "return c ? Object.fromEntries(c.data.datasets.map(d => [d.label, d.data.length]))"
        "         : null;", f"chart-{name}")
    return got


def migration_rows(driver: webdriver.Chrome) -> list[dict[str, Any]]:
    """The migrations table as shown, read in one script: the page redraws it every poll, so
    elements found one by one could be replaced between two reads."""
    rows: list[dict[str, Any]] = driver.execute_script(
        "return [...document.querySelectorAll('#migration-table tr[data-migration]')].map(r =>"
        " ({id: r.dataset.migration, status: r.dataset.status,"
        "   phase: r.querySelector('.phase').textContent,"
        "   steps: [...r.querySelectorAll('.step')].map(s => s.textContent)}))")
    return rows


def topology_shown(driver: webdriver.Chrome) -> dict[str, Any]:
    """Tiers (in page order) with their clusters and services, and the links' rows."""
    shown: dict[str, Any] = driver.execute_script(
        "return {tiers: [...document.querySelectorAll('#tiers [data-tier]')].map(t =>"
        "  ({tier: t.dataset.tier, heading: t.querySelector('h3').textContent,"
        "    clusters: [...t.querySelectorAll('[data-cluster]')].map(c =>"
        "      ({name: c.querySelector('.name').textContent,"
        "        services: [...c.querySelectorAll('[data-service]')]"
        "          .map(s => s.dataset.service)}))})),"
        " links: Object.fromEntries([...document.querySelectorAll('#links tbody tr')].map(r =>"
        "  [r.dataset.link, [...r.cells].map(c => c.textContent)]))}")
    return shown


def test_page_shows_the_testbed_by_tier_and_draws_charts_with_no_console_error(
        dashboard: str, browser: webdriver.Chrome) -> None:
    # The browser is the module's: a page an earlier test left open may have logged errors
    # once its server stopped. Leave it, drop what it logged, then judge this page alone.
    browser.get("about:blank")
    console_problems(browser)
    browser.get(dashboard)

    def drawn() -> dict[str, Any]:
        shown = topology_shown(browser)
        if not shown["tiers"]:
            raise NotYet("no tier drawn yet")
        return shown

    shown = wait_for(drawn, timeout=20, interval=0.3, what="the topology")
    # grouped by tier, edge to cloud as the paper draws them
    assert [(t["tier"], [c["name"] for c in t["clusters"]]) for t in shown["tiers"]] == [
        ("edge", ["edge"]), ("fog", ["fog"]), ("cloud", ["cloud"])], shown
    services = {c["name"]: c["services"] for t in shown["tiers"] for c in t["clusters"]}
    # where orc8r really runs: edge as the controller saw it, or where a migration the page
    # knows of (the other test's, when it ran first) has moved it since
    home = orc8r_runs_in()
    assert len(home) == 1, home
    assert {name: svcs for name, svcs in services.items() if svcs} == {
        home[0]: [f"{NS}/orc8r"]}, services
    assert [c["name"] for t in shown["tiers"] for c in t["clusters"]] == list(CLUSTERS)
    assert set(shown["links"]) == {"cloud-edge", "cloud-fog", "edge-fog"}, shown["links"]
    for cells in shown["links"].values():
        assert float(cells[1]) > 0, cells  # the measured RTT in ms
    # the dry-run cycle's decision, with a candidate row per cluster
    decision: dict[str, Any] = browser.execute_script(
        "const d = document.querySelector('#decision-list details');"
        "return d && {text: d.querySelector('summary').textContent,"
        "  candidates: [...d.querySelectorAll('tr[data-candidate]')]"
        "    .map(r => r.dataset.candidate)};")
    assert decision and f"{NS}/orc8r" in decision["text"], decision
    assert sorted(decision["candidates"]) == sorted(CLUSTERS), decision

    def cpu_drawn() -> dict[str, int]:
        lines = chart_lines(browser, "cpu")
        if set(lines or {}) != set(CLUSTERS) or not all(lines.values()):
            raise NotYet(f"CPU chart lines: {lines}")
        return lines

    wait_for(cpu_drawn, timeout=30, interval=0.5, what="the CPU chart from Prometheus")
    latency = chart_lines(browser, "latency")
    assert latency.get(f"{sample.AGW_NAMESPACE} agw edge", 0) > 0, latency
    # Each chart polls on its own: the I/O one may draw a poll after the CPU one.
    wait_for(lambda: chart_lines(browser, "io") or None, timeout=30, interval=0.5,
             what="storage I/O lines from Prometheus")
    canvas = browser.find_element(By.ID, "chart-cpu")
    assert canvas.size["width"] > 200 and canvas.size["height"] > 100, canvas.size
    for name in ("cpu", "io", "latency", "failed"):
        assert not browser.find_element(By.ID, f"err-{name}").is_displayed(), name
    time.sleep(3)  # a few more polls
    assert console_problems(browser) == []
    assert not browser.find_element(By.ID, "api-error").is_displayed()


def test_a_migration_shows_running_with_its_phase_then_succeeded(
        db: str, dashboard: str, browser: webdriver.Chrome) -> None:
    fresh_sample()  # orc8r in edge only, agw answered
    browser.get(dashboard)
    console_problems(browser)  # start from an empty log
    journal = Store(db)
    outcome: dict[str, Any] = {}

    def migrate() -> None:
        request = MigrationRequest(service="orc8r", namespace=NS, source="edge",
                                   target="cloud", target_namespace=NS, drain_seconds=1.0)
        try:
            outcome["report"] = Executor(journal).start(tb.inventory(), request)
        except BaseException as exc:
            outcome["error"] = exc

    time.sleep(2)  # the first poll has drawn the table
    before = {r["id"] for r in migration_rows(browser)}
    worker = threading.Thread(target=migrate, name="migration", daemon=True)
    worker.start()

    def row() -> dict[str, Any]:
        new = [r for r in migration_rows(browser) if r["id"] not in before]
        if not new:
            raise NotYet(f"no new migration row (worker: {outcome})")
        return new[0]

    phases_seen: set[str] = set()
    statuses_seen: list[str] = []
    while worker.is_alive():
        try:
            shown = row()
        except NotYet:
            time.sleep(0.3)
            continue
        statuses_seen.append(shown["status"])
        if shown["status"] == "running":
            phases_seen.add(shown["phase"])
        time.sleep(0.3)
    worker.join()
    assert "report" in outcome, outcome.get("error")
    report = outcome["report"]
    assert report.status == "succeeded", report.error
    assert "running" in statuses_seen, statuses_seen
    assert phases_seen <= set(STEPS), phases_seen
    assert len(phases_seen) >= 2, phases_seen  # it moved through phases as they happened

    def finished() -> dict[str, Any]:
        shown = row()
        if shown["status"] != "succeeded":
            raise NotYet(f"row {shown}")
        return shown

    shown = wait_for(finished, timeout=15, interval=0.3,
                     what="the page to show the migration succeeded")
    mid = shown["id"]
    assert mid == report.id
    assert shown["phase"] == STEPS[-1]
    assert shown["steps"] == list(STEPS), shown
    assert orc8r_runs_in() == ["cloud"]
    # the topology shows it in cloud at once, before any controller cycle records it there
    services = {c["name"]: c["services"] for t in topology_shown(browser)["tiers"]
                for c in t["clusters"]}
    assert services["cloud"] == [f"{NS}/orc8r"] and services["edge"] == [], services
    # the migration is marked on the charts' time axis: its start and its end; the last five
    # minutes (the screenshot's window) with the newest decision's candidate table open
    Select(browser.find_element(By.ID, "range")).select_by_value("300")
    browser.execute_script("document.querySelector('#decision-list details').open = true")
    time.sleep(4)  # the next chart refresh
    marks = browser.execute_script(
        "return Object.keys(Chart.getChart(document.getElementById('chart-cpu'))"
        ".options.plugins.annotation.annotations)")
    assert {f"start-{mid}", f"end-{mid}"} <= set(marks), marks
    span = browser.execute_script(
        "const x = Chart.getChart(document.getElementById('chart-cpu')).options.scales.x;"
        "return x.max - x.min")
    assert span == pytest.approx(300), span
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    browser.execute_script("window.scrollTo(0, 0)")
    assert browser.save_screenshot(str(SCREENSHOT))
    assert SCREENSHOT.stat().st_size > 20_000
    assert console_problems(browser) == []
    journal.close()


def test_prometheus_unreachable_is_said_in_each_chart_with_no_console_error(
        db: str, browser: webdriver.Chrome, tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    with serve(db, closed, tmp_path / "dashboard.log") as url:
        browser.get(url)

        def errors_shown() -> dict[str, str]:
            shown: dict[str, str] = browser.execute_script(
                "return Object.fromEntries(['cpu', 'io', 'latency', 'failed'].map(n => {"
                "  const e = document.getElementById('err-' + n);"
                "  return [n, e.hidden ? '' : e.textContent]; }))")
            if not all(shown.values()):
                raise NotYet(f"errors shown: {shown}")
            return shown

        shown = wait_for(errors_shown, timeout=20, interval=0.3, what="the charts' errors")
        for text in shown.values():
            assert f"Prometheus at {closed} did not answer" in text, shown
        assert chart_lines(browser, "cpu") == {}
        # the rest of the page still works from the store
        assert [t["tier"] for t in topology_shown(browser)["tiers"]] == list(CLUSTERS)
        time.sleep(2)
        assert console_problems(browser) == []

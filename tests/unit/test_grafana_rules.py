"""The Grafana dashboards and Prometheus rules under deploy/, checked with the real promtool
(Debian's prometheus package, installed by `make setup`): a user imports them as they are, so
a PromQL typo or a renamed controller metric must fail here, not on their screen."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubehop.adapters.prometheus import promql_error
from kubehop.controller.metrics import ControllerMetrics
from kubehop.testbed import monitoring

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "deploy" / "prometheus" / "kubehop-rules.yml"
RULES_TEST = REPO / "deploy" / "prometheus" / "kubehop-rules.test.yml"
DASHBOARDS = sorted((REPO / "deploy" / "grafana").glob("*.json"))

# Concrete values for the dashboards' template variables and Grafana's built-in ones, so that
# each expr is the PromQL Grafana would send.
VARIABLES = {"cluster": "edge", "namespace": "orc8r-ns", "__rate_interval": "1m",
             "__interval": "30s", "__range": "1h", "__interval_ms": "30000",
             "__range_s": "3600"}
KUBEHOP_METRIC = re.compile(r"\bkubehop_[a-zA-Z0-9_]+")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    assert tool, "promtool is missing: apt-get install prometheus (make setup does)"
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=60,
                          check=False)


def rules() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(RULES.read_text())
    return loaded


def dashboard(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those nested in collapsed rows too."""
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])


def exprs(board: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, expr) of every query: panel targets, annotations, template variables."""
    for panel in panels(board):
        for target in panel.get("targets", []):
            yield f"panel {panel['id']} {panel['title']!r} {target['refId']}", target["expr"]
    for note in board["annotations"]["list"]:
        if "expr" in note:
            yield f"annotation {note['name']!r}", note["expr"]


def substitute(expr: str) -> str:
    """``expr`` with $var, ${var} and ${var:format} replaced by VARIABLES (KeyError: a variable
    the dashboards do not define)."""
    return re.sub(r"\$\{?(\w+)(?::\w+)?\}?", lambda m: VARIABLES[m.group(1)], expr)


def controller_metric_names() -> set[str]:
    """Every series name ControllerMetrics exports (with _total, _bucket, _sum, _count), also
    of the labelled metrics that have no series until their first observation."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"),
                "gauge": ("",)}
    return {family.name + suffix for family in ControllerMetrics().registry.collect()
            for suffix in suffixes[family.type]}


def unknown_kubehop_metrics(exprs_: list[str]) -> set[str]:
    known = controller_metric_names()
    return {name for expr in exprs_ for name in KUBEHOP_METRIC.findall(expr)} - known


def all_rule_exprs() -> list[str]:
    return [rule["expr"] for group in rules()["groups"] for rule in group["rules"]]


# --- rules ---------------------------------------------------------------------------------

def test_promtool_check_rules_passes() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    count = sum(len(group["rules"]) for group in rules()["groups"])
    assert f"SUCCESS: {count} rules found" in result.stdout


def test_promtool_check_rules_fails_on_a_broken_file(tmp_path: Path) -> None:
    """The check above can fail: one broken expression makes promtool refuse the file."""
    text = RULES.read_text()
    broken = text.replace("> 300", "> > 300", 1)
    assert broken != text
    path = tmp_path / "broken.yml"
    path.write_text(broken)
    result = promtool("check", "rules", str(path))
    assert result.returncode != 0
    assert "could not parse expression" in result.stdout + result.stderr


def test_promtool_unit_tests_of_the_rules_pass() -> None:
    result = promtool("test", "rules", str(RULES_TEST))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_promtool_unit_tests_fail_when_an_alert_changes(tmp_path: Path) -> None:
    """The unit tests can fail: with the stale-cycle threshold at 20 minutes, the alert they
    expect at 12m does not fire."""
    (tmp_path / "kubehop-rules.yml").write_text(RULES.read_text().replace("> 300", "> 1200"))
    shutil.copy(RULES_TEST, tmp_path / "kubehop-rules.test.yml")
    result = promtool("test", "rules", str(tmp_path / "kubehop-rules.test.yml"))
    assert result.returncode != 0
    assert "KubehopNoSuccessfulCycle" in result.stdout + result.stderr


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    alerts = {rule["alert"] for group in rules()["groups"] for rule in group["rules"]
              if "alert" in rule}
    assert len(alerts) >= 5
    cases = [case for test in yaml.safe_load(RULES_TEST.read_text())["tests"]
             for case in test.get("alert_rule_test", [])]
    firing = {c["alertname"] for c in cases if c["exp_alerts"]}
    assert alerts <= firing, f"never tested firing: {sorted(alerts - firing)}"
    quiet = {c["alertname"] for c in cases if not c["exp_alerts"]}
    assert alerts <= quiet, f"never tested not firing: {sorted(alerts - quiet)}"


def test_the_rules_use_only_metrics_the_controller_exports() -> None:
    used = {name for expr in all_rule_exprs() for name in KUBEHOP_METRIC.findall(expr)}
    assert "kubehop_controller_migrations_total" in used
    assert unknown_kubehop_metrics(all_rule_exprs()) == set()


def test_a_renamed_metric_is_caught() -> None:
    assert unknown_kubehop_metrics(["rate(kubehop_controller_migration_total[5m])"]) == {
        "kubehop_controller_migration_total"}


def test_deploy_rules_are_the_packaged_rules() -> None:
    """deploy/prometheus links to the copy the package ships (the testbed loads that one)."""
    assert RULES.is_symlink()
    assert RULES.resolve() == monitoring.rules_source().resolve()


# --- the testbed's Prometheus --------------------------------------------------------------

def test_testbed_prometheus_config_loads_the_rules(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBEHOP_STATE", str(tmp_path))
    config_path = monitoring.write_prometheus_config([])
    config = yaml.safe_load(config_path.read_text())
    [rule_file] = config["rule_files"]
    assert Path(rule_file) == config_path.parent / "kubehop-rules.yml"
    assert Path(rule_file).read_text() == RULES.read_text()
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["kubehop-controller"]["static_configs"] == [{"targets": ["127.0.0.1:9180"]}]
    # promtool checks the configuration and the rule files it names
    result = promtool("check", "config", str(config_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 17 rules found" in result.stdout + result.stderr


# --- dashboards ----------------------------------------------------------------------------

def test_the_three_dashboards_exist() -> None:
    assert [p.name for p in DASHBOARDS] == ["client-latency.json", "cluster-resources.json",
                                            "migrations.json"]
    uids = [dashboard(p)["uid"] for p in DASHBOARDS]
    assert len(set(uids)) == len(uids)


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_dashboard_schema(path: Path) -> None:
    board = dashboard(path)
    assert board["schemaVersion"] == 39
    assert board["title"] and board["uid"]
    ids = [p["id"] for p in panels(board)]
    assert len(ids) == len(set(ids)), f"duplicate panel ids in {path.name}"
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    cluster = variables["cluster"]
    assert cluster["type"] == "query"
    assert cluster["query"]["query"].startswith("label_values(")
    assert cluster["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    for panel in panels(board):
        assert "gridPos" in panel
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["id"]
        assert panel["targets"], f"panel {panel['id']} has no query"
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
    for note in board["annotations"]["list"]:
        if "expr" in note:
            assert note["datasource"]["uid"] == "${datasource}"
    assert any("cluster=~\"$cluster\"" in expr for _, expr in exprs(board))


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_dashboard_promql_parses(path: Path) -> None:
    board = dashboard(path)
    queries = list(exprs(board))
    queries += [(f"variable {v['name']}", v["query"]["query"].split("(", 1)[1].rsplit(",", 1)[0])
                for v in board["templating"]["list"] if v["type"] == "query"
                and v["query"]["query"].startswith("label_values(")
                and "," in v["query"]["query"]]
    assert len(queries) >= 5
    problems = {where: promql_error(substitute(expr)) for where, expr in queries}
    assert {where: p for where, p in problems.items() if p} == {}


def test_promql_check_catches_a_broken_dashboard_expr() -> None:
    assert promql_error(substitute('sum by (cluster) (rate(x{cluster=~"$cluster"}[$__rate_'
                                   'interval])')) is not None


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_dashboard_uses_only_metrics_the_controller_exports(path: Path) -> None:
    assert unknown_kubehop_metrics([expr for _, expr in exprs(dashboard(path))]) == set()


def test_migrations_dashboard_covers_the_controller() -> None:
    board = dashboard(REPO / "deploy" / "grafana" / "migrations.json")
    text = " ".join(expr for _, expr in exprs(board))
    for metric in ("kubehop_controller_decisions_total", "kubehop_controller_migrations_total",
                   "kubehop_controller_migration_duration_seconds_bucket",
                   "kubehop_controller_reaction_seconds_bucket",
                   "kubehop_controller_last_successful_cycle_timestamp_seconds"):
        assert metric in text
    notes = [n for n in board["annotations"]["list"] if "expr" in n]
    assert any("kubehop_controller_migrations_total" in n["expr"] for n in notes)

"""The controller on the real testbed when its inputs misbehave: Prometheus frozen while edge is
overloaded, and a load flapping around a rule's threshold (split from test_controller so the
two halves can run on parallel workers; the helpers and fixtures are that module's)."""

from __future__ import annotations

import os
import signal
import time

import pytest

from kubehop.adapters.store import Store
from kubehop.testbed import monitoring
from kubehop.testbed import testbed as tb

from .test_controller import (  # noqa: F401 - pg_url and scenario are fixtures used here
    EDGE_LOAD,
    ControllerProcess,
    assert_agw_clean,
    decisions,
    migration_done,
    pg_url,
    runs_in,
    scenario,
    stress,
    wait_decision,
)

pytestmark = pytest.mark.usefixtures("testbed")


def test_prometheus_gone_means_no_decision_and_recovery_after(
        scenario: tuple[ControllerProcess, Store, float]) -> None:  # noqa: F811
    """Prometheus frozen (SIGSTOP: it holds its port but answers nothing) while edge is
    overloaded: the controller records no-data and moves nothing; once Prometheus answers
    again it decides on fresh data."""
    ctl, store, since = scenario
    wait_decision(store, ctl, "stay", timeout=90)
    pid = int(tb.monitoring_pidfiles()[0].read_text())
    frozen = time.time()
    os.kill(pid, signal.SIGSTOP)
    try:
        stress("--cluster", "edge", *EDGE_LOAD)
        nodata = wait_decision(store, ctl, "no-data", timeout=60, after=frozen)
        assert "Prometheus" in str(nodata["explanation"]), nodata
        time.sleep(30)  # a dozen cycles with edge overloaded and no data: nothing may move
        assert not [d for d in decisions(store) if d["action"] == "move"]
        assert runs_in("edge")
    finally:
        os.kill(pid, signal.SIGCONT)
    assert wait_decision(store, ctl, "move:fog", timeout=120, after=frozen)["at"] > nodata["at"]  # type: ignore[operator]
    assert_agw_clean(store, since)
    assert monitoring.prometheus_url()


def test_load_flapping_around_the_threshold_moves_at_most_once(
        scenario: tuple[ControllerProcess, Store, float]) -> None:  # noqa: F811
    """Edge's load on for 20 s and off for 20 s, three times (the policy's keepFiringFor
    outlasts an off period): at most one move, and agw sees no failed request."""
    ctl, store, since = scenario
    wait_decision(store, ctl, "stay", timeout=90)
    end = time.time() + 100
    while time.time() < end:
        stress("--cluster", "edge", *EDGE_LOAD, "--for", "20")
        time.sleep(max(0.0, min(40.0, end - time.time())))
    moves = [d for d in decisions(store) if d["action"] == "move"]
    assert len(moves) <= 1, moves
    for m in moves:
        migration_done(store, str(m["migration"]), timeout=180)
    assert_agw_clean(store, since)

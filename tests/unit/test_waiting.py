"""The one wait/retry helper: returns the first real answer, says why it timed out."""

from __future__ import annotations

import pytest

from kubehop.errors import KubehopError
from kubehop.waiting import NotYet, WaitTimeoutError, retry, wait_for


def test_wait_for_returns_the_first_truthy_answer() -> None:
    answers = iter([None, False, "ready"])
    assert wait_for(lambda: next(answers), timeout=5, interval=0.001, what="x") == "ready"


def test_wait_for_times_out_with_the_last_reason() -> None:
    def check() -> None:
        raise NotYet("2/3 replicas ready")

    with pytest.raises(WaitTimeoutError, match=r"waiting for the pods \(2/3 replicas ready\)"):
        wait_for(check, timeout=0.05, interval=0.01, what="the pods")


def test_wait_for_stops_at_once_on_another_error() -> None:
    calls = []

    def check() -> None:
        calls.append(1)
        raise KubehopError("image cannot be pulled")

    with pytest.raises(KubehopError, match="cannot be pulled"):
        wait_for(check, timeout=5, interval=0.001, what="x")
    assert len(calls) == 1


def test_retry_retries_only_the_named_errors() -> None:
    attempts = iter([KubehopError("busy"), KubehopError("busy"), None])

    def call() -> str:
        exc = next(attempts)
        if exc:
            raise exc
        return "ok"

    assert retry(call, timeout=5, interval=0.001) == "ok"
    with pytest.raises(ValueError):
        retry(lambda: int("x"), timeout=5, interval=0.001)


def test_a_poll_budget_spreads_its_rate_over_the_waits_in_progress() -> None:
    from kubehop.waiting import PollBudget
    budget = PollBudget(0.05)
    assert budget.interval() == 0.05
    with budget.waiting(), budget.waiting():
        assert budget.interval() == 0.1
        with budget.waiting():
            assert abs(budget.interval() - 0.15) < 1e-9
    assert budget.active == 0 and budget.interval() == 0.05


def test_wait_for_takes_its_interval_from_a_function() -> None:
    calls: list[int] = []
    answers = iter([None, None, "done"])
    assert wait_for(lambda: next(answers), timeout=5, what="x",
                    interval=lambda: calls.append(1) or 0.001) == "done"
    assert len(calls) == 2

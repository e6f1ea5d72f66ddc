"""The one rule for naming a tail figure (kubehop.bench.stats): p99 only over at least 100
samples, p95 over 20, p90 over 10; otherwise the figure is the largest value, called max."""

from __future__ import annotations

import pytest

from kubehop.bench.stats import common_tail, pick, spread, tail, tail_label, tail_of


def ramp(n: int) -> list[float]:
    """1.0 .. n: the largest value is n, and p99 (interpolated) is below it."""
    return [float(v) for v in range(1, n + 1)]


@pytest.mark.parametrize(("n", "p99", "p95", "p90"), [
    (3, "max", "max", "max"),
    (10, "max", "max", "p90"),
    (20, "max", "p95", "p90"),
    (99, "max", "p95", "p90"),
    (100, "p99", "p95", "p90"),
])
def test_labels_by_sample_count(n: int, p99: str, p95: str, p90: str) -> None:
    assert (tail_label(n), tail_label(n, 0.95), tail_label(n, 0.9)) == (p99, p95, p90)


@pytest.mark.parametrize(("n", "label", "value"), [
    (3, "max", 3.0),
    (10, "max", 10.0),
    (20, "max", 20.0),
    (100, "p99", 99.01),  # between the two largest, as numpy interpolates
])
def test_tail_is_the_max_below_100_samples(n: int, label: str, value: float) -> None:
    got_label, got = tail(ramp(n))
    assert got_label == label
    assert got == pytest.approx(value)


def test_tail_of_other_quantiles() -> None:
    assert tail(ramp(20), 0.95) == ("p95", pytest.approx(19.05))
    assert tail(ramp(10), 0.9) == ("p90", pytest.approx(9.1))
    assert tail(ramp(9), 0.9) == ("max", 9.0)


def test_a_quantile_without_a_rule_is_refused() -> None:
    with pytest.raises(ValueError, match="no sample rule"):
        tail_label(50, 0.5)


def test_spread_names_only_what_the_samples_allow() -> None:
    few = spread(ramp(3))
    assert few == {"n": 3, "p50": 2.0, "max": 3.0}
    many = spread(ramp(100), quantiles=(0.9, 0.99))
    assert many["n"] == 100 and many["max"] == 100.0
    assert many["p99"] == pytest.approx(99.01) and many["p90"] == pytest.approx(90.1)
    assert spread([]) == {"n": 0, "p50": None, "max": None}


def test_tail_of_a_spread_and_of_an_older_summary() -> None:
    assert tail_of(spread(ramp(3))) == ("max", 3.0)
    assert tail_of(spread(ramp(100))) == ("p99", pytest.approx(99.01))
    # an older results file: a "p99" over an unknown number of runs, no max -> nothing to show
    assert tail_of({"p50": 1.0, "p99": 2.0}) == ("max", None)
    # a p99 stored beside too small an n is not taken as one
    assert tail_of({"n": 10, "p50": 1.0, "p99": 2.0, "max": 3.0}) == ("max", 3.0)
    assert tail_of(None) == ("max", None)


def test_a_column_shares_one_label() -> None:
    assert common_tail([spread(ramp(100)), spread(ramp(200))]) == "p99"
    assert common_tail([spread(ramp(100)), spread(ramp(20))]) == "max"
    assert common_tail([]) == "max"
    assert pick(spread(ramp(100)), "max") == 100.0
    assert pick(spread(ramp(3)), "p99") is None

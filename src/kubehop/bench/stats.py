"""Statistics the benchmark scenarios share, and the one rule for naming a tail figure: a
percentile is called p99 only over at least 100 samples (p95 over 20, p90 over 10); over fewer
the figure given is the largest value, called max. ``scripts/figures.py`` uses the same rule for
the figures in the documents."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

MIN_SAMPLES: dict[float, int] = {0.9: 10, 0.95: 20, 0.99: 100}
"""The fewest samples a quantile is named over: 1 / (1 - q), so that at least one sample lies
above it. p99 of 10 runs is only an interpolation between the two largest."""
TAILS = ("p99", "p95", "p90", "max")
"""The names a tail figure may have, the most specific first."""


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) by linear interpolation between closest ranks (numpy's
    default), so p99 of ten runs lies between the two largest, not simply the largest."""
    if not values:
        raise ValueError("no values")
    if not 0 <= q <= 1:
        raise ValueError(f"quantile {q} is not between 0 and 1")
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    low, high = math.floor(pos), math.ceil(pos)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def tail_label(n: int, q: float = 0.99) -> str:
    """What a tail figure over ``n`` samples may be called: ``p99`` (``p95``, ``p90`` for those
    ``q``) with enough samples (:data:`MIN_SAMPLES`), else ``max``."""
    if q not in MIN_SAMPLES:
        raise ValueError(f"quantile {q} has no sample rule; use one of {sorted(MIN_SAMPLES)}")
    return f"p{round(q * 100)}" if n >= MIN_SAMPLES[q] else "max"


def tail(values: Sequence[float], q: float = 0.99) -> tuple[str, float]:
    """(label, value): the ``q`` quantile under its name when there are enough values for it,
    else ("max", the largest value)."""
    label = tail_label(len(values), q)
    return label, (max(values) if label == "max" else percentile(values, q))


def spread(values: Sequence[float], digits: int = 3,
           quantiles: Iterable[float] = (0.99,)) -> dict[str, Any]:
    """A summary of ``values`` as the reports store it: ``n``, ``p50`` and ``max`` always (None
    when there are no values), and each of ``quantiles`` (``p99``...) only when there are
    enough values to name it (:func:`tail_label`)."""
    out: dict[str, Any] = {"n": len(values), "p50": None, "max": None}
    if not values:
        return out
    out["p50"] = round(percentile(values, 0.5), digits)
    for q in quantiles:
        label = tail_label(len(values), q)
        if label != "max":
            out[label] = round(percentile(values, q), digits)
    out["max"] = round(max(values), digits)
    return out


def tail_of(summary: Mapping[str, Any] | None, q: float = 0.99) -> tuple[str, float | None]:
    """(label, value) of a :func:`spread`: its ``q`` quantile when it has one and its ``n``
    allows the name, else its max; ("max", None) for a summary without those fields (as an
    older results file)."""
    summary = summary or {}
    label = tail_label(int(summary.get("n") or 0), q)
    if label != "max" and summary.get(label) is not None:
        return label, float(summary[label])
    top = summary.get("max")
    return "max", None if top is None else float(top)


def common_tail(summaries: Iterable[Mapping[str, Any] | None], q: float = 0.99) -> str:
    """The label a column of :func:`spread` summaries shares: the quantile's name if every one
    of them has it, else max (so a column never mixes p99s and maxima)."""
    labels = {tail_of(s, q)[0] for s in summaries}
    return labels.pop() if len(labels) == 1 else "max"


def pick(summary: Mapping[str, Any] | None, label: str) -> float | None:
    """The figure called ``label`` in a :func:`spread` (None if it has none)."""
    value = (summary or {}).get(label)
    return None if value is None else float(value)

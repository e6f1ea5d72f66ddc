"""Prometheus, the controller's eyes: instant queries over its HTTP API, and PromQL checked by
Prometheus's own parser (``promtool``) before a policy is accepted.

A query that fails (Prometheus down, a timeout, a query error) raises :class:`MonitoringError`;
a query that answers with no series is an empty list. The controller treats both as missing
data and decides nothing on them, so nothing here guesses or fills in a value.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from kubehop.errors import KubehopError, PreconditionError


class MonitoringError(KubehopError):
    """Prometheus could not answer: unreachable, timed out, or refused the query."""


@dataclass(frozen=True)
class Sample:
    """One series of an instant vector: its labels, its value and when it was sampled."""

    labels: dict[str, str]
    value: float
    at: float


@dataclass(frozen=True)
class Series:
    """One series of a range vector: its labels and its raw (timestamp, value) samples."""

    labels: dict[str, str]
    points: list[tuple[float, float]]


class Prometheus:
    """A client of one Prometheus server's HTTP API (``/api/v1/query`` and ``query_range``)."""

    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def _get(self, path: str, params: dict[str, str], what: str) -> Any:
        """``data`` of a successful API answer; MonitoringError with the reason otherwise."""
        try:
            response = self._http.get(path, params=params)
        except httpx.HTTPError as exc:
            raise MonitoringError(f"Prometheus at {self.url} did not answer: "
                                  f"{type(exc).__name__}: {exc}") from exc
        try:
            body = response.json()
        except ValueError as exc:
            raise MonitoringError(f"Prometheus at {self.url} answered HTTP "
                                  f"{response.status_code} without JSON") from exc
        if body.get("status") != "success":
            raise MonitoringError(f"Prometheus refused {what}: {body.get('errorType')}: "
                                  f"{body.get('error')}")
        return body["data"]

    def query(self, expr: str, *, at: float | None = None) -> list[Sample]:
        """The instant vector ``expr`` evaluates to (now, or at ``at``); NaN samples, which
        PromQL produces for 0/0, are dropped: they carry no value to decide on."""
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self._get("/api/v1/query", params, repr(expr))
        if data["resultType"] == "scalar":
            at_s, raw = data["result"]
            return [] if math.isnan(float(raw)) else [Sample({}, float(raw), float(at_s))]
        if data["resultType"] != "vector":
            raise MonitoringError(f"{expr!r} gives a {data['resultType']}, not an instant vector")
        samples = []
        for series in data["result"]:
            at_s, raw = series["value"]
            value = float(raw)
            if not math.isnan(value):
                samples.append(Sample(dict(series["metric"]), value, float(at_s)))
        return samples

    def raw_samples(self, selector: str, *, since: float, until: float) -> list[Series]:
        """Every stored sample of the series ``selector`` matches in (``since``, ``until``],
        with the scrape timestamps they were stored under. A range query would not do: it
        evaluates at its step points, so it cannot say when a value first appeared."""
        if until <= since:
            raise MonitoringError(f"empty window for {selector!r}: {since:.3f} to {until:.3f}")
        window_ms = max(1, math.ceil((until - since) * 1000))
        expr = f"{selector}[{window_ms}ms]"
        data = self._get("/api/v1/query", {"query": expr, "time": f"{until:.3f}"}, repr(expr))
        if data["resultType"] != "matrix":
            raise MonitoringError(f"{expr!r} gives a {data['resultType']}, not a range vector")
        return [Series(dict(s["metric"]), [(float(t), float(v)) for t, v in s["values"]])
                for s in data["result"]]

    def query_range(self, expr: str, *, start: float, end: float, step: float) -> list[Series]:
        """``expr`` evaluated every ``step`` seconds from ``start`` to ``end``: what a chart
        plots (evenly spaced points), unlike :meth:`raw_samples`. NaN points (0/0) are
        dropped, as in :meth:`query`."""
        if end <= start or step <= 0:
            raise MonitoringError(f"bad range for {expr!r}: {start:.3f} to {end:.3f} "
                                  f"every {step:g}s")
        data = self._get("/api/v1/query_range", {
            "query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"},
            repr(expr))
        if data["resultType"] != "matrix":
            raise MonitoringError(f"{expr!r} gives a {data['resultType']}, not a range vector")
        result = []
        for s in data["result"]:
            points = [(float(t), float(v)) for t, v in s["values"]]
            result.append(Series(dict(s["metric"]),
                                 [(t, v) for t, v in points if not math.isnan(v)]))
        return result

    def config(self) -> dict[str, Any]:
        """The configuration Prometheus runs with (``/api/v1/status/config``), parsed."""
        data = self._get("/api/v1/status/config", {}, "its configuration")
        loaded = yaml.safe_load(data.get("yaml") or "")
        if not isinstance(loaded, dict):
            raise MonitoringError(f"Prometheus at {self.url} returned no configuration")
        return loaded


def promql_error(expr: str) -> str | None:
    """Why Prometheus's parser rejects ``expr`` (None if it parses), from ``promtool``: the same
    parser the server uses, without needing the server to be up when the policy is loaded."""
    promtool = shutil.which("promtool")
    if promtool is None:
        raise PreconditionError("promtool (Debian package prometheus) is needed to check the "
                                "policy's PromQL; install it with 'apt-get install prometheus'")
    rules = {"groups": [{"name": "kubehop-policy",
                         "rules": [{"record": "kubehop:check", "expr": expr}]}]}
    with tempfile.TemporaryDirectory(prefix="kubehop-promql-") as tmp:
        path = Path(tmp) / "rules.yml"
        path.write_text(yaml.safe_dump(rules))
        result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                                text=True, timeout=30, check=False)
    if result.returncode == 0:
        return None
    for line in (result.stderr + result.stdout).splitlines():
        if "could not parse expression" in line:
            return line.split("could not parse expression:", 1)[1].strip()
    return (result.stderr or result.stdout).strip().splitlines()[-1]

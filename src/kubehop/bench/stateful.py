"""Stateful migration on the testbed: how long a service with data takes to move, how long its
writes are held (the freeze), and that no acknowledged write is lost, per size of its volume.

Per size: a fresh stateful sample in edge (orc8r's SQLite database on the PVC ``orc8r-state``,
agw checking in every 10 ms), a file of that many MB (10^6 bytes) of random bytes written into
the PVC's directory on this machine, then runs that move orc8r back and forth (edge -> cloud,
cloud -> edge, ...) while agw keeps writing. Each run records the engine's figures (total,
clients on the target, pre-copy, freeze, verification, every pass), agw's record over the
run's window and the acknowledged check-ins missing from the moved database (must be none).

The engine leaves the source's PVC behind after a move (only the workload goes), so the next
move back would find the old copy and send only what changed. Each run therefore deletes
such a leftover claim in its target first: every first pass copies the whole volume, and the
figures are those of a move to a cluster that never had the data.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kubehop.adapters.kube import KubeError
from kubehop.adapters.store import Store
from kubehop.bench.stats import percentile
from kubehop.domain.model import MigrationRequest
from kubehop.engine.executor import Executor
from kubehop.errors import KubehopError
from kubehop.testbed import sample
from kubehop.testbed import testbed as tb
from kubehop.waiting import wait_for

Say = Callable[[str], None]
NS = sample.ORC8R_NAMESPACE
MB = 10**6
CHUNK = 8 << 20
"""The padding file is written in 8 MiB chunks of os.urandom (one chunk in memory at a time)."""
PADDING = "padding.bin"
DRAIN_S = 2.0
SETTLE_S = 2.0
"""agw runs steadily this long before each run starts."""
TARGET_SIZE_MB = 100
TARGET_FREEZE_P99_MS = 150.0
TARGET_TOTAL_S = 4.0


# -- pure parts ----------------------------------------------------------------------------

def parse_sizes(text: str) -> list[int]:
    """``--sizes`` as positive MB counts, in the order given, without repeats."""
    try:
        sizes = [int(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise ValueError(f"--sizes wants MB counts like 10,100,1000, not {text!r}") from exc
    if not sizes or any(s < 1 for s in sizes):
        raise ValueError(f"--sizes wants positive MB counts like 10,100,1000, not {text!r}")
    return list(dict.fromkeys(sizes))


def first_pass_partial(passes: Sequence[dict[str, Any]], volume_bytes: int | None) -> bool:
    """Whether the first pass sent less than half the volume: the engine retries a first pass
    the target's route refused and keeps only the last attempt's figures, so an attempt that
    moved the data and then failed leaves a first pass that is only the rest."""
    if not passes or not volume_bytes:
        return False
    return int(passes[0].get("bytes") or 0) < volume_bytes / 2


def throughput_mbps(passes: Sequence[dict[str, Any]],
                    volume_bytes: int | None = None) -> float | None:
    """The first pass's bytes per second in MB/s (10^6 bytes): the pass that moves the whole
    volume; None if there was none, it took no measurable time, or it is partial (above)."""
    if not passes or first_pass_partial(passes, volume_bytes):
        return None
    first = passes[0]
    seconds = float(first.get("seconds") or 0)
    if seconds <= 0:
        return None
    return round(int(first.get("bytes") or 0) / seconds / MB, 3)


def lost_writes(acked: Iterable[int], stored: Iterable[int]) -> list[int]:
    """Check-ins agw saw acknowledged that the database does not hold, sorted."""
    return sorted(set(acked) - set(stored))


def pass_bytes_medians(runs: Sequence[dict[str, Any]]) -> list[float]:
    """The median bytes of each pass index over the runs (a run with fewer passes counts only
    for the indices it has): pass 1 is the full copy, the last the final delta."""
    longest = max((len(r.get("passes") or []) for r in runs), default=0)
    return [float(statistics.median([r["passes"][i]["bytes"] for r in runs
                                     if len(r.get("passes") or []) > i]))
            for i in range(longest)]


def link_rate_bit(wan: dict[str, Any] | None, a: str, b: str) -> int | None:
    """The configured rate of the link between clusters ``a`` and ``b`` in a
    ``wan.report`` record (None: not limited, or not recorded)."""
    for link in (wan or {}).get("links") or []:
        if {link.get("a"), link.get("b")} == {a, b}:
            rate = link.get("rate_bit")
            return None if rate is None else int(rate)
    return None


def is_flat(wan: dict[str, Any] | None) -> bool:
    """Whether the recorded WAN adds nothing between the clusters (the plain bridge)."""
    if not wan:
        return False
    return all(not link.get("delay_ms") and not link.get("jitter_ms")
               and link.get("rate_bit") is None for link in wan.get("links") or [])


def _q(values: Sequence[float], q: float, digits: int = 3) -> float | None:
    return round(percentile(values, q), digits) if values else None


def summarize_size(size_mb: int, runs: Sequence[dict[str, Any]], *,
                   rate_bit: int | None) -> dict[str, Any]:
    """One size's row: percentiles over the runs that succeeded; failures, agw's failed
    requests and lost writes over all of them."""
    ok = [r for r in runs if r.get("ok")]

    def col(key: str, scale: float = 1.0) -> list[float]:
        return [float(r[key]) * scale for r in ok if r.get(key) is not None]

    freeze_ms = col("freeze_s", 1000.0)
    rates = col("first_pass_mbps")
    lost = [r.get("lost") for r in runs]
    return {
        "size_mb": size_mb,
        "runs": len(runs),
        "ok": len(ok),
        "total_s": {"p50": _q(col("total_s"), 0.5), "p99": _q(col("total_s"), 0.99)},
        "to_target_s": {"p50": _q(col("to_target_s"), 0.5)},
        "freeze_ms": {"p50": _q(freeze_ms, 0.5, 1), "p99": _q(freeze_ms, 0.99, 1)},
        "precopy_s": {"p50": _q(col("precopy_s"), 0.5)},
        "verify_s": {"p50": _q(col("verify_s"), 0.5)},
        "pass_bytes": pass_bytes_medians(ok),
        "throughput_mbps": {"p50": _q(rates, 0.5, 1)},
        "link_rate_mbps": None if rate_bit is None else round(rate_bit / 8 / MB, 3),
        "lost": sum(int(x) for x in lost if x is not None),
        "lost_unknown": sum(1 for x in lost if x is None),
        "agw_failed": sum(int(r.get("agw_failed") or 0) for r in runs),
        "agw_retried": (sum(int(r["agw_retried"]) for r in runs
                            if r.get("agw_retried") is not None)
                        if any(r.get("agw_retried") is not None for r in runs) else None),
        "longest_gap_ms": max((float(r["longest_gap_ms"]) for r in runs
                               if r.get("longest_gap_ms") is not None), default=None),
    }


def summarize(runs: Sequence[dict[str, Any]], *, rate_bit: int | None) -> list[dict[str, Any]]:
    """A row per size, in the order the sizes ran."""
    sizes = list(dict.fromkeys(int(r["size_mb"]) for r in runs))
    return [summarize_size(s, [r for r in runs if int(r["size_mb"]) == s], rate_bit=rate_bit)
            for s in sizes]


def targets(rows: Sequence[dict[str, Any]], *, flat: bool) -> dict[str, Any]:
    """The issue's targets at 100 MB: freeze p99 <= 150 ms and total <= 4 s (p99), with every
    run succeeded and nothing lost; None where 100 MB was not run. ``flat`` records whether the
    runs crossed the plain bridge the targets are stated for."""
    row = next((r for r in rows if r["size_mb"] == TARGET_SIZE_MB), None)
    result: dict[str, Any] = {"size_mb": TARGET_SIZE_MB, "flat": flat,
                              "freeze_p99_ms": TARGET_FREEZE_P99_MS, "total_s": TARGET_TOTAL_S,
                              "freeze_met": None, "total_met": None}
    if row is None:
        return result
    clean = row["ok"] == row["runs"] and row["lost"] == 0 and row["lost_unknown"] == 0
    freeze, total = row["freeze_ms"]["p99"], row["total_s"]["p99"]
    result["freeze_met"] = clean and freeze is not None and freeze <= TARGET_FREEZE_P99_MS
    result["total_met"] = clean and total is not None and total <= TARGET_TOTAL_S
    return result


# -- the runs ------------------------------------------------------------------------------

@dataclass
class StatefulRun:
    """One move; times are Unix seconds, durations seconds."""

    size_mb: int
    index: int
    source: str
    target: str
    ok: bool = False
    error: str = ""
    start: float = 0.0
    end: float = 0.0
    migration_id: str | None = None
    status: str | None = None
    total_s: float | None = None
    to_target_s: float | None = None
    """From the start until clients were sent to the target (the switch's end)."""
    precopy_s: float | None = None
    freeze_s: float | None = None
    verify_s: float | None = None
    passes: list[dict[str, Any]] = field(default_factory=list)
    first_pass_mbps: float | None = None
    files: int | None = None
    bytes: int | None = None
    stale_claim_deleted: bool = False
    agw_count: int | None = None
    agw_failed: int | None = None
    agw_retried: int | None = None
    longest_gap_ms: float | None = None
    agw_errors: dict[str, int] = field(default_factory=dict)
    acked: int | None = None
    lost: int | None = None
    """Acknowledged check-ins of the run's window missing from orc8r's database."""
    lost_first: list[int] = field(default_factory=list)
    stop_writes_s: float | None = None
    """Inside the freeze: from its start until every source pod's freeze hook returned."""
    failed_attempts: list[str] = field(default_factory=list)
    """First-pass attempts that failed and were retried (an attempt may have moved data)."""


def where_orc8r_runs() -> str:
    """edge or cloud: the cluster that has orc8r's Deployment (a failed run leaves it where it
    was, so each run starts from where orc8r is, not from where the last run meant it to go)."""
    found = []
    for name in ("edge", "cloud"):
        with tb.kube(sample.cluster_layout(name)) as k:
            if k.get("Deployment", "orc8r", NS) is not None:
                found.append(name)
    if len(found) != 1:
        raise KubeError(f"orc8r's Deployment is in {found or 'no cluster'}; expected exactly one "
                        "of edge and cloud")
    return found[0]


def delete_stale_claim(cluster: str) -> bool:
    """Delete the state claim a previous move left in ``cluster`` (wait until it is gone);
    True if there was one."""
    with tb.kube(sample.cluster_layout(cluster)) as k:
        if not k.delete("PersistentVolumeClaim", sample.STATE_CLAIM, NS):
            return False
        wait_for(lambda: k.get("PersistentVolumeClaim", sample.STATE_CLAIM, NS) is None,
                 timeout=120, interval=0.25, error=KubeError,
                 what=f"the leftover PVC {NS}/{sample.STATE_CLAIM} in {cluster} to be deleted")
    return True


def write_padding(directory: Path, size_mb: int) -> Path:
    """``size_mb`` MB of random bytes in ``directory``, so the volume has that much to move."""
    path = directory / PADDING
    left = size_mb * MB
    with path.open("wb") as f:
        while left > 0:
            n = min(CHUNK, left)
            f.write(os.urandom(n))
            left -= n
        f.flush()
        os.fsync(f.fileno())
    return path


def one_run(size_mb: int, index: int, journal: Store, say: Say) -> StatefulRun:
    source = where_orc8r_runs()
    target = "cloud" if source == "edge" else "edge"
    run = StatefulRun(size_mb=size_mb, index=index, source=source, target=target)
    edge = sample.cluster_layout("edge")
    try:
        run.stale_claim_deleted = delete_stale_claim(target)
        sample.wait_agw_clean(edge, timeout=60)
    except KubehopError as exc:
        run.error = f"before the run: {type(exc).__name__}: {exc}"
        say(f"{size_mb} MB #{index + 1} {source} -> {target}: FAILED {run.error}")
        return run
    time.sleep(SETTLE_S)
    run.start = time.time()
    request = MigrationRequest(service="orc8r", namespace=NS, source=source, target=target,
                               target_namespace=NS, drain_seconds=DRAIN_S)
    try:
        report = Executor(journal).start(tb.inventory(), request)
        run.end = time.time()
        run.migration_id, run.status = report.id, report.status
        run.ok = report.status == "succeeded"
        if not run.ok:
            run.error = report.error or f"migration ended {report.status}"
        run.total_s = round(report.total_seconds, 3)
        switch = report.switch_seconds
        run.to_target_s = None if switch is None else round(switch, 3)
        d = report.data
        run.precopy_s, run.freeze_s = d.get("precopy_seconds"), d.get("freeze_seconds")
        run.verify_s, run.files, run.bytes = (d.get("verify_seconds"), d.get("files"),
                                              d.get("bytes"))
        run.passes = [{"bytes": p["bytes"], "files": p["files"], "seconds": p["seconds"],
                       "final": p["final"]} for p in d.get("passes") or []]
        run.first_pass_mbps = throughput_mbps(run.passes, run.bytes)
        run.stop_writes_s = d.get("stop_writes_seconds")
        run.failed_attempts = list(d.get("failed_attempts") or [])
    except KubehopError as exc:
        run.end = time.time()
        run.error = f"{type(exc).__name__}: {exc}"
        rows = journal.list()
        if rows:
            run.migration_id, run.status = rows[-1].id, rows[-1].status
    try:
        summary = sample.agw_record(edge, since=run.start, until=run.end + DRAIN_S)
        run.agw_count, run.agw_failed = summary.get("count"), summary.get("failed")
        run.agw_retried = summary.get("retried")
        run.longest_gap_ms = summary.get("longest_gap_ms")
        run.agw_errors = dict(summary.get("errors") or {})
        acked = sample.agw_acked(edge, since=run.start, until=run.end)
        serving = where_orc8r_runs()
        lost = lost_writes(acked, sample.orc8r_checkins(sample.cluster_layout(serving)))
        run.acked, run.lost, run.lost_first = len(acked), len(lost), lost[:20]
    except KubehopError as exc:
        run.error = (run.error + "; " if run.error else "") + \
            f"measuring: {type(exc).__name__}: {exc}"
    say(f"{size_mb} MB #{index + 1} {source} -> {target}: "
        + (f"ok total {run.total_s}s, freeze {_ms(run.freeze_s)} ms, precopy {run.precopy_s}s, "
           f"first pass {run.first_pass_mbps} MB/s, passes {len(run.passes)}"
           if run.ok else f"FAILED {run.error}")
        + f"; agw failed {run.agw_failed}, gap {run.longest_gap_ms} ms, lost {run.lost}")
    return run


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f}"


def run_bench(*, sizes: Sequence[int], runs: int, say: Say, rate_bit: int | None,
              interval_ms: float = 10) -> dict[str, Any]:
    """Every size's runs (a failed run is kept with its error and the bench goes on), then
    the sample removed: its padding would otherwise sit in the clusters' volumes."""
    all_runs: list[StatefulRun] = []
    with tempfile.TemporaryDirectory(prefix="kubehop-bench-stateful-") as tmp:
        journal = Store(f"sqlite:///{Path(tmp) / 'kubehop.db'}")
        try:
            for size in sizes:
                say(f"{size} MB: deploying the stateful sample in edge")
                try:
                    sample.deploy("edge", stateful=True, interval_ms=interval_ms)
                    padding = write_padding(sample.volume_dir("edge"), size)
                except KubehopError as exc:
                    error = f"deploying: {type(exc).__name__}: {exc}"
                    say(f"{size} MB: FAILED {error}")
                    all_runs += [StatefulRun(size_mb=size, index=i, source="edge",
                                             target="cloud", error=error) for i in range(runs)]
                    continue
                say(f"{size} MB: wrote {padding} ({size * MB} bytes)")
                for i in range(runs):
                    all_runs.append(one_run(size, i, journal, say))
        finally:
            journal.close()
            sample.remove()
    rows = [asdict(r) for r in all_runs]
    return {
        "scenario": "stateful",
        "definition": "Per size: a fresh stateful sample in edge, a padding file of size_mb x "
                      "10^6 random bytes in orc8r's PVC, then runs alternating edge -> cloud "
                      "and back under agw's check-ins. Each run first deletes a "
                      "leftover state PVC in its target, so the first pass copies everything. "
                      "lost = acked check-ins of [start, end] missing from orc8r's database.",
        "sizes_mb": list(sizes),
        "runs_per_size": runs,
        "drain_s": DRAIN_S,
        "agw_interval_ms": interval_ms,
        "runs": rows,
        "summary": summarize(rows, rate_bit=rate_bit),
    }

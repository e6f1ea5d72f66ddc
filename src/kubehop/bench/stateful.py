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
from kubehop.bench.stats import spread, tail_of
from kubehop.domain.model import MigrationRequest
from kubehop.engine.executor import Executor
from kubehop.engine.report import Report
from kubehop.errors import KubehopError
from kubehop.testbed import sample
from kubehop.testbed import testbed as tb
from kubehop.testbed.layout import ClusterLayout
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


def wan_name(wan: dict[str, Any] | None) -> str | None:
    """What the runs' WAN is called in the tables: ``flat`` when it adds nothing between the
    clusters, else its profile's name; None when not recorded."""
    if not wan:
        return None
    return "flat" if is_flat(wan) else str((wan.get("profile") or {}).get("name") or "?")


def _total(runs: Sequence[dict[str, Any]], key: str) -> int | None:
    """The sum of a count over the runs that recorded it; None if none did."""
    known = [int(r[key]) for r in runs if r.get(key) is not None]
    return sum(known) if known else None


def passes_retried(runs: Sequence[dict[str, Any]]) -> dict[str, int] | None:
    """First-pass attempts that failed and were retried (the report's data
    ``failed_attempts``): how many, and in how many runs; None if no run recorded them."""
    recorded = [r["failed_attempts"] for r in runs if r.get("failed_attempts") is not None]
    if not recorded:
        return None
    return {"attempts": sum(len(a) for a in recorded), "runs": sum(1 for a in recorded if a)}


def summarize_size(size_mb: int, runs: Sequence[dict[str, Any]], *, rate_bit: int | None,
                   mode: str | None = None, wan: str | None = None) -> dict[str, Any]:
    """One row (a mode, a WAN, a size): p50 and tail (:func:`~kubehop.bench.stats.spread`:
    p99 only over >= 100 runs, else max) over the runs that succeeded; failures, agw's failed
    and retried requests, retried passes and lost writes over all of them."""
    ok = [r for r in runs if r.get("ok")]

    def col(key: str, scale: float = 1.0) -> list[float]:
        return [float(r[key]) * scale for r in ok if r.get(key) is not None]

    lost = [r.get("lost") for r in runs]
    return {
        "mode": mode, "wan": wan, "size_mb": size_mb, "runs": len(runs), "ok": len(ok),
        "total_s": spread(col("total_s")),
        "to_target_s": spread(col("to_target_s")),
        "freeze_ms": spread(col("freeze_s", 1000.0), 1),
        "precopy_s": spread(col("precopy_s")),
        "verify_s": spread(col("verify_s")),
        "pass_bytes": pass_bytes_medians(ok),
        "throughput_mbps": spread(col("first_pass_mbps"), 1),
        "link_rate_mbps": None if rate_bit is None else round(rate_bit / 8 / MB, 3),
        "lost": sum(int(x) for x in lost if x is not None),
        "lost_unknown": sum(1 for x in lost if x is None),
        "agw_failed": sum(int(r.get("agw_failed") or 0) for r in runs),
        "agw_retried": _total(runs, "agw_retried"),
        "longest_gap_ms": max((float(r["longest_gap_ms"]) for r in runs
                               if r.get("longest_gap_ms") is not None), default=None),
        "passes_retried": passes_retried(runs),
    }


def row_keys(runs: Sequence[dict[str, Any]], wan: str | None = None
             ) -> list[tuple[str | None, str | None, int]]:
    """Each run's row: (mode, WAN, size) as the run recorded them. A run that recorded no WAN
    takes ``wan`` (the results file's); one that recorded no mode (it failed before its data
    was moved, or an older bench wrote it) joins the mode of its WAN and size when they have
    exactly one."""
    base = [(r.get("wan") or wan, int(r["size_mb"])) for r in runs]
    modes: dict[tuple[str | None, int], set[str]] = {}
    for r, b in zip(runs, base, strict=True):
        if r.get("mode"):
            modes.setdefault(b, set()).add(str(r["mode"]))

    def mode(r: dict[str, Any], b: tuple[str | None, int]) -> str | None:
        if r.get("mode"):
            return str(r["mode"])
        only = modes.get(b, set())
        return next(iter(only)) if len(only) == 1 else None

    return [(mode(r, b), b[0], b[1]) for r, b in zip(runs, base, strict=True)]


def summarize(runs: Sequence[dict[str, Any]], *, rate_bit: int | None,
              wan: str | None = None) -> list[dict[str, Any]]:
    """A row per (mode, WAN, size) the runs recorded (:func:`row_keys`), in the order they
    ran."""
    keys = row_keys(runs, wan)
    return [summarize_size(k[2], [r for r, rk in zip(runs, keys, strict=True) if rk == k],
                           rate_bit=rate_bit, mode=k[0], wan=k[1])
            for k in dict.fromkeys(keys)]


def _verdict(row: dict[str, Any], key: str, target: float, clean: bool) -> bool | None:
    """Whether a row's p99 of ``key`` is within ``target``: True when its tail is (a max
    within it means the p99 is too), False when the p50 is over it or a real p99 is, or the
    row is not clean; None when only a max is over it (fewer than 100 runs cannot tell)."""
    label, top = tail_of(row[key])
    p50 = row[key]["p50"]
    if not clean or top is None or p50 is None or p50 > target:
        return False
    if top <= target:
        return True
    return False if label == "p99" else None


def targets(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's targets at 100 MB, per mode: freeze p99 <= 150 ms and total <= 4 s (p99),
    with every run succeeded and nothing lost. Each mode's flat 100 MB row if it has one (the
    targets are stated for the plain bridge), else its first 100 MB row (``flat`` False: an
    indication only). ``tail`` and ``n`` say what the check stood on."""
    chosen: dict[str | None, dict[str, Any]] = {}
    for row in rows:
        have = chosen.get(row["mode"])
        if row["size_mb"] == TARGET_SIZE_MB and (
                have is None or (row["wan"] == "flat" and have["wan"] != "flat")):
            chosen[row["mode"]] = row
    result = []
    for mode, row in chosen.items():
        clean = row["ok"] == row["runs"] and row["lost"] == 0 and row["lost_unknown"] == 0
        result.append({
            "mode": mode, "wan": row["wan"], "flat": row["wan"] == "flat",
            "size_mb": TARGET_SIZE_MB, "freeze_p99_ms": TARGET_FREEZE_P99_MS,
            "total_s": TARGET_TOTAL_S, "tail": tail_of(row["freeze_ms"])[0], "n": row["ok"],
            "freeze_met": _verdict(row, "freeze_ms", TARGET_FREEZE_P99_MS, clean),
            "total_met": _verdict(row, "total_s", TARGET_TOTAL_S, clean)})
    return result


def tables(runs: Sequence[dict[str, Any]], wan: dict[str, Any] | None) -> dict[str, Any]:
    """The summary rows and the targets of a set of runs and the WAN record they ran under:
    what the bench stores in runs.json, and what its report recomputes from an older file."""
    rows = summarize(runs, rate_bit=link_rate_bit(wan, "edge", "cloud"), wan=wan_name(wan))
    return {"summary": rows, "targets": targets(rows)}


# -- the runs ------------------------------------------------------------------------------

@dataclass
class StatefulRun:
    """One move; times are Unix seconds, durations seconds."""

    size_mb: int
    index: int
    source: str
    target: str
    wan: str | None = None
    """The WAN the run crossed: ``flat`` or the profile's name (:func:`wan_name`)."""
    mode: str | None = None
    """The data engine that moved the volume (the report's data ``engine``): ``files``."""
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


def take_report(run: StatefulRun, report: Report) -> None:
    """A migration's report into ``run``: status, times, the passes, the data engine (the
    run's mode) and the first pass's failed, retried attempts."""
    run.migration_id, run.status = report.id, report.status
    run.ok = report.status == "succeeded"
    if not run.ok:
        run.error = report.error or f"migration ended {report.status}"
    run.total_s = round(report.total_seconds, 3)
    switch = report.switch_seconds
    run.to_target_s = None if switch is None else round(switch, 3)
    d = report.data
    run.mode = d.get("engine")
    run.precopy_s, run.freeze_s = d.get("precopy_seconds"), d.get("freeze_seconds")
    run.verify_s, run.files, run.bytes = (d.get("verify_seconds"), d.get("files"),
                                          d.get("bytes"))
    run.passes = [{"bytes": p["bytes"], "files": p["files"], "seconds": p["seconds"],
                   "final": p["final"]} for p in d.get("passes") or []]
    run.first_pass_mbps = throughput_mbps(run.passes, run.bytes)
    run.stop_writes_s = d.get("stop_writes_seconds")
    run.failed_attempts = list(d.get("failed_attempts") or [])


def measure_clients(run: StatefulRun, edge: ClusterLayout) -> None:
    """agw's record over the run (failed, retried requests, the longest gap between answers)
    and the acknowledged check-ins missing from the database of the cluster orc8r now runs
    in: the same calls as tests/testbed/test_stateful.py's ``assert_nothing_lost``."""
    summary = sample.agw_record(edge, since=run.start, until=run.end + DRAIN_S)
    run.agw_count, run.agw_failed = summary.get("count"), summary.get("failed")
    run.agw_retried = summary.get("retried")
    run.longest_gap_ms = summary.get("longest_gap_ms")
    run.agw_errors = dict(summary.get("errors") or {})
    acked = sample.agw_acked(edge, since=run.start, until=run.end)
    serving = where_orc8r_runs()
    lost = lost_writes(acked, sample.orc8r_checkins(sample.cluster_layout(serving)))
    run.acked, run.lost, run.lost_first = len(acked), len(lost), lost[:20]


def one_run(size_mb: int, index: int, journal: Store, say: Say,
            wan: str | None = None) -> StatefulRun:
    source = where_orc8r_runs()
    target = "cloud" if source == "edge" else "edge"
    run = StatefulRun(size_mb=size_mb, index=index, source=source, target=target, wan=wan)
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
        take_report(run, Executor(journal).start(tb.inventory(), request))
        run.end = time.time()
    except KubehopError as exc:
        run.end = time.time()
        report = getattr(exc, "report", None)  # a MigrationError carries the run so far
        if isinstance(report, Report):
            take_report(run, report)
            run.ok = False
        run.error = f"{type(exc).__name__}: {exc}"
        rows = journal.list()
        if rows:
            run.migration_id, run.status = rows[-1].id, rows[-1].status
    try:
        measure_clients(run, edge)
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


def run_bench(*, sizes: Sequence[int], runs: int, say: Say, wan: dict[str, Any] | None,
              interval_ms: float = 10) -> dict[str, Any]:
    """Every size's runs (a failed run is kept with its error and the bench goes on), then
    the sample removed: its padding would otherwise sit in the clusters' volumes. ``wan`` is
    the WAN record taken before the runs: each run records its name, the rows its link's
    rate."""
    all_runs: list[StatefulRun] = []
    name = wan_name(wan)
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
                                             target="cloud", wan=name, error=error)
                                 for i in range(runs)]
                    continue
                say(f"{size} MB: wrote {padding} ({size * MB} bytes)")
                for i in range(runs):
                    all_runs.append(one_run(size, i, journal, say, wan=name))
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
                      "lost = acked check-ins of [start, end] missing from orc8r's database. "
                      "A row per (mode: the data engine, wan, size) the runs recorded.",
        "sizes_mb": list(sizes),
        "runs_per_size": runs,
        "drain_s": DRAIN_S,
        "agw_interval_ms": interval_ms,
        "runs": rows,
        **tables(rows, wan),
    }

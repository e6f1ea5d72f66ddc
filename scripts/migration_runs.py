"""Repeated migrations of orc8r between edge and cloud under agw's load, per strategy.

Usage (testbed up, sample deployed in edge):
    .venv/bin/python scripts/migration_runs.py --runs 10 --out results/migration-runs.json

Migrations alternate edge->cloud and cloud->edge, strategies interleaved. For each run it keeps
kubehop's report (phases, total time, time to switch) and agw's record over the run plus two
seconds after (requests, failed, longest gap between successes, latency). Prints a summary table
(median and max per strategy). This is the measurement quoted in the README; `make bench`
(issue #5) will grow from it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from kubehop.testbed import layout, sample
from kubehop.testbed import testbed as tb

KUBEHOP = str(Path(sys.executable).with_name("kubehop"))


def run_once(strategy: str, src: str, dst: str, drain: float) -> dict[str, Any]:
    edge = next(c for c in layout.layouts(tb.recorded_clusters()) if c.name == "edge")
    start = time.time()
    result = subprocess.run(
        [KUBEHOP, "migrate", "orc8r", "-n", sample.ORC8R_NAMESPACE, "--from", src, "--to", dst,
         "--strategy", strategy, "--drain", str(drain), "-o", "json"],
        capture_output=True, text=True, check=False,
        env={**os.environ, "KUBEHOP_INVENTORY": str(tb.inventory_file())},
    )
    time.sleep(2)
    record = sample.agw_record(edge, since=start, until=time.time())
    record.pop("timeline", None)
    if result.returncode != 0:
        return {"strategy": strategy, "from": src, "to": dst, "ok": False,
                "error": result.stderr.strip(), "agw": record}
    report = json.loads(result.stdout)
    return {"strategy": strategy, "from": src, "to": dst, "ok": True,
            "total_s": report["total_seconds"], "switch_s": report["switch_seconds"],
            "phases": {p["name"]: p["seconds"] for p in report["phases"]}, "agw": record}


def summary(runs: list[dict[str, Any]]) -> str:
    lines = ["| strategy | runs | total s (median / max) | to target s (median / max) | "
             "failed requests (sum / max) | longest gap ms (median / max) |",
             "|---|---|---|---|---|---|"]
    for strategy in sorted({r["strategy"] for r in runs}):
        rs = [r for r in runs if r["strategy"] == strategy and r["ok"]]
        if not rs:
            continue
        tot = [r["total_s"] for r in rs]
        sw = [r["switch_s"] for r in rs]
        failed = [r["agw"]["failed"] for r in rs]
        gaps = [r["agw"]["longest_gap_ms"] or 0 for r in rs]
        lines.append(
            f"| {strategy} | {len(rs)} | {statistics.median(tot):.2f} / {max(tot):.2f} | "
            f"{statistics.median(sw):.2f} / {max(sw):.2f} | {sum(failed)} / {max(failed)} | "
            f"{statistics.median(gaps):.0f} / {max(gaps):.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--strategies", default="endpoints,externalname")
    parser.add_argument("--drain", type=float, default=2.0)
    parser.add_argument("--out", default="results/migration-runs.json")
    args = parser.parse_args()
    runs: list[dict[str, Any]] = []
    where = "edge"
    for i in range(args.runs):
        for strategy in args.strategies.split(","):
            dst = "cloud" if where == "edge" else "edge"
            run = run_once(strategy, where, dst, args.drain)
            runs.append(run)
            print(f"run {i + 1} {strategy} {where}->{dst}: "
                  f"{'ok' if run['ok'] else 'FAILED'} total={run.get('total_s')} "
                  f"failed={run['agw']['failed']} gap={run['agw']['longest_gap_ms']}",
                  flush=True)
            if run["ok"]:
                where = dst
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"runs": runs, "summary": summary(runs)}, indent=2))
    print(summary(runs))


if __name__ == "__main__":
    main()

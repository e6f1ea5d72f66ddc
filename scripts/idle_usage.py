"""Idle CPU and memory of the running testbed (the README's figures), written to a file.

Usage: .venv/bin/python scripts/idle_usage.py [SECONDS] [--out DIR]

CPU: the machine's busy time over SECONDS (default 60) from /proc/stat, in cores; run it with
nothing else working, so that is the testbed's. Memory: the proportional set size (PSS) of every
testbed process: those started from its state directory, everything in the kubelets' cgroups
(pods, containerd shims) and the host services. Prints the figures and writes them to
DIR/idle-<N>clusters.json (DIR: results/testbed).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import time
from pathlib import Path
from typing import Any

from kubehop.testbed import cgroups, layout, procs
from kubehop.testbed import testbed as tb

RESULTS = Path(__file__).resolve().parent.parent / "results" / "testbed"


def busy_jiffies() -> tuple[int, int]:
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def testbed_pids() -> set[int]:
    pids = set(procs.pids_matching(str(layout.state_dir())))
    for c in layout.layouts(tb.recorded_clusters()):
        pids.update(cgroups.pids_under(c.cgroup_root))
        pids.update(procs.pids_in_netns(c.netns))
    return pids


def pss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return 0
    return 0


def machine() -> dict[str, Any]:
    cpus = [line for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("cpu") and line[3:4].isdigit()]
    mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    return {"host": platform.node(), "arch": platform.machine(), "kernel": platform.release(),
            "cores": len(cpus), "memory_gib": round(mem_kib / 2**20, 1)}


def measure(seconds: float) -> dict[str, Any]:
    """The idle figures of the testbed as it runs now, over ``seconds``."""
    clusters = tb.recorded_clusters()
    if not clusters:
        raise SystemExit("the testbed is not up; start it with 'kubehop testbed up'")
    busy0, total0 = busy_jiffies()
    time.sleep(seconds)  # the measurement window itself
    busy1, total1 = busy_jiffies()
    cores = machine()["cores"]
    pids = testbed_pids()
    return {
        "clusters": list(clusters),
        "seconds": seconds,
        "cpu_cores": round((busy1 - busy0) / (total1 - total0) * cores, 3),
        "pss_bytes": sum(pss_bytes(p) for p in pids),
        "processes": len(pids),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
    }


def write(data: dict[str, Any], out: Path, stem: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{stem}-{len(data['clusters'])}clusters.json"
    path.write_text(json.dumps(data, indent=1) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("seconds", nargs="?", type=float, default=60.0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    data = measure(args.seconds)
    print(f"clusters: {','.join(data['clusters'])}")
    print(f"idle CPU over {args.seconds:.0f}s: {data['cpu_cores']:.2f} cores "
          f"(of {data['machine']['cores']})")
    print(f"memory (PSS) of {data['processes']} testbed processes: "
          f"{data['pss_bytes'] / 2**30:.2f} GiB")
    print(f"wrote {write(data, args.out, 'idle')}")


if __name__ == "__main__":
    main()

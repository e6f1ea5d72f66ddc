"""Idle CPU and memory of the running testbed (the README's figures).

Usage: .venv/bin/python scripts/idle_usage.py [SECONDS]

CPU: the machine's busy time over SECONDS (default 60) from /proc/stat, in cores; run it with
nothing else working, so that is the testbed's. Memory: the proportional set size (PSS) of every
testbed process: those started from its state directory, everything in the kubelets' cgroups
(pods, containerd shims) and the host services.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from kubehop.testbed import cgroups, layout, procs
from kubehop.testbed import testbed as tb


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


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 60.0
    busy0, total0 = busy_jiffies()
    time.sleep(seconds)
    busy1, total1 = busy_jiffies()
    cores = len([line for line in Path("/proc/stat").read_text().splitlines()
                 if line.startswith("cpu") and line[3:4].isdigit()])
    cpu = (busy1 - busy0) / (total1 - total0) * cores
    pids = testbed_pids()
    mem = sum(pss_bytes(p) for p in pids)
    print(f"clusters: {','.join(tb.recorded_clusters())}")
    print(f"idle CPU over {seconds:.0f}s: {cpu:.2f} cores (of {cores})")
    print(f"memory (PSS) of {len(pids)} testbed processes: {mem / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()

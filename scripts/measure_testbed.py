"""The README's testbed figures, measured and written under results/testbed/.

Usage (as root, holding the testbed lock; takes the testbed down first and leaves it up):

    .venv/bin/python scripts/measure_testbed.py [--clusters edge,cloud] [--idle-seconds 60]
                                                [--settle 30] [--out results/testbed]

1. ``kubehop testbed down`` if a testbed is up, so that ``up`` starts from nothing but the
   caches (a warm up: every upstream build and image is cached).
2. ``kubehop testbed up --clusters ...``, timed as ``time`` would (wall clock of the command):
   written to up-<N>clusters.json.
3. After --settle seconds (the pods' start-up work ends), the idle CPU and memory over
   --idle-seconds (scripts/idle_usage.py): written to idle-<N>clusters.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import idle_usage

from kubehop.testbed import testbed as tb

KUBEHOP = str(Path(sys.executable).with_name("kubehop"))


def kubehop(*args: str) -> None:
    print(f"$ kubehop {' '.join(args)}", flush=True)
    subprocess.run([KUBEHOP, *args], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", default="edge,cloud")
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--settle", type=float, default=30.0)
    parser.add_argument("--out", type=Path, default=idle_usage.RESULTS)
    args = parser.parse_args()

    if tb.recorded_clusters():
        kubehop("testbed", "down")
    command = ["testbed", "up", "--clusters", args.clusters]
    start = time.monotonic()
    kubehop(*command)
    seconds = time.monotonic() - start
    if not tb.status().healthy:
        raise SystemExit("the testbed came up unhealthy; see 'kubehop testbed status'")
    up = {
        "command": "kubehop " + " ".join(command),
        "clusters": list(tb.recorded_clusters()),
        "seconds": round(seconds, 1),
        "warm": "every upstream build and image cached; started from a testbed that was down",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": idle_usage.machine(),
    }
    print(f"warm up of {args.clusters}: {seconds:.1f} s; wrote "
          f"{idle_usage.write(up, args.out, 'up')}")
    time.sleep(args.settle)  # let start-up work end: this measures the idle testbed
    idle = idle_usage.measure(args.idle_seconds)
    print(f"idle: {idle['cpu_cores']:.2f} cores, {idle['pss_bytes'] / 2**30:.2f} GiB "
          f"({idle['processes']} processes); wrote {idle_usage.write(idle, args.out, 'idle')}")


if __name__ == "__main__":
    main()

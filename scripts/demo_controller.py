"""make demo, part two: the paper's automatic scenario on edge, fog and cloud.

orc8r and agw run in edge. The controller (``kubehop controller run``, in its own process)
watches every cluster through Prometheus. Edge is stressed: the controller moves orc8r to the
tier its placement picks (fog: closer to agw than cloud). The stress ends: once orc8r has dwelt
in fog, the controller brings it back to edge, because agw's latency gain beats the margin.
Every decision's explanation is printed, and agw's record over the whole scenario.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kubehop.adapters.store import Store
from kubehop.errors import UsageError
from kubehop.testbed import sample
from kubehop.testbed import testbed as tb
from kubehop.waiting import NotYet, wait_for

POLICY = Path(__file__).resolve().parent.parent / "policies" / "paper.yaml"
KUBEHOP = str(Path(sys.executable).with_name("kubehop"))


def kubehop(*args: str) -> None:
    subprocess.run([KUBEHOP, *args], check=True)


def wait_move(store: Store, target: str, after: float) -> int:
    def found() -> int:
        for d in store.decisions(limit=50, namespace=sample.ORC8R_NAMESPACE, service="orc8r"):
            if d.action == "move" and d.target == target and d.at > after:
                return d.id
        raise NotYet(f"orc8r to move to {target}")

    did = wait_for(found, timeout=300, interval=1, what=f"the controller moving orc8r to {target}")
    mid = store.decision(did).migration_id or ""

    def finished() -> str:
        try:
            status = store.get(mid).status
        except UsageError as exc:  # the decision names it a moment before its row exists
            raise NotYet(str(exc)) from exc
        if status in ("running", "rolling-back"):
            raise NotYet(status)
        return status

    print(f"--- migration {mid}: {wait_for(finished, timeout=300, interval=1, what=mid)}",
          flush=True)
    return did


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="kubehop-demo-"))
    db = f"sqlite:///{tmp / 'controller.db'}"
    print("--- fresh sample in edge; the controller starts (policy policies/paper.yaml)",
          flush=True)
    kubehop("testbed", "stress", "--stop")
    sample.deploy("edge")
    since = time.time()
    env = {**os.environ, "KUBEHOP_INVENTORY": str(tb.inventory_file())}
    ctl = subprocess.Popen([KUBEHOP, "controller", "run", "--policy", str(POLICY), "--db", db],
                           env=env)
    store = Store(db)
    try:
        time.sleep(20)  # probes measured, a few calm cycles
        print("--- loading edge (3.3 GiB of its 4 GiB of memory) until the controller acts",
              flush=True)
        kubehop("testbed", "stress", "--cluster", "edge", "--cpu", "0.1", "--memory", "3300Mi")
        out = wait_move(store, "fog", since)
        kubehop("controller", "decisions", str(out), "--db", db)
        print("--- stress stopped: orc8r comes back once it has dwelt in fog", flush=True)
        kubehop("testbed", "stress", "--stop")
        back = wait_move(store, "edge", store.decision(out).at)
        kubehop("controller", "decisions", str(back), "--db", db)
        kubehop("controller", "explain", "orc8r", "-n", sample.ORC8R_NAMESPACE, "--db", db)
    finally:
        ctl.send_signal(signal.SIGTERM)
        ctl.wait(timeout=300)
        subprocess.run([KUBEHOP, "testbed", "stress", "--stop"], check=False)
    r = sample.agw_record(sample.cluster_layout("edge"), since=since, until=time.time())
    print(f"--- agw over the scenario: requests {r['count']}, failed {r['failed']}, longest gap "
          f"{r['longest_gap_ms']} ms, served by {r['served_by']}", flush=True)
    return 0 if r["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

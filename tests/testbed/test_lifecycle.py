"""``up`` twice is a no-op; ``down`` leaves nothing behind; ``up`` after ``down`` works.

These tests run in any order among the others (make test shuffles the modules): taking the
testbed down and bringing it back must leave it as healthy as the session fixture made it, so
whatever runs next finds the same testbed (new certificates, same clusters and services).
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubehop.testbed import layout, wan, wanprofile
from kubehop.testbed import testbed as tb
from tests.conftest import assert_one_line_error, kubehop

from .conftest import CLUSTERS

pytestmark = pytest.mark.usefixtures("testbed")


@pytest.fixture
def healthy_after() -> Iterator[None]:
    """Whatever the test does (or however it fails), the next test finds a healthy testbed."""
    yield
    if tb.recorded_clusters() != CLUSTERS or not tb.status().healthy:
        tb.down()
        tb.up(CLUSTERS)
    assert tb.status().healthy


def _pids() -> dict[str, int | None]:
    from kubehop.testbed import procs

    return {
        f"{c.name}/{p.stem}": procs.read_pid(p)
        for c in layout.layouts(tb.recorded_clusters())
        for p in sorted(tb.run_dir(c).glob("*.pid"))
    }


def test_up_twice_is_a_noop() -> None:
    before = _pids()
    result = kubehop("testbed", "up")
    assert result.returncode == 0, result.stderr
    assert "already up" in result.stderr
    assert _pids() == before
    assert all(before.values())


def _machine_leftovers() -> list[str]:
    """Look with the system's own tools, not through kubehop's bookkeeping."""
    found = []
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    found += [line for line in netns.splitlines() if line.startswith(layout.NETNS_PREFIX)]
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    found += [
        line.split(":")[1].strip()
        for line in links.splitlines()
        if line.split(":")[1].strip().split("@")[0] in {layout.BRIDGE}
        or line.split(":")[1].strip().startswith(layout.LINK_PREFIXES)
    ]
    state = str(layout.state_dir())
    mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    found += [m for m in mounts if state in m or f"/run/netns/{layout.NETNS_PREFIX}" in m]
    alone = os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") == "1"
    ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    found += [
        line
        for line in ps.splitlines()
        # A zombie holds nothing but its exit status, which pid 1 collects in its own time.
        # Another slot's testbed (a parallel test worker) may run: its processes name their
        # own state directory, so anything of ours names this one.
        if (state in line or (layout.SLOT == 0 and alone
                              and ("kube-apiserver" in line or "kubelet " in line)))
        and not line.endswith("<defunct>")
    ]
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    found += [line for line in rules.splitlines()
              if layout.IPTABLES_COMMENT in line or wan.CHAIN in line]
    queues = Path("/proc/net/netfilter/nfnetlink_queue")
    ours = range(wanprofile.QUEUE_BASE, wanprofile.QUEUE_BASE + layout.MAX_CLUSTERS**2)
    found += [f"nfqueue {q}" for q in (queues.read_text().splitlines() if queues.exists() else ())
              if int(q.split()[0]) in ours]
    found += [str(p) for p in Path("/sys/fs/cgroup").glob(f"*/{layout.CGROUP_PREFIX}*")]
    # The kubelets link container logs (kept in each cluster's pod log directory) from here.
    logs = Path("/var/log/containers")
    found += [str(p) for p in (logs.iterdir() if logs.is_dir() else ())
              if p.is_symlink() and state in str(p.readlink())]
    if layout.state_dir().exists():
        found.append(state)
    return found


@pytest.mark.usefixtures("healthy_after")
def test_down_leaves_nothing_and_up_comes_back() -> None:
    result = kubehop("testbed", "down")
    assert result.returncode == 0, result.stderr
    assert _machine_leftovers() == []
    assert tb.leftovers() == []
    assert layout.cache_dir().joinpath("bin").is_dir(), "caches must stay"

    assert_one_line_error(kubehop("testbed", "kubeconfig"), "not up")
    status = kubehop("testbed", "status")
    assert status.returncode == 0 and "down" in status.stdout

    # A port the testbed needs, taken by someone else: refused before anything is created.
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") == "1":
            # Every address on purpose: a careless service squatting the registry's port.
            squatter.bind(("0.0.0.0", layout.REGISTRY_PORT))  # noqa: S104
        else:
            # Another worker's testbed holds the port on its own bridge address, so every
            # address cannot be had: squat this testbed's (not up yet: IP_FREEBIND).
            squatter.setsockopt(socket.IPPROTO_IP, 15, 1)  # IP_FREEBIND (3.11 lacks the name)
            squatter.bind((str(layout.HOST_ADDRESS), layout.REGISTRY_PORT))
        squatter.listen()
        assert_one_line_error(kubehop("testbed", "up"), f"port {layout.REGISTRY_PORT}", "in use")
    assert _machine_leftovers() == []

    result = kubehop("testbed", "up", "--clusters", ",".join(CLUSTERS))
    assert result.returncode == 0, result.stderr
    assert tb.status().healthy
    assert tb.recorded_clusters() == CLUSTERS

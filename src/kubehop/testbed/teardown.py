"""``kubehop testbed down``: remove everything ``up`` made (processes, mounts, cgroups,
namespaces, interfaces, iptables rules, state) and keep the caches; and the check that nothing
is left behind."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path

from kubehop.errors import PreconditionError
from kubehop.testbed import cgroups, hostnet, layout, procs
from kubehop.testbed import wan as testbed_wan
from kubehop.testbed.layout import ClusterLayout
from kubehop.testbed.readiness import Say, quiet
from kubehop.testbed.state import (
    clouddns_pidfile,
    monitoring_pidfiles,
    recorded_clusters,
    registry_pidfile,
    run_dir,
)


def _mounts_under(base: Path) -> list[str]:
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mount_point = line.split()[4].replace("\\040", " ")
        if mount_point == str(base) or mount_point.startswith(str(base) + "/"):
            found.append(mount_point)
    return found


def _unmount_all(base: Path) -> None:
    for _ in range(5):
        mounts = _mounts_under(base)
        if not mounts:
            return
        for m in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", "-l", m], capture_output=True, check=False)


CONTAINER_LOG_LINKS = Path("/var/log/containers")


def container_log_links() -> list[Path]:
    """The kubelets' links in the machine-wide /var/log/containers to our pod logs (each
    cluster's pod log directory is its own, but this legacy directory of links is not)."""
    prefix = str(layout.state_dir()) + "/"
    found = []
    with contextlib.suppress(OSError):
        for link in CONTAINER_LOG_LINKS.iterdir():
            with contextlib.suppress(OSError):
                if link.is_symlink() and str(link.readlink()).startswith(prefix):
                    found.append(link)
    return found


def _down_cluster(c: ClusterLayout, say: Say) -> None:
    for name in ("kubelet", "kube-proxy"):
        procs.stop(run_dir(c) / f"{name}.pid")
    # Containers (in the kubelet's cgroup subtree), then their shims, then containerd.
    procs.stop_pids(cgroups.pids_under(c.cgroup_root), timeout=5)
    procs.stop_pids(list(procs.pids_matching(str(c.dir / "containerd"))), timeout=5)
    for name in (
        "containerd",
        "kube-scheduler",
        "kube-controller-manager",
        "kube-apiserver",
        "etcd",
    ):
        procs.stop(run_dir(c) / f"{name}.pid")
    procs.stop_pids(procs.pids_in_netns(c.netns), timeout=5)
    _unmount_all(c.dir)
    stuck = cgroups.remove_root(c.cgroup_root)
    if stuck:
        say(f"{c.name}: cgroups still busy: {', '.join(stuck[:3])}")
    hostnet.delete_cluster_netns(c)
    say(f"{c.name}: stopped and removed")


def down(*, say: Say = quiet) -> list[str]:
    """Remove everything ``up`` made; return what could not be removed (empty when clean)."""
    if os.geteuid() != 0:
        raise PreconditionError("kubehop testbed down needs root; run it as root or with sudo")
    names = list(recorded_clusters())
    # Also sweep namespaces and cgroups of clusters a crashed run did not record.
    for ns in hostnet.leftover_netns():
        if ns.removeprefix(layout.NETNS_PREFIX) not in names:
            names.append(ns.removeprefix(layout.NETNS_PREFIX))
    for root in cgroups.leftover_roots():
        if root.removeprefix(layout.CGROUP_PREFIX) not in names:
            names.append(root.removeprefix(layout.CGROUP_PREFIX))
    for c in layout.layouts(tuple(names)):
        _down_cluster(c, say)
    for pidfile in (registry_pidfile(), clouddns_pidfile(), *monitoring_pidfiles()):
        procs.stop(pidfile)
    # Whatever else still runs from the state directory (a crashed run, a renamed component).
    procs.stop_pids(list(procs.pids_matching(str(layout.state_dir()))), timeout=5)
    testbed_wan.clear(tuple(names))
    hostnet.delete_bridge()
    for link in container_log_links():
        link.unlink(missing_ok=True)
    base = layout.state_dir()
    _unmount_all(base)
    if base.exists() and not _mounts_under(base):
        shutil.rmtree(base)
    left = leftovers()
    if not left:
        say("testbed down: nothing left behind (caches kept in " + str(layout.cache_dir()) + ")")
    return left


def leftovers() -> list[str]:
    """Anything of a testbed still on the machine: the check behind ``down``'s promise."""
    found: list[str] = []
    found += [f"netns {n}" for n in hostnet.leftover_netns()]
    found += [f"interface {n}" for n in hostnet.leftover_links()]
    found += [f"iptables rule {r}" for r in hostnet.iptables_rules()]
    found += testbed_wan.leftovers()
    found += [f"cgroup {r}" for r in cgroups.leftover_roots()]
    found += [f"mount {m}" for m in _mounts_under(layout.state_dir())]
    found += [f"process {p}" for p in procs.pids_matching(str(layout.state_dir()))]
    found += [f"log link {p}" for p in container_log_links()]
    if layout.state_dir().exists():
        found.append(f"directory {layout.state_dir()}")
    return found

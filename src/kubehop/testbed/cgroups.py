"""The kubelet's own cgroup subtree, on the hybrid cgroup v1 layout of these machines.

Every kubelet gets ``/kubehop-<cluster>`` as ``cgroupRoot``, so clusters never account for or
evict each other's pods. With the cgroupfs driver the kubelet expects that root to exist in every
hierarchy already, and a new cpuset cgroup starts with no CPUs, so it is created here first.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from kubehop.testbed import layout

CGROUP_FS = Path("/sys/fs/cgroup")


def hierarchies() -> list[Path]:
    """Mount points of every cgroup hierarchy (v1 controllers and the cgroup2 one)."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fstype = right.split()[0] if right else ""
        if fstype in {"cgroup", "cgroup2"}:
            mount_point = Path(left.split()[4])
            if mount_point.is_relative_to(CGROUP_FS):
                found.append(mount_point)
    return found


def is_cgroup_v1_hybrid() -> bool:
    return (CGROUP_FS / "cpu").is_dir() or (CGROUP_FS / "memory").is_dir()


def create_root(root: str) -> None:
    for mount in hierarchies():
        path = mount / root.lstrip("/")
        path.mkdir(exist_ok=True)
        for knob in ("cpuset.cpus", "cpuset.mems"):
            src = mount / knob
            dst = path / knob
            if src.exists() and dst.exists() and not dst.read_text().strip():
                dst.write_text(src.read_text())


def pids_under(root: str) -> list[int]:
    """Every process in the subtree, read from the first hierarchy that has it."""
    pids: set[int] = set()
    for mount in hierarchies():
        base = mount / root.lstrip("/")
        if not base.is_dir():
            continue
        for procs in base.rglob("cgroup.procs"):
            with contextlib.suppress(OSError):
                pids.update(int(p) for p in procs.read_text().split())
    return sorted(pids)


def remove_root(root: str) -> list[str]:
    """rmdir the subtree bottom-up in every hierarchy; return the paths that would not go."""
    stuck = []
    for mount in hierarchies():
        base = mount / root.lstrip("/")
        if not base.is_dir():
            continue
        dirs = sorted(
            (p for p in base.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
        )
        for d in [*dirs, base]:
            try:
                d.rmdir()
            except OSError:
                stuck.append(str(d))
    return stuck


def leftover_roots() -> list[str]:
    """Testbed cgroup roots still present in any hierarchy."""
    found: set[str] = set()
    for mount in hierarchies():
        if mount.is_dir():
            found.update(p.name for p in mount.iterdir() if p.name.startswith(layout.CGROUP_PREFIX))
    return sorted(found)

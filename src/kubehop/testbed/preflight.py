"""What ``up`` checks before it changes anything on the machine: root, commands, kernel features
and the registry's port, each failure a one-line reason and what to do."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
from pathlib import Path

from kubehop.errors import PreconditionError
from kubehop.testbed import cgroups, layout

REQUIRED_COMMANDS = {
    "ip": "iproute2",
    "iptables": "iptables",
    "nsenter": "util-linux",
    "containerd": "containerd",
    "runc": "runc",
    "mmdebstrap": "mmdebstrap",
    "buildah": "buildah",
    "conntrack": "conntrack",
    "go": "golang (Go 1.25 or newer)",
}


def preflight() -> None:
    """Root, commands and kernel features, each failure a one-line reason and what to do."""
    if os.geteuid() != 0:
        raise PreconditionError(
            "kubehop testbed needs root (it creates network namespaces and "
            "runs kubelets); run it as root or with sudo"
        )
    for cmd, package in REQUIRED_COMMANDS.items():
        if shutil.which(cmd) is None:
            raise PreconditionError(
                f"the '{cmd}' command is missing; install {package} (make deps does it on Debian)"
            )
    if not Path("/usr/lib/cni/bridge").exists():
        raise PreconditionError(
            "CNI plugins are missing in /usr/lib/cni; install containernetworking-plugins"
        )
    if not Path("/proc/sys/net/bridge/bridge-nf-call-iptables").exists():
        raise PreconditionError(
            "kernel feature br_netfilter is missing (no "
            "/proc/sys/net/bridge/bridge-nf-call-iptables); "
            "load it with 'modprobe br_netfilter'"
        )
    if "overlay" not in Path("/proc/filesystems").read_text():
        raise PreconditionError(
            "kernel feature overlayfs is missing; load it with 'modprobe overlay'"
        )
    if not cgroups.hierarchies():
        raise PreconditionError("no cgroup hierarchy is mounted under /sys/fs/cgroup")


def _listening(port: int) -> list[str]:
    """Local addresses with a TCP socket listening on ``port`` (host network namespace)."""
    found = []
    for table, family in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 6)):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local, state = fields[1], fields[3]
                addr_hex, port_hex = local.rsplit(":", 1)
                if state == "0A" and int(port_hex, 16) == port:
                    packed = bytes.fromhex(addr_hex)
                    if family == 4:
                        found.append(str(ipaddress.IPv4Address(packed[::-1])))
                    elif not any(packed):
                        found.append("::")
    return found


def check_port_free(port: int) -> None:
    """The registry binds the bridge address; fail before changing anything if that is taken."""
    # Compares, binds nothing: a listener on every address also takes the bridge's.
    wanted = {"0.0.0.0", str(layout.HOST_ADDRESS), "::"}  # noqa: S104
    taken = [a for a in _listening(port) if a in wanted]
    if taken:
        raise PreconditionError(
            f"port {port} on {layout.HOST_ADDRESS} is in use (a listener on {taken[0]}); stop "
            "what listens there, then run 'kubehop testbed up' again"
        )

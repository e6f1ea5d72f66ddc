"""The testbed's "WAN": one host bridge, one network namespace per cluster.

Each cluster lives in its own network namespace with a single address on the bridge, so clusters
reach each other only across it, as remote data centres would. There is no default route out of
a namespace: nothing the testbed runs can call out beyond its own addresses.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from kubehop.errors import PreconditionError, TestbedError
from kubehop.testbed.layout import (
    BRIDGE,
    HOST_ADDRESS,
    IPTABLES_COMMENT,
    LINK_PREFIXES,
    NETNS_PREFIX,
    WAN_NETWORK,
    ClusterLayout,
)


def run(
    *args: str, netns: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run a command (inside ``netns`` if given); raise TestbedError with its stderr on failure."""
    argv = ["ip", "netns", "exec", netns, *args] if netns else list(args)
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise TestbedError(
            f"'{' '.join(argv)}' failed: {detail[-1] if detail else result.returncode}"
        )
    return result


def _link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def netns_exists(name: str) -> bool:
    return Path("/run/netns", name).exists()


def check_addresses_free() -> None:
    """Refuse to start when another interface already uses the testbed's address range."""
    out = run("ip", "-o", "-4", "addr", "show").stdout
    for line in out.splitlines():
        fields = line.split()
        iface, cidr = fields[1], fields[3]
        if iface == BRIDGE:
            continue
        addr = cidr.split("/")[0]
        if addr in {str(a) for a in WAN_NETWORK}:
            raise PreconditionError(
                f"address {cidr} on interface {iface} overlaps the testbed network {WAN_NETWORK}; "
                "remove it or stop what uses it"
            )


def _forward_rules() -> list[list[str]]:
    """Bridged frames pass the host's FORWARD chain when br_netfilter is on; accept ours even if
    the policy is DROP (as Docker sets it), tagged so `down` removes exactly these."""
    return [["FORWARD", direction, BRIDGE, "-m", "comment", "--comment", IPTABLES_COMMENT,
             "-j", "ACCEPT"] for direction in ("-i", "-o")]


INOTIFY_MINIMUMS = {"fs.inotify.max_user_instances": 1024,
                    "fs.inotify.max_user_watches": 524288}
"""Every kubelet and containerd holds inotify instances; Debian's default of 128 instances runs
out with two or three testbeds (a kubelet then fails with ``inotify_init: too many open
files``). kind asks its users for the same values; kubehop raises them, never lowers them."""


def ensure_inotify_limits() -> None:
    """The host's inotify limits at least :data:`INOTIFY_MINIMUMS`."""
    for key, minimum in INOTIFY_MINIMUMS.items():
        path = Path("/proc/sys") / key.replace(".", "/")
        if int(path.read_text().split()[0]) < minimum:
            run("sysctl", "-qw", f"{key}={minimum}")


def ensure_bridge() -> None:
    """The host side of the WAN: bridge ``kh0`` (``kh<slot>``) holding the host address
    (registry, DNS...)."""
    if not _link_exists(BRIDGE):
        run("ip", "link", "add", BRIDGE, "type", "bridge")
    addrs = run("ip", "-o", "-4", "addr", "show", "dev", BRIDGE).stdout
    if f" {HOST_ADDRESS}/" not in addrs:
        run("ip", "addr", "add", f"{HOST_ADDRESS}/{WAN_NETWORK.prefixlen}", "dev", BRIDGE)
    run("ip", "link", "set", BRIDGE, "up")
    for rule in _forward_rules():
        if run("iptables", "-C", *rule, check=False).returncode != 0:
            run("iptables", "-I", *rule)


def ensure_cluster_netns(cluster: ClusterLayout) -> None:
    """Namespace, veth into the bridge, the node address, forwarding and bridge netfilter."""
    ns = cluster.netns
    if not netns_exists(ns):
        run("ip", "netns", "add", ns)
    if not _link_exists(cluster.veth_host):
        run(
            "ip",
            "link",
            "add",
            cluster.veth_host,
            "type",
            "veth",
            "peer",
            "name",
            cluster.veth_peer,
        )
        run("ip", "link", "set", cluster.veth_peer, "netns", ns)
        run("ip", "link", "set", cluster.veth_peer, "name", "eth0", netns=ns)
    run("ip", "link", "set", cluster.veth_host, "master", BRIDGE, "up")
    run("ip", "link", "set", "lo", "up", netns=ns)
    addrs = run("ip", "-o", "-4", "addr", "show", "dev", "eth0", netns=ns).stdout
    if f" {cluster.node_ip}/" not in addrs:
        run(
            "ip",
            "addr",
            "add",
            f"{cluster.node_ip}/{WAN_NETWORK.prefixlen}",
            "dev",
            "eth0",
            netns=ns,
        )
    run("ip", "link", "set", "eth0", "up", netns=ns)
    # Node processes talking to a ClusterIP need a route to the service range; kube-proxy DNATs
    # the packet in OUTPUT before it leaves. There is deliberately no default route.
    run("ip", "route", "replace", str(cluster.service_cidr), "dev", "eth0", netns=ns)
    for key, value in (
        ("net.ipv4.ip_forward", "1"),
        ("net.bridge.bridge-nf-call-iptables", "1"),
        ("net.ipv4.conf.all.route_localnet", "1"),
    ):
        run("sysctl", "-qw", f"{key}={value}", netns=ns)


def delete_cluster_netns(cluster: ClusterLayout) -> None:
    if netns_exists(cluster.netns):
        run("ip", "netns", "delete", cluster.netns, check=False)
    if _link_exists(cluster.veth_host):
        run("ip", "link", "delete", cluster.veth_host, check=False)


def delete_bridge() -> None:
    for rule in _forward_rules():
        while run("iptables", "-C", *rule, check=False).returncode == 0:
            run("iptables", "-D", *rule, check=False)
    if _link_exists(BRIDGE):
        run("ip", "link", "delete", BRIDGE, check=False)


def leftover_netns() -> list[str]:
    """Namespaces named like the testbed's, whatever clusters created them."""
    base = Path("/run/netns")
    if not base.exists():
        return []
    return sorted(p.name for p in base.iterdir() if p.name.startswith(NETNS_PREFIX))


def leftover_links() -> list[str]:
    return sorted(
        p.name
        for p in Path("/sys/class/net").iterdir()
        if p.name == BRIDGE or p.name.startswith(LINK_PREFIXES)
    )


def iptables_rules() -> list[str]:
    out = run("iptables", "-S", check=False).stdout
    return [line for line in out.splitlines() if IPTABLES_COMMENT in line]

"""The testbed's WAN: real delay and bandwidth between clusters, applied on the host.

Every packet between two clusters crosses the host bridge ``kh0`` from one cluster's veth to
another's, and with br_netfilter it passes the host's FORWARD hook. There, in the mangle table,
the chain ``KUBEHOP-WAN`` matches each directed cluster pair by its bridge ports
(``-m physdev --physdev-in khv-A --physdev-out khv-B``) and

- sends the packet to the pair's NFQUEUE, where the delayer (:mod:`kubehop.testbed.wandelay`, a
  testbed process) holds it for the link's one-way delay, then accepts it;
- sets its ``skb->priority`` to an htb class (``CLASSIFY``) on the destination veth, whose rate is
  the link's; htb's own classification by priority needs no tc filter (this kernel has no
  ``u32 mark`` and no ``cls_fw``).

So everything between two clusters is delayed and limited (API servers, load balancers, pods, any
protocol), traffic inside a cluster never reaches the bridge, and traffic between a cluster and
the host (registry, Cloud DNS, Prometheus) is INPUT/OUTPUT on the host, not FORWARD: untouched.
Why userspace, and what it costs: docs/wan.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubehop.errors import TestbedError
from kubehop.testbed import hostnet, layout, procs
from kubehop.testbed import wanprofile as wp
from kubehop.testbed.layout import ClusterLayout
from kubehop.waiting import NotYet, wait_for

CHAIN = "KUBEHOP-WAN" if layout.SLOT == 0 else f"KUBEHOP{layout.SLOT}-WAN"
TAG = f"{layout.IPTABLES_COMMENT}-wan"
HOST = "host"
PROBE_PORT_CLUSTER = layout.API_PORT
PROBE_PORT_HOST = layout.REGISTRY_PORT


def wan_dir() -> Path:
    return layout.state_dir() / "wan"


def profile_file() -> Path:
    return wan_dir() / "profile.json"


def delayer_config() -> Path:
    return wan_dir() / "delayer.json"


def delayer_status_file() -> Path:
    return wan_dir() / "delayer-status.json"


def delayer_pidfile() -> Path:
    return wan_dir() / "run" / "wandelay.pid"


def delayer_log() -> Path:
    return wan_dir() / "logs" / "wandelay.log"


# --- state --------------------------------------------------------------------------------------


def current_profile() -> wp.Profile | None:
    """The profile the running testbed applies (with ``wan set`` edits); None when none is."""
    try:
        return wp.profile_from_dict(json.loads(profile_file().read_text()), "applied")
    except (OSError, ValueError):
        return None


def delayer_pid() -> int | None:
    return procs.read_pid(delayer_pidfile())


def delayer_status() -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(delayer_status_file().read_text())
    except (OSError, ValueError):
        return {}
    return data


def fresh_delayer_status() -> dict[str, Any]:
    """The delayer's counters as of now (it writes them when asked with SIGUSR1)."""
    pid = delayer_pid()
    if pid is None:
        return delayer_status()
    before = delayer_status().get("writes", 0)
    os.kill(pid, signal.SIGUSR1)

    def written() -> dict[str, Any] | None:
        status = delayer_status()
        return status if status.get("writes", 0) != before else None

    return wait_for(written, timeout=5, what="the WAN delayer's counters", error=TestbedError)


def services() -> dict[str, bool]:
    """For ``status``: the delayer, when the applied profile delays anything."""
    if not delayer_config().exists():
        return {}
    return {"wan-delayer": delayer_pid() is not None}


def resolve(arg: str, names: tuple[str, ...]) -> wp.Profile:
    """A profile by name or file, checked against the testbed's clusters (nothing changes yet)."""
    profile = wp.load_profile(arg)
    wp.check_endpoints(profile, names)
    return profile


def summary(table: dict[tuple[str, str], wp.Link]) -> str:
    """One line for ``up``: each pair's one-way delay and rate."""
    parts = [f"{a}<->{b} {wp.format_delay(link.delay_ms)}"
             + (f"+-{wp.format_delay(link.jitter_ms)}" if link.jitter_ms else "")
             + f" {wp.format_rate(link.rate_bit)}" for (a, b), link in table.items()]
    return ", ".join(parts) or "one cluster, no links"


# --- apply --------------------------------------------------------------------------------------


def apply(profile: wp.Profile, names: tuple[str, ...]) -> dict[tuple[str, str], wp.Link]:
    """Make the WAN between ``names`` what ``profile`` says; returns the pair table.

    Validation first, so bad input changes nothing. Then: the delayer (started if any pair is
    delayed, otherwise left as it is) gets every directed pair's delay, the htb classes get the
    rates, and last the iptables chain is swapped atomically to send packets to both.
    """
    wp.check_endpoints(profile, names)
    table = wp.link_table(profile, names)
    clusters = layout.layouts(names)
    wan_dir().mkdir(parents=True, exist_ok=True)
    by_name = {c.name: c for c in clusters}
    directed = [(by_name[a], by_name[b], link) for (a, b), link in table.items()]
    directed += [(dst, src, link) for src, dst, link in list(directed)]

    if any(link.delay_ms > 0 for _, _, link in directed) or delayer_config().exists():
        _configure_delayer(directed)
    for c in clusters:
        _shape(c, {src.index: link.rate_bit for src, dst, link in directed
                   if dst is c and link.rate_bit is not None})
    _install_rules(directed)
    profile_file().write_text(json.dumps(profile.to_dict(), indent=2))
    return table


def _configure_delayer(directed: list[tuple[ClusterLayout, ClusterLayout, wp.Link]]) -> None:
    """Every directed pair gets a bound queue (delay 0 passes at once), so rules can change
    while packets are held without any packet meeting an unbound queue."""
    generation = int(delayer_status().get("generation", 0)) + 1
    with contextlib.suppress(OSError, ValueError, KeyError):
        previous = int(json.loads(delayer_config().read_text())["generation"])
        generation = max(generation, previous + 1)
    config = {"generation": generation, "queues": {
        str(wp.queue_number(src.index, dst.index)): {"delay_ms": link.delay_ms,
                                                     "jitter_ms": link.jitter_ms}
        for src, dst, link in directed}}
    tmp = delayer_config().with_suffix(".tmp")
    tmp.write_text(json.dumps(config, indent=2))
    tmp.replace(delayer_config())
    pid = delayer_pid()
    if pid is None:
        delayer_status_file().unlink(missing_ok=True)
        procs.spawn("wandelay",
                    [sys.executable, "-m", "kubehop.testbed.wandelay", str(delayer_config()),
                     str(delayer_status_file())],
                    run_dir=delayer_pidfile().parent, log_dir=delayer_log().parent)
    else:
        os.kill(pid, signal.SIGHUP)

    def applied() -> bool:
        if delayer_pid() is None:
            raise TestbedError(f"the WAN delayer exited; see its log: {delayer_log()}")
        got = delayer_status().get("generation")
        if got != generation:
            raise NotYet(f"delayer at config {got}, want {generation}")
        return True

    wait_for(applied, timeout=15, what="the WAN delayer to bind its queues",
             error=TestbedError)


def _shape(dst: ClusterLayout, rates: dict[int, int]) -> None:
    """htb on the host side of ``dst``'s veth: one class per limited source cluster; anything
    unclassified (the host's own traffic) goes through htb's direct queue, unlimited."""
    dev = dst.veth_host
    qdiscs = hostnet.run("tc", "qdisc", "show", "dev", dev).stdout
    has_htb = "qdisc htb 1: root" in qdiscs
    if not rates:
        if has_htb:
            hostnet.run("tc", "qdisc", "del", "dev", dev, "root")
        return
    if not has_htb:
        hostnet.run("tc", "qdisc", "replace", "dev", dev, "root", "handle", "1:", "htb",
                    "default", "0")
    wanted = {f"1:{wp.class_minor(src):x}": rate for src, rate in rates.items()}
    for classid, rate in wanted.items():
        burst = str(wp.burst_bytes(rate))
        hostnet.run("tc", "class", "replace", "dev", dev, "parent", "1:", "classid", classid,
                    "htb", "rate", f"{rate}bit", "ceil", f"{rate}bit", "burst", burst,
                    "cburst", burst, "quantum", "65536")
    for line in hostnet.run("tc", "class", "show", "dev", dev).stdout.splitlines():
        fields = line.split()
        if len(fields) > 2 and fields[:2] == ["class", "htb"] and fields[2] not in wanted:
            hostnet.run("tc", "class", "del", "dev", dev, "classid", fields[2])


def chain_rules(directed: list[tuple[ClusterLayout, ClusterLayout, wp.Link]]) -> list[str]:
    """The chain's rules for each directed pair: classify (rate), then queue (delay)."""
    rules = []
    for src, dst, link in sorted(directed, key=lambda t: (t[0].index, t[1].index)):
        match = (f"-m physdev --physdev-in {src.veth_host} --physdev-out {dst.veth_host} "
                 f"-m comment --comment {TAG}")
        if link.rate_bit is not None:
            rules.append(f"-A {CHAIN} {match} -j CLASSIFY --set-class "
                         f"1:{wp.class_minor(src.index):x}")
        if link.delay_ms > 0:
            rules.append(f"-A {CHAIN} {match} -j NFQUEUE --queue-num "
                         f"{wp.queue_number(src.index, dst.index)}")
    return rules


_JUMP = ["FORWARD", "-i", layout.BRIDGE, "-o", layout.BRIDGE, "-m", "comment", "--comment", TAG,
         "-j", CHAIN]


def _install_rules(directed: list[tuple[ClusterLayout, ClusterLayout, wp.Link]]) -> None:
    """Replace the chain's content in one iptables-restore transaction (no moment without it)."""
    text = "\n".join(["*mangle", f":{CHAIN} - [0:0]", f"-F {CHAIN}", *chain_rules(directed),
                      "COMMIT", ""])
    result = subprocess.run(["iptables-restore", "--noflush"], input=text, capture_output=True,
                            text=True, check=False)
    if result.returncode != 0:
        raise TestbedError(f"iptables-restore of the WAN rules failed: "
                           f"{result.stderr.strip().splitlines()[-1:]}")
    if hostnet.run("iptables", "-t", "mangle", "-C", *_JUMP, check=False).returncode != 0:
        hostnet.run("iptables", "-t", "mangle", "-I", *_JUMP)


# --- remove -------------------------------------------------------------------------------------


def clear(names: tuple[str, ...] = ()) -> None:
    """Remove the WAN: rules, qdiscs on the clusters' veths (if still there), the delayer."""
    while hostnet.run("iptables", "-t", "mangle", "-C", *_JUMP, check=False).returncode == 0:
        hostnet.run("iptables", "-t", "mangle", "-D", *_JUMP, check=False)
    if hostnet.run("iptables", "-t", "mangle", "-S", CHAIN, check=False).returncode == 0:
        hostnet.run("iptables", "-t", "mangle", "-F", CHAIN, check=False)
        hostnet.run("iptables", "-t", "mangle", "-X", CHAIN, check=False)
    for c in layout.layouts(names):
        if Path("/sys/class/net", c.veth_host).exists():
            hostnet.run("tc", "qdisc", "del", "dev", c.veth_host, "root", check=False)
    procs.stop(delayer_pidfile())
    for path in (delayer_config(), delayer_status_file(), profile_file()):
        path.unlink(missing_ok=True)


def leftovers() -> list[str]:
    """WAN parts still on the machine (the chain, its jump, the delayer, queues in use)."""
    found = []
    mangle = hostnet.run("iptables", "-t", "mangle", "-S", check=False).stdout
    found += [f"iptables rule {line}" for line in mangle.splitlines()
              if CHAIN in line or TAG in line]
    if delayer_pid() is not None:
        found.append(f"process wandelay {delayer_pid()}")
    with_queues = Path("/proc/net/netfilter/nfnetlink_queue")
    if with_queues.exists():
        for line in with_queues.read_text().splitlines():
            fields = line.split()
            if fields and wp.QUEUE_BASE <= int(fields[0]) < wp.QUEUE_BASE + layout.MAX_CLUSTERS**2:
                found.append(f"nfqueue {fields[0]} still bound")
    return found


# --- measure ------------------------------------------------------------------------------------


@dataclass
class Measured:
    """RTT samples (ms) from one cluster's namespace to a target (a cluster or the host)."""

    source: str
    target: str
    samples: list[float]
    failed: int

    @property
    def p50(self) -> float | None:
        return statistics.median(self.samples) if self.samples else None


def measure(names: tuple[str, ...], count: int = 5) -> list[Measured]:
    """TCP-connect RTT from inside each cluster's namespace to every other cluster's API server
    and to the host side (the registry), ``count`` times each."""
    clusters = layout.layouts(names)
    found = []
    for c in clusters:
        targets = {f"{o.node_ip}:{PROBE_PORT_CLUSTER}": o.name for o in clusters if o is not c}
        targets[f"{layout.HOST_ADDRESS}:{PROBE_PORT_HOST}"] = HOST
        out = hostnet.run(sys.executable, "-m", "kubehop.testbed.wanprobe", str(count),
                          *targets, netns=c.netns).stdout
        for target, samples in json.loads(out).items():
            ok = [float(s) for s in samples if s is not None]
            found.append(Measured(c.name, targets[target], ok, len(samples) - len(ok)))
    return found


def report(names: tuple[str, ...], count: int = 5) -> dict[str, Any]:
    """The configured and measured RTT matrix, as ``wan show -o json`` prints it."""
    profile = current_profile() or wp.FLAT
    table = wp.link_table(profile, names)
    measured = {(m.source, m.target): m for m in measure(names, count)} if names else {}
    links = []
    for (a, b), link in table.items():
        links.append({
            "a": a, "b": b, "tiers": [layout.tier_of(a), layout.tier_of(b)], **link.to_dict(),
            "delay_ms": link.delay_ms, "jitter_ms": link.jitter_ms, "rate_bit": link.rate_bit,
            "configured_rtt_ms": link.rtt_ms,
            "measured_rtt_ms": {f"{a}->{b}": _p50(measured.get((a, b))),
                                f"{b}->{a}": _p50(measured.get((b, a)))},
            "failed_probes": sum(m.failed for k in ((a, b), (b, a)) if (m := measured.get(k))),
        })
    host = {n: {"configured_rtt_ms": 0.0, "measured_rtt_ms": _p50(measured.get((n, HOST)))}
            for n in names}
    # Rows: where the probe ran; columns: what it reached.
    configured = {a: {b: 0.0 if b in (a, HOST) else profile.link_between(a, b).rtt_ms
                      for b in (*names, HOST)} for a in names}
    measured_matrix = {a: {b: _p50(measured.get((a, b))) for b in (*names, HOST) if b != a}
                       for a in names}
    matrix = {"configured_rtt_ms": configured, "measured_rtt_ms": measured_matrix}
    return {"profile": profile.to_dict(), "probe": f"TCP connect, median of {count}",
            "matrix": matrix, "links": links, "host": host,
            "delayer": {"running": delayer_pid() is not None, **fresh_delayer_status()}}


def _p50(m: Measured | None) -> float | None:
    return round(m.p50, 3) if m is not None and m.p50 is not None else None

"""The testbed WAN on the real testbed: delays and rates between clusters are what the profile
says, measured from inside the clusters' network namespaces with tools independent of kubehop
(scripts/wan_tools.py); inside a cluster and towards the host nothing is added; bad input
changes nothing.

The session testbed has clusters edge and cloud: one link (edge <-> cloud, 20 ms one way, RTT
40 ms by default) plus each cluster's link to the host side.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from kubehop.testbed import layout
from tests.conftest import assert_one_line_error, kubehop
from tests.testbed.conftest import BY_NAME, CLUSTERS

pytestmark = pytest.mark.usefixtures("testbed", "default_wan")

TOOLS = Path(__file__).resolve().parents[2] / "scripts" / "wan_tools.py"
EDGE, CLOUD = BY_NAME["edge"], BY_NAME["cloud"]
IP = {name: str(c.node_ip) for name, c in BY_NAME.items()}


def tolerance(configured_ms: float) -> float:
    """The issue's bar: within 20% of the configured RTT or 1 ms, whichever is larger. Where
    nothing is added, 2.5 ms: with another worker's testbed on the same two cores a probe
    waits for a CPU now and then (1.013 ms seen), and the smallest delay the WAN adds is a
    10 ms RTT, so "nothing added" stays far from "delayed"."""
    if configured_ms == 0:
        return 2.5
    return max(0.2 * configured_ms, 1.0)


def tool(cluster: str, *args: str | int) -> dict[str, Any]:
    argv = ["ip", "netns", "exec", f"{layout.NETNS_PREFIX}{cluster}", sys.executable, str(TOOLS),
            *map(str, args)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=True)
    data: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return data


@contextmanager
def server(cluster: str, *args: str | int) -> Iterator[subprocess.Popen[str]]:
    """A wan_tools server in ``cluster``, yielded once it listens."""
    argv = ["ip", "netns", "exec", f"{layout.NETNS_PREFIX}{cluster}", sys.executable, str(TOOLS),
            *map(str, args)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert json.loads(proc.stdout.readline()) == {"ready": True}
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def rtt(src: str, host: str, port: int = layout.API_PORT, count: int = 15) -> float:
    """Median TCP-connect RTT (ms) from ``src``'s namespace."""
    return float(statistics.median(tool(src, "tcp-rtt", host, port, count)["rtt_ms"]))


def assert_rtt(measured: float, configured: float) -> None:
    assert abs(measured - configured) <= tolerance(configured), (measured, configured)


def wan(*args: str) -> None:
    result = kubehop("testbed", "wan", *args)
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def default_wan() -> Iterator[None]:
    """Start from the issue's default profile and leave it so (another test may have set one)."""
    wan("apply", "default")
    yield
    wan("apply", "default")


def test_default_rtt_between_clusters_is_the_profile() -> None:
    assert_rtt(rtt("edge", IP["cloud"]), 40.0)
    assert_rtt(rtt("cloud", IP["edge"]), 40.0)

    shown = kubehop("testbed", "wan", "show", "-o", "json", "--count", "9")
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    (link,) = [x for x in data["links"] if {x["a"], x["b"]} == {"edge", "cloud"}]
    assert link["configured_rtt_ms"] == 40.0
    assert link["rate"] == "1gbit"
    for measured in link["measured_rtt_ms"].values():
        assert_rtt(measured, 40.0)
    assert data["delayer"]["running"]


def test_inside_a_cluster_and_towards_the_host_nothing_is_added() -> None:
    for name in CLUSTERS:
        assert_rtt(rtt(name, IP[name]), 0.0)  # its own API server
        assert_rtt(rtt(name, str(layout.HOST_ADDRESS), layout.REGISTRY_PORT), 0.0)
    data = json.loads(kubehop("testbed", "wan", "show", "-o", "json").stdout)
    for host in data["host"].values():
        assert_rtt(host["measured_rtt_ms"], 0.0)


def test_load_balancer_and_udp_cross_the_same_wan() -> None:
    assert_rtt(rtt("edge", IP["cloud"], 80), 40.0)  # Traefik, the cloud's load balancer
    with server("cloud", "udp-echo", 7078, 60) as _:
        samples = tool("edge", "udp-rtt", IP["cloud"], 7078, 15)["rtt_ms"]
    assert None not in samples
    assert_rtt(statistics.median(samples), 40.0)


def test_changing_a_link_changes_the_measured_rtt() -> None:
    wan("set", "edge", "cloud", "--delay", "30ms")
    assert_rtt(rtt("edge", IP["cloud"]), 60.0)
    assert_rtt(rtt("cloud", IP["edge"]), 60.0)
    wan("set", "cloud", "edge", "--delay", "2ms")  # cluster names or tiers, either order
    assert_rtt(rtt("edge", IP["cloud"]), 4.0)
    wan("apply", "flat")
    assert_rtt(rtt("edge", IP["cloud"]), 0.0)
    wan("apply", "default")
    assert_rtt(rtt("edge", IP["cloud"]), 40.0)


def test_jitter_spreads_the_rtt_around_the_delay() -> None:
    wan("set", "edge", "cloud", "--delay", "20ms", "--jitter", "5ms")
    samples = tool("edge", "tcp-rtt", IP["cloud"], layout.API_PORT, 30)["rtt_ms"]
    wan("set", "edge", "cloud", "--jitter", "0ms")
    assert_rtt(statistics.median(samples), 40.0)
    assert max(samples) - min(samples) > 2.0, samples
    assert min(samples) >= 30.0 - tolerance(30.0), samples


@pytest.mark.parametrize(("src", "dst"), [("edge", "cloud"), ("cloud", "edge")])
def test_rate_caps_a_bulk_transfer(src: str, dst: str) -> None:
    wan("set", "edge", "cloud", "--rate", "50mbit")
    try:
        with server(dst, "recv", 7077) as receiver:
            tool(src, "send", IP[dst], 7077, 24)
            assert receiver.stdout is not None
            result = json.loads(receiver.stdout.readline())
    finally:
        wan("set", "edge", "cloud", "--rate", "1gbit")
    assert result["bytes"] == 24 << 20
    # Goodput: TCP/IP headers take ~3% of the 50 Mbit/s on the wire.
    assert abs(result["mbit_per_s"] - 50) <= 0.2 * 50, result


def _snapshot() -> tuple[str, ...]:
    def out(*argv: str) -> str:
        return subprocess.run(argv, capture_output=True, text=True, check=False).stdout

    return (out("iptables", "-t", "mangle", "-S"),
            *(out("tc", "class", "show", "dev", c.veth_host) for c in (EDGE, CLOUD)),
            (layout.state_dir() / "wan" / "profile.json").read_text(),
            (layout.state_dir() / "wan" / "delayer.json").read_text())


@pytest.mark.parametrize(("args", "fragment"), [
    (("wan", "set", "edge", "mars", "--delay", "5ms"), "'mars' is neither a tier"),
    (("wan", "set", "moon", "cloud", "--rate", "1gbit"), "'moon' is neither a tier"),
    (("wan", "set", "edge", "cloud", "--delay=-5ms"), "negative"),
    (("wan", "set", "edge", "cloud", "--delay", "5"), "not a duration"),
    (("wan", "set", "edge", "cloud", "--rate", "fast"), "not a rate"),
    (("wan", "set", "edge", "cloud", "--rate", "100mbps"), "not a rate"),
    (("wan", "set", "edge", "cloud", "--delay", "1ms", "--jitter", "5ms"), "jitter"),
    (("wan", "set", "edge", "cloud"), "at least one"),
    (("wan", "apply", "/nonexistent/profile.yaml"), "neither default nor flat"),
    (("up", "--clusters", "edge,cloud", "--wan", "/nonexistent/wan.yaml"), "WAN profile"),
])
def test_bad_input_is_one_line_and_changes_nothing(args: tuple[str, ...], fragment: str) -> None:
    before = _snapshot()
    result = kubehop("testbed", *args)
    assert_one_line_error(result, fragment)
    assert _snapshot() == before


def test_profile_naming_an_unknown_cluster_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("links:\n  - between: [edge, saturn]\n    delay: 5ms\n")
    before = _snapshot()
    assert_one_line_error(kubehop("testbed", "wan", "apply", str(bad)), "'saturn'")
    assert _snapshot() == before


def test_status_supervises_the_delayer() -> None:
    data = json.loads(kubehop("testbed", "status", "-o", "json").stdout)
    assert data["services"]["wan-delayer"] is True
    assert data["healthy"] is True

"""Measure what the testbed WAN costs and how exact it is; writes results/wan/*.json.

Needs a running testbed with clusters edge and cloud, root, and the testbed lock:

    flock /run/kubehop-testbed.lock env PYTHONPATH=$PWD/src .venv/bin/python scripts/wan_measure.py

- accuracy.json: TCP-connect (and UDP) RTT edge -> cloud for several one-way delays, no rate
  limit; error = measured RTT - configured RTT (2 x delay), p50/p99; the delayer's own release
  lateness (how late after its due time it accepted a packet).
- cpu.json: the delayer's CPU (utime+stime of its process) at idle for 60 s and under load
  (bulk TCP, small-datagram UDP flood), and the whole machine's busy CPU over the same spans.
- throughput.json: bulk TCP edge -> cloud under several profiles (flat, delay only, default,
  rate caps), and the small-packet ceiling (UDP 64-byte datagrams) flat vs delayed.

The WAN is set back to the default profile at the end.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from kubehop.testbed import layout, wan
from kubehop.testbed import testbed as tb
from kubehop.testbed import wanprofile as wp

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / "scripts" / "wan_tools.py"
OUT = Path(os.environ.get("WAN_MEASURE_OUT", ROOT / "results" / "wan"))
NAMES = tb.recorded_clusters()
EDGE, CLOUD = layout.layouts(NAMES)[:2]


def tool(cluster: str, *args: object) -> dict[str, Any]:
    argv = ["ip", "netns", "exec", f"kh-{cluster}", sys.executable, str(TOOLS), *map(str, args)]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=600).stdout
    data: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return data


def server(cluster: str, *args: object) -> subprocess.Popen[str]:
    argv = ["ip", "netns", "exec", f"kh-{cluster}", sys.executable, str(TOOLS), *map(str, args)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    if proc.stdout is None or json.loads(proc.stdout.readline()) != {"ready": True}:
        raise SystemExit(f"server {args} did not start")
    return proc


def server_result(proc: subprocess.Popen[str]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(proc.stdout.readline()) if proc.stdout else {}
    proc.wait(timeout=60)
    return data


def set_link(delay_ms: float, rate: int | None, jitter_ms: float = 0.0) -> None:
    profile = wp.FLAT.with_link("edge", "cloud", delay_ms=delay_ms, jitter_ms=jitter_ms,
                                rate_bit=rate)
    wan.apply(profile, NAMES)


def delayer_cpu() -> float:
    pid = wan.delayer_pid()
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy() -> tuple[float, float]:
    """(busy jiffies, total jiffies) of all CPUs from /proc/stat."""
    values = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def costed(run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run ``run`` and add the delayer's CPU share and the machine's busy share over it."""
    cpu0, (busy0, total0), t0 = delayer_cpu(), machine_busy(), time.monotonic()
    result = run()
    elapsed = time.monotonic() - t0
    cpu1, (busy1, total1) = delayer_cpu(), machine_busy()
    result["wall_s"] = round(elapsed, 3)
    result["delayer_cpu_percent_of_one_core"] = round(100 * (cpu1 - cpu0) / elapsed, 1)
    busy = 100 * (busy1 - busy0) / max(1, total1 - total0)
    result["machine_busy_percent_all_cores"] = round(busy, 1)
    return result


def nfqueue_counters() -> list[dict[str, int]]:
    path = Path("/proc/net/netfilter/nfnetlink_queue")
    rows = []
    for line in path.read_text().splitlines() if path.exists() else []:
        f = [int(x) for x in line.split()]
        rows.append({"queue": f[0], "waiting": f[2], "queue_dropped": f[5],
                     "user_dropped": f[6], "last_id": f[7]})
    return rows


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 3)


def stats(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "p50": pct(values, 0.5), "p99": pct(values, 0.99),
            "min": round(min(values), 3), "max": round(max(values), 3),
            "mean": round(statistics.fmean(values), 3)}


def accuracy() -> dict[str, Any]:
    rows = []
    for delay in (0.0, 1.0, 5.0, 10.0, 20.0, 50.0):
        set_link(delay, None)
        tool("edge", "tcp-rtt", CLOUD.node_ip, 6443, 20)  # warm up
        samples = tool("edge", "tcp-rtt", CLOUD.node_ip, 6443, 300)["rtt_ms"]
        errors = [s - 2 * delay for s in samples]
        rows.append({"one_way_delay_ms": delay, "configured_rtt_ms": 2 * delay,
                     "probe": "TCP connect edge -> cloud:6443", "rtt_ms": stats(samples),
                     "error_ms": stats(errors),
                     "abs_error_ms": stats([abs(e) for e in errors]),
                     "within_issue_tolerance": sum(
                         abs(e) <= max(0.2 * 2 * delay, 1.0) for e in errors) / len(errors)})
    set_link(20.0, None)
    echo = server("cloud", "udp-echo", 7078, 120)
    udp = [s for s in tool("edge", "udp-rtt", CLOUD.node_ip, 7078, 300)["rtt_ms"] if s]
    echo.kill()
    echo.wait()
    rows.append({"one_way_delay_ms": 20.0, "configured_rtt_ms": 40.0,
                 "probe": "UDP echo edge -> cloud", "rtt_ms": stats(udp),
                 "error_ms": stats([s - 40.0 for s in udp])})
    pid = wan.delayer_pid()
    if pid is not None:
        os.kill(pid, signal.SIGUSR1)
        time.sleep(0.5)  # the delayer writes its status file on SIGUSR1
    status = wan.delayer_status()
    return {"rows": rows, "delayer_release_lateness_us": status.get("release_late_us"),
            "delayer_arrival_to_read_us": status.get("arrival_to_read_us")}


def bulk(mbytes: int, src: str = "edge", dst: str = "cloud") -> dict[str, Any]:
    receiver = server(dst, "recv", 7077)
    sent = tool(src, "send", (CLOUD if dst == "cloud" else EDGE).node_ip, 7077, mbytes)
    got = server_result(receiver)
    return {"mbytes": mbytes, "receiver": got, "sender": sent,
            "goodput_mbit_per_s": round(got["mbit_per_s"], 1)}


def udp_flood(size: int, seconds: float) -> dict[str, Any]:
    sink = server("cloud", "udp-sink", 7079, seconds + 3)
    sent = tool("edge", "udp-blast", CLOUD.node_ip, 7079, size, seconds)
    got = server_result(sink)
    return {"datagram_bytes": size, "sent": sent, "received": got,
            "delivered_ratio": round(got["packets"] / max(1, sent["sent"]), 4),
            "delivered_pps": round(got["pps"] or 0)}


def throughput() -> dict[str, Any]:
    cases: list[tuple[str, float, int | None, int]] = [
        ("flat (no rules, no delayer in the path)", 0.0, None, 400),
        ("delay 1ms, unlimited", 1.0, None, 400),
        ("delay 20ms, unlimited", 20.0, None, 400),
        ("default: delay 20ms, 1gbit", 20.0, 10**9, 400),
        ("delay 20ms, 500mbit", 20.0, 500 * 10**6, 200),
        ("delay 20ms, 200mbit", 20.0, 200 * 10**6, 100),
        ("delay 20ms, 50mbit", 20.0, 50 * 10**6, 24),
        ("delay 0, 50mbit", 0.0, 50 * 10**6, 24),
    ]
    rows = []
    for name, delay, rate, mbytes in cases:
        set_link(delay, rate)
        row = costed(partial(bulk, mbytes))
        row.update({"case": name, "one_way_delay_ms": delay, "rate": wp.format_rate(rate)})
        if rate:
            row["goodput_over_rate"] = round(row["goodput_mbit_per_s"] * 1e6 / rate, 3)
        rows.append(row)
    # A single TCP flow at 40 ms RTT is capped by Linux's default 6 MiB socket buffers (about
    # 600 Mbit/s): raise them in both namespaces for one run to see the delayer's own ceiling.
    keys = ("net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem")
    saved = {(c, k): sysctl(c, k) for c in ("edge", "cloud") for k in keys}
    try:
        for c, k in saved:
            sysctl(c, k, "4096 131072 67108864")
        for name, delay, rate, mbytes in (
                ("delay 20ms, unlimited, 64 MiB TCP buffers", 20.0, None, 800),
                ("default: delay 20ms, 1gbit, 64 MiB TCP buffers", 20.0, 10**9, 800)):
            set_link(delay, rate)
            row = costed(partial(bulk, mbytes))
            row.update({"case": name, "one_way_delay_ms": delay, "rate": wp.format_rate(rate)})
            if rate:
                row["goodput_over_rate"] = round(row["goodput_mbit_per_s"] * 1e6 / rate, 3)
            rows.append(row)
    finally:
        for (c, k), value in saved.items():
            sysctl(c, k, value)
    udp = []
    for name, delay in (("flat", 0.0), ("delay 20ms, unlimited", 20.0)):
        set_link(delay, None)
        row = costed(partial(udp_flood, 64, 5.0))
        row.update({"case": f"UDP 64-byte flood, {name}", "nfqueue": nfqueue_counters()})
        udp.append(row)
    return {"tcp_bulk_edge_to_cloud": rows, "udp_small_packets": udp}


def sysctl(cluster: str, key: str, value: str | None = None) -> str:
    argv = ["ip", "netns", "exec", f"kh-{cluster}", "sysctl", "-n", key]
    if value is not None:
        argv = ["ip", "netns", "exec", f"kh-{cluster}", "sysctl", "-qw", f"{key}={value}"]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()


def idle_cpu(seconds: float = 60.0) -> dict[str, Any]:
    wan.apply(wp.DEFAULT, NAMES)
    c0, (b0, t0), w0 = delayer_cpu(), machine_busy(), time.monotonic()
    time.sleep(seconds)  # measuring idle: nothing to wait for but the clock
    c1, (b1, t1), w1 = delayer_cpu(), machine_busy(), time.monotonic()
    return {"profile": "default", "seconds": round(w1 - w0, 1),
            "delayer_cpu_percent_of_one_core": round(100 * (c1 - c0) / (w1 - w0), 3),
            "machine_busy_percent_all_cores (whole testbed idle)":
                round(100 * (b1 - b0) / max(1, t1 - t0), 1)}


def write(name: str, data: dict[str, Any]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    data = {"measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.node()}, {os.cpu_count()} cores, Linux {platform.release()}",
            "command": "scripts/wan_measure.py " + " ".join(sys.argv[1:]), **data}
    (OUT / f"{name}.json").write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {OUT / name}.json", flush=True)


def summary() -> str:
    """Markdown tables of the JSON files (for docs/wan.md): every figure comes from a file."""
    acc = json.loads((OUT / "accuracy.json").read_text())
    thr = json.loads((OUT / "throughput.json").read_text())
    idle = json.loads((OUT / "cpu_idle.json").read_text())
    lines = [f"Accuracy ({acc['measured_at']}; 300 probes each; error = measured RTT - 2 x "
             "one-way delay, ms):", "",
             "| probe | one way | RTT p50 | error p50 | error p99 | abs error p99 "
             "| within 20%/1ms |",
             "|---|---|---|---|---|---|---|"]
    for r in acc["rows"]:
        within = r.get("within_issue_tolerance")
        lines.append(f"| {r['probe']} | {r['one_way_delay_ms']:g} ms | {r['rtt_ms']['p50']} | "
                     f"{r['error_ms']['p50']} | {r['error_ms']['p99']} | "
                     f"{r.get('abs_error_ms', {}).get('p99', '-')} | "
                     f"{'-' if within is None else f'{100 * within:.1f}%'} |")
    late = acc.get("delayer_release_lateness_us") or {}
    lines += ["", f"Delayer's own release lateness (due time -> verdict sent), all packets of the "
              f"accuracy run: p50 {late.get('p50', 0):.0f} us, p99 {late.get('p99', 0):.0f} us, "
              f"max {late.get('max', 0):.0f} us ({late.get('samples')} packets)."]
    lag = acc.get("delayer_arrival_to_read_us") or {}
    if lag:
        lines += [f"Packet arrival on the bridge (kernel stamp) -> notice read by the delayer: "
                  f"p50 {lag.get('p50', 0):.0f} us, p99 {lag.get('p99', 0):.0f} us, max "
                  f"{lag.get('max', 0):.0f} us (the delay counts from the arrival)."]
    lines += [""]
    lines += [f"Bulk TCP edge -> cloud, one flow ({thr['measured_at']}):", "",
              "| case | goodput Mbit/s | of the rate | delayer CPU (% of a core) | "
              "machine busy (% of 2 cores) |", "|---|---|---|---|---|"]
    for r in thr["tcp_bulk_edge_to_cloud"]:
        lines.append(f"| {r['case']} | {r['goodput_mbit_per_s']} | "
                     f"{r.get('goodput_over_rate', '-')} | {r['delayer_cpu_percent_of_one_core']} "
                     f"| {r['machine_busy_percent_all_cores']} |")
    lines += ["", "UDP, 64-byte datagrams from one Python sender for 5 s:", "",
              "| case | sent pps | delivered pps | delivered | delayer CPU (% of a core) | "
              "nfqueue drops |", "|---|---|---|---|---|---|"]
    for r in thr["udp_small_packets"]:
        drops = sum(q["queue_dropped"] + q["user_dropped"] for q in r["nfqueue"])
        lines.append(f"| {r['case']} | {r['sent']['pps']:.0f} | {r['delivered_pps']} | "
                     f"{100 * r['delivered_ratio']:.1f}% | "
                     f"{r['delayer_cpu_percent_of_one_core']} | {drops} |")
    lines += ["", f"Idle ({idle['measured_at']}, default profile, {idle['seconds']} s): delayer "
              f"{idle['delayer_cpu_percent_of_one_core']}% of a core; the whole idle testbed "
              f"{idle['machine_busy_percent_all_cores (whole testbed idle)']}% of 2 cores.", ""]
    return "\n".join(lines)


def main() -> None:
    if sys.argv[1:] == ["summary"]:
        (OUT / "summary.md").write_text(summary())
        print(f"wrote {OUT / 'summary.md'}")
        return
    if not {"edge", "cloud"} <= set(NAMES):
        raise SystemExit("needs 'kubehop testbed up' with clusters edge and cloud")
    only = set(sys.argv[1:]) or {"idle", "accuracy", "throughput"}
    try:
        if "idle" in only:
            write("cpu_idle", idle_cpu())
        if "accuracy" in only:
            write("accuracy", accuracy())
        if "throughput" in only:
            write("throughput", throughput())
    finally:
        wan.apply(wp.DEFAULT, NAMES)
        report = wan.report(NAMES, count=9)
        write("show_default", report)


if __name__ == "__main__":
    main()

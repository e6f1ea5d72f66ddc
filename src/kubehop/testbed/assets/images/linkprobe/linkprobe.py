"""kubehop's link prober: runs in every cluster and measures the round trip to every other
cluster's load balancer, from inside the cluster (a pod), as the cluster's clients see it.

Environment: ``SOURCE`` (this cluster), ``TARGETS`` (``name=host:port,...``), ``INTERVAL``
(seconds between rounds, default 2), ``SAMPLES`` (connects per target per round, default 3),
``PORT`` (metrics, default 9100). One sample is one TCP connect: the SYN out and the SYN-ACK
back, exactly one round trip (the peer's kernel answers, so no server's speed counts). A round
keeps the smallest of its samples: queueing only ever adds to the path's delay.

Metrics: ``kubehop_link_rtt_seconds{source,target}`` (the last round's minimum; absent after a
round in which every connect failed, so stale data is missing data, never an old value),
``kubehop_link_probe_failures_total{source,target}``, ``kubehop_link_last_round_timestamp_seconds``.
"""

from __future__ import annotations

import os
import socket
import threading
import time

from prometheus_client import Counter, Gauge, start_http_server

RTT = Gauge("kubehop_link_rtt_seconds", "Round-trip time to another cluster's load balancer.",
            ["source", "target"])
FAILURES = Counter("kubehop_link_probe_failures_total", "Connects that failed.",
                   ["source", "target"])
MEASURED: set[str] = set()
"""Targets with a value exported (so a failed round removes it)."""
LAST = Gauge("kubehop_link_last_round_timestamp_seconds", "When the last round ended.")


def connect_seconds(host: str, port: int, timeout: float) -> float | None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    start = time.perf_counter()
    try:
        sock.connect((host, port))
        return time.perf_counter() - start
    except OSError:
        return None
    finally:
        sock.close()


def probe(source: str, name: str, host: str, port: int, samples: int) -> None:
    got = []
    for _ in range(samples):
        s = connect_seconds(host, port, timeout=2.0)
        if s is None:
            FAILURES.labels(source, name).inc()
        else:
            got.append(s)
    if got:
        RTT.labels(source, name).set(min(got))
        MEASURED.add(name)
    elif name in MEASURED:
        RTT.remove(source, name)
        MEASURED.discard(name)


def main() -> None:
    source = os.environ["SOURCE"]
    targets = []
    for item in filter(None, os.environ.get("TARGETS", "").split(",")):
        name, addr = item.split("=", 1)
        host, port = addr.rsplit(":", 1)
        targets.append((name, host, int(port)))
    interval = float(os.environ.get("INTERVAL", "2"))
    samples = int(os.environ.get("SAMPLES", "3"))
    start_http_server(int(os.environ.get("PORT", "9100")))
    print(f"linkprobe {source}: {len(targets)} targets every {interval}s", flush=True)
    while True:
        begun = time.monotonic()
        threads = [threading.Thread(target=probe, args=(source, n, h, p, samples))
                   for n, h, p in targets]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        LAST.set(time.time())
        time.sleep(max(0.0, interval - (time.monotonic() - begun)))


if __name__ == "__main__":
    main()

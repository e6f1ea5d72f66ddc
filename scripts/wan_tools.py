"""Tiny traffic tools for checking the testbed WAN, run inside a cluster's namespace with
``ip netns exec kh-<cluster> python scripts/wan_tools.py COMMAND ...``. Standard library only;
independent of kubehop's own probe, so the tests do not grade kubehop with kubehop's ruler.
Every command prints one JSON line (servers first print ``{"ready": true}`` once listening).

  tcp-rtt HOST PORT COUNT          TCP connect times (ms)
  recv PORT                        accept one TCP stream, count bytes until it closes
  send HOST PORT MBYTES            send MBYTES MiB as fast as possible
  udp-echo PORT SECONDS            echo UDP datagrams back for SECONDS
  udp-rtt HOST PORT COUNT          UDP round trips (ms) against udp-echo
  udp-sink PORT SECONDS            count UDP datagrams for SECONDS
  udp-blast HOST PORT SIZE SECONDS send SIZE-byte datagrams as fast as possible
"""

from __future__ import annotations

import json
import socket
import sys
import time


def _print(data: object) -> None:
    sys.stdout.write(json.dumps(data) + "\n")
    sys.stdout.flush()


def tcp_rtt(host: str, port: int, count: int) -> None:
    samples = []
    for _ in range(count):
        s = socket.socket()
        start = time.perf_counter()
        s.connect((host, port))
        samples.append((time.perf_counter() - start) * 1000)
        s.close()
    _print({"rtt_ms": samples})


def recv(port: int) -> None:
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", port))  # noqa: S104 - in one cluster netns, one measurement
    srv.listen(1)
    _print({"ready": True})
    conn, _ = srv.accept()
    total, first, last = 0, None, None
    while True:
        chunk = conn.recv(1 << 20)
        if not chunk:
            break
        last = time.perf_counter()
        if first is None:
            first = last
        total += len(chunk)
    seconds = (last or 0.0) - (first or 0.0)
    _print({"bytes": total, "seconds": seconds,
            "mbit_per_s": total * 8 / seconds / 1e6 if seconds else None})


def send(host: str, port: int, mbytes: int) -> None:
    s = socket.create_connection((host, port))
    buf = b"x" * (1 << 20)
    start = time.perf_counter()
    for _ in range(mbytes):
        s.sendall(buf)
    s.close()
    _print({"sent_bytes": mbytes << 20, "seconds": time.perf_counter() - start})


def udp_echo(port: int, seconds: float) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port))  # noqa: S104 - in one cluster netns, one measurement
    s.settimeout(0.5)
    _print({"ready": True})
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            data, peer = s.recvfrom(2048)
        except TimeoutError:
            continue
        s.sendto(data, peer)
    _print({"done": True})


def udp_rtt(host: str, port: int, count: int) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2)
    samples: list[float | None] = []
    for i in range(count):
        start = time.perf_counter()
        s.sendto(str(i).encode(), (host, port))
        try:
            s.recvfrom(2048)
            samples.append((time.perf_counter() - start) * 1000)
        except TimeoutError:
            samples.append(None)
    _print({"rtt_ms": samples})


def udp_sink(port: int, seconds: float) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.bind(("0.0.0.0", port))  # noqa: S104 - in one cluster netns, one measurement
    s.settimeout(0.5)
    _print({"ready": True})
    count, nbytes, first, last = 0, 0, None, None
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            data = s.recv(65536)
        except TimeoutError:
            continue
        last = time.perf_counter()
        if first is None:
            first = last
        count += 1
        nbytes += len(data)
    span = (last or 0.0) - (first or 0.0)
    _print({"packets": count, "bytes": nbytes, "seconds": span,
            "pps": count / span if span else None})


def udp_blast(host: str, port: int, size: int, seconds: float) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    payload = b"x" * size
    sent = 0
    end = time.monotonic() + seconds
    start = time.perf_counter()
    while time.monotonic() < end:
        for _ in range(100):
            try:
                s.sendto(payload, (host, port))
                sent += 1
            except OSError:
                pass
    _print({"sent": sent, "seconds": time.perf_counter() - start,
            "pps": sent / (time.perf_counter() - start)})


def main(argv: list[str]) -> None:
    cmd, args = argv[0], argv[1:]
    if cmd == "tcp-rtt":
        tcp_rtt(args[0], int(args[1]), int(args[2]))
    elif cmd == "recv":
        recv(int(args[0]))
    elif cmd == "send":
        send(args[0], int(args[1]), int(args[2]))
    elif cmd == "udp-echo":
        udp_echo(int(args[0]), float(args[1]))
    elif cmd == "udp-rtt":
        udp_rtt(args[0], int(args[1]), int(args[2]))
    elif cmd == "udp-sink":
        udp_sink(int(args[0]), float(args[1]))
    elif cmd == "udp-blast":
        udp_blast(args[0], int(args[1]), int(args[2]), float(args[3]))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])

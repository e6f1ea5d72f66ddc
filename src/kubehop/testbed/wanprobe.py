"""Measure round-trip times from inside one cluster's network namespace.

Run as ``ip netns exec kh-<cluster> python -m kubehop.testbed.wanprobe COUNT HOST:PORT...``;
prints ``{"HOST:PORT": [ms, ...]}``. One sample is the time of a TCP connect: the SYN goes out
and the SYN-ACK comes back, exactly one round trip through the WAN (the kernel answers the SYN,
so the server's own speed does not count). The machine has no ping, and ICMP needs raw sockets.
"""

from __future__ import annotations

import json
import socket
import sys
import time


def connect_ms(host: str, port: int, timeout: float = 5.0) -> float | None:
    """One TCP connect's duration in milliseconds; None when it fails."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    start = time.perf_counter()
    try:
        sock.connect((host, port))
        return (time.perf_counter() - start) * 1000
    except OSError:
        return None
    finally:
        sock.close()


def main(argv: list[str]) -> int:
    count = int(argv[0])
    result: dict[str, list[float | None]] = {}
    for target in argv[1:]:
        host, port = target.rsplit(":", 1)
        result[target] = [connect_ms(host, int(port)) for _ in range(count)]
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

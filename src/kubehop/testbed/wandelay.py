"""The WAN delayer: holds every packet between two clusters for the link's one-way delay.

This kernel has no netem and no qdisc that honours skb->tstamp (no sch_etf, no sch_fq), so the
delay is done in userspace: the host's mangle FORWARD chain sends each bridged packet between two
cluster veths to an NFQUEUE numbered after the (source, destination) pair; this process reads the
packet's id (metadata only, never the payload), keeps it for the pair's delay and then accepts it.
The kernel keeps the packet meanwhile, so nothing is copied to userspace and back.

It speaks nfnetlink_queue directly over a netlink socket (no C library needed), with GSO
packets left whole (one 64 KiB TCP super-packet is one verdict, not 44) and batch verdicts (one
message accepts every packet of a queue up to an id). The release time of a queue never goes
backwards, so a queue stays FIFO and one batch verdict is always right (see JITTER_PERIOD).

Run as ``python -m kubehop.testbed.wandelay CONFIG.json STATUS.json``. CONFIG maps queue numbers
to ``{"delay_ms", "jitter_ms"}``; SIGHUP re-reads it (held packets keep their release time),
SIGUSR1 writes counters to STATUS, SIGTERM accepts everything held and exits. STATUS is also
written once every queue is bound and after every reload (``generation`` says which config).
"""

from __future__ import annotations

import collections
import errno
import json
import os
import random
import select
import signal
import socket
import struct
import sys
import time
from pathlib import Path
from typing import Any

NETLINK_NETFILTER = 12
SOL_NETLINK = 270
NETLINK_NO_ENOBUFS = 5
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET = 0
NFQNL_MSG_CONFIG = 2
NFQNL_MSG_VERDICT_BATCH = 3
NLM_F_REQUEST = 1
NLM_F_ACK = 4
NLMSG_ERROR = 2
NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQA_TIMESTAMP = 4
SO_TIMESTAMP = 29
NFQA_CFG_CMD = 1
NFQA_CFG_PARAMS = 2
NFQA_CFG_QUEUE_MAXLEN = 3
NFQA_CFG_MASK = 4
NFQA_CFG_FLAGS = 5
NFQNL_CFG_CMD_BIND = 1
NFQNL_CFG_CMD_UNBIND = 2
NFQNL_COPY_META = 1
NFQA_CFG_F_GSO = 4
NF_ACCEPT = 1
AF_INET = 2

QUEUE_MAXLEN = 32768
"""Packets a queue may hold before the kernel drops new ones (a router's buffer): 1 Gbit/s for
40 ms is ~3400 full-size frames, far fewer GSO super-packets."""

JITTER_PERIOD = 0.02
"""With jitter, a direction's extra delay is drawn anew (uniform in +-jitter) every 20 ms, not
per packet: a packet never overtakes the one before it (real paths rarely reorder, and netem's
per-packet jitter reorders, which TCP takes for loss), and the FIFO rule then rarely holds a
packet beyond its own draw, so the mean delay stays the configured one."""

_HDR = struct.Struct("=IHHII")
_PACKET_MSG = (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET


def _attr(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * (-length % 4)


def _message(msg: int, queue: int, attrs: bytes, flags: int = NLM_F_REQUEST, seq: int = 0) -> bytes:
    body = struct.pack("!BBH", AF_INET, 0, queue) + attrs
    return _HDR.pack(_HDR.size + len(body), (NFNL_SUBSYS_QUEUE << 8) | msg, flags, seq, 0) + body


class Delayer:
    """One netlink socket bound to every queue of the testbed's cluster pairs."""

    def __init__(self, config: Path, status: Path, sock: socket.socket | None = None) -> None:
        """``sock``: the nfnetlink socket; unit tests pass a stand-in to check the timing logic."""
        self.config_path = config
        self.status_path = status
        self.stamper: socket.socket | None = None
        if sock is None:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
            sock.setsockopt(socket.SOL_SOCKET, 33, 32 << 20)  # SO_RCVBUFFORCE, 32 MiB
            sock.setsockopt(SOL_NETLINK, NETLINK_NO_ENOBUFS, 1)
            sock.bind((0, 0))
            # Any socket asking for receive timestamps makes the kernel stamp every packet, and
            # nfqueue passes the stamp on: the delay then counts from the packet's arrival on the
            # bridge, not from this process's wake-up (which comes 0.1-0.3 ms later).
            self.stamper = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.stamper.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMP, 1)
        self.sock = sock
        self.seq = 0
        self.delays: dict[int, tuple[float, float]] = {}
        self.held: dict[int, collections.deque[tuple[float, int]]] = {}
        self.last_due: dict[int, float] = {}
        self.jitter: dict[int, tuple[float, float]] = {}  # queue -> (offset, until)
        self.generation = 0
        self.counters = {"packets": 0, "batches": 0, "recv_calls": 0, "max_held": 0, "writes": 0}
        self.late: list[float] = []  # release lateness in microseconds, a bounded sample
        self.lag: list[float] = []  # arrival on the bridge -> notice read here, microseconds
        self.buf = bytearray(1 << 20)

    # --- netlink ----------------------------------------------------------------------------

    def _request(self, queue: int, attrs: bytes) -> None:
        """Send a config request and wait for its ack, so a failure is reported, not ignored."""
        self.seq += 1
        self.sock.send(_message(NFQNL_MSG_CONFIG, queue, attrs, NLM_F_REQUEST | NLM_F_ACK,
                                self.seq))
        while True:
            data = self.sock.recv(65536)
            offset = 0
            while offset + _HDR.size <= len(data):
                length, kind, _flags, seq, _pid = _HDR.unpack_from(data, offset)
                if kind == _PACKET_MSG:  # a notice arriving meanwhile must not be lost
                    self._enqueue(memoryview(data), offset, length, time.monotonic())
                elif kind == NLMSG_ERROR and seq == self.seq:
                    code = struct.unpack_from("=i", data, offset + _HDR.size)[0]
                    if code != 0:
                        raise OSError(-code, f"nfqueue config of queue {queue}: "
                                             f"{os.strerror(-code)}")
                    return
                offset += (length + 3) & ~3

    def bind(self, queue: int) -> None:
        self._request(queue, _attr(NFQA_CFG_CMD, struct.pack("!BxH", NFQNL_CFG_CMD_BIND,
                                                             AF_INET)))
        self._request(queue, _attr(NFQA_CFG_PARAMS, struct.pack("!IB", 0, NFQNL_COPY_META))
                      + _attr(NFQA_CFG_QUEUE_MAXLEN, struct.pack("!I", QUEUE_MAXLEN))
                      + _attr(NFQA_CFG_FLAGS, struct.pack("!I", NFQA_CFG_F_GSO))
                      + _attr(NFQA_CFG_MASK, struct.pack("!I", NFQA_CFG_F_GSO)))
        self.held.setdefault(queue, collections.deque())
        self.last_due.setdefault(queue, 0.0)

    def unbind(self, queue: int) -> None:
        self.release(queue, float("inf"))
        self._request(queue, _attr(NFQA_CFG_CMD, struct.pack("!BxH", NFQNL_CFG_CMD_UNBIND,
                                                             AF_INET)))
        self.held.pop(queue, None)
        self.last_due.pop(queue, None)

    def accept_upto(self, queue: int, packet_id: int) -> None:
        self.sock.send(_message(NFQNL_MSG_VERDICT_BATCH, queue,
                                _attr(NFQA_VERDICT_HDR, struct.pack("!II", NF_ACCEPT,
                                                                    packet_id))))
        self.counters["batches"] += 1

    # --- the loop ---------------------------------------------------------------------------

    def load(self) -> None:
        """(Re)read the config; bind new queues, release and unbind dropped ones."""
        data = json.loads(self.config_path.read_text())
        wanted = {int(q): (float(v["delay_ms"]) / 1000, float(v.get("jitter_ms", 0)) / 1000)
                  for q, v in data["queues"].items()}
        for queue in sorted(set(self.held) - set(wanted)):
            self.unbind(queue)
        for queue in sorted(set(wanted) - set(self.held)):
            self.bind(queue)
        self.delays = wanted
        self.generation = int(data.get("generation", 0))
        self.write_status()

    def write_status(self) -> None:
        self.counters["writes"] += 1
        late, lag = sorted(self.late), sorted(self.lag)

        def pct(values: list[float], p: float) -> float | None:
            return values[min(len(values) - 1, int(p * len(values)))] if values else None

        status: dict[str, Any] = {
            "pid": os.getpid(), "generation": self.generation, "queues": sorted(self.held),
            **self.counters,
            "release_late_us": {"samples": len(late), "p50": pct(late, 0.5),
                                "p99": pct(late, 0.99), "max": late[-1] if late else None},
            "arrival_to_read_us": {"samples": len(lag), "p50": pct(lag, 0.5),
                                   "p99": pct(lag, 0.99), "max": lag[-1] if lag else None},
            "cpu_seconds": sum(os.times()[:2]),
        }
        tmp = self.status_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(status))
        tmp.replace(self.status_path)

    def receive(self) -> None:
        """Read every pending packet notice and give each its release time."""
        view = memoryview(self.buf)
        while True:
            try:
                n = self.sock.recv_into(self.buf, 0, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:  # notices lost; a later batch verdict covers them
                    continue
                raise
            self.counters["recv_calls"] += 1
            now = time.monotonic()
            real_offset = time.time() - now
            offset = 0
            while offset + _HDR.size <= n:
                length, kind, _flags, _seq, _pid = _HDR.unpack_from(view, offset)
                if length < _HDR.size:
                    break
                if kind == _PACKET_MSG:
                    self._enqueue(view, offset, length, now, real_offset)
                offset += (length + 3) & ~3

    def _enqueue(self, view: memoryview, offset: int, length: int, now: float,
                 real_offset: float | None = None) -> None:
        """Give one packet notice its release time. ``now`` is when it was read (monotonic);
        with ``real_offset`` (wall clock - monotonic) the kernel's arrival stamp is used."""
        queue = struct.unpack_from("!H", view, offset + _HDR.size + 2)[0]
        pos, end = offset + _HDR.size + 4, offset + length
        packet_id, arrival = None, now
        while pos + 4 <= end:
            alen, akind = struct.unpack_from("=HH", view, pos)
            if alen < 4:
                return
            kind = akind & 0x7FFF
            if kind == NFQA_PACKET_HDR:
                packet_id = struct.unpack_from("!I", view, pos + 4)[0]
            elif kind == NFQA_TIMESTAMP and real_offset is not None:
                sec, usec = struct.unpack_from("!QQ", view, pos + 4)
                stamped = sec + usec / 1e6 - real_offset
                # A stamp from another clock (a sender's departure time) would be far off.
                if now - 0.5 < stamped <= now:
                    arrival = stamped
                    self._keep(self.lag, (now - stamped) * 1e6)
            pos += (alen + 3) & ~3
        if packet_id is None:
            return
        now = arrival
        delay, jitter = self.delays.get(queue, (0.0, 0.0))
        if jitter:
            extra, until = self.jitter.get(queue, (0.0, 0.0))
            if now >= until:
                extra = random.uniform(-jitter, jitter)  # noqa: S311
                self.jitter[queue] = (extra, now + JITTER_PERIOD)
            delay = max(0.0, delay + extra)
        due = max(now + delay, self.last_due.get(queue, 0.0))
        self.last_due[queue] = due
        held = self.held.setdefault(queue, collections.deque())
        held.append((due, packet_id))
        self.counters["packets"] += 1
        if len(held) > self.counters["max_held"]:
            self.counters["max_held"] = len(held)

    def release(self, queue: int, now: float) -> None:
        held = self.held.get(queue)
        last = None
        while held and held[0][0] <= now:
            due, last = held.popleft()
            if now != float("inf"):
                self._sample((now - due) * 1e6)
        if last is not None:
            self.accept_upto(queue, last)

    def _sample(self, late_us: float) -> None:
        self._keep(self.late, late_us)

    @staticmethod
    def _keep(samples: list[float], value: float) -> None:
        """A bounded sample (reservoir-like) of at most 200k values."""
        if len(samples) < 200_000:
            samples.append(value)
        else:
            samples[random.randrange(len(samples))] = value  # noqa: S311

    def run(self) -> None:
        _tight_timers()
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        signal.set_wakeup_fd(wake_w.fileno())
        pending: set[int] = set()
        for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
            signal.signal(sig, lambda s, _f: pending.add(s))
        self.load()
        print(f"wandelay: bound queues {sorted(self.held)}", flush=True)
        while True:
            now = time.monotonic()
            for queue, held in self.held.items():
                if held and held[0][0] <= now:
                    self.release(queue, now)
            heads = [h[0][0] for h in self.held.values() if h]
            timeout = max(0.0, min(heads) - time.monotonic()) if heads else None
            ready, _, _ = select.select([self.sock, wake_r], [], [], timeout)
            if self.sock in ready:
                self.receive()
            if wake_r in ready:
                with_signals = set(pending)
                pending.clear()
                while True:
                    try:
                        if not wake_r.recv(64):
                            break
                    except BlockingIOError:
                        break
                if with_signals & {signal.SIGTERM, signal.SIGINT}:
                    for queue in list(self.held):
                        self.release(queue, float("inf"))
                    self.write_status()
                    print("wandelay: released everything held; exiting", flush=True)
                    return
                if signal.SIGHUP in with_signals:
                    self.load()
                    print(f"wandelay: config generation {self.generation} applied", flush=True)
                if signal.SIGUSR1 in with_signals:
                    self.write_status()


def _tight_timers() -> None:
    """Ask for 1 us timer slack instead of the default 50 us: the release wake-up is the
    delay's main error, and a timer may fire that much late."""
    import ctypes

    pr_set_timerslack = 29
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_timerslack, 1000, 0, 0, 0)
    # A packet due now must not wait behind a compiler or a kubelet for its time slice. The
    # loop sleeps between releases, and the kernel's real-time throttling bounds it anyway.
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
    except OSError as exc:
        print(f"wandelay: no real-time priority ({exc}); delays will be less exact", flush=True)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m kubehop.testbed.wandelay CONFIG.json STATUS.json",
              file=sys.stderr)
        return 2
    Delayer(Path(argv[0]), Path(argv[1])).run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

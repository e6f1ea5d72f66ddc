"""WAN profiles: the one-way delay, jitter and rate of each link between the testbed's tiers.

Pure logic (no root, no I/O beyond reading a profile file), so parsing, validation and the
cluster-pair table are unit-tested on their own. :mod:`kubehop.testbed.wan` turns a table into
NFQUEUE rules, a delayer process and htb classes.

A profile file::

    links:
      - between: [edge, cloud]   # two tiers, or two cluster names of the running testbed
        delay: 20ms              # one way; the RTT is twice that
        jitter: 1ms              # optional: each packet's delay is uniform in delay +- jitter
        rate: 100mbit            # optional: per direction; "unlimited" (the default) for none

A link between two cluster names wins over the link between their tiers. A pair with no link
(for instance two clusters of the same tier, unless the profile names ``[edge, edge]``) is not
delayed and not limited, and neither is anything between a cluster and the host side.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kubehop.errors import UsageError
from kubehop.testbed.layout import MAX_CLUSTERS, SLOT, TIERS, tier_of

MAX_DELAY_MS = 10_000.0
MIN_RATE_BIT = 8_000
QUEUE_BASE = 27000 + SLOT * MAX_CLUSTERS**2
"""NFQUEUE numbers of the testbed: QUEUE_BASE + source index * MAX_CLUSTERS + destination
(each testbed slot its own range: queues are machine-wide)."""

KEEP = -1
"""``with_link(rate_bit=KEEP)``: leave the rate as it is (None means unlimited)."""

_DELAY = re.compile(r"^\s*(-?[0-9]+(?:\.[0-9]+)?)\s*(us|µs|ms|s)?\s*$", re.IGNORECASE)
_RATE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(bit|kbit|mbit|gbit)\s*$", re.IGNORECASE)
_UNITS_MS = {"us": 0.001, "µs": 0.001, "ms": 1.0, "s": 1000.0}
_UNITS_BIT = {"bit": 1, "kbit": 10**3, "mbit": 10**6, "gbit": 10**9}
_UNLIMITED = {"unlimited", "none", "0"}


def parse_delay(text: str | float | int, what: str = "delay") -> float:
    """``5ms``, ``1.5ms``, ``500us``, ``0.02s`` or ``0`` -> milliseconds (a float >= 0)."""
    raw = str(text)
    m = _DELAY.match(raw)
    if not m or (m.group(2) is None and float(m.group(1)) != 0):
        raise UsageError(f"{what} {raw!r} is not a duration; write it like 5ms, 500us or 0.02s")
    value = float(m.group(1)) * _UNITS_MS[(m.group(2) or "ms").lower()]
    if value < 0:
        raise UsageError(f"{what} {raw!r} is negative; a link cannot deliver before it sends")
    if value > MAX_DELAY_MS:
        raise UsageError(f"{what} {raw!r} is over {MAX_DELAY_MS / 1000:g}s; give a WAN-like "
                         "delay")
    return value


def parse_rate(text: str | int) -> int | None:
    """``100mbit``, ``1gbit``, ``500kbit`` -> bits per second; ``unlimited`` -> None."""
    raw = str(text)
    if raw.strip().lower() in _UNLIMITED:
        return None
    m = _RATE.match(raw)
    if not m:
        raise UsageError(f"rate {raw!r} is not a rate; write it like 100mbit, 1gbit, 500kbit "
                         "or unlimited")
    value = float(m.group(1)) * _UNITS_BIT[m.group(2).lower()]
    if value < MIN_RATE_BIT:
        raise UsageError(f"rate {raw!r} is below {MIN_RATE_BIT // 1000}kbit; give a larger "
                         "rate or 'unlimited'")
    return int(value)


def format_rate(bits: int | None) -> str:
    if bits is None:
        return "unlimited"
    for unit, factor in (("gbit", 10**9), ("mbit", 10**6), ("kbit", 10**3)):
        if bits >= factor and bits % factor == 0:
            return f"{bits // factor}{unit}"
    return f"{bits}bit"


def format_delay(ms: float) -> str:
    return f"{ms:g}ms"


@dataclass(frozen=True)
class Link:
    """One link's character, the same in both directions (each direction has the full rate)."""

    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    rate_bit: int | None = None

    @property
    def rtt_ms(self) -> float:
        return 2 * self.delay_ms

    @property
    def shaped(self) -> bool:
        return self.delay_ms > 0 or self.jitter_ms > 0 or self.rate_bit is not None

    def to_dict(self) -> dict[str, Any]:
        return {"delay": format_delay(self.delay_ms), "jitter": format_delay(self.jitter_ms),
                "rate": format_rate(self.rate_bit)}


@dataclass(frozen=True)
class LinkSpec:
    """A profile's link between two endpoints (tiers or cluster names), kept in sorted order."""

    a: str
    b: str
    link: Link

    @property
    def key(self) -> tuple[str, str]:
        return (self.a, self.b)


def _pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a <= b else (b, a)


def _check_link(link: Link, where: str) -> Link:
    if link.jitter_ms > link.delay_ms:
        raise UsageError(f"{where}: jitter {format_delay(link.jitter_ms)} is larger than the "
                         f"delay {format_delay(link.delay_ms)}; keep jitter <= delay")
    return link


@dataclass(frozen=True)
class Profile:
    name: str
    links: tuple[LinkSpec, ...] = ()

    def lookup(self, a: str, b: str) -> Link | None:
        key = _pair(a, b)
        return next((s.link for s in self.links if s.key == key), None)

    def link_between(self, a: str, b: str) -> Link:
        """The link between clusters ``a`` and ``b``: their own entry, else their tiers'."""
        found = self.lookup(a, b)
        if found is None:
            found = self.lookup(tier_of(a), tier_of(b))
        return found or Link()

    def with_link(self, a: str, b: str, *, delay_ms: float | None = None,
                  jitter_ms: float | None = None, rate_bit: int | None = KEEP) -> Profile:
        """A copy with the link between ``a`` and ``b`` changed; unnamed fields keep the value
        that pair has now (its own entry, or for two clusters the one of their tiers)."""
        key = _pair(a, b)
        current = self.lookup(*key)
        if current is None:
            current = self.link_between(*key)
        link = Link(
            delay_ms=current.delay_ms if delay_ms is None else delay_ms,
            jitter_ms=current.jitter_ms if jitter_ms is None else jitter_ms,
            rate_bit=current.rate_bit if rate_bit == KEEP else rate_bit,
        )
        _check_link(link, f"link {key[0]}-{key[1]}")
        others = tuple(s for s in self.links if s.key != key)
        return Profile(name=self.name if self.name.endswith("+edits") else self.name + "+edits",
                       links=tuple(sorted((*others, LinkSpec(*key, link)),
                                          key=lambda s: s.key)))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name,
                "links": [{"between": [s.a, s.b], **s.link.to_dict()} for s in self.links]}


_GBIT = 10**9
DEFAULT = Profile("default", (
    LinkSpec("cloud", "edge", Link(delay_ms=20.0, rate_bit=_GBIT)),
    LinkSpec("cloud", "fog", Link(delay_ms=15.0, rate_bit=_GBIT)),
    LinkSpec("edge", "fog", Link(delay_ms=5.0, rate_bit=_GBIT)),
))
"""The issue's tiers: edge-fog 5 ms, fog-cloud 15 ms, edge-cloud 20 ms one way, 1 Gbit/s."""
FLAT = Profile("flat", ())
"""No delay, no limit: the bridge as it is (sub-millisecond, as fast as the CPU)."""
BUILTIN = {"default": DEFAULT, "flat": FLAT}

_NAME = re.compile(r"^[a-z][a-z0-9]{0,9}$")


def profile_from_dict(data: Any, source: str) -> Profile:
    """Validate a parsed profile document; every problem is a one-line UsageError."""
    if not isinstance(data, dict) or set(data) - {"name", "links"}:
        raise UsageError(f"{source}: a WAN profile is a mapping with 'links' (and optionally "
                         "'name')")
    raw_links = data.get("links") or []
    if not isinstance(raw_links, list):
        raise UsageError(f"{source}: 'links' must be a list of {{between, delay, jitter, rate}}")
    specs: dict[tuple[str, str], LinkSpec] = {}
    for i, entry in enumerate(raw_links, 1):
        where = f"{source}: link {i}"
        if not isinstance(entry, dict) or set(entry) - {"between", "delay", "jitter", "rate"}:
            raise UsageError(f"{where}: give only between, delay, jitter and rate")
        between = entry.get("between")
        if (not isinstance(between, list) or len(between) != 2
                or not all(isinstance(x, str) and _NAME.match(x) for x in between)):
            raise UsageError(f"{where}: 'between' must name two tiers or clusters, "
                             "e.g. [edge, cloud]")
        key = _pair(between[0], between[1])
        if key in specs:
            raise UsageError(f"{where}: the link {key[0]}-{key[1]} is given twice")
        link = Link(delay_ms=parse_delay(entry.get("delay", 0)),
                    jitter_ms=parse_delay(entry.get("jitter", 0), "jitter"),
                    rate_bit=parse_rate(entry.get("rate", "unlimited")))
        specs[key] = LinkSpec(*key, _check_link(link, where))
    name = str(data.get("name") or source)
    return Profile(name=name, links=tuple(sorted(specs.values(), key=lambda s: s.key)))


def load_profile(arg: str) -> Profile:
    """``default``, ``flat`` or the path of a YAML profile file."""
    if arg in BUILTIN:
        return BUILTIN[arg]
    path = Path(arg)
    if not path.is_file():
        raise UsageError(f"WAN profile {arg!r} is neither {' nor '.join(BUILTIN)} nor a file")
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"WAN profile {arg}: cannot read it as YAML "
                         f"({str(exc).splitlines()[0]})") from exc
    return profile_from_dict(data, path.stem if "name" not in (data or {}) else str(arg))


def check_endpoints(profile: Profile, clusters: tuple[str, ...]) -> None:
    """Every link must name tiers or clusters of this testbed (a typo must not pass silently)."""
    for spec in profile.links:
        check_endpoint(spec.a, clusters)
        check_endpoint(spec.b, clusters)


def check_endpoint(name: str, clusters: tuple[str, ...]) -> None:
    if name not in TIERS and name not in clusters:
        raise UsageError(f"{name!r} is neither a tier ({', '.join(TIERS)}) nor a cluster of the "
                         f"testbed ({', '.join(clusters) or 'none'})")


def link_table(profile: Profile, clusters: tuple[str, ...]) -> dict[tuple[str, str], Link]:
    """The link of every unordered pair of clusters, keyed in ``--clusters`` order."""
    return {(a, b): profile.link_between(a, b)
            for i, a in enumerate(clusters) for b in clusters[i + 1:]}


def queue_number(src_index: int, dst_index: int) -> int:
    """The NFQUEUE of packets from cluster ``src_index`` to ``dst_index`` (one per direction,
    so each direction is FIFO on its own)."""
    if not (0 <= src_index < MAX_CLUSTERS and 0 <= dst_index < MAX_CLUSTERS):
        raise ValueError(f"cluster index out of range: {src_index}, {dst_index}")
    return QUEUE_BASE + src_index * MAX_CLUSTERS + dst_index


def class_minor(src_index: int) -> int:
    """The htb class (1:<minor>) on a destination veth for traffic from cluster ``src_index``
    (tc and CLASSIFY both read minors in hex)."""
    return 10 + src_index


def burst_bytes(rate_bit: int) -> int:
    """htb burst: 2 ms at the rate, and at least one 64 KiB GSO packet, so a fast link is not
    held back by the timer's granularity."""
    return max(65536, math.ceil(rate_bit / 8 * 0.002))

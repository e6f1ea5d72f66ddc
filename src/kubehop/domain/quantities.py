"""Durations, memory quantities and plain numbers as the policy file and explanations write them.

The policy file writes ``30s`` and ``128Mi``; explanations must print values the way a user would
write them back. Kept apart from the policy schema because the rule engine, the placement scorer
and the benchmarks format values with it too.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION_UNITS = {"ms": Decimal("0.001"), "s": Decimal(1), "m": Decimal(60),
                   "h": Decimal(3600), "d": Decimal(86400)}
_QUANTITY = re.compile(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?")
_BYTE_UNITS = {None: 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
               "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
DURATION_HINT = "write it like 30s, 2m, 1h, 500ms or a number of seconds"


def format_number(value: float) -> str:
    """A number as a user wrote it: 0.2, 100, 1.5 (no 100.0, no 0.20000000000000001)."""
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def format_duration(seconds: float) -> str:
    """Seconds as the policy file writes them (``90`` -> ``1m30s``); parses back exactly."""
    if seconds < 0 or not math.isfinite(seconds):
        return f"{seconds}s"
    if seconds == 0:
        return "0s"
    if seconds != int(seconds):
        millis = round(seconds * 1000)
        if float(Decimal(millis) / 1000) == seconds:
            return f"{millis}ms"
        return f"{Decimal(repr(seconds)):f}s"  # shortest exact form, never 1e-05
    total = int(seconds)
    out = ""
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        if total >= size:
            out += f"{total // size}{unit}"
            total %= size
    return out


def human_duration(seconds: float) -> str:
    """An elapsed time for explanations: ``4.5s``, ``14s``, ``2m30s``, ``1h``."""
    if seconds < 60:
        tenths = round(max(seconds, 0.0), 1)
        return f"{tenths:g}s"
    return format_duration(round(seconds))


def format_value(value: float) -> str:
    """A measured value for explanations: 0.12, 11.5, 1234.5 (no float noise)."""
    if not math.isfinite(value):
        return str(value)
    if abs(value) >= 100:
        return f"{value:.1f}".removesuffix(".0")
    return f"{value:.4g}"


def format_bytes(value: float) -> str:
    """Bytes as a Kubernetes quantity when it is a whole number of Ki/Mi/Gi/Ti."""
    if value == int(value) and value > 0:
        whole = int(value)
        for unit in ("Ti", "Gi", "Mi", "Ki"):
            if whole % _BYTE_UNITS[unit] == 0:
                return f"{whole // _BYTE_UNITS[unit]}{unit}"
        return str(whole)
    return f"{value / 2**20:.1f}Mi"


def parse_duration(text: str) -> float:
    """``30s``, ``2m``, ``1h``, ``500ms``, ``1m30s``; raises ValueError with the reason."""
    text = text.strip()
    if text.startswith("-"):
        raise ValueError("must not be negative")
    pos, total = 0, Decimal(0)
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += Decimal(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(f"{text!r} is not a duration; {DURATION_HINT}")
    return float(total)  # exact decimal arithmetic, one rounding: "0.1s" == 0.1


def parse_bytes(text: str) -> int:
    """A Kubernetes memory quantity (``128Mi``, ``1.5Gi``, ``1G``, ``4096``) in bytes,
    rounded up like Kubernetes does."""
    match = _QUANTITY.fullmatch(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a memory quantity; write bytes or a number with "
                         f"Ki, Mi, Gi, Ti (or k, M, G, T), e.g. 128Mi")
    try:
        exact = Decimal(match.group(1)) * _BYTE_UNITS[match.group(2)]
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only decimals
        raise ValueError(f"{text!r} is not a number") from exc
    return int(exact.to_integral_value(rounding="ROUND_CEILING"))

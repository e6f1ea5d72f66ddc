"""Pure rules about a service's volume data: is the copy the same as the original?

The volume mover (``assets/images/mover/mover.py``) lists every path under its data directory as a
manifest entry: ``{"path", "type", "uid", "gid", "mode"}`` plus ``size``/``sha256`` for files and
``target`` for symlinks. Comparing the source's manifest with the target's after the final pass is
what lets a migration say the data arrived, rather than trust rsync's exit code alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

Entry = dict[str, Any]

# Compared in this order, each only when the types agree (a file that became a dir has no
# meaningful size difference). uid/gid/mode last: content first, it is what users lose.
_FIELDS = ("size", "sha256", "target", "uid", "gid", "mode")


def _index(entries: Iterable[Entry], side: str) -> dict[str, Entry]:
    out: dict[str, Entry] = {}
    for entry in entries:
        path = entry["path"]
        if path in out:
            raise ValueError(f"the {side} manifest lists {path!r} twice")
        out[path] = entry
    return out


def _show(field: str, value: object) -> str:
    if field == "mode" and isinstance(value, int):
        return oct(value)
    return str(value)


def diff_manifests(source: list[Entry], target: list[Entry]) -> list[str]:
    """Human-readable differences of ``target`` from ``source`` (sorted by path, source value
    first: ``"db/x: size 10 != 9"``); empty when the copy is identical."""
    src = _index(source, "source")
    dst = _index(target, "target")
    out: list[str] = []
    for path in sorted(src.keys() | dst.keys()):
        a, b = src.get(path), dst.get(path)
        if b is None:
            out.append(f"missing in target: {path}")
            continue
        if a is None:
            out.append(f"extra in target: {path}")
            continue
        if a.get("type") != b.get("type"):
            out.append(f"{path}: type {a.get('type')} != {b.get('type')}")
            continue
        for field in _FIELDS:
            va, vb = a.get(field), b.get(field)
            if va == vb:
                continue
            if field == "sha256":
                out.append(f"{path}: sha256 differs")
            else:
                out.append(f"{path}: {field} {_show(field, va)} != {_show(field, vb)}")
    return out

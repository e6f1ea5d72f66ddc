"""Pure rules about a service's volume data: is the copy the same as the original?

The volume mover (``assets/images/mover/mover_tree.py``) lists every path under its data
directory as a manifest entry: ``{"path", "type", "uid", "gid", "mode"}`` plus ``size``/``sha256``
for files, ``target`` for symlinks, ``xattrs`` (name -> hex value: ``user.*``, ``security.*``
but the SELinux label, the POSIX ACLs) when a path has any, and ``link`` (the first path of its
inode) on every other path of a hard-linked inode. Comparing the source's manifest with the
target's after the final pass is what lets a migration say the data arrived, rather than trust
rsync's exit code alone.

A manifest arrives streamed (:func:`read_manifest`), in walk order (:func:`manifest_key`), and
the two are compared as a merge of two sorted lists (:func:`iter_differences`): neither is ever
held whole, whatever the number of files.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

Entry = dict[str, Any]

MANIFEST_FORMAT = "kubehop-manifest/2"
"""The first line of the mover's manifest stream (``mover_tree.FORMAT``): an image that speaks
another is refused rather than misread."""

# Compared in this order, each only when the types agree (a file that became a dir has no
# meaningful size difference). uid/gid/mode after content: content first, it is what users
# lose.
_FIELDS = ("size", "sha256", "target", "link", "uid", "gid", "mode", "xattrs")


def manifest_key(path: str) -> tuple[str, ...]:
    """The walk's order: a directory, then what is in it, names sorted (``a``, ``a/x``,
    ``a-b``: not the order of the paths as strings)."""
    return tuple(path.split("/"))


def read_manifest(lines: Iterable[str], side: str) -> Iterator[Entry]:
    """The entries of one mover's streamed manifest (NDJSON): a format line, one line per
    entry, an end line with their count. Raises ValueError if the format is another, the mover
    reports a failure, or the stream ends without its end line or with another count: a
    manifest cut short must never pass for a complete one."""
    it = (line for line in lines if line.strip())
    head = next(it, None)
    if head is None:
        raise ValueError(f"the {side} mover sent an empty manifest (not even its format line)")
    first = _json_line(head, side)
    if first.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"the {side} mover sent no {MANIFEST_FORMAT} manifest (its first line: "
                         f"{str(first)[:100]}); is its image the one of this kubehop?")
    count = 0
    for line in it:
        obj = _json_line(line, side)
        if "path" in obj:
            count += 1
            yield obj
        elif "error" in obj:
            raise ValueError(f"the {side} mover failed to list its files after {count} "
                             f"entries: {str(obj['error'])[:300]}")
        elif obj.get("end") is True and obj.get("entries") == count:
            return
        else:
            raise ValueError(f"the {side} manifest has a bad line after {count} entries: "
                             f"{line[:100]}")
    raise ValueError(f"the {side} manifest ended after {count} entries without its end line")


def _json_line(line: str, side: str) -> Entry:
    try:
        obj = json.loads(line)
    except ValueError:
        obj = None
    if not isinstance(obj, dict):
        raise ValueError(f"the {side} manifest has a line that is no JSON object: {line[:100]!r}")
    return obj


def _in_order(entries: Iterable[Entry], side: str) -> Iterator[tuple[tuple[str, ...], Entry]]:
    """(key, entry), checking that the keys strictly increase."""
    last: tuple[str, ...] | None = None
    for entry in entries:
        key = manifest_key(entry["path"])
        if last is not None and key <= last:
            if key == last:
                raise ValueError(f"the {side} manifest lists {entry['path']!r} twice")
            raise ValueError(f"the {side} manifest is not in walk order at {entry['path']!r}")
        last = key
        yield key, entry


def iter_differences(source: Iterable[Entry], target: Iterable[Entry]) -> Iterator[str]:
    """Human-readable differences of ``target`` from ``source``, by path in walk order, source
    value first (``"db/x: size 10 != 9"``); none when the copy is identical. Both are read
    once, in step, to their end (each must be in walk order: ValueError otherwise)."""
    src, dst = _in_order(source, "source"), _in_order(target, "target")
    a, b = next(src, None), next(dst, None)
    while a is not None or b is not None:
        if a is not None and (b is None or a[0] < b[0]):
            yield f"missing in target: {a[1]['path']}"
            a = next(src, None)
        elif b is not None and (a is None or b[0] < a[0]):
            yield f"extra in target: {b[1]['path']}"
            b = next(dst, None)
        elif a is not None and b is not None:  # the same path on both sides
            yield from _entry_differences(a[1], b[1])
            a, b = next(src, None), next(dst, None)


def diff_manifests(source: Iterable[Entry], target: Iterable[Entry]) -> list[str]:
    """Every difference (:func:`iter_differences`), as a list."""
    return list(iter_differences(source, target))


def _entry_differences(a: Entry, b: Entry) -> Iterator[str]:
    path = a["path"]
    if a.get("type") != b.get("type"):
        yield f"{path}: type {a.get('type')} != {b.get('type')}"
        return
    for field in _FIELDS:
        va, vb = a.get(field), b.get(field)
        if va == vb:
            continue
        if field == "sha256":
            yield f"{path}: sha256 differs"
        elif field == "xattrs":
            yield from _xattr_differences(path, va or {}, vb or {})
        elif field == "link":
            yield f"{path}: hard link to {va or 'nothing'} != {vb or 'nothing'}"
        elif field == "mode" and isinstance(va, int) and isinstance(vb, int):
            yield f"{path}: mode {oct(va)} != {oct(vb)}"
        else:
            yield f"{path}: {field} {va} != {vb}"


def _xattr_differences(path: str, a: dict[str, str], b: dict[str, str]) -> Iterator[str]:
    """By name; values are not shown (they may be long, or binary: an ACL)."""
    for name in sorted(a.keys() | b.keys()):
        if name not in b:
            yield f"{path}: xattr {name} missing in target"
        elif name not in a:
            yield f"{path}: xattr {name} extra in target"
        elif a[name] != b[name]:
            yield f"{path}: xattr {name} differs"

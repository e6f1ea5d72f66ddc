"""What is on a mover's volumes: the walk, the manifest of every path, the hash cache.

Part of kubehop's volume mover (``mover.py`` imports it; both go into the mover image). The
walk visits a directory before what is in it, names sorted, and yields entries as it goes, so
neither the walk nor the manifest is ever held whole: memory stays that of the longest
directory listing, whatever the number of files.

Standard library only (Python 3.11).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import stat
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

FORMAT = "kubehop-manifest/2"
"""The first line of a streamed manifest (kubehop's domain/volumes.py reads this format)."""
_COMPARED_SYSTEM = ("system.posix_acl_access", "system.posix_acl_default")


def compared_xattr(name: str) -> bool:
    """The extended attributes rsync copies (``-AX`` with mover's filters) and the manifest
    lists: ``user.*``, ``security.*`` but the SELinux label (the target's cluster labels its
    volumes itself), and the POSIX ACLs. ``trusted.*`` is readable only with CAP_SYS_ADMIN,
    which no mover has: the kernel does not even list it to them."""
    if name.startswith("user."):
        return True
    if name.startswith("security."):
        return name != "security.selinux"
    return name in _COMPARED_SYSTEM


def read_xattrs(path: str) -> dict[str, str]:
    """The compared xattrs of ``path`` (not followed if a symlink), values in hex."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as exc:
        if exc.errno == errno.ENOTSUP:
            return {}
        raise
    out: dict[str, str] = {}
    for name in sorted(filter(compared_xattr, names)):
        try:
            out[name] = os.getxattr(path, name, follow_symlinks=False).hex()
        except OSError as exc:
            if exc.errno != errno.ENODATA:  # removed since it was listed
                raise
    return out


def _identity(st: os.stat_result) -> list[int]:
    """A file whose device, inode, size, mtime and ctime (which no program can set back) are
    unchanged since it was hashed keeps its hash."""
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def _key(path: str) -> tuple[str, ...]:
    """The walk's order: a directory, then what is in it, names sorted."""
    return tuple(path.split("/"))


class HashCache:
    """The sha256 of every file a complete walk read, so the next walk (the one inside the
    freeze) reads only what changed since. One JSON line per file, ``[path, dev, ino, size,
    mtime_ns, ctime_ns, sha256]``, in walk order, in a file of the workdir: the next walk
    reads it alongside its own (a merge of two sorted lists), so the cache costs a few bytes
    of memory whatever the number of files, and a walk writes a fresh file that replaces the
    old one only once it is complete (no entry of a deleted file outlives a walk)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()

    @contextlib.contextmanager
    def session(self) -> Iterator[CacheSession]:
        with self.lock:
            fresh = self.path.with_name(self.path.name + ".new")
            with _old_records(self.path) as old, fresh.open("w") as out:
                yield CacheSession(old, out)
            fresh.replace(self.path)  # not reached if the walk was cut short


@contextlib.contextmanager
def _old_records(path: Path) -> Iterator[Iterator[list[Any]]]:
    try:
        f = path.open()
    except FileNotFoundError:
        yield iter(())
        return
    with f:
        yield _records(f)


def _records(lines: Iterable[str]) -> Iterator[list[Any]]:
    """A damaged cache ends where the damage starts: what follows is read again."""
    for line in lines:
        try:
            yield json.loads(line)
        except ValueError:
            return


class CacheSession:
    def __init__(self, old: Iterator[list[Any]], out: Any) -> None:
        self.old, self.out = old, out
        self.head: list[Any] | None = next(self.old, None)

    def lookup(self, path: str, identity: list[int]) -> str | None:
        key = _key(path)
        while self.head is not None and _key(self.head[0]) < key:
            self.head = next(self.old, None)
        if self.head is not None and self.head[0] == path and self.head[1:6] == identity:
            return str(self.head[6])
        return None

    def store(self, path: str, identity: list[int], digest: str) -> None:
        self.out.write(json.dumps([path, *identity, digest]) + "\n")


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:  # noqa: PTH123 (a str path: no Path per file)
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _file_sha256(rel: str, full: str, st: os.stat_result, hashes: CacheSession | None) -> str:
    identity = _identity(st)
    known = hashes.lookup(rel, identity) if hashes is not None else None
    digest = known or _sha256(full)
    if hashes is not None and (known or _identity(os.lstat(full)) == identity):
        hashes.store(rel, identity, digest)  # not if it changed while it was read
    return digest


def _names(path: str) -> list[str]:
    try:
        with os.scandir(path) as it:
            return sorted(e.name for e in it)
    except (FileNotFoundError, NotADirectoryError):
        return []


def walk(root: Path) -> Iterator[tuple[str, str, os.stat_result]]:
    """(relative path, full path, lstat) of everything under ``root``, a directory before what
    is in it, names sorted: one directory's names are held at a time per level, never the
    tree. Paths that vanish during the walk (a live service) are left out."""
    stack = [("", str(root), iter(_names(str(root))))]
    while stack:
        rel, full, names = stack[-1]
        name = next(names, None)
        if name is None:
            stack.pop()
            continue
        crel, cfull = (f"{rel}/{name}" if rel else name), f"{full}/{name}"
        try:
            st = os.lstat(cfull)
        except FileNotFoundError:
            continue
        yield crel, cfull, st
        if stat.S_ISDIR(st.st_mode):
            stack.append((crel, cfull, iter(_names(cfull))))


def _hard_link(rel: str, st: os.stat_result, groups: dict[tuple[int, int], list[Any]]
               ) -> str | None:
    """The first path (in walk order) of the inode ``rel`` shares with other paths, for every
    path of it but that first one. A group is held until its last link is seen."""
    if stat.S_ISDIR(st.st_mode) or st.st_nlink < 2:
        return None
    key = (st.st_dev, st.st_ino)
    group = groups.get(key)
    if group is None:
        groups[key] = [rel, st.st_nlink - 1]
        return None
    group[1] -= 1
    if group[1] <= 0:
        del groups[key]
    return str(group[0])


def _entry(rel: str, full: str, st: os.stat_result, hashes: CacheSession | None
           ) -> dict[str, Any]:
    entry: dict[str, Any] = {"path": rel, "uid": st.st_uid, "gid": st.st_gid,
                             "mode": stat.S_IMODE(st.st_mode)}
    if stat.S_ISREG(st.st_mode):
        entry.update(type="file", size=st.st_size, sha256=_file_sha256(rel, full, st, hashes))
    elif stat.S_ISDIR(st.st_mode):
        entry["type"] = "dir"
    elif stat.S_ISLNK(st.st_mode):
        entry.update(type="symlink", target=str(Path(full).readlink()))
    else:
        entry["type"] = "other"
    xattrs = read_xattrs(full)
    if xattrs:
        entry["xattrs"] = xattrs
    return entry


def manifest(root: Path, cache: HashCache | None = None) -> Iterator[dict[str, Any]]:
    """Every path under ``root`` (not root itself) in walk order, symlinks not followed:
    ``path, type, uid, gid, mode``, ``size, sha256`` (files), ``target`` (symlinks), ``xattrs``
    (when any), ``link`` (the first path of its inode, for the others)."""
    session = cache.session() if cache is not None else contextlib.nullcontext(None)
    groups: dict[tuple[int, int], list[Any]] = {}
    with session as hashes:
        for rel, full, st in walk(root):
            try:
                entry = _entry(rel, full, st, hashes)
            except FileNotFoundError:
                continue
            link = _hard_link(rel, st, groups)
            if link is not None:
                entry["link"] = link
            yield entry


def usage(root: Path) -> dict[str, int]:
    """Regular files under ``root`` and their apparent size (a sparse file counts in full: it is
    what rsync has to read)."""
    total = files = 0
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            try:
                st = (Path(dirpath) / name).lstat()
            except FileNotFoundError:
                continue
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
                files += 1
    return {"bytes": total, "files": files}

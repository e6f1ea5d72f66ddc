"""Files that hold secrets (private keys, kubeconfigs, the TSIG key, the migration journal).

Such a file is owner-only (0600) from its first byte: it is made by ``mkstemp`` (always 0600,
whatever the umask) and renamed into place, never written and then chmod-ed, so no other user
can open it in between. A file that already exists with a wider mode is replaced (by
:func:`write_private`) or tightened before use (by :func:`ensure_private`).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

PRIVATE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700


def write_private(path: Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` as a new 0600 file that replaces any old one atomically.

    A reader sees the old content or the new, never a mix, and whoever held the old file open
    never sees the new secret."""
    payload = data.encode() if isinstance(data, str) else data
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        Path(tmp).replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            Path(tmp).unlink()
        raise


def ensure_private(path: Path) -> None:
    """Create ``path`` empty with mode 0600 if it is missing, else tighten it to 0600.

    For files another library creates and writes (SQLite): call this before handing it the
    path, so the file is private before the first secret goes in. An existing file is never
    opened here, only chmod-ed: closing any descriptor of a file drops every POSIX lock this
    process holds on it, and SQLite's locks are POSIX locks, so opening and closing a database
    another connection of this process has open would silently break its locking."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     PRIVATE_MODE)
    except FileExistsError:
        if path.is_symlink():
            raise
        path.chmod(PRIVATE_MODE)
        return
    os.close(fd)


def private_dir(path: Path) -> Path:
    """A directory only its owner can list or enter (made 0700, an existing one tightened)."""
    path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    path.chmod(PRIVATE_DIR_MODE)
    return path

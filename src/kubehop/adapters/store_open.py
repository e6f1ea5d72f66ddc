"""Opening a store: the database URL checked and normalized, the SQLite file made private, and a
driver's error turned into one line that never shows the password.

Everything here runs before there is an engine, and every failure is a :class:`UsageError` a
user can act on.
"""

from __future__ import annotations

import re
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL
from sqlalchemy.exc import ArgumentError

from kubehop.errors import UsageError
from kubehop.files import ensure_private, private_dir


def redact_url(raw: str) -> str:
    """A URL SQLAlchemy cannot parse, with anything that looks like a password masked."""
    return re.sub(r"(://[^/:@]*):[^@/]*@", r"\1:***@", raw)


def parse_url(raw: str) -> URL:
    try:
        url = sa.make_url(raw)
    except ArgumentError:
        raise UsageError(f"not a database URL: {redact_url(raw)!r}; give sqlite:///PATH or "
                         "postgresql+psycopg://USER@HOST/DB") from None
    if url.drivername == "postgresql":
        # Plain ``postgresql://`` means psycopg2 to SQLAlchemy, which kubehop does not ship.
        url = url.set(drivername="postgresql+psycopg")
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise UsageError(f"unsupported database {url.render_as_string(hide_password=True)!r}; "
                         "give sqlite:///PATH or postgresql+psycopg://USER@HOST/DB")
    if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
        raise UsageError("an in-memory SQLite database forgets every migration when kubehop "
                         "exits; give sqlite:///PATH")
    return url


def make_private(path: Path, *, tighten_dir: bool) -> None:
    """The database holds the Services and workloads kubehop moved: owner-only from the first
    byte. SQLite gives its ``-wal`` and ``-shm`` files the mode of the database file, so they
    are private too; files a wider umask or an older version left readable are tightened. A
    directory kubehop creates is 0700; an existing one is tightened only if it is kubehop's own
    state directory (never, say, /tmp because someone gave ``--db sqlite:////tmp/x.db``)."""
    if tighten_dir or not path.parent.exists():
        private_dir(path.parent)
    ensure_private(path)
    for extra in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if extra.exists():
            ensure_private(extra)


def driver_reason(exc: BaseException, url: URL) -> str:
    """The driver's own words on one line, never the password."""
    text = str(getattr(exc, "orig", None) or exc)
    line = "; ".join(part.strip() for part in text.splitlines() if part.strip())
    if url.password:
        line = line.replace(str(url.password), "***")
    return line

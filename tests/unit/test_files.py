"""Secret files are owner-only from their first byte, whatever the umask or an old file's mode."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubehop.files import ensure_private, private_dir, write_private


@pytest.fixture
def open_umask() -> Iterator[None]:
    old = os.umask(0)
    yield
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("open_umask")
def test_new_file_is_0600_even_with_umask_0(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "secret.key"
    write_private(path, b"s3cret")
    assert _mode(path) == 0o600
    assert path.read_bytes() == b"s3cret"
    assert [p.name for p in path.parent.iterdir()] == ["secret.key"], "no temporary file left"


@pytest.mark.usefixtures("open_umask")
def test_wider_existing_file_is_replaced_by_a_private_one(tmp_path: Path) -> None:
    path = tmp_path / "admin.kubeconfig"
    path.write_text("old")
    path.chmod(0o644)
    with path.open() as reader_of_the_old_file:
        write_private(path, "new")
        assert reader_of_the_old_file.read() == "old", "the new secret never reaches old opens"
    assert _mode(path) == 0o600
    assert path.read_text() == "new"


@pytest.mark.usefixtures("open_umask")
def test_ensure_private_creates_or_tightens(tmp_path: Path) -> None:
    fresh = tmp_path / "journal.sqlite"
    ensure_private(fresh)
    assert _mode(fresh) == 0o600 and fresh.read_bytes() == b""
    old = tmp_path / "old.sqlite"
    old.write_bytes(b"data")
    old.chmod(0o666)
    ensure_private(old)
    assert _mode(old) == 0o600 and old.read_bytes() == b"data"


@pytest.mark.usefixtures("open_umask")
def test_private_dir(tmp_path: Path) -> None:
    made = private_dir(tmp_path / "a" / "pki")
    assert _mode(made) == 0o700
    made.chmod(0o755)
    private_dir(made)
    assert _mode(made) == 0o700

"""Comparing the mover's manifests of a volume's source and its copy."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kubehop.domain.volumes import diff_manifests

SHA_A = "a" * 64
SHA_B = "b" * 64

SOURCE: list[dict[str, Any]] = [
    {"path": "db", "type": "dir", "uid": 999, "gid": 999, "mode": 0o750},
    {"path": "db/empty", "type": "dir", "uid": 0, "gid": 0, "mode": 0o755},
    {"path": "db/link", "type": "symlink", "uid": 0, "gid": 0, "mode": 0o777,
     "target": "orc8r.db"},
    {"path": "db/orc8r.db", "type": "file", "uid": 999, "gid": 999, "mode": 0o600,
     "size": 10, "sha256": SHA_A},
    {"path": "db/pipe", "type": "other", "uid": 0, "gid": 0, "mode": 0o644},
    {"path": "logs", "type": "dir", "uid": 0, "gid": 0, "mode": 0o755},
]


def target() -> list[dict[str, Any]]:
    return copy.deepcopy(SOURCE)


def entry(manifest: list[dict[str, Any]], path: str) -> dict[str, Any]:
    return next(e for e in manifest if e["path"] == path)


def test_identical_manifests_have_no_differences() -> None:
    assert diff_manifests(SOURCE, target()) == []
    assert diff_manifests([], []) == []


def test_order_of_entries_does_not_matter() -> None:
    assert diff_manifests(SOURCE, list(reversed(target()))) == []


def test_missing_and_extra_paths() -> None:
    dst = [e for e in target() if e["path"] != "db/orc8r.db"]
    dst.append({"path": "db/stray", "type": "file", "uid": 0, "gid": 0, "mode": 0o644,
                "size": 0, "sha256": SHA_B})
    assert diff_manifests(SOURCE, dst) == ["missing in target: db/orc8r.db",
                                           "extra in target: db/stray"]


def test_a_whole_claim_missing_lists_every_path_of_it() -> None:
    dst = [e for e in target() if not e["path"].startswith("db")]
    assert diff_manifests(SOURCE, dst) == [f"missing in target: {p}" for p in
                                           ("db", "db/empty", "db/link", "db/orc8r.db", "db/pipe")]


def test_an_empty_target_misses_everything() -> None:
    assert len(diff_manifests(SOURCE, [])) == len(SOURCE)
    assert diff_manifests([], SOURCE)[0] == "extra in target: db"


def test_truncated_file_shows_size_and_content() -> None:
    dst = target()
    entry(dst, "db/orc8r.db").update(size=9, sha256=SHA_B)
    assert diff_manifests(SOURCE, dst) == ["db/orc8r.db: size 10 != 9",
                                           "db/orc8r.db: sha256 differs"]


def test_same_size_other_content() -> None:
    dst = target()
    entry(dst, "db/orc8r.db")["sha256"] = SHA_B
    assert diff_manifests(SOURCE, dst) == ["db/orc8r.db: sha256 differs"]


@pytest.mark.parametrize(("field", "value", "expected"), [
    ("uid", 0, "db/orc8r.db: uid 999 != 0"),
    ("gid", 1000, "db/orc8r.db: gid 999 != 1000"),
    ("mode", 0o644, "db/orc8r.db: mode 0o600 != 0o644"),
])
def test_ownership_and_mode(field: str, value: int, expected: str) -> None:
    dst = target()
    entry(dst, "db/orc8r.db")[field] = value
    assert diff_manifests(SOURCE, dst) == [expected]


def test_directory_mode_in_octal() -> None:
    dst = target()
    entry(dst, "db")["mode"] = 0o755
    assert diff_manifests(SOURCE, dst) == ["db: mode 0o750 != 0o755"]


def test_symlink_pointing_elsewhere() -> None:
    dst = target()
    entry(dst, "db/link")["target"] = "/etc/passwd"
    assert diff_manifests(SOURCE, dst) == ["db/link: target orc8r.db != /etc/passwd"]


def test_changed_type_is_reported_once_not_field_by_field() -> None:
    dst = [e for e in target() if e["path"] != "db/link"]
    dst.append({"path": "db/link", "type": "file", "uid": 5, "gid": 5, "mode": 0o644,
                "size": 8, "sha256": SHA_B})
    assert diff_manifests(SOURCE, dst) == ["db/link: type symlink != file"]


def test_several_differences_come_sorted_by_path() -> None:
    dst = target()
    entry(dst, "logs")["uid"] = 1
    entry(dst, "db/empty")["gid"] = 2
    dst = [e for e in dst if e["path"] != "db/pipe"]
    assert diff_manifests(SOURCE, dst) == ["db/empty: gid 0 != 2",
                                           "missing in target: db/pipe",
                                           "logs: uid 0 != 1"]


def test_a_field_present_on_one_side_only_is_a_difference() -> None:
    dst = target()
    del entry(dst, "db/orc8r.db")["sha256"]
    assert diff_manifests(SOURCE, dst) == ["db/orc8r.db: sha256 differs"]


def test_inputs_are_not_modified() -> None:
    src, dst = copy.deepcopy(SOURCE), target()
    entry(dst, "db")["mode"] = 0o700
    before = copy.deepcopy(dst)
    diff_manifests(src, dst)
    assert src == SOURCE and dst == before


def test_a_path_listed_twice_is_an_error() -> None:
    with pytest.raises(ValueError, match="target manifest lists 'db' twice"):
        diff_manifests(SOURCE, [*target(), entry(target(), "db")])

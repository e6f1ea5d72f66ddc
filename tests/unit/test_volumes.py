"""Comparing the mover's manifests of a volume's source and its copy."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest

from kubehop.domain.volumes import (
    MANIFEST_FORMAT,
    diff_manifests,
    iter_differences,
    manifest_key,
    read_manifest,
)

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


def test_entries_must_come_in_walk_order() -> None:
    """The comparison is a merge of two sorted streams: an entry out of order would make it
    report paths as missing that are there, so it is refused."""
    with pytest.raises(ValueError, match="target manifest is not in walk order at 'db/pipe'"):
        diff_manifests(SOURCE, list(reversed(target())))
    assert manifest_key("a") < manifest_key("a/x") < manifest_key("a-b")


def test_missing_and_extra_paths() -> None:
    dst = [e for e in target() if e["path"] != "db/orc8r.db"]
    dst.insert(-1, {"path": "db/stray", "type": "file", "uid": 0, "gid": 0, "mode": 0o644,
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
    dst = target()
    dst[2] = {"path": "db/link", "type": "file", "uid": 5, "gid": 5, "mode": 0o644,
              "size": 8, "sha256": SHA_B}
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
        diff_manifests(SOURCE, [entry(target(), "db"), *target()])


LINKED = [
    {"path": "a", "type": "file", "uid": 0, "gid": 0, "mode": 0o644, "size": 1, "sha256": SHA_A,
     "xattrs": {"user.k": "01", "system.posix_acl_access": "0200"}},
    {"path": "b", "type": "file", "uid": 0, "gid": 0, "mode": 0o644, "size": 1, "sha256": SHA_A,
     "link": "a"},
]


@pytest.mark.parametrize(("change", "expected"), [
    (lambda e: e[1].pop("link"), ["b: hard link to a != nothing"]),
    (lambda e: e[1].update(link="z"), ["b: hard link to a != z"]),
    (lambda e: e[0].update(link="b"), ["a: hard link to nothing != b"]),
    (lambda e: e[0]["xattrs"].pop("user.k"), ["a: xattr user.k missing in target"]),
    (lambda e: e[0]["xattrs"].update({"user.k": "02"}), ["a: xattr user.k differs"]),
    (lambda e: e[0]["xattrs"].update({"security.capability": "00"}),
     ["a: xattr security.capability extra in target"]),
    (lambda e: e[0].pop("xattrs"), ["a: xattr system.posix_acl_access missing in target",
                                    "a: xattr user.k missing in target"]),
    (lambda e: e[1].update(xattrs={"user.new": "00"}), ["b: xattr user.new extra in target"]),
])
def test_a_difference_in_xattrs_acls_or_hard_links_shows(
        change: Any, expected: list[str]) -> None:
    dst = copy.deepcopy(LINKED)
    change(dst)
    assert diff_manifests(LINKED, dst) == expected
    assert diff_manifests(LINKED, copy.deepcopy(LINKED)) == []


def once(entries: list[dict[str, Any]], seen: list[str]) -> Iterator[dict[str, Any]]:
    """A stream that can be read once, noting what was read."""
    for e in entries:
        seen.append(e["path"])
        yield copy.deepcopy(e)


def test_the_differences_come_from_a_merge_of_two_streams_read_to_their_end() -> None:
    src_read: list[str] = []
    dst_read: list[str] = []
    dst = [e for e in target() if e["path"] != "db/link"]
    differences = iter_differences(once(SOURCE, src_read), once(dst, dst_read))
    assert src_read == []  # nothing read before asked
    assert next(differences) == "missing in target: db/link"
    assert src_read == ["db", "db/empty", "db/link"] and len(dst_read) == 3  # in step
    assert list(differences) == []
    assert src_read == [e["path"] for e in SOURCE] and dst_read == [e["path"] for e in dst]


def lines(*objs: object) -> list[str]:
    return [json.dumps(o) for o in objs]


def test_a_manifest_stream_is_read_only_when_complete() -> None:
    head, end = {"format": MANIFEST_FORMAT}, {"end": True, "entries": 2}
    good = lines(head, SOURCE[0], SOURCE[1], end)
    assert list(read_manifest(["", *good, ""], "source")) == SOURCE[:2]
    cases = [
        (lines(head, SOURCE[0], SOURCE[1]), "ended after 2 entries without its end line"),
        (lines(head, SOURCE[0], end), "bad line after 1 entries"),  # a count that differs
        (lines({"format": "kubehop-manifest/1"}, end), "sent no kubehop-manifest/2 manifest"),
        (lines({"entries": []}), "sent no kubehop-manifest/2"),  # an older image's JSON
        ([], "sent an empty manifest"),
        (lines(head, SOURCE[0], {"error": "OSError: EIO"}), "failed to list its files after 1 "
                                                             "entries: OSError: EIO"),
        ([good[0], "{not json", good[-1]], "no JSON object"),
        ([good[0], "[1, 2]"], "no JSON object"),
    ]
    for stream, message in cases:
        with pytest.raises(ValueError, match=message):
            list(read_manifest(stream, "source"))

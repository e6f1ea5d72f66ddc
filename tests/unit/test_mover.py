"""The volume mover's pure parts (manifest of real files, rsync --stats parsing, config), and how
its image is keyed. The daemons themselves need rsync and stunnel: they run in the image. Its
HTTP API runs here in-process (tests/unit/test_mover_api.py)."""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from kubehop.domain import volumes
from kubehop.domain.volumes import diff_manifests
from kubehop.testbed import images

KEY = "ab" * 32


def load_mover() -> tuple[ModuleType, ModuleType]:
    """mover.py and mover_tree.py, imported as modules of the package they ship in (in the
    image they run as /mover.py and /mover_tree.py)."""
    base = "kubehop.testbed.assets.images.mover"
    return (importlib.import_module(f"{base}.mover"),
            importlib.import_module(f"{base}.mover_tree"))


mover, tree = load_mover()


def manifest(root: Path, cache: object = None) -> list[dict[str, object]]:
    return list(tree.manifest(root, cache))


def make_volume(root: Path) -> None:
    (root / "db" / "sub").mkdir(parents=True)
    (root / "empty-claim").mkdir()
    (root / "db" / "emptydir").mkdir()
    (root / "db" / "orc8r.db").write_bytes(b"0123456789")
    (root / "db" / "orc8r.db").chmod(0o600)
    (root / "db" / "sub" / "b").write_bytes(b"x")
    (root / "db" / "link").symlink_to("/abs/target")
    os.mkfifo(root / "db" / "fifo")


def test_manifest_lists_every_path_sorted_with_claim_roots_and_empty_dirs(tmp_path: Path) -> None:
    make_volume(tmp_path)
    entries = manifest(tmp_path)
    assert [e["path"] for e in entries] == [
        "db", "db/emptydir", "db/fifo", "db/link", "db/orc8r.db", "db/sub", "db/sub/b",
        "empty-claim",
    ]
    by_path = {e["path"]: e for e in entries}
    db = by_path["db/orc8r.db"]
    assert db["type"] == "file" and db["size"] == 10 and db["mode"] == 0o600
    assert db["sha256"] == hashlib.sha256(b"0123456789").hexdigest()
    assert db["uid"] == os.getuid()
    assert by_path["db/link"] == {**by_path["db/link"], "type": "symlink", "target": "/abs/target"}
    assert "sha256" not in by_path["db/link"]
    assert by_path["db/fifo"]["type"] == "other"
    assert by_path["empty-claim"]["type"] == "dir"


def test_manifests_of_equal_trees_do_not_differ_and_a_truncation_shows(tmp_path: Path) -> None:
    make_volume(tmp_path / "a")
    make_volume(tmp_path / "b")
    assert diff_manifests(manifest(tmp_path / "a"), manifest(tmp_path / "b")) == []
    os.truncate(tmp_path / "b" / "db" / "orc8r.db", 4)
    assert diff_manifests(manifest(tmp_path / "a"), manifest(tmp_path / "b")) == [
        "db/orc8r.db: size 10 != 4", "db/orc8r.db: sha256 differs"]


def test_usage_counts_regular_files_at_their_apparent_size(tmp_path: Path) -> None:
    make_volume(tmp_path)
    with (tmp_path / "db" / "sparse").open("wb") as f:
        f.truncate(50 * 1024 * 1024)
    assert tree.usage(tmp_path) == {"bytes": 10 + 1 + 50 * 1024 * 1024, "files": 3}


# Verbatim from rsync (3.5.0) with --stats, LC_ALL=C; Debian bookworm's 3.2.7 prints the same lines.
STATS = """
Number of files: 13 (reg: 5, dir: 5, link: 2, special: 1)
Number of created files: 13 (reg: 5, dir: 5, link: 2, special: 1)
Number of deleted files: 0
Number of regular files transferred: 4
Total file size: 104,869,993 bytes
Total transferred file size: 104,869,963 bytes
Literal data: 104,869,963 bytes
Matched data: 0 bytes
File list size: 0
File list generation time: 0.004 seconds
File list transfer time: 0.000 seconds
Total bytes sent: 104,896,170
Total bytes received: 147

sent 104,896,170 bytes  received 147 bytes  209,792,634.00 bytes/sec
total size is 104,869,993  speedup is 1.00
"""


def test_stats_numbers_are_parsed_with_thousands_separators() -> None:
    assert mover._stat_number(STATS, r"Total bytes sent") == 104_896_170
    assert mover._stat_number(STATS, r"Number of (?:regular )?files transferred") == 4
    assert mover._stat_number("", r"Total bytes sent") == 0


def test_config_needs_a_role_and_for_the_sender_a_target_and_sni(tmp_path: Path) -> None:
    with pytest.raises(mover.ConfigError, match="MOVER_ROLE"):
        mover.Config.from_env({"MOVER_DATA": str(tmp_path)})
    with pytest.raises(mover.ConfigError, match="MOVER_TARGET must be host:port"):
        mover.Config.from_env({"MOVER_ROLE": "sender", "MOVER_DATA": str(tmp_path),
                               "MOVER_TARGET": "10.0.0.1", "MOVER_SNI": "x"})
    with pytest.raises(mover.ConfigError, match="MOVER_SNI"):
        mover.Config.from_env({"MOVER_ROLE": "sender", "MOVER_DATA": str(tmp_path),
                               "MOVER_TARGET": "10.0.0.1:8873"})
    cfg = mover.Config.from_env({"MOVER_ROLE": "receiver", "MOVER_DATA": str(tmp_path)})
    assert (cfg.api_port, cfg.psk_file) == (8080, Path("/secret/psk"))
    assert cfg.token_file == Path("/secret/token")


def test_psk_errors_never_quote_the_key(tmp_path: Path) -> None:
    psk = tmp_path / "psk"
    psk.write_text(f"kubehop:{KEY}\n")
    assert mover.read_psk(psk) == ("kubehop", KEY)
    psk.write_text(f"kubehop:{KEY}zz\n")
    with pytest.raises(mover.ConfigError) as info:
        mover.read_psk(psk)
    assert KEY not in str(info.value)


def test_config_files_point_at_the_key_file_and_never_hold_the_key(tmp_path: Path) -> None:
    cfg = mover.Config.from_env({"MOVER_ROLE": "sender", "MOVER_DATA": str(tmp_path),
                                 "MOVER_TARGET": "10.250.0.13:8873", "MOVER_SNI": "m.kubehop"})
    (tmp_path / "r").mkdir()
    (tmp_path / "s").mkdir()
    rsyncd, server = mover.receiver_configs(cfg, tmp_path / "r", tmp_path / "psk")
    client = mover.sender_config(cfg, tmp_path / "s", tmp_path / "psk", "kubehop")
    texts = [p.read_text() for p in (rsyncd, server, client)]
    assert all(KEY not in t for t in texts)
    assert "use chroot = yes" in texts[0] and f"path = {tmp_path}" in texts[0]
    assert "sslVersionMin = TLSv1.3" in texts[1] and "accept = 0.0.0.0:8873" in texts[1]
    assert "sni = m.kubehop" in texts[2] and "connect = 10.250.0.13:8873" in texts[2]


def test_mover_image_has_its_own_base_and_tag() -> None:
    spec = images.mover_image()
    assert spec.base == "mover"
    assert set(spec.files) == {"/mover.py", "/mover_tree.py"}  # mover.py imports mover_tree
    assert all(path.is_file() for path in spec.files.values())
    assert set(images.BASE_FLAVOURS["python"]) < set(images.BASE_FLAVOURS["mover"])
    assert {"rsync", "stunnel4"} <= set(images.BASE_FLAVOURS["mover"])
    same_files_python = images.ImageSpec(name=spec.name, base="python", files=spec.files,
                                         entrypoint=spec.entrypoint)
    assert same_files_python.tag() != spec.tag()


def test_a_cached_hash_is_never_stale(tmp_path: Path) -> None:
    """The second manifest reuses hashes of unchanged files, yet a rewrite of the same size,
    even with the old mtime put back, is read again (its ctime moved)."""
    root = tmp_path / "data"
    data = root / "claim" / "db"
    data.mkdir(parents=True)
    f = data / "orc8r.db"
    f.write_bytes(b"a" * 100)
    cache = tree.HashCache(tmp_path / "hashes")
    first = manifest(root, cache)
    assert manifest(root, cache) == first
    before = f.stat()
    f.write_bytes(b"b" * 100)
    os.utime(f, ns=(before.st_atime_ns, before.st_mtime_ns))
    again = {e["path"]: e for e in manifest(root, cache)}
    assert again["claim/db/orc8r.db"]["sha256"] == hashlib.sha256(b"b" * 100).hexdigest()


def test_the_walk_order_is_a_directory_then_its_contents_names_sorted(tmp_path: Path) -> None:
    """Not the paths' string order ('a-b' < 'a/x'): the order both movers stream in and the
    one kubehop's merge expects (domain.volumes.manifest_key)."""
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x").write_bytes(b"")
    (tmp_path / "a-b").write_bytes(b"")
    (tmp_path / "B").write_bytes(b"")
    entries = tree.manifest(tmp_path)
    assert not isinstance(entries, list)  # streamed, not built whole
    paths = [e["path"] for e in entries]
    assert paths == ["B", "a", "a/x", "a-b"]
    assert paths != sorted(paths)
    assert paths == sorted(paths, key=volumes.manifest_key)


def set_xattr_or_skip(path: Path, name: str, value: bytes) -> None:
    try:
        os.setxattr(path, name, value, follow_symlinks=False)
    except OSError as exc:
        pytest.skip(f"this filesystem refuses setxattr({name}): {exc.strerror}")


def test_user_xattrs_are_listed_by_name_in_hex_and_a_change_shows(tmp_path: Path) -> None:
    for side in ("a", "b"):
        (tmp_path / side).mkdir()
        (tmp_path / side / "f").write_bytes(b"data")
        set_xattr_or_skip(tmp_path / side / "f", "user.kubehop.note", b"\x00hello")
        set_xattr_or_skip(tmp_path / side, "user.dir", b"d")
    (entry_f,) = [e for e in manifest(tmp_path / "a") if e["path"] == "f"]
    assert entry_f["xattrs"] == {"user.kubehop.note": "0068656c6c6f"}
    assert diff_manifests(manifest(tmp_path / "a"), manifest(tmp_path / "b")) == []
    set_xattr_or_skip(tmp_path / "b" / "f", "user.kubehop.note", b"changed")
    os.removexattr(tmp_path / "b", "user.dir")  # on the root: not itself an entry
    set_xattr_or_skip(tmp_path / "b" / "f", "user.extra", b"x")
    assert diff_manifests(manifest(tmp_path / "a"), manifest(tmp_path / "b")) == [
        "f: xattr user.extra extra in target", "f: xattr user.kubehop.note differs"]


# A POSIX access ACL as the kernel stores it: version 2, then (tag, perm, id) entries sorted by
# tag: USER_OBJ rw-, USER 1234 r--, GROUP_OBJ r--, MASK r--, OTHER ---.
ACL = struct.pack("<I", 2) + b"".join(
    struct.pack("<HHI", tag, perm, ident) for tag, perm, ident in (
        (0x01, 6, 0xFFFFFFFF), (0x02, 4, 1234), (0x04, 4, 0xFFFFFFFF), (0x10, 4, 0xFFFFFFFF),
        (0x20, 0, 0xFFFFFFFF)))


def test_a_posix_acl_is_listed_and_compared(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f").write_bytes(b"x")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "f").write_bytes(b"x")
    (tmp_path / "b" / "f").chmod(0o640)
    set_xattr_or_skip(tmp_path / "a" / "f", "system.posix_acl_access", ACL)
    (entry,) = manifest(tmp_path / "a")
    assert entry["xattrs"] == {"system.posix_acl_access": ACL.hex()}
    assert entry["mode"] == 0o640  # the ACL's mask shows as the group bits
    assert diff_manifests(manifest(tmp_path / "a"), manifest(tmp_path / "b")) == [
        "f: xattr system.posix_acl_access missing in target"]


def test_which_xattrs_are_compared() -> None:
    compared = ["user.a", "security.capability", "security.ima", "system.posix_acl_access",
                "system.posix_acl_default"]
    left_out = ["security.selinux", "trusted.overlay.opaque", "system.nfs4_acl",
                "user", "securityx"]
    assert [n for n in compared + left_out if tree.compared_xattr(n)] == compared


def test_hard_links_name_the_first_path_of_their_inode(tmp_path: Path) -> None:
    root = tmp_path / "v"
    (root / "d").mkdir(parents=True)
    (root / "d" / "one").write_bytes(b"1")
    os.link(root / "d" / "one", root / "b-two")
    os.link(root / "d" / "one", root / "d" / "three")
    (root / "single").write_bytes(b"s")
    os.link(root / "single", tmp_path / "outside")  # its other link is not walked
    by = {e["path"]: e for e in manifest(root)}
    assert "link" not in by["b-two"]  # first in walk order: b-two, d, d/one, d/three
    assert by["d/one"]["link"] == "b-two" and by["d/three"]["link"] == "b-two"
    assert "link" not in by["single"] and "link" not in by["d"]
    copy = tmp_path / "copy"
    (copy / "d").mkdir(parents=True)
    for rel in ("b-two", "d/one", "d/three", "single"):
        (copy / rel).write_bytes((root / rel).read_bytes())  # same content, no links
    assert diff_manifests(manifest(root), manifest(copy)) == [
        "d/one: hard link to b-two != nothing", "d/three: hard link to b-two != nothing"]


def test_the_hash_cache_reads_only_changed_files_and_keeps_only_complete_walks(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "v"
    root.mkdir()
    for i in range(5):
        (root / f"f{i}").write_bytes(b"x" * i)
    read: list[str] = []
    real = tree._sha256
    monkeypatch.setattr(tree, "_sha256", lambda path: read.append(path) or real(path))
    cache = tree.HashCache(tmp_path / "hashes")
    cold = manifest(root, cache)
    assert len(read) == 5 and len((tmp_path / "hashes").read_text().splitlines()) == 5
    read.clear()
    assert manifest(root, cache) == cold and read == []
    (root / "f2").write_bytes(b"changed")
    (root / "f4").unlink()
    warm = manifest(root, cache)
    assert read == [str(root / "f2")] and len(warm) == 4
    assert len((tmp_path / "hashes").read_text().splitlines()) == 4  # f4's entry is gone
    cut = tree.manifest(root, cache)
    next(cut)
    cut.close()  # a walk cut short (the reader went away) leaves the cache as it was
    assert len((tmp_path / "hashes").read_text().splitlines()) == 4


def test_manifest_lines_frame_the_stream_so_a_short_one_shows(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "f").write_bytes(b"x")
    lines = [json.loads(line) for line in mover.manifest_lines(tmp_path)]
    assert lines[0] == {"format": volumes.MANIFEST_FORMAT} == {"format": tree.FORMAT}
    assert [e["path"] for e in lines[1:-1]] == ["f"]
    assert lines[-1] == {"end": True, "entries": 1}

    def broken(root: Path, cache: object = None) -> Iterator[dict[str, object]]:
        yield {"path": "f"}
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(mover, "manifest", broken)
    lines = [json.loads(line) for line in mover.manifest_lines(tmp_path)]
    assert lines[-1] == {"error": "PermissionError: [Errno 13] Permission denied"}


def test_a_pass_copies_acls_and_xattrs_but_leaves_labels_and_system_names_alone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[list[str]] = []

    def run(argv: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        ran.append(argv)
        return subprocess.CompletedProcess(argv, 0, STATS, "")

    monkeypatch.setattr(mover.subprocess, "run", run)
    cfg = mover.Config.from_env({"MOVER_ROLE": "sender", "MOVER_DATA": str(tmp_path),
                                 "MOVER_TARGET": "10.0.0.1:8873", "MOVER_SNI": "x"})
    assert mover.run_pass(cfg, final=True)["rc"] == 0
    (argv,) = ran
    assert "-aHSAX" in argv and "--numeric-ids" in argv and "--delete" in argv
    assert {"--filter=-x system.*", "--filter=-x security.selinux",
            "--filter=-x trusted.*"} <= set(argv)


def test_the_api_token_file_is_checked_and_never_quoted(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("t" * 43 + "\n")
    assert mover.read_token(token) == b"t" * 43
    for bad in ("short-" + "s" * 10, "has space" + "x" * 40, ""):
        token.write_text(bad)
        with pytest.raises(mover.ConfigError) as info:
            mover.read_token(token)
        assert bad not in str(info.value) or bad == ""
    with pytest.raises(mover.ConfigError, match="cannot read the API token file"):
        mover.read_token(tmp_path / "missing")

"""The volume mover's pure parts (manifest of real files, rsync --stats parsing, config), and how
its image is keyed. The daemons themselves need rsync and stunnel: they run in the image."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

from kubehop.domain.volumes import diff_manifests
from kubehop.testbed import images

KEY = "ab" * 32


def load_mover() -> ModuleType:
    path = images.asset("images", "mover", "mover.py")
    spec = importlib.util.spec_from_file_location("kubehop_mover_asset", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


mover = load_mover()


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
    entries = mover.manifest(tmp_path)
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
    assert diff_manifests(mover.manifest(tmp_path / "a"), mover.manifest(tmp_path / "b")) == []
    os.truncate(tmp_path / "b" / "db" / "orc8r.db", 4)
    assert diff_manifests(mover.manifest(tmp_path / "a"), mover.manifest(tmp_path / "b")) == [
        "db/orc8r.db: size 10 != 4", "db/orc8r.db: sha256 differs"]


def test_usage_counts_regular_files_at_their_apparent_size(tmp_path: Path) -> None:
    make_volume(tmp_path)
    with (tmp_path / "db" / "sparse").open("wb") as f:
        f.truncate(50 * 1024 * 1024)
    assert mover.usage(tmp_path) == {"bytes": 10 + 1 + 50 * 1024 * 1024, "files": 3}


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
    assert set(images.BASE_FLAVOURS["python"]) < set(images.BASE_FLAVOURS["mover"])
    assert {"rsync", "stunnel4"} <= set(images.BASE_FLAVOURS["mover"])
    same_files_python = images.ImageSpec(name=spec.name, base="python", files=spec.files,
                                         entrypoint=spec.entrypoint)
    assert same_files_python.tag() != spec.tag()


def test_a_cached_hash_is_never_stale(tmp_path: Path) -> None:
    """The second manifest reuses hashes of unchanged files, yet a rewrite of the same size,
    even with the old mtime put back, is read again (its ctime moved)."""
    data = tmp_path / "claim" / "db"
    data.mkdir(parents=True)
    f = data / "orc8r.db"
    f.write_bytes(b"a" * 100)
    first = mover.manifest(tmp_path)
    assert mover.manifest(tmp_path) == first
    before = f.stat()
    f.write_bytes(b"b" * 100)
    os.utime(f, ns=(before.st_atime_ns, before.st_mtime_ns))
    again = {e["path"]: e for e in mover.manifest(tmp_path)}
    assert again["claim/db/orc8r.db"]["sha256"] == hashlib.sha256(b"b" * 100).hexdigest()

"""The data engines' registry and the file engine's verification, without a cluster: the steps
see only :class:`~kubehop.engine.data.interface.DataEngine`, so what they read from it is
checked here."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest

from kubehop.adapters.kube import KubeCluster
from kubehop.engine.data import registry
from kubehop.engine.data.files import FileMover
from kubehop.engine.data.interface import DataError, DataSetup


class Answers:
    """A cluster whose mover answers ``GET /manifest`` with ``entries``."""

    def __init__(self, name: str, entries: list[dict[str, Any]]) -> None:
        self.name = name
        self.entries = entries
        self.calls: list[str] = []

    def get_path(self, path: str, *, timeout: float) -> tuple[int, str]:
        self.calls.append(path)
        return 200, json.dumps({"entries": self.entries})


def setup(src: Answers, dst: Answers) -> DataSetup:
    return DataSetup(cast(KubeCluster, src), cast(KubeCluster, dst),
                     migration_id="20261203-000000-abc123", source_namespace="ns",
                     target_namespace="ns", image="mover:1", claims=["data"],
                     target_address="10.0.0.1:9000", entrypoint="transfer")


FILE = {"path": "a", "type": "file", "size": 3, "sha256": "x", "mode": "0644", "uid": 0,
        "gid": 0}


def test_files_is_the_default_engine_and_an_unknown_name_is_refused() -> None:
    engine = registry.data_engine(registry.DEFAULT, setup(Answers("a", []), Answers("b", [])))
    assert registry.DEFAULT == "files"
    assert isinstance(engine, FileMover)
    with pytest.raises(DataError, match="no data engine 'pg'"):
        registry.data_engine("pg", setup(Answers("a", []), Answers("b", [])))


def test_verify_counts_the_source_and_reports_what_differs() -> None:
    src, dst = Answers("edge", [FILE, {"path": "d", "type": "dir"}]), Answers("cloud", [FILE])
    check = FileMover(setup(src, dst)).verify()
    assert (check.files, check.bytes) == (1, 3)
    assert check.problems and "d" in check.problems[0]
    same = FileMover(setup(Answers("edge", [FILE]), Answers("cloud", [FILE]))).verify()
    assert same.problems == []


def test_prepare_verify_reads_both_manifests() -> None:
    src, dst = Answers("edge", [FILE]), Answers("cloud", [FILE])
    FileMover(setup(src, dst)).prepare_verify()
    assert [p.rsplit("/", 1)[-1] for p in src.calls + dst.calls] == ["manifest", "manifest"]

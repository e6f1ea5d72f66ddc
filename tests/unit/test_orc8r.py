"""orc8r's shared state and freeze hook, on real server processes over one SQLite file.

Two processes stand for two replicas on one node (sharing the volume); a freeze must hold
writes without losing or half-doing them, since a migration copies the file meanwhile.
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubehop.testbed import images
from kubehop.waiting import NotYet, wait_for

ORC8R = images.asset("images", "orc8r", "orc8r.py")
HOLD_S = 1.0

Call = Callable[..., tuple[int, dict[str, Any], dict[str, str]]]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _client(port: int) -> Call:
    def call(method: str, path: str, body: Any = None,
             timeout: float = 10) -> tuple[int, dict[str, Any], dict[str, str]]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        try:
            data = None if body is None else json.dumps(body).encode()
            conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read()), dict(resp.getheaders())
        finally:
            conn.close()
    return call


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[[], Call]]:
    """Start orc8r processes on one state directory; each call is another replica."""
    procs: list[subprocess.Popen[bytes]] = []

    def one() -> Call:
        port = _free_port()
        env = {**os.environ, "PORT": str(port), "ORC8R_STATE_DIR": str(tmp_path / "state"),
               "ORC8R_FREEZE_HOLD_S": str(HOLD_S), "KUBEHOP_CLUSTER": f"c{len(procs)}"}
        procs.append(subprocess.Popen([sys.executable, str(ORC8R)], env=env))
        call = _client(port)

        def up() -> bool:
            try:
                return call("GET", "/healthz")[0] == 200
            except OSError as exc:
                raise NotYet(str(exc)) from exc
        wait_for(up, timeout=15, what=f"orc8r on port {port}")
        return call

    yield one
    for p in procs:
        p.terminate()
        p.wait(timeout=10)


def test_a_write_on_one_replica_is_read_on_the_other(start: Callable[[], Call],
                                                     tmp_path: Path) -> None:
    a, b = start(), start()
    assert a("POST", "/networks", {"id": "net1", "name": "one"})[0] == 201
    assert a("POST", "/networks/net1/subscribers", {"imsi": "IMSI001010000000001"})[0] == 201
    assert a("POST", "/networks/net1/gateways", {"id": "gw0"})[0] == 201
    code, answer, _ = a("POST", "/networks/net1/gateways/gw1/checkin", {"seq": 7})
    assert code == 200
    assert answer["seq"] == 7 and answer["cluster"] == "c0" and answer["checkins"] == 1
    code, answer, _ = b("POST", "/networks/net1/gateways/gw1/checkin", {"seq": 3})
    assert answer["checkins"] == 2 and answer["cluster"] == "c1"
    b("POST", "/networks/net1/gateways/gw1/checkin", {"seq": 7})  # a retry stored twice
    a("POST", "/networks/net1/gateways/gw1/checkin")  # without seq: counted, not listed

    assert b("GET", "/networks/net1/gateways/gw1/checkins")[1] == {"seqs": [3, 7]}
    assert b("GET", "/networks/net1")[1] == {"id": "net1", "name": "one", "gateways": 2,
                                             "subscribers": 1}
    assert b("GET", "/networks/net1/subscribers")[1] == ["IMSI001010000000001"]
    gws = {g["id"]: g["checkins"] for g in b("GET", "/networks/net1/gateways")[1]}
    assert gws == {"gw0": 0, "gw1": 4}
    assert b("GET", "/networks/nope")[0] == 404
    assert b("POST", "/networks/net1/gateways/gw1/checkin", {"seq": "x"})[0] == 400

    # The file is self-contained (journal mode DELETE, no WAL beside it).
    db = tmp_path / "state" / "orc8r.db"
    assert not db.with_name("orc8r.db-wal").exists()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        clusters = {r[0] for r in conn.execute("SELECT cluster FROM checkins")}
    assert clusters == {"c0", "c1"}


def test_starting_on_an_existing_database_does_not_write_it(start: Callable[[], Call],
                                                            tmp_path: Path) -> None:
    a = start()
    a("POST", "/networks", {"id": "net1"})
    db = tmp_path / "state" / "orc8r.db"
    before = (db.stat().st_mtime_ns, db.read_bytes())
    time.sleep(0.05)
    b = start()
    assert (db.stat().st_mtime_ns, db.read_bytes()) == before
    assert b("GET", "/networks")[1] == [{"id": "net1", "name": "net1"}]


def _in_thread(call: Call, *args: Any) -> tuple[threading.Thread, list[Any]]:
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(call(*args)))
    thread.start()
    return thread, result


def test_freeze_holds_writes_until_thaw(start: Callable[[], Call]) -> None:
    a = start()
    assert a("POST", "/admin/freeze")[1]["frozen"] is True
    assert a("GET", "/admin/state")[1]["frozen"] is True
    thread, result = _in_thread(a, "POST", "/networks/n/gateways/g/checkin", {"seq": 1})
    time.sleep(HOLD_S / 3)
    assert thread.is_alive(), "a write went through a freeze"
    # Reads are not held, and the held write has not been stored.
    assert a("GET", "/networks/n/gateways/g/checkins", timeout=HOLD_S / 3)[1] == {"seqs": []}
    assert a("POST", "/admin/thaw")[1] == {"frozen": False, "pod": socket.gethostname(),
                                           "cluster": "c0"}
    thread.join(timeout=5)
    assert result[0][0] == 200 and result[0][1]["seq"] == 1
    assert a("GET", "/networks/n/gateways/g/checkins")[1] == {"seqs": [1]}
    assert a("GET", "/admin/state")[1]["frozen"] is False


def test_a_write_held_past_the_hold_time_is_refused_and_not_stored(
        start: Callable[[], Call]) -> None:
    a = start()
    a("POST", "/admin/freeze")
    began = time.monotonic()
    code, answer, headers = a("POST", "/networks/n/gateways/g/checkin", {"seq": 5})
    held = time.monotonic() - began
    assert code == 503 and answer == {"error": "frozen"}
    assert headers.get("Retry-After") == "0"
    assert HOLD_S * 0.9 <= held < HOLD_S + 2
    a("POST", "/admin/thaw")
    assert a("GET", "/networks/n/gateways/g/checkins")[1] == {"seqs": []}
    assert a("GET", "/networks")[1] == []


def test_freeze_waits_for_the_write_in_progress() -> None:
    """The in-process gate: freeze returns only once the write under way has finished."""
    spec = importlib.util.spec_from_file_location("orc8r_gate", ORC8R)
    assert spec and spec.loader
    orc8r = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(orc8r)
    gate = orc8r.Freezer(hold_s=5)
    in_write, finish = threading.Event(), threading.Event()

    def write() -> None:
        with gate.writing_allowed():
            in_write.set()
            finish.wait(5)

    writer = threading.Thread(target=write)
    writer.start()
    assert in_write.wait(5)
    freezer = threading.Thread(target=gate.freeze)
    freezer.start()
    time.sleep(0.2)
    assert freezer.is_alive(), "freeze returned while a write was in progress"
    finish.set()
    freezer.join(5)
    writer.join(5)
    assert not freezer.is_alive() and gate.frozen and gate.writing == 0


def test_stateful_sample_keeps_orc8r_state_on_a_claim_with_hooks() -> None:
    from kubehop.testbed import layout, sample

    edge = layout.layouts(("edge", "cloud"))[0]
    docs = list(yaml.safe_load_all(sample.manifests(edge, interval_ms=10, stateful=True)))
    claim = next(d for d in docs if d["kind"] == "PersistentVolumeClaim")
    assert claim["metadata"] == {"name": "orc8r-state", "namespace": "orc8r-ns",
                                 "labels": {"app": "orc8r"}}
    assert claim["spec"] == {"storageClassName": "local-path", "accessModes": ["ReadWriteOnce"],
                             "resources": {"requests": {"storage": "1Gi"}}}
    kinds = [d["kind"] for d in docs]
    assert kinds.index("PersistentVolumeClaim") < kinds.index("Deployment")
    orc8r = next(d for d in docs if d["kind"] == "Deployment"
                 and d["metadata"]["name"] == "orc8r")
    template = orc8r["spec"]["template"]
    assert template["metadata"]["annotations"]["kubehop.io/freeze-hook"] == \
        "http://:8080/admin/freeze"
    assert template["metadata"]["annotations"]["kubehop.io/thaw-hook"] == \
        "http://:8080/admin/thaw"
    assert template["spec"]["volumes"] == [
        {"name": "state", "persistentVolumeClaim": {"claimName": "orc8r-state"}}]
    # Without it: the emptyDir, no claim, no hooks; only_namespace keeps the claim with orc8r.
    plain = list(yaml.safe_load_all(sample.manifests(edge, interval_ms=10)))
    assert "PersistentVolumeClaim" not in [d["kind"] for d in plain if d]
    assert "kubehop.io/freeze-hook" not in yaml.safe_dump_all(plain)
    agw_only = sample.manifests(edge, interval_ms=10, only_namespace="agw-ns", stateful=True)
    assert "PersistentVolumeClaim" not in agw_only and "agw-ns" in agw_only


def test_a_pod_started_on_a_torn_copy_serves_and_writes_once_the_final_copy_lands(
        start: Callable[[], Call], tmp_path: Path) -> None:
    """A migration's pre-copy can take the file mid-write; the target's pods start on it.
    orc8r must not crash-loop on it (the loop would outlast the final, consistent copy)."""
    state = tmp_path / "state"
    state.mkdir()
    (state / "orc8r.db").write_bytes(b"SQLite format 3\x00" + b"\xff" * 4080)
    a = start()
    assert a("GET", "/healthz")[0] == 200
    assert a("POST", "/networks", {"id": "early"})[0] >= 500, "no write on a torn file"
    good = tmp_path / "good.db"
    with sqlite3.connect(good) as conn:
        conn.execute("CREATE TABLE t (x)")
    good.replace(state / "orc8r.db")  # the final delta lands by rename
    a("POST", "/admin/freeze")
    a("POST", "/admin/thaw")
    assert a("POST", "/networks", {"id": "after"})[0] == 201
    assert a("GET", "/networks")[1] == [{"id": "after", "name": "after"}]

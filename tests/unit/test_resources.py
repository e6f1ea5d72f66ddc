"""The pure parts of the custom resources: a Migration's spec as a request, the journal's steps
as conditions and a bounded report, a policy's spec through the policy file's parser, the
CRDs' own schemas."""

from __future__ import annotations

import pytest
import yaml

from kubehop.adapters.store import MigrationRow, StepRow
from kubehop.controller import resources as rs
from kubehop.domain.model import ClusterInfo, Inventory, Strategy
from kubehop.errors import UsageError

INV = Inventory(kubeconfig="/dev/null", dns=None, clusters={
    n: ClusterInfo(name=n, context=f"{n}-ctx", tier=n, load_balancer="10.0.0.1")
    for n in ("edge", "fog", "cloud")})
SPEC = {"service": "orc8r", "namespace": "orc8r-ns", "from": "edge", "to": "cloud"}


def test_spec_becomes_the_engines_request_with_its_defaults() -> None:
    req = rs.request_from({**SPEC, "strategy": "externalname", "drainSeconds": 2}, INV)
    assert (req.service, req.namespace, req.source, req.target, req.target_namespace) == (
        "orc8r", "orc8r-ns", "edge", "cloud", "orc8r-ns")
    assert req.strategy is Strategy.EXTERNALNAME and req.drain_seconds == 2.0
    assert req.ready_timeout == 180.0
    assert rs.request_from({**SPEC, "from": "edge-ctx", "targetNamespace": "x"},
                           INV).target_namespace == "x"


@pytest.mark.parametrize(("spec", "fragment"), [
    ({**SPEC, "to": "mars"}, "spec.to: no cluster 'mars'"),
    ({**SPEC, "from": "nowhere"}, "spec.from: no cluster"),
    ({**SPEC, "to": "edge"}, "same cluster"),
    ({k: v for k, v in SPEC.items() if k != "to"}, "spec.to is missing"),
    ({**SPEC, "strategy": "teleport"}, "spec.strategy 'teleport'"),
    ({**SPEC, "drainSeconds": -1}, "spec.drainSeconds"),
])
def test_bad_spec_is_one_clear_line(spec: dict[str, object], fragment: str) -> None:
    with pytest.raises(UsageError) as err:
        rs.request_from(spec, INV)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def _row(name: str, state: str, start: float, end: float | None, detail: str = "") -> StepRow:
    return StepRow(seq=0, name=name, state=state, started=start, ended=end, detail=detail)


def test_conditions_follow_the_journal() -> None:
    steps = [_row("copy", "done", 100, 101.5), _row("route", "done", 101.5, 102),
             _row("start", "started", 102, None)]
    conds = {c["type"]: c for c in rs.conditions(steps)}
    assert list(conds) == ["copy", "route", "start"]
    assert conds["copy"]["status"] == "True" and conds["copy"]["message"] == "took 1.500s"
    assert conds["copy"]["lastTransitionTime"] == "1970-01-01T00:01:41Z"
    assert (conds["start"]["status"], conds["start"]["reason"]) == ("Unknown", "Running")


def test_conditions_of_a_rollback() -> None:
    steps = [_row("copy", "undone", 100, 101), _row("ready", "failed", 101, 103, "boom"),
             _row("undo-ready", "done", 103, 104), _row("undo-copy", "started", 104, None)]
    conds = {c["type"]: c for c in rs.conditions(steps)}
    assert list(conds) == ["copy", "ready"]
    assert (conds["copy"]["status"], conds["copy"]["reason"]) == ("Unknown", "Undoing")
    assert (conds["ready"]["status"], conds["ready"]["reason"]) == ("False", "RolledBack")
    steps[-1] = _row("undo-copy", "failed", 104, 105, "api down")
    copy = rs.conditions(steps)[0]
    assert (copy["status"], copy["reason"], copy["message"]) == ("False", "UndoFailed",
                                                                 "api down")


def test_a_resumed_step_counts_by_its_latest_row() -> None:
    steps = [_row("copy", "started", 100, None), _row("copy", "done", 110, 111)]
    assert rs.conditions(steps)[0]["status"] == "True"


def test_status_from_a_finished_row_is_bounded() -> None:
    steps = [_row(n, "done", 100 + i, 101 + i) for i, n in enumerate(
        ["copy", "route", "start", "ready", "dns", "verify", "switch", "drain", "cleanup"])]
    row = MigrationRow(id="m1", request={}, status="succeeded", created=100, updated=109,
                       error=None, context={"data": {"passes": [{}, {}], "bytes": 12,
                                                     "precopy_seconds": 1.23456,
                                                     "nested": {"x": 1}}},
                       steps=steps)
    st = rs.status_from_row(row)
    assert st["phase"] == "Succeeded" and st["migrationId"] == "m1" and st["error"] is None
    assert st["report"]["totalSeconds"] == 9.0 and st["report"]["switchSeconds"] == 7.0
    assert [p["name"] for p in st["report"]["phases"]][-1] == "cleanup"
    assert st["report"]["data"] == {"bytes": 12, "passes": 2, "precopy_seconds": 1.235}
    assert st["completionTime"] == "1970-01-01T00:01:49Z" and st["step"] == ""


def test_status_of_a_rollback_names_the_error_and_the_undone_steps() -> None:
    steps = [_row("copy", "undone", 100, 101), _row("start", "undone", 101, 102),
             _row("ready", "failed", 102, 103, "x"), _row("undo-copy", "done", 103, 104)]
    row = MigrationRow(id="m2", request={}, status="rolled-back", created=100, updated=104,
                       error="aborted by the user", context={}, steps=steps)
    st = rs.status_from_row(row)
    assert st["phase"] == "RolledBack" and st["error"] == "aborted by the user"
    assert st["undone"] == ["copy"]  # start has nothing to undo
    assert rs.status_from_row(row, error="e", undone=["ready", "copy"])["undone"] == [
        "ready", "copy"]


def test_latest_decisions_are_newest_first_and_bounded() -> None:
    old = [{"n": i} for i in range(20)]
    out = rs.latest_decisions(old, [{"n": "a"}, {"n": "b"}])
    assert len(out) == rs.MAX_DECISIONS and out[:3] == [{"n": "b"}, {"n": "a"}, {"n": 0}]


def test_policy_spec_errors_name_the_field_under_spec() -> None:
    good = {"rules": [{"name": "cpu", "expr": "cpu_headroom", "below": 0.3}]}
    assert len(rs.policy_from_spec(good, check_promql=False).rules) == 1
    with pytest.raises(UsageError) as err:
        rs.policy_from_spec({"rules": [{"name": "cpu", "expr": "cpu_headroom", "below": 3}]},
                            check_promql=False)
    assert str(err.value).startswith("spec.rules[0].below: ") and "between 0 and 1" in str(
        err.value)


def test_crds_are_structural_and_name_the_printer_columns() -> None:
    docs = list(yaml.safe_load_all(rs.crd_yaml()))
    assert [d["metadata"]["name"] for d in docs] == list(rs.CRD_NAMES)
    mig = docs[0]["spec"]["versions"][0]
    columns = [c["name"] for c in mig["additionalPrinterColumns"] if not c.get("priority")]
    assert columns == ["Service", "From", "To", "Strategy", "Phase", "Step", "Age"]
    props = mig["schema"]["openAPIV3Schema"]["properties"]
    assert props["spec"]["properties"]["strategy"]["enum"] == [str(s) for s in Strategy]
    assert props["status"]["properties"]["phase"]["enum"] == [
        "Pending", "Running", "Succeeded", "Failed", "RolledBack"]
    assert mig["subresources"] == {"status": {}}

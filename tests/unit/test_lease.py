"""Leader election decisions: who may take, renew or must wait for a Lease."""

from __future__ import annotations

import pytest

from kubehop.domain import lease
from kubehop.domain.lease import LeaseRecord

T0 = 1_800_000_000.0


def held(by: str, renewed: float, duration: float = 15, transitions: int = 2) -> LeaseRecord:
    return LeaseRecord(by, duration, renewed - 100, renewed, transitions)


def test_absent_lease_may_be_taken() -> None:
    assert lease.decide(None, "a", T0) == "take"
    first = lease.claim(None, "a", T0, 15)
    assert (first.holder, first.transitions, first.acquire_time, first.renew_time) == \
        ("a", 0, T0, T0)


def test_valid_lease_of_another_is_waited_for_until_it_expires() -> None:
    rec = held("b", renewed=T0)
    assert lease.decide(rec, "a", T0 + 14.9) == "wait"
    assert lease.decide(rec, "a", T0 + 15.0) == "wait"  # expired only strictly after
    assert lease.decide(rec, "a", T0 + 15.01) == "take"
    assert not lease.expired(rec, T0 + 15.0)
    assert lease.expired(rec, T0 + 15.01)


def test_taking_an_expired_lease_counts_a_transition_and_resets_acquire_time() -> None:
    taken = lease.claim(held("b", renewed=T0, transitions=2), "a", T0 + 20, 15)
    assert taken == LeaseRecord("a", 15, T0 + 20, T0 + 20, 3)


def test_holder_renews_only_the_renew_time_even_when_it_let_it_expire() -> None:
    rec = held("a", renewed=T0)
    assert lease.decide(rec, "a", T0 + 1) == "renew"
    assert lease.decide(rec, "a", T0 + 60) == "renew"
    renewed = lease.claim(rec, "a", T0 + 5, 15)
    assert renewed == LeaseRecord("a", 15, T0 - 100, T0 + 5, 2)


def test_released_or_never_renewed_lease_is_free() -> None:
    free = lease.released(held("b", renewed=T0))
    assert free.holder == "" and free.renew_time is None and free.transitions == 2
    assert lease.decide(free, "a", T0) == "take"
    assert lease.claim(free, "a", T0, 15).transitions == 3
    assert lease.decide(LeaseRecord("b", 15, None, None, 0), "a", T0) == "take"


def test_spec_round_trips_through_microtime() -> None:
    rec = LeaseRecord("a", 15, T0 + 0.25, T0 + 1.123456, 4)
    spec = lease.to_spec(rec)
    assert spec["renewTime"] == "2027-01-15T08:00:01.123456Z"
    assert spec["leaseDurationSeconds"] == 15 and spec["leaseTransitions"] == 4
    back = lease.from_spec(spec, 99)
    assert back.holder == "a" and back.duration_s == 15 and back.transitions == 4
    assert back.renew_time == pytest.approx(T0 + 1.123456, abs=1e-6)
    assert lease.to_spec(lease.released(rec)).keys() == {
        "holderIdentity", "leaseDurationSeconds", "leaseTransitions"}


def test_unreadable_or_missing_fields_fall_back_safely() -> None:
    rec = lease.from_spec({"holderIdentity": "b", "renewTime": "yesterday"}, 15)
    assert rec.duration_s == 15 and rec.renew_time is None
    assert lease.decide(rec, "a", T0) == "take"  # never (readably) renewed: free
    assert lease.from_spec(None, 7) == LeaseRecord("", 7)
    assert lease.parse_micro("2027-01-15T08:00:00Z") == T0

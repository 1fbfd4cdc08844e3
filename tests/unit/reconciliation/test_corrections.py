"""Confirming corrections in the batch (FakeStore): a later change at the source that carries
the proposed value confirms the correction and the mismatch resolves ``fixed_at_source``
pointing to it; anything else leaves the correction alone."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.idschemes.vn import make_id
from reconciliation.corrections import (
    CORRECTION_TRANSITIONS,
    OpenCorrection,
    carries,
    proposal_problem,
    send_from,
)
from reconciliation.store.rows import SectorRow
from tests.unit.reconciliation.fakes import FakeFeed, FakeStore, config, person, run

A = make_id("079", 1985, "M", 1)
B = make_id("001", 1990, "F", 2)


def _world():
    store, feed = FakeStore(), FakeFeed(config())
    run(store, feed, [feed.put("registry", A, **person(A, name="Nguyễn Văn An"))])
    return store, feed


def _propose(store, mismatch_id, kind, field, value, status="sent", cid=1):
    row = store.mismatches[mismatch_id]
    store.corrections[cid] = OpenCorrection(
        cid, mismatch_id, row.sector, row.record_key, kind, field, value, status
    )


def test_a_name_fixed_at_the_source_confirms_the_correction_and_resolves_the_mismatch():
    store, feed = _world()
    run(store, feed, [feed.put("tax", "T1", **person(A, name="Nguyen Van Anh"))])
    mismatch = store.mismatch("tax", "T1", "NAME_MISMATCH")
    _propose(store, mismatch.id, "value", "full_name", "Nguyễn Văn An")

    # Any other change leaves the correction sent.
    run(store, feed, [feed.put("tax", "T1", **person(A, name="Nguyen Van Anh", status="x"))])
    assert store.corrections[1].status == "sent"

    # The agency writes the name without diacritics: equal after the hub's folding.
    run(store, feed, [feed.put("tax", "T1", **person(A, name="NGUYEN VAN AN"))])
    assert store.corrections[1].status == "confirmed"
    assert store.fixed_by == {mismatch.id: 1}
    row = store.mismatch("tax", "T1", "NAME_MISMATCH")
    assert (row.status, row.resolution) == ("resolved", "fixed_at_source")


def test_an_accepted_candidate_is_confirmed_when_the_record_carries_its_id():
    store, feed = _world()
    run(store, feed, [feed.put("tax", "T2", **person(B, name="Nguyễn Văn An"))])
    mismatch = store.mismatch("tax", "T2", "ID_NOT_IN_REGISTRY")
    _propose(store, mismatch.id, "candidate", "citizen_id", f" {A} ")

    run(store, feed, [feed.put("tax", "T2", **person(A))])
    assert store.corrections[1].status == "confirmed"
    assert store.fixed_by == {mismatch.id: 1}
    assert store.mismatch("tax", "T2", "ID_NOT_IN_REGISTRY").resolution == "fixed_at_source"


@pytest.mark.parametrize("status", ["proposed", "approved", "rejected", "withdrawn"])
def test_a_correction_not_yet_sent_or_already_closed_is_not_confirmed(status):
    store, feed = _world()
    run(store, feed, [feed.put("tax", "T1", **person(A, dob=date(1985, 4, 14)))])
    mismatch = store.mismatch("tax", "T1", "DOB_MISMATCH")
    _propose(store, mismatch.id, "value", "date_of_birth", "1985-03-14", status=status)
    run(store, feed, [feed.put("tax", "T1", **person(A))])
    assert store.corrections[1].status == status
    assert store.fixed_by == {}


def test_an_acknowledged_correction_is_confirmed_when_the_fix_arrives_later():
    store, feed = _world()
    run(store, feed, [feed.put("tax", "T1", **person(A, dob=date(1985, 4, 14)))])
    mismatch = store.mismatch("tax", "T1", "DOB_MISMATCH")
    _propose(store, mismatch.id, "value", "date_of_birth", "1985-03-14", status="acknowledged")
    run(store, feed, [feed.put("tax", "T1", **person(A))])
    assert store.corrections[1].status == "confirmed"


def test_a_different_value_at_the_source_does_not_confirm():
    store, feed = _world()
    run(store, feed, [feed.put("tax", "T1", **person(A, dob=date(1985, 4, 14)))])
    mismatch = store.mismatch("tax", "T1", "DOB_MISMATCH")
    _propose(store, mismatch.id, "value", "date_of_birth", "1985-03-14")
    run(store, feed, [feed.put("tax", "T1", **person(A, dob=date(1985, 5, 14)))])
    assert store.corrections[1].status == "sent"


def _rec(**kw) -> SectorRow:
    return SectorRow("tax", "T1", **kw)


def _c(kind: str, field: str, value: str) -> OpenCorrection:
    return OpenCorrection(1, 1, "tax", "T1", kind, field, value, "sent")


@given(st.text(max_size=30))
def test_carries_never_raises_and_an_empty_record_carries_nothing(value):
    for kind, field in (
        ("value", "full_name"),
        ("value", "date_of_birth"),
        ("value", "sex"),
        ("value", "province_code"),
        ("candidate", "citizen_id"),
    ):
        assert carries(_c(kind, field, value), _rec(), lambda raw: raw.strip() or None) is False


def test_carries_compares_after_normalization():
    norm = {A.lower(): A}.get
    assert carries(_c("candidate", "citizen_id", A.lower()), _rec(citizen_id=A), norm)
    assert carries(_c("value", "sex", "m "), _rec(sex="M"), norm)
    assert carries(_c("value", "province_code", "79"), _rec(province_code=" 79"), norm)
    assert not carries(_c("value", "province_code", "79"), _rec(province_code="01"), norm)
    named = _rec(full_name="Nguyễn Văn An")
    assert carries(_c("value", "full_name", "nguyen van an"), named, norm)
    assert not carries(_c("value", "full_name", "nguyen van an"), named, norm, strict_script=True)


def test_proposals_are_checked_against_the_rule():
    assert proposal_problem("NAME_MISMATCH", "value", "Nguyễn Văn An") is None
    assert proposal_problem("ID_NOT_IN_REGISTRY", "candidate", A) is None
    assert "not fixed by a candidate" in proposal_problem("NAME_MISMATCH", "candidate", A)
    assert "no single value" in proposal_problem("DUPLICATE_ID", "value", "x")
    assert "not a date" in proposal_problem("DOB_MISMATCH", "value", "14/03/1985")
    assert "empty" in proposal_problem("SEX_MISMATCH", "value", "  ")
    assert "unknown kind" in proposal_problem("SEX_MISMATCH", "other", "M")


def test_with_approval_a_correction_is_sent_only_once_approved():
    assert send_from(True) == ("approved",)
    assert set(send_from(False)) == set(CORRECTION_TRANSITIONS["send"].from_statuses)
    assert not CORRECTION_TRANSITIONS["withdraw"].allows("sent")
    assert CORRECTION_TRANSITIONS["reject"].reason_required

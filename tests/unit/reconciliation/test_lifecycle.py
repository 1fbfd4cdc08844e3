"""Mismatch lifecycle transitions (in memory, before anything is written) and change ordering."""

from __future__ import annotations

from datetime import UTC, datetime

from reconciliation.batch import is_older
from reconciliation.lifecycle import Ledger, MismatchRow
from reconciliation.rules import Finding

KEY = ("tax", "T1")
NAME = Finding("NAME_MISMATCH", "full_name", "high", "Lê Văn An", "Nguyễn Văn An", 0.7)
OTHER_NAME = Finding("NAME_MISMATCH", "full_name", "high", "Lê Văn Bình", "Nguyễn Văn An", 0.6)


def row(status: str, finding: Finding = NAME, **kw) -> MismatchRow:
    return MismatchRow(
        7,
        KEY[0],
        KEY[1],
        finding.rule,
        finding.field,
        finding.severity,
        status,
        sector_value=finding.sector_value,
        registry_value=finding.registry_value,
        score=finding.score,
        values_hash=finding.values_hash,
        citizen_id="079085000001",
        **kw,
    )


def observe(ledger: Ledger, *findings: Finding) -> None:
    ledger.observe(KEY, list(findings), citizen_id="079085000001", province_code=None)


def actions(ledger: Ledger) -> list[tuple]:
    return [(h.action, h.from_status, h.to_status) for h in ledger._history]


def events(ledger: Ledger) -> list[str]:
    return [e.values["event"] for e in ledger._events]


def test_a_new_finding_opens_a_mismatch():
    ledger = Ledger()
    observe(ledger, NAME)
    assert actions(ledger) == [("opened", None, "open")]
    assert events(ledger) == ["opened"]
    assert ledger.has_open(KEY)


def test_the_same_finding_again_changes_nothing():
    ledger = Ledger([row("open")])
    observe(ledger, NAME)
    observe(ledger, NAME)
    assert actions(ledger) == [] and events(ledger) == []
    assert not ledger.rows(KEY)[NAME.key].dirty


def test_a_passing_rule_resolves_an_open_or_in_review_mismatch():
    for status in ("open", "in_review"):
        ledger = Ledger([row(status, assignee="lan")])
        observe(ledger)
        (mismatch,) = ledger.rows(KEY).values()
        assert (mismatch.status, mismatch.resolution, mismatch.assignee) == (
            "resolved",
            "fixed_at_source",
            "lan",
        )
        assert actions(ledger) == [("resolved", status, "resolved")]
        assert events(ledger) == ["resolved"]
        assert not ledger.has_open(KEY)


def test_a_resolved_mismatch_that_fires_again_is_reopened():
    ledger = Ledger([row("resolved", resolution="fixed_at_source")])
    observe(ledger, NAME)
    (mismatch,) = ledger.rows(KEY).values()
    assert (mismatch.status, mismatch.resolution, mismatch.resolved_at) == ("open", None, "clear")
    assert actions(ledger) == [("reopened", "resolved", "open")]


def test_a_dismissal_holds_while_the_values_are_the_same():
    ledger = Ledger([row("dismissed", resolution="false_positive")])
    observe(ledger, NAME)
    observe(ledger)  # the rule passing does not undo a dismissal either
    observe(ledger, NAME)
    assert actions(ledger) == []
    assert ledger.rows(KEY)[NAME.key].status == "dismissed"
    assert not ledger.has_open(KEY)


def test_a_dismissed_mismatch_reopens_when_its_values_change():
    ledger = Ledger([row("dismissed", resolution="false_positive")])
    observe(ledger, OTHER_NAME)
    mismatch = ledger.rows(KEY)[NAME.key]
    assert (mismatch.status, mismatch.sector_value) == ("open", "Lê Văn Bình")
    assert actions(ledger) == [("reopened", "dismissed", "open")]
    assert events(ledger) == ["reopened"]


def test_changed_values_of_an_open_mismatch_are_refreshed_and_noted():
    ledger = Ledger([row("open")])
    observe(ledger, OTHER_NAME)
    mismatch = ledger.rows(KEY)[NAME.key]
    assert (mismatch.status, mismatch.sector_value, mismatch.dirty) == ("open", "Lê Văn Bình", True)
    assert actions(ledger) == [("updated", "open", "open")]
    assert events(ledger) == []  # only opened / reopened / resolved are published


def test_a_deleted_record_resolves_what_is_open_and_leaves_dismissals():
    dob = Finding("DOB_MISMATCH", "date_of_birth", "medium", "1985-01-02", "1985-02-01")
    ledger = Ledger([row("open"), row("dismissed", dob)])
    ledger.record_deleted(KEY)
    statuses = {k[0]: (r.status, r.resolution) for k, r in ledger.rows(KEY).items()}
    assert statuses == {
        "NAME_MISMATCH": ("resolved", "record_deleted"),
        "DOB_MISMATCH": ("dismissed", None),
    }


def test_opened_and_resolved_in_one_batch_keeps_both_transitions():
    ledger = Ledger()
    observe(ledger, NAME)
    observe(ledger)
    assert actions(ledger) == [("opened", None, "open"), ("resolved", "open", "resolved")]
    assert events(ledger) == ["opened", "resolved"]


def test_a_disabled_rule_resolves_with_a_note():
    ledger = Ledger([row("open")])
    ledger.observe(KEY, [], citizen_id=None, province_code=None, disabled={"NAME_MISMATCH"})
    assert ledger._history[0].note == "fixed_at_source: rule disabled for the sector"


T1 = datetime(2025, 1, 1, tzinfo=UTC)
T2 = datetime(2025, 1, 2, tzinfo=UTC)


def test_changes_are_ordered_by_lsn_then_commit_time():
    assert is_older(5, T2, 6, T1)  # LSN decides when both have one
    assert not is_older(6, T1, 5, T2)
    assert not is_older(5, T1, 5, T1)  # the same position: a re-delivery, applied again
    assert is_older(None, T1, 5, T2)  # else commit time
    assert not is_older(None, None, 5, T2)  # nothing to compare: applied
    assert not is_older(3, None, None, None)

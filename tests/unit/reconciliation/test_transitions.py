"""The one transition table: what each steward action and reconciler step does to a mismatch."""

from __future__ import annotations

import pytest

from hub.vocabulary import MISMATCH_STATUSES
from reconciliation.lifecycle import STEWARD_ACTIONS, TRANSITIONS, steward_note


def test_steward_actions_move_statuses_as_the_queue_documents():
    table = {
        name: (t.from_statuses, t.to_status, t.changes()) for name, t in STEWARD_ACTIONS.items()
    }
    assert table == {
        "assign": (("open", "in_review"), "in_review", {"status": "in_review"}),
        "resolve": (
            ("open", "in_review"),
            "resolved",
            {"status": "resolved", "resolution": "manual", "resolved_at": "set"},
        ),
        "dismiss": (
            ("open", "in_review"),
            "dismissed",
            {"status": "dismissed", "resolution": "false_positive", "resolved_at": "set"},
        ),
        "reopen": (
            ("resolved", "dismissed"),
            "open",
            {"status": "open", "resolution": None, "resolved_at": "clear"},
        ),
        "comment": (MISMATCH_STATUSES, None, {}),
    }
    assert [n for n, t in STEWARD_ACTIONS.items() if t.note_required] == ["comment"]


@pytest.mark.parametrize("name", sorted(TRANSITIONS))
def test_every_transition_starts_and_ends_in_known_statuses(name):
    t = TRANSITIONS[name]
    assert set(t.from_statuses) <= {None, *MISMATCH_STATUSES}
    assert t.to_status is None or t.to_status in MISMATCH_STATUSES
    assert t.actor in ("reconciler", "steward")


def test_reconciler_resolutions_say_why_and_write_resolved_in_the_history():
    for name in ("fixed_at_source", "record_deleted"):
        t = TRANSITIONS[name]
        assert t.action == "resolved"
        assert t.changes() == {"status": "resolved", "resolution": name, "resolved_at": "set"}
    assert TRANSITIONS["opened"].changes() == {"status": "open"}
    assert not TRANSITIONS["opened"].allows("resolved")


def test_an_assignment_note_names_the_assignee():
    assign = STEWARD_ACTIONS["assign"]
    assert steward_note(assign, None, "lan") == "assigned to lan"
    assert steward_note(assign, "urgent", "lan") == "assigned to lan: urgent"
    assert steward_note(STEWARD_ACTIONS["comment"], "seen", None) == "seen"

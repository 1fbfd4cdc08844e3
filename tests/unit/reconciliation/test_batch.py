"""The batch logic against an in-memory store and feed (tests/unit/reconciliation/fakes.py):
registry and sector changes, stale and deleted records, duplicate groups, legacy numbers,
suggestions — each asserted on the mismatches and history the batch leaves, in milliseconds.
The same behaviours against PostgreSQL and Kafka: tests/integration/reconciliation/."""

from __future__ import annotations

from datetime import date

from hypothesis import given, settings
from hypothesis import strategies as st

from hub.idschemes.vn import make_id
from tests.unit.reconciliation.fakes import FakeFeed, FakeStore, config, person, run

A = make_id("079", 1985, "M", 1)
B = make_id("001", 1990, "F", 2)
LEGACY = "123456789"
DOB = date(1985, 3, 14)


def setup(**sectors):
    feed = FakeFeed(config(sectors or None))
    return FakeStore(), feed


def test_a_record_matching_its_citizen_is_verified_without_a_mismatch():
    store, feed = setup()
    run(store, feed, [feed.put("registry", A, **person(A)), feed.put("tax", "T1", **person(A))])
    assert store.mismatches == {}
    assert store.records[("tax", "T1")].verified
    assert store.registry[A].name_folded == "nguyen van an"


def test_a_wrong_birth_date_opens_and_fixing_it_at_the_source_resolves_it():
    store, feed = setup()
    wrong = person(A, dob=date(1985, 4, 14), status="active")
    run(store, feed, [feed.put("registry", A, **person(A)), feed.put("tax", "T1", **wrong)])
    assert store.open_rules("tax", "T1") == {"DOB_MISMATCH"}
    assert not store.records[("tax", "T1")].verified
    assert [(e["event"], e["rule"], e["status"]) for e in store.events] == [
        ("opened", "DOB_MISMATCH", "open")
    ]

    run(store, feed, [feed.put("tax", "T1", **person(A, status="active"))])
    row = store.mismatch("tax", "T1", "DOB_MISMATCH")
    assert (row.status, row.resolution) == ("resolved", "fixed_at_source")
    assert store.actions("tax", "T1", "DOB_MISMATCH") == [
        ("opened", None, "open"),
        ("resolved", "open", "resolved"),
    ]
    assert store.records[("tax", "T1")].verified


def test_a_registry_change_re_judges_every_record_carrying_the_id():
    store, feed = setup()
    run(store, feed, [feed.put("tax", "T1", **person(A)), feed.put("bank", "K1", **person(A))])
    assert store.open_rules("tax", "T1") == store.open_rules("bank", "K1") == {"ID_NOT_IN_REGISTRY"}

    run(store, feed, [feed.put("registry", A, **person(A))])
    assert store.open_rules("tax", "T1") == store.open_rules("bank", "K1") == set()
    assert store.actions("bank", "K1", "ID_NOT_IN_REGISTRY")[-1] == ("resolved", "open", "resolved")

    run(store, feed, [feed.put("registry", A, **person(A, date_of_death=date(2020, 1, 1)))])
    assert store.open_rules("tax", "T1") == set()  # no status: not active
    run(store, feed, [feed.put("bank", "K1", **person(A, status="active"))])
    assert store.open_rules("bank", "K1") == {"DECEASED_ACTIVE"}


def test_an_older_change_is_stale_and_changes_nothing():
    store, feed = setup()
    run(store, feed, [feed.put("registry", A, **person(A))])
    new = feed.change("tax", "T1", person(A, status="active"), lsn=5000)
    old = feed.change("tax", "T1", person(A, dob=date(1999, 1, 1)), lsn=4000)
    applied = run(store, feed, [new, old])
    assert (applied.result.applied, applied.result.stale) == (1, 1)
    assert store.records[("tax", "T1")].date_of_birth == DOB
    assert store.mismatches == {}


def test_a_delete_resolves_the_open_mismatches_and_an_older_update_cannot_revive_it():
    store, feed = setup()
    run(store, feed, [feed.change("tax", "T1", person(A), lsn=100)])
    assert store.open_rules("tax", "T1") == {"ID_NOT_IN_REGISTRY"}

    run(store, feed, [feed.change("tax", "T1", None, lsn=200)])
    assert ("tax", "T1") not in store.records
    assert store.tombstones[("tax", "T1")][0] == 200
    row = store.mismatch("tax", "T1", "ID_NOT_IN_REGISTRY")
    assert (row.status, row.resolution) == ("resolved", "record_deleted")

    applied = run(store, feed, [feed.change("tax", "T1", person(A), lsn=150)])
    assert applied.result.stale == 1 and ("tax", "T1") not in store.records

    run(store, feed, [feed.change("tax", "T1", person(A), lsn=300)])  # a newer insert revives
    assert ("tax", "T1") in store.records and ("tax", "T1") not in store.tombstones
    assert store.actions("tax", "T1", "ID_NOT_IN_REGISTRY")[-1] == ("reopened", "resolved", "open")


def test_two_active_records_of_one_id_form_a_duplicate_group_that_closing_one_dissolves():
    store, feed = setup()
    run(store, feed, [feed.put("registry", A, **person(A))])
    run(
        store,
        feed,
        [
            feed.put("tax", "T1", **person(A, status="active")),
            feed.put("tax", "T2", **person(A, status="active")),
            feed.put("bank", "K1", **person(A, status="active")),  # not a unique sector
            feed.put("bank", "K2", **person(A, status="active")),
        ],
    )
    assert store.open_rules("tax", "T1") == store.open_rules("tax", "T2") == {"DUPLICATE_ID"}
    assert store.open_rules("bank", "K1") == set()
    assert store.mismatch("tax", "T1", "DUPLICATE_ID").sector_value is not None

    run(store, feed, [feed.put("tax", "T2", **person(A, status="closed"))])
    assert store.open_rules("tax", "T1") == store.open_rules("tax", "T2") == set()
    for key in ("T1", "T2"):
        assert store.actions("tax", key, "DUPLICATE_ID") == [
            ("opened", None, "open"),
            ("resolved", "open", "resolved"),
        ]


def test_a_duplicate_group_is_judged_once_against_the_group_the_batch_leaves():
    store, feed = setup()
    run(store, feed, [feed.put("registry", A, **person(A))])
    run(store, feed, [feed.put("tax", f"T{i}", **person(A, status="active")) for i in range(5)])
    # One opening per record, none of the intermediate group sizes in the history.
    assert len(store.history) == 5
    assert {a for _m, a, *_ in store.history} == {"opened"}


def test_a_legacy_number_finds_the_citizen_holding_it_and_is_locked_by_a_group_member():
    store, feed = setup()
    run(store, feed, [feed.put("registry", A, **person(A, legacy_id=LEGACY))])
    assert store.legacy_locks == [[LEGACY]]  # the citizen's side locks the number it changed
    run(store, feed, [feed.put("tax", "T1", **person(LEGACY, status="active"))])
    assert store.open_rules("tax", "T1") == {"ID_LEGACY"}
    assert store.legacy_locks == [[LEGACY], [LEGACY]]  # and so does the record's side
    held = store.mismatch("tax", "T1", "ID_LEGACY").suggestions
    assert held[0]["citizen_id"] == A and held[0]["found_by"] == ["legacy_id"]

    run(store, feed, [feed.put("registry", A, **person(A, legacy_id=LEGACY, name="Lê Văn An"))])
    assert store.open_rules("tax", "T1") == {"ID_LEGACY", "NAME_MISMATCH"}


def test_a_process_taking_every_partition_takes_no_legacy_locks():
    store, feed = setup()
    run(store, feed, [feed.put("registry", A, **person(A, legacy_id=LEGACY))], lock_legacy=False)
    run(store, feed, [feed.put("tax", "T1", **person(LEGACY))], lock_legacy=False)
    assert store.open_rules("tax", "T1") == {"ID_LEGACY"}
    assert store.legacy_locks == []


def test_an_unknown_id_gets_the_registry_citizen_with_the_same_name_and_birth_date_suggested():
    store, feed = setup()
    run(store, feed, [feed.put("registry", B, **person(B, name="Trần Thị Bình", dob=DOB))])
    run(store, feed, [feed.put("registry", A, **person(A))])
    run(store, feed, [feed.put("tax", "T1", **person(make_id("079", 1985, "M", 9)))])
    row = store.mismatch("tax", "T1", "ID_NOT_IN_REGISTRY")
    assert row.suggestions[0]["citizen_id"] == A
    assert B not in {s["citizen_id"] for s in row.suggestions}

    # A change of a field suggestions are not found by keeps them; a new name finds again.
    run(store, feed, [feed.put("tax", "T1", **person(make_id("079", 1985, "M", 9), status="x"))])
    assert store.mismatch("tax", "T1", "ID_NOT_IN_REGISTRY").suggestions == row.suggestions
    new_name = person(make_id("079", 1985, "M", 9), name="Trần Thị Bình", dob=DOB)
    run(store, feed, [feed.put("tax", "T1", **new_name)])
    found = store.mismatch("tax", "T1", "ID_NOT_IN_REGISTRY").suggestions
    assert found[0]["citizen_id"] == B


def test_a_sector_dropped_from_the_config_leaves_its_records_alone():
    store, feed = setup(tax={}, bank={})
    run(store, feed, [feed.put("bank", "K1", **person(A))])
    narrowed = FakeFeed(config({"tax": {}}))
    narrowed.source_of["t.sector.bank.changes"] = "bank"  # still consumed, no longer judged
    narrowed.topic_of["bank"] = "t.sector.bank.changes"
    narrowed.offsets = dict(feed.offsets)
    run(store, narrowed, [narrowed.put("registry", A, **person(A))])
    assert store.open_rules("bank", "K1") == {"ID_NOT_IN_REGISTRY"}


STEPS = st.lists(
    st.tuples(st.sampled_from(["K1", "K2"]), st.sampled_from(["put", "dob", "other", "delete"])),
    min_size=1,
    max_size=12,
)


@settings(max_examples=25, deadline=None)
@given(STEPS, st.data())
def test_the_mismatch_history_does_not_depend_on_where_batch_boundaries_fall(steps, data):
    def history(cuts: set[int]) -> list[tuple]:
        store, feed = setup(bank={})
        run(store, feed, [feed.put("registry", A, **person(A))])
        changes = []
        for key, what in steps:
            if what == "delete":
                changes.append(feed.delete("bank", key))
                continue
            cid = B if what == "other" else A
            fields = person(cid, dob=date(1970, 1, 1) if what == "dob" else DOB)
            changes.append(feed.put("bank", key, **fields))
        bounds = [0, *sorted(c for c in cuts if c < len(changes)), len(changes)]
        for start, end in zip(bounds, bounds[1:], strict=False):
            if start < end:
                run(store, feed, changes[start:end])
        by_id = {m.id: (m.record_key, m.rule) for m in store.mismatches.values()}
        return [(by_id[m], action, to) for m, action, _from, to, _note in store.history]

    cuts = data.draw(st.sets(st.integers(1, len(steps))))
    assert history(cuts) == history(set())

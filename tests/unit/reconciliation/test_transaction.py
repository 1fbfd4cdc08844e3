"""A batch's transaction against the in-memory store: messages another process already
applied are skipped, a batch fenced by another process's offsets stores nothing."""

from __future__ import annotations

import pytest

from hub.idschemes.vn import make_id
from reconciliation.transaction import Fenced
from tests.unit.reconciliation.fakes import GROUP, FakeFeed, FakeStore, config, person, run

A = make_id("079", 1985, "M", 1)
TAX = ("t.sector.tax.changes", 0)


def test_a_batch_stores_its_next_offsets_with_its_state_and_queues_its_events():
    store, feed = FakeStore(), FakeFeed(config())
    applied = run(store, feed, [feed.put("tax", "T1", **person(A)), feed.put("tax", "T2")])
    assert store.offsets == {(GROUP, *TAX): 2}
    assert applied.result.offsets == {TAX: 2}
    assert applied.result.events == len(applied.queued) == len(store.outbox) == 2
    assert sorted(e["rule"] for e in store.events) == ["ID_MISSING", "ID_NOT_IN_REGISTRY"]


def test_messages_below_the_stored_offset_are_skipped():
    store, feed = FakeStore(), FakeFeed(config())
    first = feed.put("tax", "T1", **person(A))
    run(store, feed, [first])
    again = feed.put("tax", "T2", **person(A))
    applied = run(store, feed, [first, again])  # a re-delivery of offset 0 with offset 1
    assert (applied.result.skipped, applied.result.applied) == (1, 1)
    assert store.offsets == {(GROUP, *TAX): 2}
    assert sorted(store.records) == [("tax", "T1"), ("tax", "T2")]


def test_a_batch_fenced_by_another_process_stores_nothing():
    store, feed = FakeStore(), FakeFeed(config())
    change = feed.put("tax", "T1", **person(A))

    def race(group_id, partitions):
        # Another process inserts this partition's offsets after our read: our insert
        # conflicts, as ON CONFLICT DO NOTHING would find.
        found = FakeStore.lock_offsets(store, group_id, partitions)
        store.offsets[(group_id, *TAX)] = 1
        return found

    store.lock_offsets = race
    with pytest.raises(Fenced):
        run(store, feed, [change])
    assert store.records == {} and store.mismatches == {} and store.outbox == []
    assert store.offsets == {}  # the other process's row went with the rollback too

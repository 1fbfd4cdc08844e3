"""A record whose citizen ID changes arrives as a delete keyed by the old ID and a create
keyed by the new one, on two partitions, in either order; both orders leave the record
under its new ID (reconciliation/batch.py ``superseded``). Against FakeStore."""

from __future__ import annotations

from kafka import TopicPartition

from hub.idschemes.vn import make_id
from tests.unit.reconciliation.fakes import _EMPTY, FakeFeed, FakeStore, config, person, run

A = make_id("079", 1985, "M", 1)
B = make_id("001", 1990, "F", 2)


def retraction(feed: FakeFeed, key: str, cid: str | None, lsn: int, partition: int = 1):
    """The delete half of an ID change: its before image carries ``cid``."""
    event = {
        "op": "d",
        "record_key": key,
        "before": None if cid is None else {**_EMPTY, "citizen_id": cid},
        "after": None,
        "source": {"position": "0/0", "lsn": lsn, "commit_ts_ms": 1_700_000_000_000},
    }
    topic = feed.topic_of["tax"]
    return feed.decoder.change("tax", event, TopicPartition(topic, partition), lsn)


def setup():
    store, feed = FakeStore(), FakeFeed(config())
    run(store, feed, [feed.put("registry", A, **person(A)), feed.put("registry", B, **person(B))])
    run(store, feed, [feed.change("tax", "T1", person(A), lsn=100)])
    return store, feed


def test_the_delete_carries_the_id_it_retracts():
    _, feed = setup()
    assert retraction(feed, "T1", A, 200).retracts == A
    assert retraction(feed, "T1", None, 200).retracts is None


def test_a_changed_id_retracted_before_the_create_leaves_the_new_record():
    store, feed = setup()
    run(store, feed, [retraction(feed, "T1", A, 200)])
    assert ("tax", "T1") not in store.records
    run(store, feed, [feed.change("tax", "T1", person(B), op="c", lsn=200)])
    assert store.records[("tax", "T1")].citizen_id == B


def test_a_changed_id_created_before_the_retraction_leaves_the_new_record():
    store, feed = setup()
    run(store, feed, [feed.change("tax", "T1", person(B), op="c", lsn=200)])
    applied = run(store, feed, [retraction(feed, "T1", A, 200)])
    assert applied.result.stale == 1
    assert store.records[("tax", "T1")].citizen_id == B


def test_a_delete_of_the_id_the_record_carries_still_deletes_at_the_same_position():
    store, feed = setup()
    # Inserted and deleted in one transaction: both events have the transaction's LSN.
    run(store, feed, [feed.change("tax", "T2", person(B), op="c", lsn=300),
                      retraction(feed, "T2", B, 300, partition=0)])  # fmt: skip
    assert ("tax", "T2") not in store.records
    # A delete whose image does not say the ID deletes as before.
    run(store, feed, [retraction(feed, "T1", None, 400)])
    assert ("tax", "T1") not in store.records


def test_a_later_delete_retracting_another_id_still_deletes():
    store, feed = setup()
    run(store, feed, [retraction(feed, "T1", B, 500)])
    assert ("tax", "T1") not in store.records

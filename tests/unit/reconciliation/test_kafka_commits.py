"""KafkaCommits: what the reconciler commits to Kafka after each database commit, and how
it reports commit failures (one WARNING per run of failures, never an exception)."""

from __future__ import annotations

import logging

from hypothesis import given
from hypothesis import strategies as st
from kafka import TopicPartition
from kafka.errors import KafkaTimeoutError, RebalanceInProgressError

from reconciliation.engine import KafkaCommits

PARTS = [("t.registry", 0), ("t.registry", 1), ("t.tax", 0)]

batches = st.lists(
    st.dictionaries(st.sampled_from(PARTS), st.integers(0, 1_000), max_size=3), max_size=30
)
outcomes = st.lists(st.booleans(), max_size=40)


@given(batches)
def test_offsets_only_move_forward_and_end_at_the_highest_stored(stored_batches):
    commits = KafkaCommits("g")
    highest: dict[TopicPartition, int] = {}
    for stored in stored_batches:
        sent = commits.to_commit(stored)
        for tp, meta in sent.items():
            assert meta.offset > highest.get(tp, -1)
            assert (meta.metadata, meta.leader_epoch) == ("", -1)
            highest[tp] = meta.offset
        # A partition not sent is one that did not move past what was sent before.
        for (topic, partition), offset in stored.items():
            tp = TopicPartition(topic, partition)
            assert tp in sent or offset <= highest[tp]
    expected: dict[TopicPartition, int] = {}
    for stored in stored_batches:
        for (topic, partition), offset in stored.items():
            tp = TopicPartition(topic, partition)
            expected[tp] = max(expected.get(tp, -1), offset)
    assert highest == expected == commits.sent


@given(batches, st.data())
def test_unacked_is_what_the_broker_has_not_confirmed(stored_batches, data):
    commits = KafkaCommits("g")
    for stored in stored_batches:
        sent = commits.to_commit(stored)
        if sent and data.draw(st.booleans()):
            commits.done(sent, None)
        elif sent:
            commits.done(sent, KafkaTimeoutError("no answer"))
    every = [TopicPartition(*p) for p in PARTS]
    unacked = commits.unacked(every)
    for tp in every:
        if tp in unacked:
            assert unacked[tp].offset == commits.sent[tp] > commits.acked.get(tp, -1)
        elif tp in commits.sent:
            assert commits.acked[tp] == commits.sent[tp]
    commits.forget(every[:1])
    assert every[0] not in commits.unacked(every)


@given(outcomes)
def test_one_warning_per_run_of_failures(results):
    commits = KafkaCommits("g")
    log = logging.getLogger("reconciliation.engine")
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records.append
    log.addHandler(handler)
    old_level = log.level
    log.setLevel(logging.DEBUG)
    try:
        for i, ok in enumerate(results):
            offsets = commits.to_commit({("t.tax", 0): i})
            commits.done(offsets, None if ok else RebalanceInProgressError("rebalancing"))
            assert commits.failing is (not ok)
    finally:
        log.removeHandler(handler)
        log.setLevel(old_level)
    runs = sum(1 for i, ok in enumerate(results) if not ok and (i == 0 or results[i - 1]))
    recoveries = sum(1 for i, ok in enumerate(results) if ok and i > 0 and not results[i - 1])
    warnings = [r for r in records if r.levelno == logging.WARNING]
    infos = [r for r in records if r.levelno == logging.INFO]
    assert len(warnings) == runs
    assert len(infos) == recoveries
    assert all("RebalanceInProgressError" in r.getMessage() for r in warnings)
    assert all(r.levelno == logging.DEBUG for r in records if r not in warnings + infos)


def test_a_later_success_on_other_partitions_leaves_the_refused_one_owed():
    commits = KafkaCommits("g")
    first = commits.to_commit({("t", 0): 5, ("t", 1): 5, ("t", 2): 5})
    commits.done(first, RuntimeError("UnknownMemberIdError"))  # refused
    second = commits.to_commit({("t", 0): 7, ("t", 1): 7})  # partition 2 did not move
    commits.done(second, None)  # accepted: the run of failures ends
    assert not commits.failing and commits.behind()
    assert set(commits.unacked(first)) == {TopicPartition("t", 2)}
    commits.done(commits.unacked(first), None)
    assert not commits.behind()

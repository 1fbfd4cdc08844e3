"""A fetch's highwater can lag behind the records it returned (issue #20): a caught-up
partition is never taken for one whose stored offset is past the log end, while a log the
broker lost (read again from its start) still is."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st
from kafka import TopicPartition

from reconciliation.logends import LogEnds

A = TopicPartition("p.sector.tax.changes", 0)


@dataclass
class Record:
    offset: int


class Consumer:
    """The highwater the last fetch response reported, per partition."""

    def __init__(self, ends: dict):
        self.ends = ends

    def highwater(self, tp):
        return self.ends.get(tp)


def records(first: int, last: int) -> dict:
    return {A: [Record(o) for o in range(first, last + 1)]}


def test_a_highwater_behind_the_records_polled_does_not_hold_the_partition():
    # As observed on Apache Kafka 4.2: the fetch at offset 0 said highwater 1 and carried
    # offsets 0-8; the batch of those 9 records was stored (next offset 9).
    consumer = Consumer({A: 1})
    ends = LogEnds("g-stale")
    ends.stored = {A: 9}
    assert ends.beyond(ends.known_ends(consumer, [A]), [A]) == {A}  # the highwater alone
    ends.forget([A])

    ends.stored = {A: 9}
    ends.saw(records(0, 8))
    assert ends.known_ends(consumer, [A]) == {A: 9}
    assert ends.beyond(ends.known_ends(consumer, [A]), [A]) == set()
    assert ends.held == set()


def test_a_log_the_broker_lost_is_still_held_once_its_new_records_are_polled():
    ends = LogEnds("g-lost")
    ends.saw(records(1200, 1233))
    ends.stored = {A: 1234}
    # The topic was created again: the consumer reads it from its start (auto_offset_reset).
    ends.saw(records(0, 3))
    consumer = Consumer({A: 4})
    assert ends.known_ends(consumer, [A]) == {A: 4}
    assert ends.beyond(ends.known_ends(consumer, [A]), [A]) == {A}
    assert ends.released({(A.topic, A.partition): 0}, ends.known_ends(consumer, [A])) == {A}


def test_an_unknown_highwater_still_gives_no_verdict_and_forget_drops_the_polled_end():
    ends = LogEnds("g-unknown")
    ends.saw(records(0, 8))
    ends.saw({A: []})  # a poll without records of A changes nothing
    assert ends.polled == {A: 9}
    assert ends.known_ends(Consumer({}), [A]) == {}
    ends.forget([A])
    assert ends.polled == {}


@settings(deadline=None)  # pure logic; a loaded CI machine is slow, not wrong
@given(
    st.lists(
        st.tuples(st.integers(1, 50), st.integers(0, 60)),
        min_size=1,
        max_size=30,
    )
)
def test_a_caught_up_partition_is_never_past_its_end_whatever_the_highwater_lag(polls):
    """Polls of consecutive records, each batch stored; each fetch's highwater lags by any
    amount (but not below the fetch's own offset); checked after every poll."""
    ends = LogEnds("g-prop")
    consumer = Consumer({})
    offset = 0
    for count, lag in polls:
        batch = records(offset, offset + count - 1)
        consumer.ends[A] = max(offset, offset + count - lag)
        offset += count
        ends.saw(batch)
        ends.stored[A] = offset
        assert ends.beyond(ends.known_ends(consumer, [A]), [A]) == set()
    assert ends.held == set()

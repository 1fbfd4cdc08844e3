"""Stored offsets past a partition's log end are held, reported once and counted; the
reconciler's Kafka watch reports a refusal and a hang as unreachable, an answer as up."""

from __future__ import annotations

import logging

from kafka import TopicPartition
from kafka.errors import KafkaConnectionError, UnknownTopicOrPartitionError

from hub.metrics import KAFKA_UP, OFFSETS_BEYOND_END
from reconciliation.logends import LogEnds

A, B = TopicPartition("p.sector.tax.changes", 0), TopicPartition("p.sector.tax.changes", 1)


class Consumer:
    def __init__(self):
        self.ends: dict = {}

    def highwater(self, tp):
        return self.ends.get(tp)


def test_an_offset_past_the_end_is_held_reported_once_and_released_after_a_reset(caplog):
    ends = LogEnds("g")
    consumer = Consumer()
    consumer.ends = {A: 17, B: 500}
    ends.stored = {A: 1234, B: 400}
    with caplog.at_level(logging.INFO, "reconciliation.logends"):
        assert ends.beyond(ends.known_ends(consumer, [A, B]), [A, B]) == {A}
        assert ends.beyond(ends.known_ends(consumer, [A, B]), [A, B]) == {A}
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "stored offset 1234 of p.sector.tax.changes[0]" in errors[0]
    assert "log end 17" in errors[0] and "--reset-offsets" in errors[0]
    assert OFFSETS_BEYOND_END._value.get() == 1
    assert ends.released({("p.sector.tax.changes", 0): 1234}, {A: 17}) == set()
    assert ends.released({("p.sector.tax.changes", 0): 0}, {A: 17}) == {A}
    assert ends.held == set() and OFFSETS_BEYOND_END._value.get() == 0


def test_an_offset_at_the_end_is_caught_up_and_an_unknown_end_gives_no_verdict():
    ends = LogEnds("g")
    assert not ends.is_beyond(A, 17, {A: 17})
    assert not ends.is_beyond(A, 18, ends.known_ends(Consumer(), [A]))
    assert ends.held == set()


def test_a_refusal_by_the_broker_is_not_an_outage():
    ends = LogEnds("g3")
    gauge = KAFKA_UP.labels("reconciler")
    gauge.set(1)
    ends.unreachable(UnknownTopicOrPartitionError("gone"))
    assert gauge._value.get() == 1
    ends.unreachable(KafkaConnectionError("111"))
    assert gauge._value.get() == 0

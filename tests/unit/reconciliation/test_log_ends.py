"""Stored offsets past a partition's log end are held, reported once and counted; a failing
probe reports Kafka unreachable only after two failures in a row."""

from __future__ import annotations

import logging

import pytest
from kafka import TopicPartition
from kafka.errors import KafkaConnectionError, KafkaTimeoutError, UnknownTopicOrPartitionError

from hub.metrics import KAFKA_UP, OFFSETS_BEYOND_END
from reconciliation.logends import LogEnds

A, B = TopicPartition("p.sector.tax.changes", 0), TopicPartition("p.sector.tax.changes", 1)


class Consumer:
    def __init__(self):
        self.ends: dict | BaseException = {}

    def end_offsets(self, partitions, timeout_ms=None):
        if isinstance(self.ends, BaseException):
            raise self.ends
        return {tp: self.ends[tp] for tp in partitions if tp in self.ends}


def test_an_offset_past_the_end_is_held_reported_once_and_released_after_a_reset(caplog):
    ends = LogEnds("g")
    consumer = Consumer()
    consumer.ends = {A: 17, B: 500}
    ends.stored = {A: 1234, B: 400}
    with caplog.at_level(logging.INFO, "reconciliation.logends"):
        assert ends.beyond(ends.probe(consumer, [A, B]), [A, B]) == {A}
        assert ends.beyond(ends.probe(consumer, [A, B]), [A, B]) == {A}
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "stored offset 1234 of p.sector.tax.changes[0]" in errors[0]
    assert "log end 17" in errors[0] and "--reset-offsets" in errors[0]
    assert OFFSETS_BEYOND_END._value.get() == 1
    assert ends.released({("p.sector.tax.changes", 0): 1234}, {A: 17}) == set()
    assert ends.released({("p.sector.tax.changes", 0): 0}, {A: 17}) == {A}
    assert ends.held == set() and OFFSETS_BEYOND_END._value.get() == 0


def test_an_offset_at_the_end_is_caught_up_not_beyond():
    ends = LogEnds("g")
    assert not ends.is_beyond(A, 17, {A: 17})
    assert not ends.is_beyond(A, 18, None)  # ends unknown: no verdict
    assert ends.held == set()


@pytest.mark.parametrize("error", [KafkaTimeoutError("t"), KafkaConnectionError("111")])
def test_kafka_is_reported_unreachable_after_two_failed_probes(error):
    ends = LogEnds("g2")
    consumer = Consumer()
    consumer.ends = {A: 1}
    gauge = KAFKA_UP.labels("reconciler")
    assert ends.probe(consumer, [A]) == {A: 1} and gauge._value.get() == 1
    consumer.ends = error
    assert ends.probe(consumer, [A]) is None and gauge._value.get() == 1
    assert ends.probe(consumer, [A]) is None and gauge._value.get() == 0
    consumer.ends = {A: 1}
    assert ends.probe(consumer, [A]) == {A: 1} and gauge._value.get() == 1


def test_a_refusal_is_not_an_outage():
    ends = LogEnds("g3")
    consumer = Consumer()
    consumer.ends = UnknownTopicOrPartitionError("gone")
    for _ in range(3):
        assert ends.probe(consumer, [A]) is None
    assert ends.failures == 0

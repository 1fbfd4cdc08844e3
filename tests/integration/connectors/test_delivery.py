"""Delivery's producer processes (large batches): start-up, order per partition, failure."""

from __future__ import annotations

import time

import pytest
from kafka import TopicPartition

from connectors.delivery import POOL_MIN_EVENTS, Delivery
from connectors.events import Batch
from hub.config import KafkaConfig
from hub.errors import RetriableError
from hub.kafka import make_consumer


def _read_all(kafka: KafkaConfig, topic: str, expected: int) -> list[tuple[int, bytes, bytes]]:
    consumer = make_consumer(kafka, group_id=None)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(tps)
        consumer.seek_to_beginning()
        got: list[tuple[int, bytes, bytes]] = []
        deadline = time.monotonic() + 60
        while len(got) < expected and time.monotonic() < deadline:
            for records in consumer.poll(500).values():
                got += [(r.partition, r.key, r.value) for r in records]
        return got
    finally:
        consumer.close()


def test_producer_processes_start_before_the_first_batch_and_keep_each_key_in_order(
    make_config,
):
    kafka = make_config().kafka
    delivery = Delivery("pooled", kafka, processes=2)
    n = POOL_MIN_EVENTS + 1000
    try:
        delivery.open()
        delivery.warm()
        delivery.wait_warm(timeout=60)  # both producers open: the first batch waits for nothing
        pool = delivery._pool
        for start in (0, n):  # two batches: each acknowledgement is its own batch's
            events = [(f"k{i % 97}".encode(), str(i).encode()) for i in range(start, start + n)]
            delivery.deliver(Batch(events=events))
            assert not any(conn.poll(0) for conn in pool.conns)  # no answer left unread
    finally:
        delivery.close()
    n *= 2

    got = _read_all(kafka, delivery.topic, n)
    assert len(got) == n
    per_key: dict[bytes, list[int]] = {}
    for _, key, value in got:  # read in partition order: each key lives in one partition
        per_key.setdefault(key, []).append(int(value))
    assert len(per_key) == 97
    assert all(values == sorted(values) for values in per_key.values())
    assert len({p for p, _, _ in got}) > 1  # spread over the partitions (and processes)


def test_a_producer_process_that_died_starting_is_reported_not_waited_for(make_config):
    delivery = Delivery("dying", make_config().kafka, processes=2)
    try:
        delivery.warm()
        delivery._pool.procs[1].kill()  # before it could open its producer
        started = time.monotonic()
        with pytest.raises(
            RetriableError, match="producer process did not start: producer process gone"
        ):
            delivery.wait_warm(timeout=60)
        assert time.monotonic() - started < 30
        assert delivery._pool is None  # dropped: the next attempt starts fresh processes
    finally:
        delivery.close()


def test_the_first_pooled_batch_waits_for_the_start_up_answers_itself(make_config):
    delivery = Delivery("unwarmed", make_config().kafka, processes=2)
    try:
        delivery.open()
        delivery.warm()  # no wait_warm(): the first large batch takes the start-up answers
        pool = delivery._pool
        events = [(f"k{i % 31}".encode(), str(i).encode()) for i in range(POOL_MIN_EVENTS)]
        delivery.deliver(Batch(events=events))
        assert not pool.starting
        assert not any(conn.poll(0) for conn in pool.conns)  # the acknowledgements were read
    finally:
        delivery.close()

"""The Kafka watch (``hub_kafka_up`` from a thread of its own) and what starts a connector's:
a delivery the broker keeps waiting."""

from __future__ import annotations

import threading
import time

from connectors.delivery import Delivery
from connectors.events import Batch
from hub.config import KafkaConfig
from hub.kafkawatch import CHECK_TIMEOUT_S, KafkaWatch
from hub.metrics import KAFKA_UP


def test_the_watch_reports_a_refusal_a_hang_and_the_return():
    answers: list = ["KafkaConnectionError: 111 ECONNREFUSED"]
    hang = threading.Event()

    def check(_kafka):
        if answers[0] == "hang":
            hang.wait(30)
        return answers[0]

    watch = KafkaWatch(None, "reconciler", "g2", check=check)
    gauge = KAFKA_UP.labels("reconciler")
    assert not watch.once() and gauge._value.get() == 0
    answers[0] = None
    assert watch.once() and gauge._value.get() == 1
    answers[0] = "hang"
    started = time.monotonic()
    assert not watch.once() and gauge._value.get() == 0
    assert time.monotonic() - started < CHECK_TIMEOUT_S + 1
    hang.set()


def test_the_watch_checks_only_while_it_is_needed(monkeypatch):
    monkeypatch.setattr("hub.kafkawatch.CHECK_EVERY_S", 0.01)
    checks: list[float] = []
    needed = threading.Event()
    watch = KafkaWatch(
        None, "connector", "tax", check=lambda _k: checks.append(1), needed=needed.is_set
    )
    watch.start()
    try:
        time.sleep(0.2)
        assert checks == [], "an idle delivery opens no connection"
        needed.set()
        deadline = time.monotonic() + 5
        while not checks and time.monotonic() < deadline:
            time.sleep(0.01)
        assert checks, "a stalled delivery is checked"
    finally:
        watch.stop()


class _HungProducer:
    """A producer whose flush waits until released, as one does for a paused broker."""

    def __init__(self):
        self.release = threading.Event()

    def send(self, topic, value=None, key=None):
        return _Acked()

    def flush(self, timeout=None):
        self.release.wait(timeout)


class _Acked:
    is_done = True

    def failed(self):
        return False


def test_a_delivery_says_how_long_the_broker_has_kept_it_waiting():
    producer = _HungProducer()
    delivery = Delivery("tax", KafkaConfig(topic_prefix="t"), processes=1)
    delivery._producer = producer
    assert delivery.waiting_s() == 0.0
    batch = Batch(events=[(b"k", b"v")], ops={"u": 1})
    done = threading.Thread(target=delivery.deliver, args=(batch,))
    done.start()
    time.sleep(0.3)
    assert delivery.waiting_s() >= 0.25
    producer.release.set()
    done.join(5)
    assert delivery.waiting_s() == 0.0

"""``flush_acknowledged``: a producer that acknowledges nothing for ``stall_s`` is given up
early; one that is slow but progressing is waited for up to the flush timeout."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kafka.errors import KafkaTimeoutError

from hub.kafka import FLUSH_SLICE_S, flush_acknowledged


class Future:
    def __init__(self):
        self.is_done = False


class Producer:
    """Each ``flush(timeout)`` advances the fake clock by ``timeout``; the futures complete at
    the times given (None: never)."""

    def __init__(self, done_at: list[float | None]):
        self.now = 0.0
        self.done_at = done_at
        self.futures = [Future() for _ in done_at]

    def clock(self) -> float:
        return self.now

    def flush(self, timeout=None):
        pending = [t for t in self.done_at if t is not None and t > self.now]
        if all(t is not None for t in self.done_at) and max(self.done_at, default=0) <= (
            self.now + timeout
        ):
            self.now = max([self.now, *pending])
            self._complete()
            return
        self.now += timeout
        self._complete()
        raise KafkaTimeoutError("Timeout waiting for future")

    def _complete(self):
        for f, t in zip(self.futures, self.done_at, strict=True):
            if t is not None and t <= self.now:
                f.is_done = True


def wait(producer: Producer, timeout_s=15.0, stall_s=5.0) -> None:
    flush_acknowledged(producer, producer.futures, timeout_s=timeout_s, stall_s=stall_s,
                       clock=producer.clock)  # fmt: skip


def test_a_producer_that_acknowledges_everything_returns_at_once():
    producer = Producer([0.01, 0.02])
    wait(producer)
    assert producer.now <= FLUSH_SLICE_S


def test_a_stalled_producer_is_given_up_after_the_stall_not_the_timeout():
    producer = Producer([None, None, None])
    with pytest.raises(KafkaTimeoutError, match="no message acknowledged in 5 s"):
        wait(producer)
    assert 5.0 <= producer.now < 5.0 + 2 * FLUSH_SLICE_S


def test_a_slow_but_progressing_producer_is_waited_for():
    producer = Producer([3.0, 7.0, 11.0])  # one acknowledgement every 4 s
    wait(producer)
    assert producer.now == pytest.approx(11.0)


def test_the_timeout_still_bounds_a_progressing_producer():
    producer = Producer([2.0, 4.0, 6.0, 8.0, None])
    with pytest.raises(KafkaTimeoutError):
        wait(producer, timeout_s=10.0)
    assert producer.now < 10.0 + 2 * FLUSH_SLICE_S


@given(st.lists(st.one_of(st.none(), st.floats(0.0, 30.0)), min_size=1, max_size=20))
def test_the_wait_ends_by_the_timeout_and_only_early_on_a_stall(done_at):
    producer = Producer(done_at)
    try:
        wait(producer)
    except KafkaTimeoutError:
        assert producer.now < 15.0 + 2 * FLUSH_SLICE_S
        times = sorted(t for t in done_at if t is not None and t <= producer.now)
        last = times[-1] if times else 0.0
        # given up: either the timeout passed, or nothing completed for the stall time
        assert producer.now >= 15.0 or producer.now - last >= 5.0 - FLUSH_SLICE_S
    else:
        assert all(f.is_done for f in producer.futures)

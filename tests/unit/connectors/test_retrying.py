"""The connectors' retry loop: how long it waits between attempts after an outage."""

from __future__ import annotations

import threading

import pytest

from connectors.delivery import RETRY_MAX_WAIT_S, RETRY_MIN_WAIT_S, retrying
from hub.errors import FatalError, RetriableError


class RecordedWaits(threading.Event):
    """A ``stopping`` event that records the waits instead of sleeping."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(float(timeout or 0))
        return False


def failing(times: int, error: Exception):
    calls = {"n": 0}

    def call() -> str:
        calls["n"] += 1
        if calls["n"] <= times:
            raise error
        return "up"

    return call


def test_waits_grow_from_half_a_second_and_never_exceed_the_cap():
    stopping = RecordedWaits()
    told: list[float] = []
    call = retrying(failing(20, RetriableError("down")), stopping=stopping,
                    on_retry=lambda _exc, wait_s: told.append(wait_s))  # fmt: skip
    assert call() == "up"
    assert len(stopping.waits) == 20
    assert stopping.waits == told  # on_retry announces the wait that follows
    assert stopping.waits[0] == RETRY_MIN_WAIT_S
    assert stopping.waits == sorted(stopping.waits)
    assert max(stopping.waits) == RETRY_MAX_WAIT_S <= 5  # a long outage: back within seconds


def test_a_fatal_error_is_not_retried():
    stopping = RecordedWaits()
    with pytest.raises(FatalError):
        retrying(failing(1, FatalError("bad config")), stopping=stopping)()
    assert stopping.waits == []


def test_a_set_stopping_event_ends_the_retries_with_the_last_error():
    stopping = RecordedWaits()
    stopping.set()
    with pytest.raises(RetriableError):
        retrying(failing(5, RetriableError("down")), stopping=stopping)()

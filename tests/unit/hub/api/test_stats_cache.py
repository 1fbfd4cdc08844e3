"""StatsCache's reuse of slow figures: one computation at a time per figure, the previous
answer given meanwhile, none kept across an invalidation (an in-memory engine stand-in)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext

import pytest

from hub.api.stats import StatsCache


class Engine:
    def connect(self):
        return nullcontext(None)


class Slow:
    """A figure that takes ``seconds`` and counts its runs; ``release`` lets it finish."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.runs = 0
        self.seconds = seconds
        self.release = threading.Event()
        self.release.set()
        self.lock = threading.Lock()

    def __call__(self, conn) -> int:
        with self.lock:
            self.runs += 1
            run = self.runs
        self.release.wait(5)
        time.sleep(self.seconds)
        return run


def _cache(ttl_s: float = 60.0) -> StatsCache:
    return StatsCache(Engine(), lambda: [], ttl_s=ttl_s)


def test_eight_requests_on_a_cold_figure_compute_it_once():
    cache, slow = _cache(), Slow(0.05)
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: cache.figure("overdue", slow), range(8)))
    assert slow.runs == 1 and answers == [1] * 8


def test_while_an_expired_figure_is_remade_the_others_get_the_previous_answer():
    cache, slow = _cache(ttl_s=0.05), Slow()
    assert cache.figure("overdue", slow) == 1
    time.sleep(0.06)
    slow.release.clear()
    with ThreadPoolExecutor(1) as pool:
        remaking = pool.submit(cache.figure, "overdue", slow)
        while slow.runs < 2:
            time.sleep(0.005)
        started = time.monotonic()
        assert [cache.figure("overdue", slow) for _ in range(5)] == [1] * 5
        assert time.monotonic() - started < 0.5  # none of them waited
        slow.release.set()
        assert remaking.result() == 2
    assert cache.figure("overdue", slow) == 2 and slow.runs == 2


def test_a_figure_past_its_stale_limit_is_waited_for_not_given():
    cache, slow = _cache(ttl_s=0.01), Slow()
    cache.figure("overdue", slow)
    time.sleep(0.01 * StatsCache.STALE_FACTOR + 0.02)
    slow.release.clear()
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(cache.figure, "overdue", slow)
        while slow.runs < 2:
            time.sleep(0.005)
        second = pool.submit(cache.figure, "overdue", slow)
        time.sleep(0.05)
        assert not second.done()  # too old to give: it waits for the new one
        slow.release.set()
        assert first.result() == second.result() == 2


def test_an_invalidation_during_a_computation_keeps_nothing_of_it():
    cache, slow = _cache(), Slow()
    slow.release.clear()
    with ThreadPoolExecutor(1) as pool:
        computing = pool.submit(cache.figure, "overdue", slow)
        while slow.runs < 1:
            time.sleep(0.005)
        cache.invalidate()  # an action changed the store while the count ran
        slow.release.set()
        assert computing.result() == 1
    assert cache.figure("overdue", slow) == 2  # counted again, not the pre-action answer


def test_a_failed_computation_is_made_again_by_the_next_request():
    cache = _cache()
    calls = []

    def flaky(conn):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("database went away")
        return 7

    with pytest.raises(RuntimeError):
        cache.figure("overdue", flaky)
    assert cache.figure("overdue", flaky) == 7 and len(calls) == 2


def test_figures_and_series_of_the_same_key_are_kept_apart():
    cache = _cache()
    assert cache.figure(("k",), lambda conn: "figure") == "figure"
    assert cache._reused(cache._series, ("k",), 60.0, lambda conn: "series") == "series"
    assert cache.figure(("k",), lambda conn: "other") == "figure"

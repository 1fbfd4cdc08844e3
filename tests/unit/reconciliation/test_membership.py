"""When a stalled group join makes the reconciler rejoin with a new consumer."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from reconciliation.membership import JoinStall, rebalancing


def test_a_join_longer_than_the_limit_is_a_stall_once_and_the_limit_doubles():
    stall = JoinStall(limit_s=30, max_s=100)
    assert not stall.stalled(True, 0.0)
    assert not stall.stalled(True, 30.0)
    assert stall.stalled(True, 30.5)
    assert stall.limit_s == 60
    assert not stall.stalled(True, 31.0), "the clock starts again for the new consumer's join"
    assert stall.stalled(True, 91.5)
    assert stall.limit_s == 100, "capped"


def test_a_finished_join_resets_the_clock_but_not_the_limit():
    stall = JoinStall(limit_s=30)
    stall.stalled(True, 0.0)
    assert not stall.stalled(False, 29.0)
    assert not stall.stalled(True, 40.0)
    assert not stall.stalled(True, 69.0)
    assert stall.waited_s(69.0) == 29.0


@given(st.lists(st.tuples(st.booleans(), st.floats(0, 10)), max_size=60))
def test_no_stall_is_called_before_a_rebalance_lasted_the_limit(steps):
    stall = JoinStall(limit_s=5, max_s=40)
    now, began = 0.0, None
    for busy, dt in steps:
        now += dt
        limit = stall.limit_s
        if stall.stalled(busy, now):
            assert began is not None and now - began > limit
            began = None
        elif busy:
            began = now if began is None else began
        else:
            began = None


def test_rebalancing_reads_the_coordinator_and_is_false_without_one():
    class Coordinator:
        def __init__(self, busy):
            self.busy = busy

        def rebalance_in_progress(self):
            return self.busy

    class Consumer:
        def __init__(self, coordinator):
            self._coordinator = coordinator

    assert rebalancing(Consumer(Coordinator(True)))
    assert not rebalancing(Consumer(Coordinator(False)))
    assert not rebalancing(Consumer(None))
    assert not rebalancing(None)

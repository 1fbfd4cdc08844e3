"""Which streamed transactions an initial snapshot already contains (pure logic)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from connectors.logical.overlap import SnapshotFilter, _Snapshot


def test_a_transaction_is_visible_when_it_ended_before_the_snapshot():
    snap = _Snapshot.parse("100:105:101,103")
    assert [snap.visible(x) for x in (99, 100, 101, 102, 103, 104, 105, 200)] == [
        True, True, False, True, False, True, False, False,
    ]  # fmt: skip


@given(st.integers(min_value=1, max_value=(1 << 40)), st.integers(min_value=-1000, max_value=1000))
def test_32_bit_xids_from_begin_messages_compare_across_wraparound(xmax, delta):
    full = xmax + delta
    if full <= 3:
        return
    snap = _Snapshot(xmin=xmax, xmax=xmax, xip=frozenset())
    assert snap.visible(full & 0xFFFFFFFF) == (full < xmax)


def test_a_change_is_seen_per_segment_only_below_that_segments_wal_position():
    segments = [
        {"after": None, "snapshot": "10:12:11", "lsn": 1000},
        {"after": ["K5"], "snapshot": "20:20:", "lsn": 2000},
    ]
    f = SnapshotFilter(segments)
    assert f.until == 2000
    assert f.seen_by(9, 900) == [True, True]  # in both reads
    assert f.seen_by(11, 900) == [False, True]  # in flight at the first read only
    assert f.seen_by(15, 1500) == [False, True]  # committed between the reads
    assert f.seen_by(25, 2500) == [False, False]  # after both

"""Where an initial snapshot and the stream overlap: which streamed transactions a snapshot
segment already read (see :mod:`connectors.logical`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class _Snapshot:
    """A ``pg_current_snapshot()`` value: xmin:xmax:xip,… (64-bit xids)."""

    xmin: int
    xmax: int
    xip: frozenset[int]

    @classmethod
    def parse(cls, text: str) -> _Snapshot:
        xmin, xmax, xip = text.split(":")
        return cls(int(xmin), int(xmax), frozenset(int(x) for x in xip.split(",") if x))

    def visible(self, xid32: int) -> bool:
        """Whether a transaction (32-bit xid from a Begin message) committed before it."""
        # Widen the 32-bit xid to the epoch nearest xmax: stream transactions are recent.
        full = (self.xmax & ~0xFFFFFFFF) | xid32
        if full > self.xmax + (1 << 31):
            full -= 1 << 32
        elif full < self.xmax - (1 << 31):
            full += 1 << 32
        return full < self.xmin or (full < self.xmax and full not in self.xip)


@dataclass(frozen=True)
class _Segment:
    after: list[str] | None  # keys strictly greater than this were read under `snapshot`
    snapshot: _Snapshot
    lsn: int  # WAL insert position read inside the snapshot


class SnapshotFilter:
    """Decides which streamed changes a snapshot already contains (see the module doc)."""

    def __init__(self, segments: list[dict[str, Any]]):
        self.segments = [
            _Segment(s["after"], _Snapshot.parse(s["snapshot"]), s["lsn"]) for s in segments
        ]
        self.until = max((s.lsn for s in self.segments), default=0)

    def seen_by(self, xid: int, commit_lsn: int) -> list[bool]:
        """Per segment: whether the transaction's changes are in that segment's read."""
        return [commit_lsn < s.lsn and s.snapshot.visible(xid) for s in self.segments]

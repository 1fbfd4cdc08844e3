"""Per-sector cleanliness figures: live counts (briefly cached) and history from stats_snapshots."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, text

from hub.config import UNSPECIFIED_DISMISSAL
from hub.db import figures


@dataclass
class SectorStats:
    """One sector's figures now. ``verified_ratio`` is None before any record is seen."""

    sector: str
    records_seen: int = 0
    records_verified: int = 0
    open_by_rule: dict[str, int] = field(default_factory=dict)
    dismissed_by_code: dict[str, int] = field(default_factory=dict)
    """Dismissed mismatches by reason code (``unspecified``: dismissed without one)."""

    @property
    def verified_ratio(self) -> float | None:
        return self.records_verified / self.records_seen if self.records_seen else None

    @property
    def open_total(self) -> int:
        return sum(self.open_by_rule.values())


# The dismissed rows only, through their partial index (migration 0015).
_DISMISSED_BY_CODE = text(
    """
    SELECT sector, dismissal_code, count(*) FROM mismatches WHERE status = 'dismissed'
    GROUP BY sector, dismissal_code ORDER BY sector, dismissal_code NULLS LAST
    """
)


def dismissed_total(sectors: Sequence[SectorStats]) -> dict[str, int]:
    """Dismissed mismatches by reason code over every sector."""
    out: dict[str, int] = {}
    for s in sectors:
        for code, n in s.dismissed_by_code.items():
            out[code] = out.get(code, 0) + n
    return out


def current(conn: Connection, sectors: Sequence[str]) -> list[SectorStats]:
    """Figures of every configured sector and of any other sector the store holds, from the
    trigger-kept counts of :mod:`hub.db.figures` (exact, without counting the big tables),
    and the dismissed mismatches by reason code (counted over their partial index)."""
    out = {s: SectorStats(s) for s in sectors}
    for sector, rule, _severity, records, verified, open_n in conn.execute(text(figures.SUMS)):
        st = out.setdefault(sector, SectorStats(sector))
        if not rule:
            st.records_seen += records
            st.records_verified += verified
        elif open_n:
            st.open_by_rule[rule] = st.open_by_rule.get(rule, 0) + open_n
    for sector, code, n in conn.execute(_DISMISSED_BY_CODE):
        st = out.setdefault(sector, SectorStats(sector))
        st.dismissed_by_code[code or UNSPECIFIED_DISMISSAL] = n
    return sorted(out.values(), key=lambda s: s.sector)


@dataclass(frozen=True)
class Point:
    at: datetime
    records_seen: int
    records_verified: int
    open_by_rule: dict[str, int]

    @property
    def verified_ratio(self) -> float | None:
        return self.records_verified / self.records_seen if self.records_seen else None


_SERIES = text(
    """
    SELECT DISTINCT ON (sector, bucket) sector, at, records_seen, records_verified, open_by_rule
    FROM (
        SELECT *, floor(extract(epoch FROM at) / :width) AS bucket
        FROM stats_snapshots
        WHERE at >= :since AND sector = ANY(:sectors)
    ) s
    ORDER BY sector, bucket, at DESC
    """
)


def history(
    conn: Connection, sectors: Sequence[str], since: datetime, points: int = 200
) -> dict[str, list[Point]]:
    """Per sector, snapshots since ``since``, thinned to at most about ``points`` (the last
    snapshot of each equal time bucket), oldest first."""
    width = max((datetime.now(since.tzinfo) - since).total_seconds() / max(points, 1), 1.0)
    out: dict[str, list[Point]] = {s: [] for s in sectors}
    rows = conn.execute(_SERIES, {"width": width, "since": since, "sectors": list(sectors)})
    for sector, at, seen, verified, by_rule in rows:
        out[sector].append(Point(at, seen, verified, {k: int(v) for k, v in by_rule.items()}))
    for pts in out.values():
        pts.sort(key=lambda p: p.at)
    return out


class StatsCache:
    """``current`` answers reused for ``ttl_s`` seconds: at a million mismatches the live
    group-by costs about half a second, and dashboards poll."""

    def __init__(self, engine: Engine, sectors: Callable[[], Sequence[str]], ttl_s: float = 15.0):
        self._engine = engine
        self._sectors = sectors
        self._ttl = ttl_s
        self._lock = threading.Lock()
        self._at = 0.0
        self._value: list[SectorStats] = []

    def get(self, *, fresh: bool = False) -> list[SectorStats]:
        with self._lock:
            if fresh or time.monotonic() - self._at > self._ttl:
                with self._engine.connect() as conn:
                    self._value = current(conn, self._sectors())
                self._at = time.monotonic()
            return self._value

    def invalidate(self) -> None:
        with self._lock:
            self._at = 0.0


def default_since(days: int) -> datetime:
    return datetime.now().astimezone() - timedelta(days=days)


@dataclass(frozen=True)
class CorrectionFigures:
    """One sector's corrections: how many proposed (or approved), sent (or acknowledged),
    confirmed and rejected, and the median days from sending to confirmation."""

    proposed: int = 0
    sent: int = 0
    confirmed: int = 0
    rejected: int = 0
    median_days_to_confirm: float | None = None


_CORRECTIONS = text(
    """
    SELECT sector,
           count(*) FILTER (WHERE status IN ('proposed', 'approved')),
           count(*) FILTER (WHERE status IN ('sent', 'acknowledged')),
           count(*) FILTER (WHERE status = 'confirmed'),
           count(*) FILTER (WHERE status = 'rejected'),
           percentile_cont(0.5) WITHIN GROUP (
               ORDER BY extract(epoch FROM closed_at - coalesce(sent_at, created_at)) / 86400.0
           ) FILTER (WHERE status = 'confirmed')
    FROM corrections GROUP BY sector
    """
)


def correction_figures(conn: Connection) -> dict[str, CorrectionFigures]:
    """Per sector with any correction (one pass over ``corrections``, by its sector index)."""
    return {
        sector: CorrectionFigures(p, s, c, r, None if med is None else float(med))
        for sector, p, s, c, r, med in conn.execute(_CORRECTIONS)
    }

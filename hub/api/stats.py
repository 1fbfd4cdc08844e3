"""Per-sector cleanliness figures: live counts (briefly cached) and history from stats_snapshots."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, text

from hub.config import UNSPECIFIED_DISMISSAL
from hub.db import figures

T = TypeVar("T")


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


_SERIES = """
    SELECT DISTINCT ON (sector, slot) sector, at, records_seen, records_verified, open_by_rule
    FROM (
        SELECT *, floor(extract(epoch FROM at) / :width) AS slot
        FROM {source}
        WHERE at >= :since AND sector = ANY(:sectors){grain}
    ) s
    ORDER BY sector, slot, at DESC
    """
_RAW_SERIES = text(_SERIES.format(source="stats_snapshots", grain=""))
# The rollups' primary key is (grain, sector, bucket): the bucket bound lets it be used.
_ROLLUP_SERIES = text(
    _SERIES.format(
        source="stats_rollups",
        grain=" AND grain = :grain"
        " AND bucket >= CAST(:since AS timestamptz) - make_interval(secs => :grain_s)",
    )
)
GRAINS = {"day": 86400, "hour": 3600}
"""The rollups of migration 0017, coarsest first: their width in seconds."""


def series_grain(width_s: float, since: datetime, retention_days: float) -> str | None:
    """Where a series of buckets ``width_s`` wide since ``since`` is read from: the coarsest
    rollup no wider than a bucket, or None (the raw snapshots) for finer buckets — unless
    the window reaches past the raw snapshots' retention, then the hourly rollups."""
    for grain, secs in GRAINS.items():
        if width_s >= secs:
            return grain
    kept_since = datetime.now(since.tzinfo) - timedelta(days=retention_days)
    return None if since >= kept_since else "hour"


def buckets(since: datetime, points: int, retention_days: float) -> tuple[float, str | None]:
    """(bucket width in seconds, the rollup grain to read or None for the raw snapshots) of
    a series since ``since`` in at most about ``points`` buckets. Read from a rollup, the
    width is a whole number of its grains, so each bucket holds whole hours or days."""
    width = max((datetime.now(since.tzinfo) - since).total_seconds() / max(points, 1), 1.0)
    grain = series_grain(width, since, retention_days)
    if grain is not None:
        width = max(math.ceil(width / GRAINS[grain] - 1e-6), 1) * GRAINS[grain]
    return width, grain


def history(
    conn: Connection,
    sectors: Sequence[str],
    since: datetime,
    points: int = 200,
    *,
    retention_days: float = 30.0,
) -> dict[str, list[Point]]:
    """Per sector, snapshots since ``since``, thinned to at most about ``points`` (the last
    snapshot of each equal time bucket), oldest first.

    Read from the per-day or per-hour rollups (:func:`buckets`) when a bucket is at least
    that wide, so a year costs a few thousand rows: the same points as thinning the raw
    snapshots into the same buckets (:func:`raw_history`)."""
    width, grain = buckets(since, points, retention_days)
    params = {"width": width, "since": since, "sectors": list(sectors)}
    if grain is None:
        return _points(conn.execute(_RAW_SERIES, params), sectors)
    params |= {"grain": grain, "grain_s": GRAINS[grain]}
    return _points(conn.execute(_ROLLUP_SERIES, params), sectors)


def raw_history(
    conn: Connection, sectors: Sequence[str], since: datetime, width: float
) -> dict[str, list[Point]]:
    """The last raw snapshot of each bucket ``width`` seconds wide since ``since`` (what
    :func:`history` gave before the rollups, and what they must agree with)."""
    params = {"width": width, "since": since, "sectors": list(sectors)}
    return _points(conn.execute(_RAW_SERIES, params), sectors)


def _points(rows, sectors: Sequence[str]) -> dict[str, list[Point]]:
    out: dict[str, list[Point]] = {s: [] for s in sectors}
    for sector, at, seen, verified, by_rule in rows:
        out[sector].append(Point(at, seen, verified, {k: int(v) for k, v in by_rule.items()}))
    for pts in out.values():
        pts.sort(key=lambda p: p.at)
    return out


class _Flight:
    """One computation of a figure that other requests wait for."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.ok = False
        self.value: Any = None


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
        self._series: dict[tuple, tuple[float, dict[str, list[Point]]]] = {}
        self._figures: dict[Hashable, tuple[float, Any]] = {}
        self._flights: dict[tuple[int, Hashable], _Flight] = {}
        self._generation = 0  # counts invalidate()s: a figure computed across one is not kept

    def get(self, *, fresh: bool = False) -> list[SectorStats]:
        with self._lock:
            if fresh or time.monotonic() - self._at > self._ttl:
                with self._engine.connect() as conn:
                    self._value = current(conn, self._sectors())
                self._at = time.monotonic()
            return self._value

    STALE_FACTOR = 4
    """How many times its time to live an answer may still be given while it is remade."""
    FLIGHT_WAIT_S = 30.0
    """How long a request waits for another one's computation before making its own."""

    def invalidate(self) -> None:
        """Forget the live figures (after an action); the series are snapshots, kept."""
        with self._lock:
            self._at = 0.0
            self._figures.clear()
            self._generation += 1

    def figure(self, key: Hashable, compute: Callable[[Connection], T]) -> T:
        """Another live figure (``compute`` on a connection), reused like :meth:`get`'s for
        ``ttl_s`` and forgotten by :meth:`invalidate` too: the overdue counts of
        /api/v1/stats, a count over the open mismatches, are not made on each request."""
        return self._reused(self._figures, key, self._ttl, compute)

    SERIES_TTL_S = 30.0
    """How long a series is reused: snapshots come every 300 s, and dashboards poll."""

    def series(
        self, sectors: Sequence[str], days: int, points: int, retention_days: float
    ) -> dict[str, list[Point]]:
        """:func:`history` of the last ``days`` in ``points``, reused for SERIES_TTL_S per
        (sectors, days, points): 8 dashboards asking for a year read the rollups once."""
        key = (tuple(sectors), days, points, retention_days)
        value = self._reused(
            self._series,
            key,
            self.SERIES_TTL_S,
            lambda conn: history(
                conn, sectors, default_since(days), points, retention_days=retention_days
            ),
        )
        with self._lock:
            while len(self._series) > 64:  # bounded: drop the stalest
                self._series.pop(min(self._series, key=lambda k: self._series[k][0]))
        return value

    def _reused(
        self,
        store: dict[Any, tuple[float, Any]],
        key: Hashable,
        ttl: float,
        compute: Callable[[Connection], T],
    ) -> T:
        """``store[key]`` if younger than ``ttl``, else computed by one request at a time.
        While one request computes it, the others are given the previous answer when there
        is one (up to STALE_FACTOR times ``ttl`` old; :meth:`invalidate` drops it) and wait
        for the new one when there is none: 8 dashboards opened together after the figure
        expired ran the same count 8 times at once (1.1 s p95 at a million mismatches)."""
        in_flight = (id(store), key)
        while True:
            now = time.monotonic()
            with self._lock:
                hit = store.get(key)
                if hit is not None and now - hit[0] <= ttl:
                    return hit[1]
                flight = self._flights.get(in_flight)
                if flight is None:
                    flight = self._flights[in_flight] = _Flight()
                    generation = self._generation
                    break
            if hit is not None and now - hit[0] <= ttl * self.STALE_FACTOR:
                return hit[1]
            if not flight.done.wait(self.FLIGHT_WAIT_S):  # stuck: compute it here too
                with self._engine.connect() as conn:
                    return compute(conn)
            if flight.ok:
                return flight.value
            # it failed: the next round makes it again (and raises if it fails again)
        try:
            with self._engine.connect() as conn:
                flight.value = compute(conn)
            flight.ok = True
            with self._lock:
                if generation == self._generation:  # else an action came in meanwhile
                    store[key] = (now, flight.value)
            return flight.value
        finally:
            with self._lock:
                del self._flights[in_flight]
            flight.done.set()


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

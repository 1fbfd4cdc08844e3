"""The dashboard series from the per-hour and per-day rollups of ``stats_snapshots``
(migration 0017): equal to thinning the raw snapshots, kept by the trigger as snapshots are
written, and unharmed by pruning the raw rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from sqlalchemy import text

from hub.api import stats
from hub.db import psycopg_conninfo
from reconciliation.store.figures import prune_stats_snapshots, write_stats_snapshot

SECTORS = ["tax", "banking"]

# 40 days of snapshots every 20 minutes, per sector, with drifting values (written in one
# statement, as a backfill would be, and then row by row, as the reconciler writes them).
_FILL = """
INSERT INTO stats_snapshots (at, sector, records_seen, records_verified, open_by_rule)
SELECT t, s, 1000 + (extract(epoch FROM t) / 1200)::bigint % 97,
       500 + (extract(epoch FROM t) / 1200)::bigint % 31,
       jsonb_build_object('NAME_MISMATCH', (extract(epoch FROM t) / 1200)::bigint % 13,
                          'ID_MISSING', (extract(epoch FROM t) / 3600)::bigint % 7)
FROM generate_series(now() - interval '40 days', now() - interval '1 day',
                     interval '20 minutes') AS t,
     unnest(CAST(:sectors AS text[])) AS s
"""


@pytest.fixture
def filled(api):
    with api.engine.begin() as conn:
        conn.execute(text("DELETE FROM stats_snapshots"))
        conn.execute(text("DELETE FROM stats_rollups"))
        conn.execute(text(_FILL), {"sectors": SECTORS})
        # The last day one row per statement, as write_stats_snapshot adds them.
        for k in range(71, 0, -1):
            conn.execute(
                text(
                    "INSERT INTO stats_snapshots (at, sector, records_seen, records_verified,"
                    " open_by_rule) SELECT now() - make_interval(mins => :m), s, :k, :k,"
                    " jsonb_build_object('NAME_MISMATCH', :k) FROM unnest(CAST(:s AS text[])) s"
                ),
                {"m": k * 20, "k": k, "s": SECTORS},
            )
    return api


def _series(conn, days: int, points: int, *, raw: bool) -> dict:
    since = datetime.now(UTC) - timedelta(days=days)
    if raw:
        series = stats.raw_history(conn, SECTORS, since, stats.buckets(since, points, 30)[0])
    else:
        series = stats.history(conn, SECTORS, since, points)
    return {
        s: [(p.at, p.records_seen, p.records_verified, p.open_by_rule) for p in pts]
        for s, pts in series.items()
    }


@pytest.mark.parametrize(
    ("days", "points", "grain"),
    [(36, 36, "day"), (15, 360, "hour"), (10, 120, "hour"), (2, 200, None)],
)
def test_series_from_rollups_equal_the_raw_computation(filled, days, points, grain):
    since = datetime.now(UTC) - timedelta(days=days)
    assert stats.buckets(since, points, 30)[1] == grain
    with filled.engine.connect() as conn:
        rolled = _series(conn, days, points, raw=False)
        raw = _series(conn, days, points, raw=True)
    assert all(rolled[s] for s in SECTORS)
    assert rolled == raw


def test_rollups_hold_the_last_snapshot_of_each_hour_and_day(filled):
    with filled.engine.connect() as conn:
        bad = conn.execute(
            text(
                """
                SELECT count(*) FROM stats_rollups r
                FULL JOIN (
                    SELECT DISTINCT ON (g, sector, b) g, sector, b, at, records_seen
                    FROM (SELECT *, unnest(ARRAY['hour', 'day']) AS g FROM stats_snapshots) s0,
                         LATERAL (SELECT to_timestamp(floor(extract(epoch FROM at)
                                  / CASE g WHEN 'hour' THEN 3600 ELSE 86400 END)
                                  * CASE g WHEN 'hour' THEN 3600 ELSE 86400 END) AS b) x
                    ORDER BY g, sector, b, at DESC
                ) s ON (s.g, s.sector, s.b) = (r.grain, r.sector, r.bucket)
                WHERE s.at IS DISTINCT FROM r.at OR s.records_seen IS DISTINCT FROM r.records_seen
                """
            )
        ).scalar()
        hours = conn.execute(text("SELECT count(*) FROM stats_rollups WHERE grain = 'hour'"))
        assert hours.scalar() > 2 * 24 * 38
    assert bad == 0


def test_pruning_drops_old_raw_snapshots_and_keeps_the_long_series(filled):
    with filled.engine.connect() as conn:
        before = _series(conn, 36, 36, raw=False)
    with psycopg.connect(psycopg_conninfo(filled.url), autocommit=True) as conn:
        deleted = prune_stats_snapshots(conn, 7, limit=100)
        assert deleted == 100  # bounded
        deleted += prune_stats_snapshots(conn, 7)
        oldest = conn.execute("SELECT min(at) FROM stats_snapshots").fetchone()[0]
        assert oldest > datetime.now(UTC) - timedelta(days=7, minutes=1)
        assert 2 * 33 * 72 <= deleted <= 2 * 33 * 72 + 2  # 33 days of 72 a day
        # A new snapshot still rolls up into today's hour and day.
        assert write_stats_snapshot(conn, {"tax": (7, 3)}, [("tax", "NAME_MISMATCH", "low", 5)], 0)
        written = conn.execute("SELECT max(at) FROM stats_snapshots").fetchone()[0]
        latest = conn.execute(
            "SELECT grain, records_seen FROM stats_rollups WHERE sector = 'tax' AND at = %s"
            " ORDER BY grain",
            (written,),
        ).fetchall()
    assert latest == [("day", 7), ("hour", 7)]
    with filled.engine.connect() as conn:
        after = _series(conn, 36, 36, raw=False)
        # A window past the retention falls back to the hourly rollups, not the raw rows.
        since = datetime.now(UTC) - timedelta(days=20)
        assert stats.series_grain(20 * 86400 / 1000, since, 7) == "hour"
        assert len(stats.history(conn, SECTORS, since, 1000, retention_days=7)["tax"]) > 400
    # Every day before the new snapshot's is as it was. (Its own day is new in the series
    # when the last day's snapshots all fell on the day before, shortly after midnight.)
    today = written.replace(hour=0, minute=0, second=0, microsecond=0)
    assert today.utcoffset() == timedelta(0)
    assert {s: [p for p in pts if p[0] < today] for s, pts in after.items()} == {
        s: [p for p in pts if p[0] < today] for s, pts in before.items()
    }
    assert len(before["tax"]) > 30


def test_stats_endpoint_serves_a_year_from_the_daily_rollups(filled):
    body = filled.get("/api/v1/stats", params={"days": 365, "points": 365}).json()
    tax = next(s for s in body["sectors"] if s["sector"] == "tax")
    assert 38 <= len(tax["series"]) <= 41

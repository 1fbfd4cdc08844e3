"""The figures read from the hub database: the gauges' counts and the per-sector
``stats_snapshots`` rows."""

from __future__ import annotations

import json
from collections.abc import Sequence

import psycopg

from hub.db import figures
from hub.vocabulary import OPEN_STATUSES_SQL


def figure_counts(
    conn: psycopg.Connection,
) -> tuple[dict[str, tuple[int, int]], list[tuple[str, str, str, int]]]:
    """({sector: (records, verified records)}, [(sector, rule, severity, open and in-review
    mismatches)]) from the trigger-kept counts (:mod:`hub.db.figures`): exact, and without
    counting the big tables. Folds the delta rows first, unless another reader is folding."""
    with conn.transaction():
        if conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (figures.FOLD_LOCK,)).fetchone()[0]:
            conn.execute(figures.FOLD)
        rows = conn.execute(figures.SUMS).fetchall()
    counts = {
        sector: (records, verified)
        for sector, rule, _severity, records, verified, _open in rows
        if not rule and records
    }
    open_counts = [(s, rule, sev, n) for s, rule, sev, _r, _v, n in rows if rule and n]
    return counts, open_counts


def open_mismatch_counts(conn: psycopg.Connection) -> list[tuple[str, str, str, int]]:
    """(sector, rule, severity, count) of open and in-review mismatches, counted in full
    (:func:`figure_counts` gives the same without a scan)."""
    return conn.execute(
        f"""
        SELECT sector, rule, severity, count(*) FROM mismatches
        WHERE status IN {OPEN_STATUSES_SQL} GROUP BY sector, rule, severity
        """
    ).fetchall()


def sector_counts(conn: psycopg.Connection) -> dict[str, tuple[int, int]]:
    """{sector: (records, verified records)}, counted in full (see :func:`figure_counts`)."""
    rows = conn.execute(
        "SELECT sector, count(*), count(*) FILTER (WHERE verified) FROM sector_records GROUP BY sector"
    ).fetchall()
    return {s: (n, v) for s, n, v in rows}


def write_stats_snapshot(
    conn: psycopg.Connection,
    counts: dict[str, tuple[int, int]],
    open_counts: Sequence[tuple[str, str, str, int]],
    min_interval_s: float,
) -> int:
    """Add a row per sector to ``stats_snapshots`` unless one is younger than
    ``min_interval_s`` (several reconcilers may run); returns the rows written."""
    by_rule: dict[str, dict[str, int]] = {}
    for sector, rule, _severity, n in open_counts:
        by_rule.setdefault(sector, {}).setdefault(rule, 0)
        by_rule[sector][rule] += n
    sectors = sorted(set(counts) | set(by_rule))
    if not sectors:
        return 0
    cur = conn.execute(
        """
        INSERT INTO stats_snapshots (sector, records_seen, records_verified, open_by_rule)
        SELECT u.sector, u.seen, u.verified, u.open_by_rule::jsonb
        FROM unnest(%s::text[], %s::bigint[], %s::bigint[], %s::text[])
             AS u(sector, seen, verified, open_by_rule)
        WHERE NOT EXISTS (
            SELECT 1 FROM stats_snapshots s
            WHERE s.sector = u.sector AND s.at > now() - make_interval(secs => %s))
        """,
        (
            sectors,
            [counts.get(s, (0, 0))[0] for s in sectors],
            [counts.get(s, (0, 0))[1] for s in sectors],
            [json.dumps(by_rule.get(s, {}), sort_keys=True) for s in sectors],
            min_interval_s,
        ),
    )
    return cur.rowcount


def prune_stats_snapshots(
    conn: psycopg.Connection, retention_days: float, limit: int = 50_000
) -> int:
    """Delete up to ``limit`` raw ``stats_snapshots`` rows older than ``retention_days``
    (their hour and day live on in ``stats_rollups``, migration 0017); returns the rows
    deleted. Bounded, so a first prune of years of history is spread over a few refreshes."""
    cur = conn.execute(
        """
        DELETE FROM stats_snapshots WHERE id IN (
            SELECT id FROM stats_snapshots
            WHERE at < now() - make_interval(secs => %s) LIMIT %s)
        """,
        (retention_days * 86400, limit),
    )
    return cur.rowcount

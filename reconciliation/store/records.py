"""The sector records (``sector_records``) a batch reads and writes, their ``verified``
flag, the tombstones of deleted records and rows, and the legacy ID locks."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

import psycopg

from hub.vocabulary import OPEN_STATUSES_SQL
from reconciliation.store.rows import SECTOR_COLUMNS, SectorKey, SectorRow, as_tuple
from reconciliation.store.staging import fetch, stage, upsert

_READ = ", ".join(f"s.{c}::text" if c == "attributes" else f"s.{c}" for c in SECTOR_COLUMNS)


def sector_records_for(
    conn: psycopg.Connection,
    keys: Iterable[SectorKey],
    citizen_ids: Iterable[str],
    groups: Iterable[SectorKey] = (),
    unique_sectors: Iterable[str] = (),
) -> tuple[dict[SectorKey, SectorRow], dict[SectorKey, tuple[int | None, datetime | None]]]:
    """The records a batch can change, and the tombstones (lsn, ts) of the given keys.

    Records: those with the given ``keys``; every record (any sector) carrying one of
    ``citizen_ids`` (registry changes re-check them); and the duplicate groups — the
    records of each (sector, citizen ID) in ``groups``, and of the IDs the keyed records of
    ``unique_sectors`` carry now. One query per table.
    """
    keys, ids, groups = set(keys), set(citizen_ids), set(groups)
    if not keys and not ids and not groups:
        return {}, {}
    stage(conn, "_hub_keys2", keys)
    stage(conn, "_hub_keys1", ((i,) for i in ids))
    stage(conn, "_hub_keys2b", groups)
    rows = fetch(
        conn,
        f"""
        WITH by_key AS (
            SELECT {_READ} FROM sector_records s
            JOIN _hub_keys2 k ON s.sector = k.a AND s.record_key = k.b
        ),
        grp AS (
            SELECT a AS sector, b AS citizen_id FROM _hub_keys2b
            UNION
            SELECT sector, citizen_id FROM by_key
            WHERE citizen_id IS NOT NULL AND sector = ANY(%s::text[])
        )
        SELECT * FROM by_key
        UNION ALL
        SELECT {_READ} FROM sector_records s JOIN _hub_keys1 i ON s.citizen_id = i.a
        UNION ALL
        SELECT {_READ} FROM sector_records s JOIN grp g
          ON s.citizen_id = g.citizen_id AND s.sector = g.sector
        """,
        (sorted(set(unique_sectors)),),
    )
    tombs = (
        fetch(
            conn,
            "SELECT t.source, t.record_key, t.source_lsn, t.source_ts FROM reconciler_tombstones t "
            "JOIN _hub_keys2 k ON t.source = k.a AND t.record_key = k.b",
        )
        if keys
        else []
    )
    return (
        {(r[0], r[1]): SectorRow(*r) for r in rows},
        {(t[0], t[1]): (t[2], t[3]) for t in tombs},
    )


def write_sector_records(
    conn: psycopg.Connection, rows: Sequence[SectorRow], deleted: Sequence[SectorKey]
) -> None:
    """Upsert ``rows`` and delete the ``deleted`` records."""
    if deleted:
        stage(conn, "_hub_keys2", deleted)
        conn.execute(
            "DELETE FROM sector_records s USING _hub_keys2 k "
            "WHERE s.sector = k.a AND s.record_key = k.b"
        )
    if not rows:
        return
    upsert(
        conn, "_hub_sector_rows", "sector_records", ("sector", "record_key"), map(as_tuple, rows)
    )


def write_verified(conn: psycopg.Connection, flags: Sequence[tuple[str, str, bool]]) -> None:
    """Set ``verified`` of (sector, record_key, verified) records, leaving the rest alone."""
    if not flags:
        return
    stage(conn, "_hub_flags", flags)
    conn.execute(
        "UPDATE sector_records s SET verified = f.flag, updated_at = now() FROM _hub_flags f "
        "WHERE s.sector = f.a AND s.record_key = f.b AND s.verified <> f.flag"
    )


def refresh_verified(conn: psycopg.Connection, keys: Iterable[SectorKey]) -> None:
    """Recompute ``verified`` (a registry match and no open or in-review mismatch) for the
    given records — for callers that change a mismatch's status outside the reconciler
    (a steward resolving or dismissing one). Runs in the caller's transaction."""
    keys = sorted(set(keys))
    if not keys:
        return
    conn.execute(
        f"""
        UPDATE sector_records s SET verified = v.ok, updated_at = now()
        FROM (
            SELECT s.sector, s.record_key,
                   (EXISTS (SELECT 1 FROM registry_citizens r
                            WHERE r.citizen_id = s.citizen_id OR r.legacy_id = s.citizen_id)
                    AND NOT EXISTS (SELECT 1 FROM mismatches m
                                    WHERE m.sector = s.sector AND m.record_key = s.record_key
                                      AND m.status IN {OPEN_STATUSES_SQL})) AS ok
            FROM sector_records s
            JOIN unnest(%s::text[], %s::text[]) AS k(sector, record_key)
              ON s.sector = k.sector AND s.record_key = k.record_key
        ) v
        WHERE s.sector = v.sector AND s.record_key = v.record_key AND s.verified <> v.ok
        """,
        ([k[0] for k in keys], [k[1] for k in keys]),
    )


def tombstones_for(
    conn: psycopg.Connection, keys: Iterable[SectorKey]
) -> dict[SectorKey, tuple[int | None, datetime | None]]:
    """(source_lsn, source_ts) of the deletes seen for (source, record_key) pairs."""
    keys = set(keys)
    if not keys:
        return {}
    stage(conn, "_hub_keys2", keys)
    rows = conn.execute(
        """
        SELECT t.source, t.record_key, t.source_lsn, t.source_ts
        FROM reconciler_tombstones t JOIN _hub_keys2 k ON t.source = k.a AND t.record_key = k.b
        """
    ).fetchall()
    return {(r[0], r[1]): (r[2], r[3]) for r in rows}


def write_tombstones(
    conn: psycopg.Connection,
    put: Sequence[tuple[str, str, int | None, datetime | None]],
    dropped: Sequence[SectorKey],
) -> None:
    """Record deletes (source, record_key, lsn, ts); forget those of revived records."""
    if dropped:
        stage(conn, "_hub_keys2", dropped)
        conn.execute(
            "DELETE FROM reconciler_tombstones t USING _hub_keys2 k "
            "WHERE t.source = k.a AND t.record_key = k.b"
        )
    if put:
        stage(conn, "_hub_tombstone_rows", put)
        conn.execute(
            """
            INSERT INTO reconciler_tombstones (source, record_key, source_lsn, source_ts)
            SELECT source, record_key, source_lsn, source_ts FROM _hub_tombstone_rows
            ON CONFLICT (source, record_key) DO UPDATE SET
                source_lsn = EXCLUDED.source_lsn, source_ts = EXCLUDED.source_ts,
                deleted_at = now()
            """
        )


def lock_legacy_ids(conn: psycopg.Connection, legacy_ids: Iterable[str]) -> None:
    """Lock the rows of ``legacy_ids`` in ``reconciler_legacy_locks`` until the end of the
    transaction, creating those that do not exist yet.

    Rows are taken in sorted order, so two batches locking overlapping sets wait for each
    other instead of deadlocking. A row that another transaction is inserting makes the
    insert wait for it; an existing one is locked by ``ON CONFLICT DO UPDATE … WHERE
    false``, which locks every conflicting row and rewrites none.
    """
    ids = sorted(set(legacy_ids))
    if not ids:
        return
    conn.execute(
        """
        INSERT INTO reconciler_legacy_locks (legacy_id)
        SELECT k FROM unnest(%s::text[]) WITH ORDINALITY AS u(k, n) ORDER BY n
        ON CONFLICT (legacy_id) DO UPDATE SET legacy_id = EXCLUDED.legacy_id WHERE false
        """,
        (ids,),
    )

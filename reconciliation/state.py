"""The reconciler's state in the hub database, read and written one batch at a time.

Every function here takes an open psycopg connection and works on a whole batch with one
statement per table, whatever the number of rows. Batch-sized inputs (keys to look up,
rows to write) are first loaded by binary COPY into a session temp table (see
:func:`prepare_session`) and then joined or ``INSERT … SELECT … ON CONFLICT``-ed: COPY
measured ~8× faster here than passing the same data as array parameters. Functions that
stage data must run inside a transaction (the temp tables empty at commit).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from datetime import date, datetime
from operator import attrgetter

import psycopg

from hub.db import figures
from reconciliation.suggestions import PER_KEY, Citizen

# Temp tables of a session: name → columns. Created once per connection, emptied at commit.
_STAGING: dict[str, tuple[tuple[str, str], ...]] = {
    "_hub_keys1": (("a", "text"),),
    "_hub_keys2": (("a", "text"), ("b", "text")),
    "_hub_keys2b": (("a", "text"), ("b", "text")),
    "_hub_flags": (("a", "text"), ("b", "text"), ("flag", "bool")),
    "_hub_registry_rows": (
        ("citizen_id", "text"),
        ("record_key", "text"),
        ("legacy_id", "text"),
        ("full_name", "text"),
        ("name_folded", "text"),
        ("date_of_birth", "date"),
        ("sex", "text"),
        ("province_code", "text"),
        ("address", "text"),
        ("date_of_death", "date"),
        ("attributes", "text"),
        ("source_position", "text"),
        ("source_lsn", "int8"),
        ("source_ts", "timestamptz"),
    ),
    "_hub_sector_rows": (
        ("sector", "text"),
        ("record_key", "text"),
        ("citizen_id_raw", "text"),
        ("citizen_id", "text"),
        ("legacy_id", "text"),
        ("full_name", "text"),
        ("name_folded", "text"),
        ("date_of_birth", "date"),
        ("sex", "text"),
        ("province_code", "text"),
        ("address", "text"),
        ("status", "text"),
        ("last_activity_date", "date"),
        ("attributes", "text"),
        ("verified", "bool"),
        ("source_ts", "timestamptz"),
        ("source_lsn", "int8"),
    ),
    "_hub_tombstone_rows": (
        ("source", "text"),
        ("record_key", "text"),
        ("source_lsn", "int8"),
        ("source_ts", "timestamptz"),
    ),
    "_hub_outbox_rows": (("n", "int4"), ("topic", "text"), ("key", "bytea"), ("value", "bytea")),
    "_hub_mismatch_new": (
        ("sector", "text"),
        ("record_key", "text"),
        ("rule", "text"),
        ("field", "text"),
        ("severity", "text"),
        ("status", "text"),
        ("resolution", "text"),
        ("citizen_id", "text"),
        ("province_code", "text"),
        ("sector_value", "text"),
        ("registry_value", "text"),
        ("score", "float8"),
        ("suggestions", "text"),
        ("values_hash", "text"),
    ),
    "_hub_mismatch_upd": (
        ("id", "int8"),
        ("severity", "text"),
        ("status", "text"),
        ("resolution", "text"),
        ("citizen_id", "text"),
        ("province_code", "text"),
        ("sector_value", "text"),
        ("registry_value", "text"),
        ("score", "float8"),
        ("suggestions", "text"),
        ("values_hash", "text"),
        ("seen", "bool"),
        ("resolved_at", "text"),
        ("dirty", "bool"),
    ),
    "_hub_history_rows": (
        ("n", "int4"),
        ("mismatch_id", "int8"),
        ("action", "text"),
        ("from_status", "text"),
        ("to_status", "text"),
        ("note", "text"),
    ),
}


def prepare_session(conn: psycopg.Connection) -> None:
    """Create the session's staging temp tables (once per connection, outside any
    transaction so a rollback cannot drop them)."""
    for name, columns in _STAGING.items():
        cols = ", ".join(f"{c} {t}" for c, t in columns)
        conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {name} ({cols}) ON COMMIT DELETE ROWS")
        # Analyzed once, empty: the planner then sizes a staged set by its pages (a
        # never-analyzed table counts as at least 10 pages, ~900 rows, and a hundred staged
        # keys get a hash join over a full scan of sector_records instead of index probes).
        conn.execute(f"ANALYZE {name}")


STATE_TABLES = ("registry_citizens", "sector_records", "mismatches", "reconciler_tombstones")
ANALYZE_MIN_ROWS = 1000
ANALYZE_FRACTION = 0.2


def refresh_statistics(conn: psycopg.Connection) -> list[str]:
    """ANALYZE the state tables that changed by more than a fifth since their statistics
    were taken (at least 1,000 rows); the names of those analyzed.

    Every batch query joins staged keys to these tables, and the planner picks index probes
    or a full scan from their statistics. Autovacuum refreshes them only after a minute or
    more, while a first load grows them tenfold in that time: a plan made for a nearly
    empty table (a scan, or the wrong index) then costs more per batch as the table grows.
    """
    rows = conn.execute(
        """
        SELECT s.relname, c.reltuples, s.n_mod_since_analyze
        FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
        WHERE s.schemaname = current_schema() AND s.relname = ANY(%s)
        """,
        (list(STATE_TABLES),),
    ).fetchall()
    stale = [
        name
        for name, tuples, modified in rows
        if modified > max(ANALYZE_MIN_ROWS, ANALYZE_FRACTION * max(tuples, 0))
    ]
    for name in stale:
        conn.execute(f"ANALYZE {name}")
    return stale


def stage(conn: psycopg.Connection, table: str, rows: Iterable[Sequence]) -> None:
    """Replace the content of staging table ``table`` with ``rows`` (binary COPY)."""
    columns = _STAGING[table]
    conn.execute(f"DELETE FROM {table}")
    with conn.cursor() as cur, cur.copy(f"COPY {table} FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types([t for _, t in columns])
        for row in rows:
            copy.write_row(row)


SectorKey = tuple[str, str]
"""(sector, record_key)."""

Attributes = dict[str, str] | str
"""Extra source columns: a dict from a change event, or the stored JSON text as read back
(not parsed: rules never read it, and parsing it cost more than the rest of a read)."""


def attributes_json(value: Attributes) -> str:
    """The JSON text of ``attributes`` for a jsonb column."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True) if value else "{}"


def same_state(a: RegistryRow | SectorRow | None, b: RegistryRow | SectorRow | None) -> bool:
    """Whether two rows hold the same values (attributes compared as data)."""
    if a is None or b is None:
        return a is b
    if type(a) is not type(b) or _values(a) != _values(b):
        return False
    return _attributes(a.attributes) == _attributes(b.attributes)


def _values(row: RegistryRow | SectorRow) -> tuple:
    getter = _REGISTRY_VALUES if type(row) is RegistryRow else _SECTOR_VALUES
    return getter(row)


def _attributes(value: Attributes) -> dict:
    if not isinstance(value, str):
        return value
    return {} if value == "{}" else json.loads(value)


@dataclass(slots=True)
class RegistryRow:
    """One citizen in the registry replica (citizen IDs normalized, name folded)."""

    citizen_id: str
    record_key: str | None = None
    legacy_id: str | None = None
    full_name: str | None = None
    name_folded: str | None = None
    date_of_birth: date | None = None
    sex: str | None = None
    province_code: str | None = None
    address: str | None = None
    date_of_death: date | None = None
    attributes: Attributes = field(default_factory=dict)
    source_position: str | None = None
    source_lsn: int | None = None
    source_ts: datetime | None = None

    def same_facts(self, other: RegistryRow | None) -> bool:
        """True when ``other`` holds the same values rules read (a re-delivery, say)."""
        return other is not None and (
            self.citizen_id,
            self.legacy_id,
            self.full_name,
            self.date_of_birth,
            self.sex,
            self.province_code,
            self.date_of_death,
        ) == (
            other.citizen_id,
            other.legacy_id,
            other.full_name,
            other.date_of_birth,
            other.sex,
            other.province_code,
            other.date_of_death,
        )


@dataclass(slots=True)
class SectorRow:
    """The last known state of one sector record; ``citizen_id`` is the normalized ID when it
    is usable (current or legacy form), else ``None``."""

    sector: str
    record_key: str
    citizen_id_raw: str | None = None
    citizen_id: str | None = None
    legacy_id: str | None = None
    full_name: str | None = None
    name_folded: str | None = None
    date_of_birth: date | None = None
    sex: str | None = None
    province_code: str | None = None
    address: str | None = None
    status: str | None = None
    last_activity_date: date | None = None
    attributes: Attributes = field(default_factory=dict)
    verified: bool = False
    source_ts: datetime | None = None
    source_lsn: int | None = None

    @property
    def key(self) -> SectorKey:
        return (self.sector, self.record_key)


_REGISTRY_VALUES = attrgetter(*(f.name for f in fields(RegistryRow) if f.name != "attributes"))
_SECTOR_VALUES = attrgetter(*(f.name for f in fields(SectorRow) if f.name != "attributes"))

_REGISTRY_COLS = (
    "citizen_id, record_key, legacy_id, full_name, name_folded, date_of_birth, sex, "
    "province_code, address, date_of_death, attributes, source_position, source_lsn, source_ts"
)
_REGISTRY_READ = _REGISTRY_COLS.replace("attributes", "attributes::text")
_SECTOR_COLS = (
    "sector, record_key, citizen_id_raw, citizen_id, legacy_id, full_name, name_folded, "
    "date_of_birth, sex, province_code, address, status, last_activity_date, attributes, "
    "verified, source_ts, source_lsn"
)
_SECTOR_READ = _SECTOR_COLS.replace("attributes", "attributes::text")


def _fetch(conn: psycopg.Connection, sql: str, params: Sequence | None = None) -> list[tuple]:
    """Rows of a query in binary format (parsed about twice as fast as text)."""
    with conn.cursor(binary=True) as cur:
        return cur.execute(sql, params).fetchall()


# -- registry replica ---------------------------------------------------------------------


def registry_by_record_keys(
    conn: psycopg.Connection, keys: Iterable[str]
) -> tuple[dict[str, RegistryRow], dict[str, tuple[int | None, datetime | None]]]:
    """Replica rows of the given registry record keys, and the tombstones (lsn, ts) of
    those deleted, both by record key (the keys are staged once for both queries)."""
    keys = sorted(set(keys))
    if not keys:
        return {}, {}
    stage(conn, "_hub_keys1", ((k,) for k in keys))
    rows = _fetch(
        conn,
        f"SELECT {_REGISTRY_READ} FROM registry_citizens r JOIN _hub_keys1 k ON r.record_key = k.a",
    )
    tombs = _fetch(
        conn,
        "SELECT t.record_key, t.source_lsn, t.source_ts FROM reconciler_tombstones t "
        "JOIN _hub_keys1 k ON t.source = 'registry' AND t.record_key = k.a",
    )
    return {r[1]: RegistryRow(*r) for r in rows}, {k: (lsn, ts) for k, lsn, ts in tombs}


def replace_registry(
    conn: psycopg.Connection, cleared_keys: Sequence[str], rows: Sequence[RegistryRow]
) -> None:
    """Remove the replica rows of ``cleared_keys``, then store ``rows`` (last write wins per
    citizen ID). A record key both cleared and stored ends with its new row."""
    if cleared_keys:
        stage(conn, "_hub_keys1", ((k,) for k in cleared_keys))
        conn.execute("DELETE FROM registry_citizens r USING _hub_keys1 k WHERE r.record_key = k.a")
    if not rows:
        return
    stage(conn, "_hub_registry_rows", (_registry_tuple(r) for r in rows))
    conn.execute(
        f"""
        INSERT INTO registry_citizens ({_REGISTRY_COLS}, updated_at)
        SELECT citizen_id, record_key, legacy_id, full_name, name_folded, date_of_birth, sex,
               province_code, address, date_of_death, attributes::jsonb, source_position,
               source_lsn, source_ts, now()
        FROM _hub_registry_rows
        ON CONFLICT (citizen_id) DO UPDATE SET
            record_key = EXCLUDED.record_key, legacy_id = EXCLUDED.legacy_id,
            full_name = EXCLUDED.full_name, name_folded = EXCLUDED.name_folded,
            date_of_birth = EXCLUDED.date_of_birth, sex = EXCLUDED.sex,
            province_code = EXCLUDED.province_code, address = EXCLUDED.address,
            date_of_death = EXCLUDED.date_of_death, attributes = EXCLUDED.attributes,
            source_position = EXCLUDED.source_position, source_lsn = EXCLUDED.source_lsn,
            source_ts = EXCLUDED.source_ts, updated_at = now()
        """
    )


def _registry_tuple(r: RegistryRow) -> tuple:
    return (
        r.citizen_id,
        r.record_key,
        r.legacy_id,
        r.full_name,
        r.name_folded,
        r.date_of_birth,
        r.sex,
        r.province_code,
        r.address,
        r.date_of_death,
        attributes_json(r.attributes),
        r.source_position,
        r.source_lsn,
        r.source_ts,
    )


def registry_for_ids(
    conn: psycopg.Connection, citizen_ids: Iterable[str], legacy_ids: Iterable[str]
) -> tuple[dict[str, RegistryRow], dict[str, RegistryRow]]:
    """Citizens by current ID and by legacy ID, for every ID given (one query)."""
    ids, legacy = set(citizen_ids), set(legacy_ids)
    if not ids and not legacy:
        return {}, {}
    stage(conn, "_hub_keys2", [*(("c", i) for i in ids), *(("l", i) for i in legacy)])
    cols = ", ".join(f"r.{c.strip()}" for c in _REGISTRY_READ.split(","))
    rows = _fetch(
        conn,
        f"""
        SELECT {cols} FROM registry_citizens r JOIN _hub_keys2 k ON k.a = 'c' AND r.citizen_id = k.b
        UNION ALL
        SELECT {cols} FROM registry_citizens r JOIN _hub_keys2 k ON k.a = 'l' AND r.legacy_id = k.b
        """,
    )
    by_id: dict[str, RegistryRow] = {}
    by_legacy: dict[str, RegistryRow] = {}
    for r in rows:
        row = RegistryRow(*r)
        by_id[row.citizen_id] = row
        if row.legacy_id is not None and row.legacy_id in legacy:
            # Two citizens claiming one legacy number: the lowest current ID wins, so the
            # choice does not depend on row order.
            held = by_legacy.get(row.legacy_id)
            if held is None or row.citizen_id < held.citizen_id:
                by_legacy[row.legacy_id] = row
    return by_id, by_legacy


def candidates_by_birth_date(
    conn: psycopg.Connection, dates: Iterable[date], per_date: int = 5000
) -> dict[date, dict[str, str]]:
    """Registry citizens born on each date as {citizen_id: name_folded}, at most
    ``per_date`` per date, read from the (date_of_birth, name_folded, citizen_id) index
    alone (an index-only scan: no heap fetch per candidate). Citizens without a folded
    name are left out; :meth:`PgRegistryIndex.citizens` reads the rows of those chosen."""
    wanted = sorted(set(dates))
    if not wanted:
        return {}
    rows = conn.execute(
        """
        SELECT d.dob, c.citizen_id, c.name_folded
        FROM unnest(%s::date[]) AS d(dob)
        CROSS JOIN LATERAL (
            SELECT citizen_id, name_folded FROM registry_citizens r
            WHERE r.date_of_birth = d.dob ORDER BY r.name_folded, r.citizen_id LIMIT %s
        ) c
        """,
        (wanted, per_date),
    ).fetchall()
    out: dict[date, dict[str, str]] = {d: {} for d in wanted}
    for dob, cid, folded in rows:
        if folded:
            out[dob][cid] = folded
    return out


class PgRegistryIndex:
    """``reconciliation.suggestions.RegistryIndex`` on the registry replica: each look-up is
    one query for every probe of a batch, an index-only scan bounded per probe (``LIMIT``),
    so its cost follows the batch, not the registry's size."""

    def __init__(self, conn: psycopg.Connection):
        self.conn = conn

    def by_birth_date(self, dates):
        return candidates_by_birth_date(self.conn, dates)

    def by_name_years(self, keys):
        keys = list(keys)
        rows = self.conn.execute(
            """
            SELECT p.i, c.citizen_id, c.name_folded
            FROM unnest(%s::text[], %s::int[], %s::int[], %s::date[])
                 WITH ORDINALITY AS p(folded, first_year, last_year, near, i)
            CROSS JOIN LATERAL (
                SELECT b.citizen_id, b.name_folded FROM (
                    SELECT r.citizen_id, r.name_folded, r.date_of_birth
                    FROM registry_citizens r
                    WHERE hub_name_key(r.name_folded) = hub_name_key(p.folded)
                      AND r.date_of_birth >= make_date(p.first_year, 1, 1)
                      AND r.date_of_birth < make_date(p.last_year + 1, 1, 1)
                    ORDER BY hub_name_key(r.name_folded), r.date_of_birth
                    LIMIT 2000
                ) b
                ORDER BY abs(b.date_of_birth - coalesce(p.near, make_date(p.first_year, 7, 1))),
                         b.citizen_id
                LIMIT %s
            ) c
            """,
            (
                [k[0] for k in keys],
                [k[1] for k in keys],
                [k[2] for k in keys],
                [k[3] for k in keys],
                PER_KEY,
            ),
        ).fetchall()
        out: dict = {k: {} for k in keys}
        for i, cid, folded in rows:
            out[keys[i - 1]][cid] = folded
        return out

    def by_name_province(self, keys):
        keys = list(keys)
        rows = self.conn.execute(
            """
            SELECT p.i, c.citizen_id, c.name_folded
            FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS p(folded, province, i)
            CROSS JOIN LATERAL (
                SELECT r.citizen_id, r.name_folded FROM registry_citizens r
                WHERE hub_name_sorted(r.name_folded) = hub_name_sorted(p.folded)
                  AND r.province_code = p.province
                ORDER BY hub_name_sorted(r.name_folded), r.province_code, r.citizen_id
                LIMIT %s
            ) c
            """,
            ([k[0] for k in keys], [k[1] for k in keys], PER_KEY),
        ).fetchall()
        out: dict = {k: {} for k in keys}
        for i, cid, folded in rows:
            out[keys[i - 1]][cid] = folded
        return out

    def citizens(self, citizen_ids):
        ids = sorted(set(citizen_ids))
        if not ids:
            return {}
        rows = self.conn.execute(
            "SELECT citizen_id, full_name, name_folded, date_of_birth, sex, province_code"
            " FROM registry_citizens WHERE citizen_id = ANY(%s)",
            (ids,),
        ).fetchall()
        return {r[0]: Citizen(*r) for r in rows}


# -- sector records -------------------------------------------------------------------------


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
    cols = ", ".join(f"s.{c.strip()}" for c in _SECTOR_READ.split(","))
    rows = _fetch(
        conn,
        f"""
        WITH by_key AS (
            SELECT {cols} FROM sector_records s
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
        SELECT {cols} FROM sector_records s JOIN _hub_keys1 i ON s.citizen_id = i.a
        UNION ALL
        SELECT {cols} FROM sector_records s JOIN grp g
          ON s.citizen_id = g.citizen_id AND s.sector = g.sector
        """,
        (sorted(set(unique_sectors)),),
    )
    tombs = (
        _fetch(
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
    stage(
        conn,
        "_hub_sector_rows",
        (
            (
                r.sector,
                r.record_key,
                r.citizen_id_raw,
                r.citizen_id,
                r.legacy_id,
                r.full_name,
                r.name_folded,
                r.date_of_birth,
                r.sex,
                r.province_code,
                r.address,
                r.status,
                r.last_activity_date,
                attributes_json(r.attributes),
                r.verified,
                r.source_ts,
                r.source_lsn,
            )
            for r in rows
        ),
    )
    conn.execute(
        f"""
        INSERT INTO sector_records ({_SECTOR_COLS}, updated_at)
        SELECT sector, record_key, citizen_id_raw, citizen_id, legacy_id, full_name, name_folded,
               date_of_birth, sex, province_code, address, status, last_activity_date,
               attributes::jsonb, verified, source_ts, source_lsn, now()
        FROM _hub_sector_rows
        ON CONFLICT (sector, record_key) DO UPDATE SET
            citizen_id_raw = EXCLUDED.citizen_id_raw, citizen_id = EXCLUDED.citizen_id,
            legacy_id = EXCLUDED.legacy_id, full_name = EXCLUDED.full_name,
            name_folded = EXCLUDED.name_folded, date_of_birth = EXCLUDED.date_of_birth,
            sex = EXCLUDED.sex, province_code = EXCLUDED.province_code,
            address = EXCLUDED.address, status = EXCLUDED.status,
            last_activity_date = EXCLUDED.last_activity_date, attributes = EXCLUDED.attributes,
            verified = EXCLUDED.verified, source_ts = EXCLUDED.source_ts,
            source_lsn = EXCLUDED.source_lsn, updated_at = now()
        """
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
        """
        UPDATE sector_records s SET verified = v.ok, updated_at = now()
        FROM (
            SELECT s.sector, s.record_key,
                   (EXISTS (SELECT 1 FROM registry_citizens r
                            WHERE r.citizen_id = s.citizen_id OR r.legacy_id = s.citizen_id)
                    AND NOT EXISTS (SELECT 1 FROM mismatches m
                                    WHERE m.sector = s.sector AND m.record_key = s.record_key
                                      AND m.status IN ('open', 'in_review'))) AS ok
            FROM sector_records s
            JOIN unnest(%s::text[], %s::text[]) AS k(sector, record_key)
              ON s.sector = k.sector AND s.record_key = k.record_key
        ) v
        WHERE s.sector = v.sector AND s.record_key = v.record_key AND s.verified <> v.ok
        """,
        ([k[0] for k in keys], [k[1] for k in keys]),
    )


# -- tombstones -----------------------------------------------------------------------------


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


# -- legacy ID locks ------------------------------------------------------------------------


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


# -- consumer offsets -----------------------------------------------------------------------


def read_offsets(
    conn: psycopg.Connection, group_id: str, topics: Iterable[str]
) -> dict[tuple[str, int], int]:
    """Next offset to consume per (topic, partition) of ``topics``."""
    rows = conn.execute(
        "SELECT topic, partition, next_offset FROM consumer_offsets "
        "WHERE group_id = %s AND topic = ANY(%s::text[])",
        (group_id, sorted(set(topics))),
    ).fetchall()
    return {(t, p): o for t, p, o in rows}


def lock_offsets(
    conn: psycopg.Connection, group_id: str, partitions: Iterable[tuple[str, int]]
) -> dict[tuple[str, int], int]:
    """Lock and return the stored next offsets of ``partitions`` (in this transaction), so a
    second process handed the same partitions waits, then sees what this one applied."""
    parts = sorted(set(partitions))
    if not parts:
        return {}
    rows = conn.execute(
        """
        SELECT o.topic, o.partition, o.next_offset FROM consumer_offsets o
        JOIN unnest(%s::text[], %s::int[]) AS k(topic, partition)
          ON o.topic = k.topic AND o.partition = k.partition
        WHERE o.group_id = %s
        ORDER BY o.topic, o.partition
        FOR UPDATE OF o
        """,
        ([p[0] for p in parts], [p[1] for p in parts], group_id),
    ).fetchall()
    return {(t, p): o for t, p, o in rows}


def store_offsets(
    conn: psycopg.Connection,
    group_id: str,
    offsets: dict[tuple[str, int], int],
    locked: Iterable[tuple[str, int]],
) -> bool:
    """Store the next offset of each (topic, partition) in ``offsets``.

    ``locked`` are the partitions whose rows :func:`lock_offsets` found (and locked); the
    others are inserted. Returns False when another process inserted one of those first:
    the caller must roll back, as that process applied the same messages.
    """
    if not offsets:
        return True
    locked = set(locked)
    update = sorted((k, v) for k, v in offsets.items() if k in locked)
    insert = sorted((k, v) for k, v in offsets.items() if k not in locked)
    if update:
        conn.execute(
            """
            UPDATE consumer_offsets o SET next_offset = u.next_offset, updated_at = now()
            FROM unnest(%s::text[], %s::int[], %s::bigint[]) AS u(topic, partition, next_offset)
            WHERE o.group_id = %s AND o.topic = u.topic AND o.partition = u.partition
            """,
            (
                [k[0] for k, _ in update],
                [k[1] for k, _ in update],
                [v for _, v in update],
                group_id,
            ),
        )
    if insert:
        cur = conn.execute(
            """
            INSERT INTO consumer_offsets (group_id, topic, partition, next_offset)
            SELECT %s, * FROM unnest(%s::text[], %s::int[], %s::bigint[])
            ON CONFLICT (group_id, topic, partition) DO NOTHING
            """,
            (
                group_id,
                [k[0] for k, _ in insert],
                [k[1] for k, _ in insert],
                [v for _, v in insert],
            ),
        )
        if cur.rowcount != len(insert):
            return False
    return True


# -- outbox ---------------------------------------------------------------------------------


def outbox_add(
    conn: psycopg.Connection, messages: Sequence[tuple[str, bytes | None, bytes]]
) -> list[int]:
    """Queue (topic, key, value) messages in this transaction; returns their ids in order."""
    if not messages:
        return []
    stage(conn, "_hub_outbox_rows", ((n, t, k, v) for n, (t, k, v) in enumerate(messages)))
    rows = conn.execute(
        """
        INSERT INTO reconciler_outbox (topic, key, value)
        SELECT topic, key, value FROM _hub_outbox_rows ORDER BY n
        RETURNING id
        """
    ).fetchall()
    return sorted(r[0] for r in rows)


def outbox_pending(
    conn: psycopg.Connection, after_id: int = 0, limit: int = 10_000
) -> list[tuple[int, str, bytes | None, bytes]]:
    """Queued messages in id order (left by a process that stopped before producing them)."""
    return conn.execute(
        "SELECT id, topic, key, value FROM reconciler_outbox WHERE id > %s ORDER BY id LIMIT %s",
        (after_id, limit),
    ).fetchall()


def outbox_delete(conn: psycopg.Connection, ids: Sequence[int]) -> None:
    """Forget messages Kafka acknowledged (ids in ascending order)."""
    if not ids:
        return
    if ids[-1] - ids[0] + 1 == len(ids):  # the usual case: one contiguous range
        conn.execute("DELETE FROM reconciler_outbox WHERE id BETWEEN %s AND %s", (ids[0], ids[-1]))
    else:
        conn.execute("DELETE FROM reconciler_outbox WHERE id = ANY(%s::bigint[])", (list(ids),))


# -- figures --------------------------------------------------------------------------------


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
        """
        SELECT sector, rule, severity, count(*) FROM mismatches
        WHERE status IN ('open', 'in_review') GROUP BY sector, rule, severity
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

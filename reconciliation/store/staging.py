"""The session's staging temp tables, their shapes derived from the models, and the
planner statistics the staged joins are planned from.

Batch-sized inputs (keys to look up, rows to write) are loaded by binary COPY into a
session temp table and then joined or ``INSERT … SELECT … ON CONFLICT``-ed: COPY measured
~8× faster here than passing the same data as array parameters. Functions that stage data
must run inside a transaction (the temp tables empty at commit).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import psycopg
from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    Integer,
    LargeBinary,
    String,
    Table,
)
from sqlalchemy.dialects.postgresql import JSONB

from hub.db.models import (
    Mismatch,
    ReconcilerOutbox,
    ReconcilerTombstone,
    RegistryCitizen,
    SectorRecord,
)
from reconciliation.store.rows import REGISTRY_COLUMNS, SECTOR_COLUMNS

Columns = tuple[tuple[str, str], ...]
"""(name, PostgreSQL type) of each column of a staging table, in COPY order."""


_TYPES = (
    (String, "text"),  # the table's length limit is checked when the rows are written
    (BigInteger, "int8"),
    (Integer, "int4"),
    (Boolean, "bool"),
    (Float, "float8"),
    (Date, "date"),
    (LargeBinary, "bytea"),
    (JSONB, "text"),  # the JSON text, cast to jsonb by the statement that writes it
)
"""The staging type of a model column's type (the first that matches)."""


def _pg_type(column) -> str:
    kind = column.type
    if isinstance(kind, DateTime):  # before Date: a DateTime is not a Date, but be explicit
        return "timestamptz" if kind.timezone else "timestamp"
    for model_type, pg_type in _TYPES:
        if isinstance(kind, model_type):
            return pg_type
    raise TypeError(f"no staging type for {column.table.name}.{column.name} ({kind!r})")


def shape(table: Table, names: Sequence[str]) -> Columns:
    """The staging columns for ``names`` of ``table``, typed from the table's model."""
    return tuple((n, _pg_type(table.c[n])) for n in names)


_MISMATCH_VALUES = (
    "severity", "status", "resolution", "citizen_id", "province_code", "sector_value",
    "registry_value", "score", "suggestions", "values_hash",
)  # fmt: skip
_MISMATCH = Mismatch.__table__

# Temp tables of a session: name → columns. Created once per connection, emptied at commit.
# The key tables hold generic keys; the row tables take their shapes from the models.
STAGING: dict[str, Columns] = {
    "_hub_keys1": (("a", "text"),),
    "_hub_keys2": (("a", "text"), ("b", "text")),
    "_hub_keys2b": (("a", "text"), ("b", "text")),
    "_hub_flags": (("a", "text"), ("b", "text"), ("flag", "bool")),
    "_hub_corr_keys": (("a", "text"), ("b", "text")),
    "_hub_corr_done": (("id", "int8"), ("mismatch_id", "int8")),
    "_hub_registry_rows": shape(RegistryCitizen.__table__, REGISTRY_COLUMNS),
    "_hub_sector_rows": shape(SectorRecord.__table__, SECTOR_COLUMNS),
    "_hub_tombstone_rows": shape(
        ReconcilerTombstone.__table__, ("source", "record_key", "source_lsn", "source_ts")
    ),
    "_hub_outbox_rows": (
        ("n", "int4"),
        *shape(ReconcilerOutbox.__table__, ("topic", "key", "value")),
    ),
    "_hub_mismatch_new": shape(
        _MISMATCH, ("sector", "record_key", "rule", "field", *_MISMATCH_VALUES)
    ),
    # Bookkeeping beside the values: ``seen`` moves last_seen_at, ``resolved_at`` is
    # "set" / "clear" / NULL = keep, ``dirty`` moves updated_at.
    "_hub_mismatch_upd": (
        *shape(_MISMATCH, ("id", *_MISMATCH_VALUES)),
        ("seen", "bool"),
        ("resolved_at", "text"),
        ("dirty", "bool"),
    ),
}


def prepare_session(conn: psycopg.Connection) -> None:
    """Create the session's staging temp tables (once per connection, outside any
    transaction so a rollback cannot drop them)."""
    for name, columns in STAGING.items():
        cols = ", ".join(f"{c} {t}" for c, t in columns)
        conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {name} ({cols}) ON COMMIT DELETE ROWS")
        # Analyzed once, empty: the planner then sizes a staged set by its pages (a
        # never-analyzed table counts as at least 10 pages, ~900 rows, and a hundred staged
        # keys get a hash join over a full scan of sector_records instead of index probes).
        conn.execute(f"ANALYZE {name}")


def stage(conn: psycopg.Connection, table: str, rows: Iterable[Sequence]) -> None:
    """Replace the content of staging table ``table`` with ``rows`` (binary COPY)."""
    columns = STAGING[table]
    conn.execute(f"DELETE FROM {table}")
    with conn.cursor() as cur, cur.copy(f"COPY {table} FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types([t for _, t in columns])
        for row in rows:
            copy.write_row(row)


def upsert(
    conn: psycopg.Connection,
    staging: str,
    table: str,
    key: Sequence[str],
    rows: Iterable[Sequence],
) -> None:
    """Stage ``rows`` in ``staging`` and insert them into ``table`` (the staging table's
    columns), updating the row of an existing ``key``; ``attributes`` is cast to jsonb and
    ``updated_at`` set to now()."""
    columns = [c for c, _type in STAGING[staging]]
    stage(conn, staging, rows)
    values = ", ".join("attributes::jsonb" if c == "attributes" else c for c in columns)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c not in key)
    conn.execute(
        f"""
        INSERT INTO {table} ({", ".join(columns)}, updated_at)
        SELECT {values}, now() FROM {staging}
        ON CONFLICT ({", ".join(key)}) DO UPDATE SET {updates}, updated_at = now()
        """
    )


def fetch(conn: psycopg.Connection, sql: str, params: Sequence | None = None) -> list[tuple]:
    """Rows of a query in binary format (parsed about twice as fast as text)."""
    with conn.cursor(binary=True) as cur:
        return cur.execute(sql, params).fetchall()


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

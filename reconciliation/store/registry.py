"""The registry replica (``registry_citizens``): rows by record key and by citizen ID for a
batch, their replacement, and the candidate look-ups of the suggestions."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime

import psycopg

from reconciliation.store.rows import REGISTRY_COLUMNS, RegistryRow, as_tuple
from reconciliation.store.staging import fetch, stage, upsert
from reconciliation.suggestions import PER_KEY, Citizen

_READ = ", ".join("attributes::text" if c == "attributes" else c for c in REGISTRY_COLUMNS)


def registry_by_record_keys(
    conn: psycopg.Connection, keys: Iterable[str]
) -> tuple[dict[str, RegistryRow], dict[str, tuple[int | None, datetime | None]]]:
    """Replica rows of the given registry record keys, and the tombstones (lsn, ts) of
    those deleted, both by record key (the keys are staged once for both queries)."""
    keys = sorted(set(keys))
    if not keys:
        return {}, {}
    stage(conn, "_hub_keys1", ((k,) for k in keys))
    rows = fetch(
        conn,
        f"SELECT {_READ} FROM registry_citizens r JOIN _hub_keys1 k ON r.record_key = k.a",
    )
    tombs = fetch(
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
    upsert(conn, "_hub_registry_rows", "registry_citizens", ("citizen_id",), map(as_tuple, rows))


def registry_for_ids(
    conn: psycopg.Connection, citizen_ids: Iterable[str], legacy_ids: Iterable[str]
) -> tuple[dict[str, RegistryRow], dict[str, RegistryRow]]:
    """Citizens by current ID and by legacy ID, for every ID given (one query)."""
    ids, legacy = set(citizen_ids), set(legacy_ids)
    if not ids and not legacy:
        return {}, {}
    stage(conn, "_hub_keys2", [*(("c", i) for i in ids), *(("l", i) for i in legacy)])
    cols = ", ".join(f"r.{c}" for c in _READ.split(", "))
    rows = fetch(
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
        return _by_probe(keys, rows)

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
        return _by_probe(keys, rows)

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


def _by_probe(keys: list, rows: list[tuple]) -> dict:
    """{key: {citizen_id: name_folded}} from (1-based probe number, citizen_id, name_folded)."""
    out: dict = {k: {} for k in keys}
    for i, cid, folded in rows:
        out[keys[i - 1]][cid] = folded
    return out

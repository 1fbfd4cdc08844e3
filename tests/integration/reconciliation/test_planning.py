"""Query plans of the reconciler's batch look-ups: a batch of a hundred keys probes the
indexes of a large table instead of scanning it, and the state tables' statistics follow a
first load instead of waiting for autovacuum."""

from __future__ import annotations

from datetime import date, timedelta

import psycopg

from hub.db import psycopg_conninfo
from reconciliation import lifecycle
from reconciliation.engine import Reconciler
from reconciliation.store.records import sector_records_for
from reconciliation.store.registry import PgRegistryIndex, candidates_by_birth_date
from reconciliation.store.staging import prepare_session, refresh_statistics, stage
from tests.integration.reconciliation.feed import hub_config

ROWS = 100_000


def _connect(url: str) -> psycopg.Connection:
    conn = psycopg.connect(psycopg_conninfo(url), autocommit=True)
    prepare_session(conn)
    return conn


def _load_sector_records(conn: psycopg.Connection, first: int, count: int) -> None:
    conn.execute(
        "INSERT INTO sector_records (sector, record_key, citizen_id, full_name, verified)"
        " SELECT 'tax', 'T' || i, lpad(i::text, 12, '0'), 'Nguyen Van ' || i, true"
        " FROM generate_series(%s::int, %s::int) i",
        (first, first + count - 1),
    )
    conn.execute("SELECT pg_stat_force_next_flush()")


def _seq_scans(conn: psycopg.Connection, table: str) -> int:
    """Sequential scans of ``table`` started in the current transaction."""
    return conn.execute("SELECT pg_stat_get_xact_numscans(%s::regclass)", (table,)).fetchone()[0]


def test_refresh_statistics_analyzes_only_tables_that_grew(hub_db):
    conn = _connect(hub_db)
    conn.execute("ANALYZE")
    _load_sector_records(conn, 1, 500)
    assert refresh_statistics(conn) == []  # under the 1,000-row floor
    _load_sector_records(conn, 501, ROWS)
    assert refresh_statistics(conn) == ["sector_records"]
    (tuples,) = conn.execute(
        "SELECT reltuples FROM pg_class WHERE oid = 'sector_records'::regclass"
    ).fetchone()
    assert tuples == ROWS + 500
    conn.execute("SELECT pg_stat_force_next_flush()")
    assert refresh_statistics(conn) == []  # nothing changed since


def test_a_small_batch_probes_the_indexes_of_a_large_table(hub_db):
    conn = _connect(hub_db)
    _load_sector_records(conn, 1, ROWS)
    refresh_statistics(conn)
    keys = [("tax", f"T{i}") for i in range(1, 20_000, 200)]  # 100 records of the batch
    ids = [f"{i:012d}" for i in range(7, 20_000, 400)]  # registry changes to fan out
    with conn.transaction():
        before = _seq_scans(conn, "sector_records")
        groups = [("tax", f"{i:012d}") for i in range(3, 300, 3)]
        rows, _ = sector_records_for(conn, keys, ids, groups, unique_sectors=["tax"])
        assert _seq_scans(conn, "sector_records") == before
    assert set(keys) <= rows.keys()
    found = {r.citizen_id for r in rows.values()}
    assert set(ids) <= found and {f"{i:012d}" for i in range(3, 300, 3)} <= found


def test_no_index_of_sector_records_leads_with_sector_but_the_primary_key(hub_db):
    """The batch look-up joins staged (sector, record_key) pairs to sector_records. On a first
    load its plan is cached while the table is nearly empty (psycopg prepares it after five
    runs, PostgreSQL keeps a generic plan after five more, until the next ANALYZE), and with
    an index on (sector, verified) that plan probed the index on ``sector`` alone and
    filtered every record of the sector for each key: 25 s for one batch of 7,506 keys at
    100k records, where the primary key takes 40 ms (measured with auto_explain). An index
    leading with ``sector`` must also hold ``record_key`` next."""
    conn = _connect(hub_db)
    rows = conn.execute(
        "SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index"
        " WHERE indrelid = 'sector_records'::regclass"
    ).fetchall()
    leading = {name for name, definition in rows if "(sector" in definition}
    assert leading == {"pk_sector_records"}
    assert "(sector, record_key)" in dict(rows)["pk_sector_records"]


def _load_mismatches_rows(conn: psycopg.Connection, count: int) -> None:
    conn.execute(
        "INSERT INTO mismatches (sector, record_key, rule, severity)"
        " SELECT 'tax', 'T' || i, 'NAME_MISMATCH', 'low' FROM generate_series(1, %s) i",
        (count,),
    )
    conn.execute("ANALYZE mismatches")


def _mismatch_rows_scanned(plan: dict) -> int:
    """Rows of ``mismatches`` that the nodes of an EXPLAIN ANALYZE plan read."""
    own = (
        plan["Actual Rows"] * plan["Actual Loops"]
        if plan.get("Relation Name") == "mismatches"
        else 0
    )
    return own + sum(_mismatch_rows_scanned(p) for p in plan.get("Plans", ()))


def _catch_up_then_live(conn: psycopg.Connection) -> None:
    """Ten 5,000-key look-ups (a catch-up), then the staged keys of a 10-key one (live)."""
    for start in range(1, 50_001, 5_000):
        with conn.transaction():
            lifecycle.load_mismatches(conn, [("tax", f"T{i}") for i in range(start, start + 5_000)])
    stage(conn, "_hub_keys2", [("tax", f"T{i}") for i in range(7, 60_000, 6_000)])


def test_the_batch_connection_plans_each_look_up_for_the_size_of_its_batch(hub_db, kafka_config):
    """A batch look-up joins a staging table of one to ten thousand keys. psycopg prepares a
    statement after its fifth run, and PostgreSQL keeps the generic plan of a prepared
    statement without parameters until the next ANALYZE of a table it reads: the plan made
    for a catch-up's 10k-key batches then served every live batch — ~200 ms to read every
    mismatch for 50 keys at 1M records, where index probes take ~5 ms (measured in the 1M
    bench, until an ANALYZE of ``mismatches`` replaced the plan). The reconciler's batch
    connection prepares nothing, so each look-up is planned for its own batch."""
    conn = _connect(hub_db)
    _load_mismatches_rows(conn, 60_000)
    with conn.transaction():  # the scenario, on a connection with psycopg's defaults
        _catch_up_then_live(conn)
        (name,) = conn.execute(
            "SELECT name FROM pg_prepared_statements WHERE statement LIKE %s",
            ("%FROM mismatches m JOIN _hub_keys2%",),
        ).fetchone()
        ((plan,),) = conn.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE {name}").fetchall()
        assert _mismatch_rows_scanned(plan[0]["Plan"]) > 10_000  # for 10 keys
    conn.close()

    reconciler = Reconciler(hub_config(hub_db, kafka_config))
    reconciler._connect()
    try:
        with reconciler.conn.transaction():
            _catch_up_then_live(reconciler.conn)
            prepared = reconciler.conn.execute("SELECT count(*) FROM pg_prepared_statements")
            assert prepared.fetchone()[0] == 0
    finally:
        reconciler.conn.close()


def test_registry_candidates_are_read_from_the_index_alone(hub_db):
    """Suggestions read every citizen born on a date (~360 a date at 10M citizens). With the
    citizen ID in the (date_of_birth, name_folded, …) index the read needs no heap fetch per
    candidate once the pages are all-visible: 1.8 s → 0.4 s for 1,000 probes at 10M."""
    conn = _connect(hub_db)
    # Flushed at commit: VACUUM marks a page all-visible only once its rows' commit is on
    # disk, and the embedded server commits asynchronously.
    conn.execute("SET synchronous_commit = on")
    conn.execute(
        "INSERT INTO registry_citizens (citizen_id, full_name, name_folded, date_of_birth)"
        " SELECT lpad(i::text, 12, '0'), 'Nguyễn Văn ' || i, 'nguyen van ' || i,"
        " date '1960-01-01' + (i %% 500) FROM generate_series(1, %s) i",
        (ROWS,),
    )
    conn.execute("VACUUM ANALYZE registry_citizens")
    dates = [date(1960, 1, 1) + timedelta(days=d) for d in range(0, 500, 25)]
    with conn.transaction():
        fetched = "SELECT pg_stat_get_xact_tuples_fetched('registry_citizens'::regclass)"
        (before,) = conn.execute(fetched).fetchone()
        born = candidates_by_birth_date(conn, dates)
        (after,) = conn.execute(fetched).fetchone()
        chosen = PgRegistryIndex(conn).citizens(["000000000025", "000000000525", "999999999999"])
        names = {cid: c.full_name for cid, c in chosen.items()}
    assert after == before
    assert {d: len(c) for d, c in born.items()} == {d: ROWS // 500 for d in dates}
    assert born[date(1960, 1, 26)]["000000000525"] == "nguyen van 525"
    assert names == {"000000000025": "Nguyễn Văn 25", "000000000525": "Nguyễn Văn 525"}

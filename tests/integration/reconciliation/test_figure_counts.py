"""The trigger-kept counts behind the gauges (``figure_counts``, migration 0005) equal full
counts of ``sector_records`` and ``mismatches`` after any mix of writes: inserts, upserts
that insert and update in one statement, updates, deletes, truncates, concurrent writers
and folding."""

from __future__ import annotations

import threading

import psycopg
from alembic import command
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.db import psycopg_conninfo
from hub.db.migrate import alembic_config
from reconciliation.store.figures import figure_counts, open_mismatch_counts, sector_counts
from reconciliation.store.records import write_sector_records
from reconciliation.store.rows import SectorRow
from reconciliation.store.staging import prepare_session

SECTORS = ("tax", "bank")
RULES = ("NAME_MISMATCH", "DOB_MISMATCH")
STATUSES = ("open", "in_review", "resolved", "dismissed")
SEVERITIES = ("low", "high")


def connect(url: str) -> psycopg.Connection:
    conn = psycopg.connect(psycopg_conninfo(url), autocommit=True)
    prepare_session(conn)
    return conn


def full_counts(conn: psycopg.Connection) -> tuple[dict, list]:
    return sector_counts(conn), sorted(open_mismatch_counts(conn))


def kept_counts(conn: psycopg.Connection) -> tuple[dict, list]:
    counts, open_counts = figure_counts(conn)
    return counts, sorted(open_counts)


def delta_rows(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT count(*) FROM figure_counts").fetchone()[0]


def upsert_records(conn, rows: list[tuple[str, str, bool]]) -> None:
    """Through the reconciler's own writer: one INSERT ... ON CONFLICT DO UPDATE."""
    with conn.transaction():
        write_sector_records(
            conn, [SectorRow(s, k, status="active", verified=v) for s, k, v in rows], []
        )


def upsert_mismatches(conn, rows: list[tuple[str, str, str, str, str]]) -> None:
    conn.execute(
        "INSERT INTO mismatches (sector, record_key, rule, severity, status) "
        "SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[]) "
        "ON CONFLICT (sector, record_key, rule, field) DO UPDATE SET "
        "severity = EXCLUDED.severity, status = EXCLUDED.status",
        [list(col) for col in zip(*rows, strict=True)],
    )


record_ops = st.lists(
    st.tuples(st.sampled_from(SECTORS), st.sampled_from("abcdef"), st.booleans()),
    min_size=1,
    max_size=8,
    unique_by=lambda r: r[:2],
)
mismatch_ops = st.lists(
    st.tuples(
        st.sampled_from(SECTORS),
        st.sampled_from("abcdef"),
        st.sampled_from(RULES),
        st.sampled_from(SEVERITIES),
        st.sampled_from(STATUSES),
    ),
    min_size=1,
    max_size=8,
    unique_by=lambda r: r[:3],
)
operation = st.one_of(
    st.tuples(st.just("records"), record_ops),
    st.tuples(st.just("mismatches"), mismatch_ops),
    st.tuples(st.just("verify"), st.sampled_from(SECTORS), st.booleans()),
    st.tuples(st.just("delete records"), st.sampled_from("abcdef")),
    st.tuples(st.just("delete mismatches"), st.sampled_from(STATUSES)),
    st.tuples(st.just("fold")),
)


def test_counts_follow_every_kind_of_write(hub_db):
    conn = connect(hub_db)

    @settings(
        max_examples=40,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(st.lists(operation, max_size=12))
    def check(ops):
        conn.execute("DELETE FROM sector_records")
        conn.execute("DELETE FROM mismatches")
        for op in ops:
            kind = op[0]
            if kind == "records":
                upsert_records(conn, op[1])
            elif kind == "mismatches":
                upsert_mismatches(conn, op[1])
            elif kind == "verify":  # only the rows whose flag moves are updated
                conn.execute(
                    "UPDATE sector_records SET verified = %s WHERE sector = %s AND verified <> %s",
                    (op[2], op[1], op[2]),
                )
            elif kind == "delete records":
                conn.execute("DELETE FROM sector_records WHERE record_key = %s", (op[1],))
            elif kind == "delete mismatches":
                conn.execute("DELETE FROM mismatches WHERE status = %s", (op[1],))
            else:
                figure_counts(conn)
        assert kept_counts(conn) == full_counts(conn)

    check()


def test_folding_leaves_one_row_per_key_and_the_same_sums(hub_db):
    conn = connect(hub_db)
    for i in range(20):
        upsert_records(conn, [("tax", f"T{i}", i % 2 == 0), ("bank", f"B{i}", True)])
        upsert_mismatches(conn, [("tax", f"T{i}", "NAME_MISMATCH", "high", "open")])
    assert delta_rows(conn) == 60
    before = full_counts(conn)
    assert before == ({"tax": (20, 10), "bank": (20, 20)}, [("tax", "NAME_MISMATCH", "high", 20)])
    assert kept_counts(conn) == before
    assert delta_rows(conn) == 3  # tax records, bank records, tax NAME_MISMATCH high
    conn.execute("UPDATE mismatches SET status = 'resolved'")
    assert kept_counts(conn) == ({"tax": (20, 10), "bank": (20, 20)}, [])
    assert delta_rows(conn) == 2  # a key whose sums are all zero goes


def test_truncate_resets_the_counts_of_its_table(hub_db):
    conn = connect(hub_db)
    upsert_records(conn, [("tax", "T1", True)])
    upsert_mismatches(conn, [("tax", "T1", "NAME_MISMATCH", "high", "open")])
    conn.execute("TRUNCATE mismatches CASCADE")
    assert kept_counts(conn) == full_counts(conn) == ({"tax": (1, 1)}, [])
    conn.execute("TRUNCATE sector_records")
    upsert_records(conn, [("bank", "B1", False)])
    assert kept_counts(conn) == full_counts(conn) == ({"bank": (1, 0)}, [])


def test_an_uncommitted_writer_is_counted_once_it_commits_even_across_a_fold(hub_db):
    reader = connect(hub_db)
    writer = psycopg.connect(psycopg_conninfo(hub_db))
    prepare_session(writer)
    upsert_records(reader, [("tax", "T1", True)])
    write_sector_records(writer, [SectorRow("tax", "T2", verified=False)], [])
    assert kept_counts(reader) == ({"tax": (1, 1)}, [])  # folded without the writer's delta
    writer.commit()
    assert kept_counts(reader) == full_counts(reader) == ({"tax": (2, 1)}, [])
    writer.close()


def test_concurrent_folders_each_read_whole_sums(hub_db):
    conn = connect(hub_db)
    upsert_records(conn, [("tax", f"T{i}", True) for i in range(50)])
    results: list[tuple] = []
    errors: list[BaseException] = []

    def read() -> None:
        try:
            with connect(hub_db) as own:
                for i in range(30):
                    upsert_records(own, [("bank", f"B{threading.get_ident()}-{i}", False)])
                    counts, _ = figure_counts(own)
                    results.append(counts["tax"])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=read) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert set(results) == {(50, 50)}
    assert kept_counts(conn) == full_counts(conn)
    assert full_counts(conn)[0]["bank"] == (120, 0)


def test_the_migration_counts_what_is_already_there(hub_db):
    command.downgrade(alembic_config(hub_db), "0004")
    conn = connect(hub_db)
    upsert_records(conn, [("tax", "T1", True), ("tax", "T2", False), ("bank", "B1", False)])
    upsert_mismatches(
        conn,
        [
            ("tax", "T2", "NAME_MISMATCH", "high", "open"),
            ("tax", "T2", "DOB_MISMATCH", "low", "resolved"),
            ("bank", "B1", "NAME_MISMATCH", "low", "in_review"),
        ],
    )
    command.upgrade(alembic_config(hub_db), "head")
    assert kept_counts(conn) == full_counts(conn)
    assert kept_counts(conn) == (
        {"tax": (2, 1), "bank": (1, 0)},
        [("bank", "NAME_MISMATCH", "low", 1), ("tax", "NAME_MISMATCH", "high", 1)],
    )

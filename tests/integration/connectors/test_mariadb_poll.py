"""``poll`` capture on a real MariaDB (tests/integration/mariadb.py): the PostgreSQL tests'
same-timestamp and late-commit cases, DATETIME(6) and TIMESTAMP(6) on a server whose zone is
not UTC, DECIMAL, utf8mb4 Vietnamese and Arabic, NULL and zero timestamps, and a MariaDB
sector reconciled against the registry end to end."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import psycopg
import pytest

from connectors.base import ConnectorContext
from connectors.delivery import Delivery
from connectors.mapping import RecordMapper
from connectors.poll import PollCapture
from connectors.snapshot import SnapshotCapture
from connectors.state import delete_connector_data, hub_engine
from hub.config import DatabaseConfig, HubConfig, MetricsConfig, SourceConfig
from hub.db import psycopg_conninfo
from hub.idschemes import get_scheme
from hub.testing import migrated_hub_db
from reconciliation.engine import Reconciler
from tests.integration.connectors.conftest import changes, run_once
from tests.integration.connectors.test_poll import _step as step
from tests.integration.connectors.test_poll import bank_source
from tests.integration.mariadb import Table

VIET = "Nguyễn Thị Ánh"
ARAB = "محمد عبد الله"

POLL_DDL = """
CREATE TABLE {table} (
    id BIGINT AUTO_INCREMENT PRIMARY KEY,
    so_cccd VARCHAR(12),
    ho_ten VARCHAR(200),
    ngay_sinh DATE,
    gioi_tinh VARCHAR(3),
    so_du DECIMAL(18, 2),
    updated_at DATETIME(6) NULL DEFAULT CURRENT_TIMESTAMP(6),
    KEY ix_updated (updated_at, id)
) CHARACTER SET utf8mb4"""


@pytest.fixture(scope="module", autouse=True)
def server_in_vietnam(mariadb):
    """The server's zone is UTC+7 for this module's connections, as a Vietnamese one's is."""
    conn = mariadb.connect(admin=True)
    try:
        with conn.cursor() as cur:
            cur.execute("SET GLOBAL time_zone = '+07:00'")
        yield
        with conn.cursor() as cur:
            cur.execute("SET GLOBAL time_zone = '+00:00'")
    finally:
        conn.close()


@pytest.fixture(scope="module")
def module_hub_db(servers):
    """One migrated hub database for the module: a fresh one per test costs seconds."""
    yield from migrated_hub_db(servers)


@pytest.fixture
def make_config(servers, module_hub_db):
    """``make_config(bank=…)`` on the module's hub database and a new topic prefix; the
    connectors named (and the registry) forget what earlier tests stored."""
    kafka = servers.kafka(partitions=3)

    def build(**sectors: dict) -> HubConfig:
        for name in ("registry", *sectors):
            delete_connector_data(hub_engine(module_hub_db), name)
        return HubConfig(
            kafka=kafka, database=DatabaseConfig(url=module_hub_db),
            metrics=MetricsConfig(listen="127.0.0.1:0"), id_scheme="vn",
            sectors={k: SourceConfig.model_validate(v) for k, v in sectors.items()},
        )  # fmt: skip

    return build


def poll_source(table: Table, **poll) -> dict:
    """The PostgreSQL poll tests' source, on this MariaDB table, with a DECIMAL attribute."""
    source = bank_source(table, **poll)
    columns = {**source["columns"], "attributes.so_du": "so_du"}
    return {**source, "table": table.name, "columns": columns}


@pytest.fixture
def bank(mariadb) -> Table:
    return Table(mariadb, POLL_DDL, prefix="kh")


def insert(table: Table, count: int, ts: str | None = None, prefix: str = "KH", start: int = 1):
    rows = [(f"0791900{i:05d}", f"{prefix}{i}", "1990-01-01", "NU", Decimal("1234.50"))
            for i in range(start, start + count)]  # fmt: skip
    if ts is None:
        table.execute("INSERT INTO {table} (so_cccd, ho_ten, ngay_sinh, gioi_tinh, so_du)"
                      " VALUES (%s, %s, %s, %s, %s)", rows, many=True)  # fmt: skip
    else:
        table.execute("INSERT INTO {table} (so_cccd, ho_ten, ngay_sinh, gioi_tinh, so_du,"
                      " updated_at) VALUES (%s, %s, %s, %s, %s, %s)",
                      [(*r, ts) for r in rows], many=True)  # fmt: skip


def test_rows_sharing_one_timestamp_are_all_captured_across_pages(bank, make_config):
    config = make_config(bank=poll_source(bank, batch_size=10))
    topic = changes(config, "bank")
    insert(bank, 25, ts="2024-05-01 08:00:00.123456")  # 2.5 pages, one instant
    run_once(config, "bank")
    assert sorted(int(m.record_key) for m in topic.read()) == list(range(1, 26))

    # More rows at that same instant later (a restart between): above the watermark's window.
    insert(bank, 12, ts="2024-05-01 08:00:00.123456", prefix="MOI", start=26)
    run_once(config, "bank")
    got = topic.read()
    assert {int(m.record_key) for m in got} >= set(range(26, 38))
    assert all(m.op == "u" and m.value["before"] is None for m in got)


def test_a_transaction_committing_late_within_the_margin_is_not_missed(bank, make_config):
    config = make_config(bank=poll_source(bank))
    topic = changes(config, "bank")
    late = bank.connect(autocommit=False)
    with late.cursor() as cur:  # takes its id and timestamp first, commits last
        cur.execute(f"INSERT INTO {bank.name} (so_cccd, ho_ten, ngay_sinh, gioi_tinh)"
                    " VALUES ('079190000999', 'Trễ', '1990-01-01', 'NU')")  # fmt: skip
    insert(bank, 3, prefix="SOM")  # commits first and moves the watermark past the late row
    run_once(config, "bank")
    assert {m.value["after"]["full_name"] for m in topic.read()} == {"SOM1", "SOM2", "SOM3"}
    late.commit()
    late.close()
    run_once(config, "bank")
    assert "Trễ" in [m.value["after"]["full_name"] for m in topic.read()]


def test_values_round_trip_utf8mb4_decimal_datetime6_and_nulls(bank, make_config):
    config = make_config(bank=poll_source(bank))
    topic = changes(config, "bank")
    bank.execute(
        "INSERT INTO {table} (so_cccd, ho_ten, ngay_sinh, gioi_tinh, so_du, updated_at) VALUES"
        " ('079190000001', %s, '1985-03-04', 'NU', 98765432109876.05, '2024-05-01 01:02:03.000007'),"
        " ('079190000002', %s, NULL, NULL, NULL, '2024-05-01 01:02:03.000008')",
        (VIET, ARAB),
    )
    run_once(config, "bank")
    got = {m.record_key: m.value for m in topic.read()}
    viet, arab = got["1"], got["2"]
    assert viet["after"]["full_name"] == VIET and arab["after"]["full_name"] == ARAB
    assert viet["after"]["date_of_birth"] == date(1985, 3, 4) and viet["after"]["sex"] == "F"
    assert viet["after"]["attributes"]["so_du"] == "98765432109876.05"
    assert arab["after"]["date_of_birth"] is None and arab["after"]["sex"] is None
    assert arab["after"]["attributes"].get("so_du") is None
    # A zone-less DATETIME(6) is taken as UTC, whatever the server's zone.
    assert viet["source"]["commit_ts_ms"] == _ms("2024-05-01 01:02:03.000007+00:00")
    assert viet["source"]["position"] == "2024-05-01T01:02:03.000007|1"


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def test_a_timestamp_column_reads_in_utc_on_a_server_in_another_zone(mariadb, make_config):
    table = Table(mariadb, POLL_DDL.replace("DATETIME(6) NULL", "TIMESTAMP(6) NULL"), "ts")
    # Written by a client in the server's zone (+07:00): 08:00 there is 01:00 UTC.
    table.execute("INSERT INTO {table} (so_cccd, ho_ten, updated_at)"
                  " VALUES ('079190000001', 'A', '2024-05-01 08:00:00.250000')")  # fmt: skip
    config = make_config(bank=poll_source(table))
    run_once(config, "bank")
    (event,) = changes(config, "bank").read()
    assert event.value["source"]["commit_ts_ms"] == _ms("2024-05-01 01:00:00.250+00:00")


def open_mode(config, name: str = "bank", mode_class=PollCapture):
    """The capture mode and delivery of connector ``name``, opened, without the runner."""
    source = config.sources()[name]
    mode = mode_class(
        ConnectorContext(name, source, config, RecordMapper(name, source, get_scheme("vn")))
    )
    delivery = Delivery(name, config.kafka)
    mode.open()
    delivery.open()
    return mode, delivery


def drive(config, name: str, mode_class) -> None:
    """Batch by batch as the runner drives a mode, until caught up (one snapshot run)."""
    mode, delivery = open_mode(config, name, mode_class)
    try:
        while not step(mode, delivery).caught_up:
            pass
    finally:
        mode.close()
        delivery.close()


def test_a_page_boundary_inside_one_microsecond_and_the_window_reread(bank, make_config):
    config = make_config(bank=poll_source(bank, batch_size=4, margin_s=3600))
    topic = changes(config, "bank")
    insert(bank, 3, ts="2024-05-01 08:00:00.000001")
    insert(bank, 3, ts="2024-05-01 08:00:00.000002", prefix="B", start=4)
    mode, delivery = open_mode(config)
    try:
        assert len(step(mode, delivery)) == 4  # the page ends inside the second instant
        batch = step(mode, delivery)
        assert len(batch) == 2 and batch.caught_up
        assert len(step(mode, delivery)) == 0  # the window is read again, nothing new
        bank.execute("UPDATE {table} SET ho_ten = %s, updated_at = NOW(6) WHERE id = 2", (VIET,))
        assert len(step(mode, delivery)) == 1
    finally:
        mode.close()
        delivery.close()
    names = [m.value["after"]["full_name"] for m in topic.read() if m.record_key == "2"]
    assert names == ["KH2", VIET]


def test_null_and_zero_timestamps_sorting_first_do_not_stall_the_scan(bank, make_config):
    """MariaDB sorts NULL (and its zero date) before every timestamp: a page full of them
    must not stop the scan short of the rows that have one."""
    insert(bank, 5, prefix="NULL")
    bank.execute("UPDATE {table} SET updated_at = NULL")
    conn = bank.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SET SESSION sql_mode = ''")  # lets a zero date in, as old apps do
            cur.executemany(f"INSERT INTO {bank.name} (so_cccd, ho_ten, updated_at)"
                            " VALUES (%s, %s, '0000-00-00 00:00:00')",
                            [(f"07919001{i:04d}", f"ZERO{i}") for i in range(5)])  # fmt: skip
    finally:
        conn.close()
    insert(bank, 3, ts="2024-05-01 08:00:00", prefix="OK", start=20)
    config = make_config(bank=poll_source(bank, batch_size=4))
    run_once(config, "bank")
    names = sorted(m.value["after"]["full_name"] for m in changes(config, "bank").read())
    assert names == ["OK20", "OK21", "OK22"]


def test_a_mariadb_sector_is_reconciled_against_the_registry(bank, make_config, source_db):
    source_db.execute("CREATE TABLE dan_cu (so_cccd text PRIMARY KEY, ho_ten text,"
                      " ngay_sinh date, gioi_tinh text)")  # fmt: skip
    source_db.execute("INSERT INTO dan_cu VALUES ('079190000001', %s, '1990-01-01', 'NU'),"
                      " ('079190000002', 'KH2', '1990-01-01', 'NU')", (VIET,))  # fmt: skip
    registry = {"url": source_db.url, "table": "dan_cu", "key": "so_cccd", "capture": "snapshot",
                "columns": {"citizen_id": "so_cccd", "full_name": "ho_ten",
                            "date_of_birth": "ngay_sinh",
                            "sex": {"column": "gioi_tinh", "map": {"NAM": "M", "NU": "F"}}}}  # fmt: skip
    insert(bank, 2)  # KH1 differs from the registry's name, KH2 agrees
    config = make_config(bank=poll_source(bank))
    config = config.model_copy(update={"registry": SourceConfig.model_validate(registry)})
    drive(config, "registry", SnapshotCapture)  # without the runner: its stop costs seconds
    run_once(config, "bank")
    reconciler = Reconciler(config, assign_all=True, poll_timeout_ms=100, stats_interval_s=3600)
    totals = reconciler.run(until_idle_s=1.0)
    assert totals.messages == 4 and totals.dead_letters == 0
    with psycopg.connect(psycopg_conninfo(config.database.url)) as conn:
        open_ = conn.execute(
            "SELECT sector, record_key, rule, sector_value, registry_value FROM mismatches"
            " WHERE status = 'open'"
        ).fetchall()
    assert open_ == [("bank", "1", "NAME_MISMATCH", "KH1", VIET)]

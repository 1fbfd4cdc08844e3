"""``snapshot`` capture and ``hub connector check`` on a real MariaDB (tests/integration/mariadb.py):
a composite key with utf8mb4 names and DECIMAL, changes and deletes between runs; what the
check says it checked, and its failures for a missing table, column or SELECT privilege."""

from __future__ import annotations

import secrets
from decimal import Decimal

import pytest

from connectors.ops import check
from connectors.snapshot import SnapshotCapture
from hub.config import HubConfig, SourceConfig
from tests.integration.connectors.conftest import changes
from tests.integration.connectors.test_mariadb_poll import POLL_DDL, drive
from tests.integration.connectors.test_operations import cli
from tests.integration.mariadb import Table

VIET = "Nguyễn Thị Ánh"
ARAB = "محمد عبد الله"

SNAPSHOT_DDL = """
CREATE TABLE {table} (
    ma_tinh CHAR(2) NOT NULL,
    so_ho INT NOT NULL,
    so_cccd VARCHAR(12),
    ho_ten VARCHAR(200),
    ngay_sinh DATE,
    luong DECIMAL(12, 3),
    PRIMARY KEY (ma_tinh, so_ho)
) CHARACTER SET utf8mb4"""


def snapshot_source(table: Table, chunk_size: int = 3) -> dict:
    return {
        "url": table.server.url,
        "table": table.name,
        "key": ["ma_tinh", "so_ho"],
        "capture": "snapshot",
        "snapshot": {"chunk_size": chunk_size},
        "columns": {"citizen_id": "so_cccd", "full_name": "ho_ten", "date_of_birth": "ngay_sinh",
                    "province_code": "ma_tinh", "attributes.luong": "luong"},
    }  # fmt: skip


def poll_source(table: Table, url: str | None = None, **columns) -> dict:
    return {
        "url": url or table.server.url,
        "table": table.name,
        "key": "id",
        "capture": "poll",
        "poll": {"timestamp_column": "updated_at", "incrementing_column": "id"},
        "columns": {"citizen_id": "so_cccd", "full_name": "ho_ten", "date_of_birth": "ngay_sinh",
                    **columns},
    }  # fmt: skip


def test_snapshot_on_a_composite_key_emits_reads_then_changes_and_deletes(mariadb, make_config):
    table = Table(mariadb, SNAPSHOT_DDL, prefix="ho")
    rows = [(p, n, f"0{p}1900{n:05d}", f"{VIET} {n}" if n % 2 else f"{ARAB} {n}", "1990-01-01",
             Decimal("10.125")) for p in ("01", "79") for n in (1, 2, 10)]  # fmt: skip
    table.execute("INSERT INTO {table} VALUES (%s, %s, %s, %s, %s, %s)", rows, many=True)
    config = make_config(census=snapshot_source(table))
    topic = changes(config, "census")
    drive(config, "census", SnapshotCapture)
    first = topic.read()
    assert sorted(m.record_key for m in first) == sorted(
        f"{p}|{n}" for p in ("01", "79") for n in (1, 2, 10)
    )
    assert all(m.op == "r" for m in first)
    names = {m.value["after"]["full_name"] for m in first}
    assert {f"{VIET} 1", f"{ARAB} 2", f"{ARAB} 10"} <= names
    assert {m.value["after"]["attributes"]["luong"] for m in first} == {"10.125"}

    table.execute("UPDATE {table} SET ho_ten = %s WHERE ma_tinh = '79' AND so_ho = 10", (VIET,))
    table.execute("DELETE FROM {table} WHERE ma_tinh = '01' AND so_ho = 2")
    drive(config, "census", SnapshotCapture)
    second = topic.read()
    assert [(m.record_key, m.value["after"]["full_name"]) for m in second if m.op == "r"] == [
        ("79|10", VIET)
    ]
    (gone,) = [m for m in second if m.op == "d"]
    assert gone.record_key == "01|2" and gone.value["before"]["citizen_id"] == "001190000002"


@pytest.fixture(scope="module")
def checked(mariadb) -> Table:
    table = Table(mariadb, POLL_DDL, prefix="ck")
    table.execute("ALTER TABLE {table} DROP INDEX ix_updated, ADD COLUMN anh BLOB")
    table.execute("INSERT INTO {table} (so_cccd, ho_ten, ngay_sinh) VALUES (%s, %s, %s)",
                  [("079190000001", VIET, "1990-01-01"), ("079190000002", ARAB, None)],
                  many=True)  # fmt: skip
    return table


def config_of(source: dict) -> HubConfig:
    """A config around one MariaDB source: the check reaches no hub database or broker."""
    return HubConfig(sectors={"bank": SourceConfig.model_validate(source)})


def _lines(source: dict) -> dict[str, list]:
    out: dict[str, list] = {}
    for r in check(config_of(source), "bank"):
        out.setdefault(r.what, []).append(r)
    return out


def test_check_says_what_it_checked_on_mariadb(checked):
    out = cli(config_of(poll_source(checked)), "connector", "check", "bank")
    assert out.startswith("0\n"), out  # warnings alone: exit 0
    lines = _lines(poll_source(checked))
    assert all(r.ok for rs in lines.values() for r in rs), lines
    reachable = lines["reachable"][0].detail
    assert reachable.startswith("mysql ") and "MariaDB" in reachable and "database hub" in reachable
    assert lines["table"][0].detail in (f"{checked.name}, 2 rows", f"{checked.name}, about 2 rows")
    assert lines["columns"][0].detail == "3 mapped columns found"
    assert lines["select privilege"][0].detail == f"granted on {checked.name}"
    assert lines["sample values"][0].detail == "2 sampled rows map, none would dead-letter"
    assert lines["timestamp column"][0].detail == "updated_at (DATETIME(6))"
    assert lines["incrementing column"][0].detail == "id (BIGINT(20))"
    (index,) = lines["poll index"]
    assert index.status == "warn" and f"ON {checked.name} (updated_at, id)" in index.detail
    assert lines["deletes"][0].status == "warn"
    for line in out.splitlines()[1:]:  # the CLI prints each of them
        assert line.split()[0] in ("ok", "warn"), out
    assert len(out.splitlines()) == 1 + sum(map(len, lines.values()))

    checked.execute("CREATE INDEX ix_updated ON {table} (updated_at, id)")
    assert _lines(poll_source(checked))["poll index"][0].detail == "(updated_at, id)"


def test_check_fails_clearly_for_a_missing_table_column_or_privilege(checked, mariadb):
    lines = _lines({**poll_source(checked), "table": "khong_co"})
    assert lines["reachable"][0].ok
    assert (
        lines["table"][0].status == "FAIL" and "khong_co does not exist" in lines["table"][0].detail
    )

    lines = _lines(poll_source(checked, address="dia_chi"))
    assert lines["columns"][0].status == "FAIL"
    assert lines["columns"][0].detail == "address: column dia_chi missing"
    assert lines["select privilege"][0].ok  # of the columns that are there
    out = cli(config_of(poll_source(checked, address="dia_chi")), "connector", "check", "bank")
    assert out.startswith("1\n"), out
    assert [line.split(None, 2) for line in out.splitlines() if line.startswith("FAIL")] == [
        ["FAIL", "columns", "address: column dia_chi missing"]
    ]

    lines = _lines(poll_source(checked, **{"attributes.anh": "anh"}))
    assert lines["columns"][0].detail == "attributes.anh: column anh is BLOB, not text"

    # A user who may read another table only: MariaDB hides this one from it.
    other = Table(mariadb, "CREATE TABLE {table} (id INT)", prefix="khac")
    user = f"u{secrets.token_hex(3)}"
    url = mariadb.create_user(user, "mat-khau", [f"SELECT ON hub.{other.name}"])
    lines = _lines(poll_source(checked, url=url))
    (denied,) = lines["select privilege"]
    assert denied.status == "FAIL" and "SELECT command denied" in denied.detail
    assert f"GRANT SELECT ON `hub`.`{checked.name}` TO '{user}'@'<host>';" in denied.detail
    assert "table" not in lines  # not reported as a missing table

    # SELECT on some of the columns only: the failing lines name a column it may not read.
    url = mariadb.create_user(f"{user}c", "mat-khau",
                              [f"SELECT (id, so_cccd, ho_ten, updated_at) ON hub.{checked.name}"])  # fmt: skip
    failing = [r for r in check(config_of(poll_source(checked, url=url)), "bank") if not r.ok]
    assert failing and "ngay_sinh" in " ".join(r.detail for r in failing), failing

    # A wrong password: one line, no password in it.
    lines = _lines(poll_source(checked, url=url.replace(":mat-khau@", ":sai@")))
    assert list(lines) == ["reachable"] and lines["reachable"][0].status == "FAIL"
    assert (
        "Access denied" in lines["reachable"][0].detail
        and "sai" not in lines["reachable"][0].detail
    )

"""The dialect logic of ``poll``/``snapshot`` on MySQL and MariaDB that needs no server: URL
validation, column type kinds, zone-less timestamps, zero dates and the poll check lines."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from sqlalchemy.dialects import mysql

from connectors.poll import _epoch_s, _poll_column_checks, _zero_date
from connectors.sqlsource import SqlSource, is_mysql, type_kind
from hub.config import SourceConfig, parse_config
from hub.errors import ConfigError, FatalError

GOOD = "mysql+pymysql://hub:pw@127.0.0.1:3306/hub?charset=utf8mb4"


def _source(url: str) -> SourceConfig:
    return SourceConfig.model_validate(
        {"url": url, "table": "t", "key": "id", "capture": "snapshot",
         "columns": {"citizen_id": "cccd"}}
    )  # fmt: skip


@pytest.mark.parametrize("url", [GOOD, GOOD.replace("?charset=utf8mb4", ""),
                                 GOOD.replace("mysql+", "mariadb+"),
                                 GOOD.replace("utf8mb4", "UTF8MB4")])  # fmt: skip
def test_a_pymysql_url_with_utf8mb4_or_no_charset_is_accepted(url):
    assert _source(url).url == url


@pytest.mark.parametrize(
    ("url", "said"),
    [(GOOD.replace("mysql+pymysql", "mysql"), "mysql:// names no driver: use mysql+pymysql://"),
     (GOOD.replace("mysql+pymysql", "mariadb"), "mariadb:// names no driver"),
     (GOOD.replace("utf8mb4", "utf8"), "charset=utf8 cannot hold every name"),
     (GOOD.replace("charset=utf8mb4", "x=1&charset=latin1"), "charset=latin1")],
)  # fmt: skip
def test_a_mysql_url_without_driver_or_with_another_charset_is_refused(url, said):
    with pytest.raises(ValidationError, match=re.escape(said)):
        _source(url)
    raw = {"sectors": {"bank": {"url": url, "table": "t", "key": "id", "capture": "snapshot",
                                "columns": {"citizen_id": "cccd"}}}}  # fmt: skip
    with pytest.raises(ConfigError) as err:
        parse_config(raw, env={})
    (line,) = err.value.problems
    assert line.startswith("sectors.bank.url: ") and said in line and "pw" not in line


def test_a_missing_driver_is_one_line_naming_the_extra(monkeypatch):
    import sqlalchemy as sa

    def no_driver(*_a, **_kw):
        raise ModuleNotFoundError("No module named 'pymysql'")

    monkeypatch.setattr(sa, "create_engine", no_driver)
    with pytest.raises(FatalError, match=r"bank: no database driver for mysql\+pymysql://.*"
                                         r"registry-hub\[mysql\]"):  # fmt: skip
        SqlSource("bank", GOOD, "t", ["id"])


def test_dialect_names():
    assert is_mysql("mysql") and is_mysql("mariadb") and is_mysql("mysql+pymysql")
    assert not is_mysql("postgresql") and not is_mysql("sqlite")


@pytest.mark.parametrize(
    ("col_type", "kind"),
    [(mysql.DATETIME(fsp=6), "date"), (mysql.TIMESTAMP(fsp=6), "date"), (mysql.DATE(), "date"),
     (mysql.DECIMAL(18, 2), "number"), (mysql.BIGINT(), "number"), (mysql.TINYINT(), "number"),
     (mysql.DOUBLE(), "number"), (mysql.VARCHAR(200), "text"), (mysql.CHAR(2), "text"),
     (mysql.TEXT(), "text"), (mysql.ENUM("NAM", "NU"), "text"), (mysql.BLOB(), "binary"),
     (mysql.VARBINARY(16), "binary"), (mysql.JSON(), "other"), (mysql.TIME(), "other")],
)  # fmt: skip
def test_type_kinds(col_type, kind):
    assert type_kind(col_type) == kind


naive = st.datetimes(min_value=datetime(1971, 1, 2), max_value=datetime(2200, 1, 1))


@given(naive)
def test_a_naive_timestamp_of_a_mysql_source_is_utc_whatever_the_hosts_zone(ts):
    assert _epoch_s(ts, naive_utc=True) == ts.replace(tzinfo=UTC).timestamp()


@given(naive, st.integers(-14 * 60, 14 * 60))
def test_an_aware_timestamp_keeps_its_own_zone(ts, minutes):
    aware = ts.replace(tzinfo=timezone(timedelta(minutes=minutes)))
    assert _epoch_s(aware, naive_utc=True) == _epoch_s(aware) == aware.timestamp()


def test_numeric_timestamps_and_others():
    assert _epoch_s(Decimal("1714521600.250000"), naive_utc=True) == 1714521600.25
    assert _epoch_s(17, naive_utc=True) == 17.0
    assert _epoch_s("2024-05-01", naive_utc=True) is None
    assert _epoch_s(True) is None


def test_zero_dates_are_told_from_timestamps():
    assert _zero_date("0000-00-00 00:00:00") and _zero_date("0000-00-00")
    assert not _zero_date(datetime(2024, 5, 1)) and not _zero_date(None)
    assert not _zero_date("2024-05-01 00:00:00")


TYPES = {"updated_at": mysql.DATETIME(fsp=6), "id": mysql.BIGINT(), "note": mysql.VARCHAR(9)}
SHOWN = {"updated_at": "DATETIME(6)", "id": "BIGINT(20)", "note": "VARCHAR(9)"}


def _lines(ts="updated_at", inc="id", indexes=((("id",), True),)) -> dict[str, list]:
    out: dict[str, list] = {}
    for r in _poll_column_checks("kh", ts, inc, TYPES, SHOWN, list(indexes)):
        out.setdefault(r.what, []).append((r.status, r.detail))
    return out


def test_poll_check_lines_without_an_index_on_the_timestamp():
    lines = _lines()
    assert lines["timestamp column"] == [("ok", "updated_at (DATETIME(6))")]
    assert lines["incrementing column"] == [("ok", "id (BIGINT(20))")]
    ((status, detail),) = lines["poll index"]
    assert status == "warn" and detail.endswith(
        "(CREATE INDEX ix_updated_at_id ON kh (updated_at, id))"
    )


def test_poll_check_lines_with_an_index_a_text_timestamp_and_a_non_unique_id():
    lines = _lines(ts="note", indexes=[(("note", "id"), False), (("id", "note"), True)])
    assert lines["timestamp column"] == [("warn", "note (VARCHAR(9))")]
    assert lines["poll index"] == [("ok", "(note, id)")]
    (_ok, (status, detail)) = lines["incrementing column"]
    assert status == "warn" and "neither the primary key nor unique" in detail


def test_poll_check_lines_name_a_missing_column():
    lines = _lines(ts="sua_luc", inc="ma")
    assert lines["timestamp column"] == [("FAIL", "sua_luc missing from kh")]
    assert lines["incrementing column"] == [("FAIL", "ma missing from kh")]
    assert "poll index" not in lines

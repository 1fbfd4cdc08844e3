"""PostgreSQL's built-in column types as pgoutput names them (OIDs) and the conversion of
their text output to Python values."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

BOOL, CHAR, NAME, INT8, INT2, INT4, TEXT, OID = 16, 18, 19, 20, 21, 23, 25, 26
JSON, BPCHAR, VARCHAR, DATE, TIMESTAMP, TIMESTAMPTZ = 114, 1042, 1043, 1082, 1114, 1184
NUMERIC, UUID, JSONB = 1700, 2950, 3802

TYPE_NAMES = {
    BOOL: "bool", CHAR: "char", NAME: "name", INT8: "int8", INT2: "int2", INT4: "int4",
    TEXT: "text", OID: "oid", JSON: "json", BPCHAR: "bpchar", VARCHAR: "varchar",
    DATE: "date", TIMESTAMP: "timestamp", TIMESTAMPTZ: "timestamptz", NUMERIC: "numeric",
    UUID: "uuid", JSONB: "jsonb",
}  # fmt: skip

_UTC_MAX = datetime.max.replace(tzinfo=UTC)
_UTC_MIN = datetime.min.replace(tzinfo=UTC)


def _to_bool(text: str) -> bool:
    if text == "t":
        return True
    if text == "f":
        return False
    raise ValueError("not t/f")


def _to_date(text: str) -> date:
    # 'infinity' maps onto the end of Python's range, so comparisons keep their meaning and
    # the value still fits an Avro date; BC dates and years past 9999 are rejected.
    if text == "infinity":
        return date.max
    if text == "-infinity":
        return date.min
    return date.fromisoformat(text)


def _to_timestamp(text: str) -> datetime:
    if text == "infinity":
        return datetime.max
    if text == "-infinity":
        return datetime.min
    value = datetime.fromisoformat(text)
    if value.tzinfo is not None:
        raise ValueError("timestamp with an offset")
    return value


def _to_timestamptz(text: str) -> datetime:
    # PG's ISO output ("2024-01-02 03:04:05.5+07", "+05:30", LMT offsets like "+07:06:40")
    # is what datetime.fromisoformat accepts since Python 3.11. The offset is the session's
    # TimeZone; the instant is exact whatever it is.
    if text == "infinity":
        return _UTC_MAX
    if text == "-infinity":
        return _UTC_MIN
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError("timestamptz without an offset")
    return value


def _to_numeric(text: str) -> Decimal:
    # Decimal reads PG's 'NaN', 'Infinity' and '-Infinity' (PG 14+) as the same specials.
    return Decimal(text)


CONVERTERS: dict[int, Any] = {
    INT2: int,
    INT4: int,
    INT8: int,
    OID: int,
    NUMERIC: _to_numeric,
    BOOL: _to_bool,
    DATE: _to_date,
    TIMESTAMP: _to_timestamp,
    TIMESTAMPTZ: _to_timestamptz,
    UUID: uuid.UUID,
}
"""Type OID -> converter of PG's text output. Types not listed (text, varchar, bpchar,
name, json, jsonb, and anything else) stay ``str``."""

HINTS = {
    DATE: "not an ISO date within years 1-9999 (DateStyle must be ISO; BC dates are not supported)",
    TIMESTAMP: "not an ISO timestamp within years 1-9999 (DateStyle must be ISO)",
    TIMESTAMPTZ: "not an ISO timestamp with offset within years 1-9999 (DateStyle must be ISO)",
    NUMERIC: "not a numeric literal",
    BOOL: "not 't' or 'f'",
    UUID: "not a UUID",
}

"""Debezium's and Kafka Connect's logical (semantic) types → Python values, and where a
column's type comes from: the Connect schema (JSON with ``schemas.enable``), the Avro
schema (Confluent wire format), or the column's ``format:`` when values arrive raw.

A value that does not fit its type raises :class:`LogicalValueError` naming the column and
the type (never the value): the change is dead-lettered.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from hub.errors import SkippableError

DBZ = "io.debezium."
CONNECT = "org.apache.kafka.connect.data."
DATE_NAMES = (f"{DBZ}time.Date", f"{CONNECT}Date")
TIME_UNITS = {f"{DBZ}time.Time": 1000, f"{DBZ}time.MicroTime": 1, f"{DBZ}time.NanoTime": -1000,
              f"{CONNECT}Time": 1000}  # fmt: skip
"""Time-of-day types: microseconds per unit (negative: units per microsecond)."""
TIMESTAMP_UNITS = {f"{DBZ}time.Timestamp": 1000, f"{DBZ}time.MicroTimestamp": 1,
                   f"{DBZ}time.NanoTimestamp": -1000, f"{CONNECT}Timestamp": 1000}  # fmt: skip
"""Epoch timestamps: microseconds per unit (negative: units per microsecond)."""
ZONED_TIMESTAMP = f"{DBZ}time.ZonedTimestamp"
DECIMAL = f"{CONNECT}Decimal"
VARIABLE_SCALE_DECIMAL = f"{DBZ}data.VariableScaleDecimal"
KNOWN_NAMES = (*DATE_NAMES, *TIME_UNITS, *TIMESTAMP_UNITS, ZONED_TIMESTAMP, DECIMAL,
               VARIABLE_SCALE_DECIMAL)  # fmt: skip
"""The types decoded here; any other semantic type (``io.debezium.data.Json``, ``Uuid``,
``Enum``, ``time.Year``, …) carries its value as it is (text or a number)."""

_EPOCH = datetime(1970, 1, 1)
_EPOCH_DATE = date(1970, 1, 1)


class LogicalValueError(SkippableError):
    """A column's value does not fit its logical type (the change is dead-lettered)."""


class ColumnType:
    """A column's logical type name and parameters (``scale`` of a Decimal)."""

    __slots__ = ("name", "params")

    def __init__(self, name: str | None, params: Mapping[str, Any] | None = None):
        self.name = name
        self.params = dict(params or {})

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ColumnType) and (self.name, self.params) == (
            other.name,
            other.params,
        )

    def __repr__(self) -> str:
        return f"ColumnType({self.name!r}, {self.params!r})"


ColumnTypes = dict[str, ColumnType]


def decode_value(column: str, ctype: ColumnType | None, value: Any) -> Any:
    """``value`` of ``column`` as the Python value its logical type means (as it is when it
    has none, or is null). Raises :class:`LogicalValueError`."""
    if value is None or ctype is None or ctype.name is None or ctype.name not in KNOWN_NAMES:
        return value
    name = ctype.name
    try:
        if name in DATE_NAMES:
            return _date(value)
        if name in TIMESTAMP_UNITS:
            aware = name == f"{CONNECT}Timestamp"
            return _timestamp(value, TIMESTAMP_UNITS[name], aware)
        if name in TIME_UNITS:
            return _time(value, TIME_UNITS[name])
        if name == ZONED_TIMESTAMP:
            return _zoned(value)
        if name == DECIMAL:
            return _decimal(value, ctype.params.get("scale"))
        return _variable_decimal(value)
    except (ValueError, TypeError, OverflowError, ArithmeticError, binascii.Error) as exc:
        raise LogicalValueError(
            f"column {column}: not a {name.rsplit('.', 1)[-1]} value ({exc})", column=column
        ) from None


def _integer(value: Any, what: str) -> int:
    if type(value) is int:
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)  # JSON parsers may hand an integer as 1.0
    raise TypeError(f"expected an integer {what}, got {type(value).__name__}")


def _date(value: Any) -> date:
    if type(value) is date:
        return value  # Avro's date logical type, decoded by fastavro
    if type(value) is datetime:
        return value.date()
    return _EPOCH_DATE + timedelta(days=_integer(value, "(days since 1970-01-01)"))


def _micros(value: Any, unit: int) -> int:
    n = _integer(value, "(epoch units)")
    return n * unit if unit > 0 else n // -unit


def _timestamp(value: Any, unit: int, aware: bool) -> datetime:
    if type(value) is datetime:
        return value  # Avro's timestamp-millis/-micros, decoded by fastavro
    moment = _EPOCH + timedelta(microseconds=_micros(value, unit))
    return moment.replace(tzinfo=UTC) if aware else moment


def _time(value: Any, unit: int) -> time:
    if type(value) is time:
        return value
    micros = _micros(value, unit)
    if not 0 <= micros < 86_400_000_000:
        raise ValueError("time of day outside 00:00–24:00")
    return (_EPOCH + timedelta(microseconds=micros)).time()


def _zoned(value: Any) -> datetime:
    if type(value) is datetime:
        return value
    if not isinstance(value, str):
        raise TypeError(f"expected an ISO-8601 text, got {type(value).__name__}")
    try:
        return datetime.fromisoformat(value)
    except ValueError:  # its message quotes the value, which must not reach a log
        raise ValueError("not an ISO-8601 date and time") from None


def _unscaled(value: Any) -> int:
    """The big-endian two's-complement integer of Connect's Decimal (base64 in JSON)."""
    if isinstance(value, str):
        raw = base64.b64decode(value, validate=True)
    elif isinstance(value, bytes | bytearray):
        raw = bytes(value)
    else:
        raise TypeError(f"expected base64 text or bytes, got {type(value).__name__}")
    if not raw:
        raise ValueError("empty decimal bytes")
    return int.from_bytes(raw, "big", signed=True)


def _decimal(value: Any, scale: Any) -> Decimal:
    if type(value) is Decimal:
        return value  # Avro's decimal logical type, decoded by fastavro
    if scale is None:
        raise ValueError("the Decimal's schema has no scale parameter")
    try:
        scale_n = int(scale)
    except (TypeError, ValueError):
        raise ValueError("the Decimal's scale parameter is not an integer") from None
    return _scaled(_unscaled(value), scale_n)


def _variable_decimal(value: Any) -> Decimal:
    if type(value) is Decimal:
        return value
    if not isinstance(value, Mapping) or "scale" not in value or "value" not in value:
        raise TypeError("expected a {scale, value} struct")
    return _scaled(_unscaled(value["value"]), _integer(value["scale"], "scale"))


def _scaled(unscaled: int, scale: int) -> Decimal:
    if abs(scale) > 1000:
        raise ValueError("decimal scale out of range")
    try:
        return Decimal(unscaled).scaleb(-scale)
    except InvalidOperation:
        raise ValueError("decimal out of range") from None


# ------------------------------------------------------------------ where types come from


def connect_types(schema: Any) -> ColumnTypes:
    """The row columns' types of a Kafka Connect JSON schema (``schemas.enable``): the
    ``after`` (else ``before``) struct's fields, by ``name`` and ``parameters``."""
    types: ColumnTypes = {}
    if not isinstance(schema, Mapping):
        return types
    fields = schema.get("fields")
    if not isinstance(fields, list):
        return types
    for part in ("before", "after"):
        struct = next(
            (f for f in fields if isinstance(f, Mapping) and f.get("field") == part), None
        )
        columns = struct.get("fields") if isinstance(struct, Mapping) else None
        for col in columns if isinstance(columns, list) else ():
            if isinstance(col, Mapping) and isinstance(col.get("field"), str):
                params = col.get("parameters")
                name = col.get("name")
                types[col["field"]] = ColumnType(
                    name if isinstance(name, str) else None,
                    params if isinstance(params, Mapping) else None,
                )
    return types


def avro_types(schema: Any) -> ColumnTypes:
    """The row columns' types of a Debezium Avro value schema (Confluent's AvroConverter
    names each semantic type in ``connect.name``, with ``connect.parameters``)."""
    types: ColumnTypes = {}
    if not isinstance(schema, Mapping):
        return types
    for part in schema.get("fields") or ():
        if not isinstance(part, Mapping) or part.get("name") not in ("before", "after"):
            continue
        record = _non_null(part.get("type"))
        if not isinstance(record, Mapping) or record.get("type") != "record":
            continue  # "after" names the record "before" defined: its columns are known
        for col in record.get("fields") or ():
            if not isinstance(col, Mapping) or not isinstance(col.get("name"), str):
                continue
            t = _non_null(col.get("type"))
            if isinstance(t, Mapping):
                params = dict(t.get("connect.parameters") or {})
                if t.get("logicalType") == "decimal" and "scale" in t:
                    params.setdefault("scale", t["scale"])
                name = t.get("connect.name")
                types[col["name"]] = ColumnType(name if isinstance(name, str) else None, params)
            else:
                types[col["name"]] = ColumnType(None)
    return types


def _non_null(avro_type: Any) -> Any:
    if isinstance(avro_type, list):
        return next((t for t in avro_type if t != "null"), None)
    return avro_type


def format_type(fmt: str | None) -> ColumnType | None:
    """A column ``format:`` that names a logical type, for values that arrive raw (JSON
    without schemas): ``io.debezium.time.Date``, ``io.debezium.time.MicroTimestamp``, …, and
    ``org.apache.kafka.connect.data.Decimal:<scale>`` for a ``precise`` decimal."""
    if not fmt:
        return None
    name, _, scale = fmt.partition(":")
    name = name.strip()
    if name not in KNOWN_NAMES:
        return None
    return ColumnType(name, {"scale": scale.strip()} if scale.strip() else None)

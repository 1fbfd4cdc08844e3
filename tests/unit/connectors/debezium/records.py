"""Recorded Debezium messages, built as Debezium 3.x writes them (PostgreSQL connector,
``decimal.handling.mode`` precise, ``time.precision.mode`` adaptive): JSON with and without
``schemas.enable`` and Avro in the Confluent wire format. Shared by the unit and the
integration tests."""

from __future__ import annotations

import base64
import io
import json
import struct
from decimal import Decimal
from typing import Any

import fastavro

TOPIC = "dbz.public.taxpayers"
COLUMNS = {"citizen_id": "cccd", "full_name": "ho_ten",
           "date_of_birth": {"column": "ngay_sinh"}, "attributes.income": "thu_nhap",
           "attributes.updated": "cap_nhat"}  # fmt: skip


def source_config(**debezium: Any) -> dict[str, Any]:
    """A ``capture: debezium`` sector config over the recorded messages."""
    return {"capture": "debezium", "key": "tin", "columns": COLUMNS,
            "debezium": {"topics": [TOPIC], **debezium}}  # fmt: skip


def decimal_bytes(value: Decimal, scale: int) -> bytes:
    unscaled = int(value.scaleb(scale))
    return unscaled.to_bytes((unscaled.bit_length() + 8) // 8 or 1, "big", signed=True)


def row(tin: str, cccd: str | None, name: str, dob_days: int | None,
        income: Decimal = Decimal("1234.50"), updated_us: int = 1_700_000_000_123_456,
        *, raw: bool = True) -> dict[str, Any]:  # fmt: skip
    """One taxpayers row as Debezium's JSON converter writes it (raw logical values)."""
    return {"tin": tin, "cccd": cccd, "ho_ten": name, "ngay_sinh": dob_days,
            "thu_nhap": base64.b64encode(decimal_bytes(income, 2)).decode() if raw else income,
            "cap_nhat": updated_us}  # fmt: skip


def source(lsn: int = 0x16B3748, ts_ms: int = 1_700_000_000_000, snapshot: str = "false"):
    return {"version": "3.6.1.Final", "connector": "postgresql", "name": "dbz",
            "ts_ms": ts_ms, "snapshot": snapshot, "db": "tax", "sequence": '[null,"23803720"]',
            "schema": "public", "table": "taxpayers", "txId": 771, "lsn": lsn, "xmin": None}  # fmt: skip


def envelope(op: str, before: dict | None, after: dict | None, **src: Any) -> dict[str, Any]:
    return {"before": before, "after": after, "source": source(**src), "op": op,
            "ts_ms": 1_700_000_000_500, "transaction": None}  # fmt: skip


def _field(name: str, kind: str, semantic: str | None = None, **params: str) -> dict:
    out: dict[str, Any] = {"type": kind, "optional": True, "field": name}
    if semantic:
        out["name"] = semantic
        out["version"] = 1
    if params:
        out["parameters"] = params
    return out


ROW_FIELDS = [
    {"type": "string", "optional": False, "field": "tin"},
    _field("cccd", "string"),
    _field("ho_ten", "string"),
    _field("ngay_sinh", "int32", "io.debezium.time.Date"),
    _field(
        "thu_nhap",
        "bytes",
        "org.apache.kafka.connect.data.Decimal",
        scale="2",
        **{"connect.decimal.precision": "12"},
    ),  # fmt: skip
    _field("cap_nhat", "int64", "io.debezium.time.MicroTimestamp"),
]
CONNECT_SCHEMA = {
    "type": "struct", "name": f"{TOPIC}.Envelope", "optional": False, "version": 2,
    "fields": [
        {"type": "struct", "fields": ROW_FIELDS, "optional": True, "name": f"{TOPIC}.Value",
         "field": "before"},
        {"type": "struct", "fields": ROW_FIELDS, "optional": True, "name": f"{TOPIC}.Value",
         "field": "after"},
        {"type": "struct", "fields": [], "optional": False, "name": "io.debezium.connector.postgresql.Source", "field": "source"},
        {"type": "string", "optional": False, "field": "op"},
        {"type": "int64", "optional": True, "field": "ts_ms"},
    ],
}  # fmt: skip


def json_message(value: dict | None, *, schemas: bool) -> bytes | None:
    """``value`` as JsonConverter writes it (``None``: a tombstone)."""
    if value is None:
        return None
    if schemas:
        value = {"schema": CONNECT_SCHEMA, "payload": value}
    return json.dumps(value).encode()


def _opt(avro_type: Any) -> list:
    return ["null", avro_type]


AVRO_VALUE = {
    "type": "record", "name": "Value", "namespace": "dbz.public.taxpayers",
    "fields": [
        {"name": "tin", "type": "string"},
        {"name": "cccd", "type": _opt("string"), "default": None},
        {"name": "ho_ten", "type": _opt("string"), "default": None},
        {"name": "ngay_sinh", "default": None, "type": _opt(
            {"type": "int", "connect.version": 1, "connect.name": "io.debezium.time.Date"})},
        {"name": "thu_nhap", "default": None, "type": _opt(
            {"type": "bytes", "scale": 2, "precision": 12, "connect.version": 1,
             "connect.parameters": {"scale": "2", "connect.decimal.precision": "12"},
             "connect.name": "org.apache.kafka.connect.data.Decimal", "logicalType": "decimal"})},
        {"name": "cap_nhat", "default": None, "type": _opt(
            {"type": "long", "connect.version": 1,
             "connect.name": "io.debezium.time.MicroTimestamp"})},
    ],
    "connect.name": "dbz.public.taxpayers.Value",
}  # fmt: skip
AVRO_SOURCE = {
    "type": "record", "name": "Source", "namespace": "io.debezium.connector.postgresql",
    "fields": [
        {"name": "version", "type": "string"}, {"name": "connector", "type": "string"},
        {"name": "name", "type": "string"}, {"name": "ts_ms", "type": "long"},
        {"name": "snapshot", "type": _opt("string"), "default": None},
        {"name": "db", "type": "string"}, {"name": "sequence", "type": _opt("string")},
        {"name": "schema", "type": "string"}, {"name": "table", "type": "string"},
        {"name": "txId", "type": _opt("long")}, {"name": "lsn", "type": _opt("long")},
        {"name": "xmin", "type": _opt("long")},
    ],
}  # fmt: skip
AVRO_ENVELOPE = {
    "type": "record", "name": "Envelope", "namespace": "dbz.public.taxpayers",
    "fields": [
        {"name": "before", "type": _opt(AVRO_VALUE), "default": None},
        {"name": "after", "type": _opt("Value"), "default": None},
        {"name": "source", "type": AVRO_SOURCE},
        {"name": "op", "type": "string"},
        {"name": "ts_ms", "type": _opt("long"), "default": None},
        {"name": "transaction", "default": None, "type": _opt({
            "type": "record", "name": "block", "namespace": "event",
            "fields": [{"name": "id", "type": "string"}, {"name": "total_order", "type": "long"},
                       {"name": "data_collection_order", "type": "long"}]})},
    ],
    "connect.name": "dbz.public.taxpayers.Envelope",
}  # fmt: skip
AVRO_SCHEMA_ID = 7


def avro_message(value: dict | None, schema_id: int = AVRO_SCHEMA_ID) -> bytes | None:
    """``value`` (rows with Decimal incomes) as AvroConverter writes it: magic 0, id, body."""
    if value is None:
        return None
    out = io.BytesIO()
    out.write(b"\x00" + struct.pack(">I", schema_id))
    fastavro.schemaless_writer(out, fastavro.parse_schema(AVRO_ENVELOPE), value)
    return out.getvalue()


def registry_answers() -> dict[str, Any]:
    """What a Confluent registry answers for the recorded schema (``GET`` path → JSON)."""
    return {f"/schemas/ids/{AVRO_SCHEMA_ID}": {"schema": json.dumps(AVRO_ENVELOPE)},
            "/subjects": [f"{TOPIC}-value"]}  # fmt: skip

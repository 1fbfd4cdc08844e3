"""The Debezium change-event envelope (``op``, ``before``/``after``, ``source``, ``ts_ms``,
``transaction``) checked and turned into a :class:`Change` whose rows hold Python values.

What cannot become a row change raises :class:`EnvelopeError` (a dead letter with the
reason); what is no row change at all (a transaction-metadata BEGIN/END, a logical
decoding message ``op: m``) is ``None``: skipped, its offset passed.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from connectors.debezium.logical import ColumnType, ColumnTypes, decode_value, format_type
from hub.config import SourceConfig
from hub.errors import SkippableError

ROW_OPS = ("c", "u", "d", "r")
TRUNCATE = "t"
MESSAGE = "m"
_SNAPSHOT_FALSE = (None, False, "false")


class EnvelopeError(SkippableError):
    """A message that is not a usable Debezium change event; ``kind`` is its bounded
    ``hub_dead_letters_total{reason}`` (``truncate``, else ``undecodable_value``)."""

    def __init__(self, reason: str, *, kind: str = "undecodable_value", column: str | None = None):
        super().__init__(reason, column=column)
        self.kind = kind


@dataclass(slots=True)
class Change:
    """One row change of a Debezium envelope, rows decoded to Python values."""

    op: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    source: Mapping[str, Any]
    ts_ms: int | None
    transaction: Mapping[str, Any] | None

    @property
    def snapshot(self) -> bool:
        """A snapshot read (``op: r``, or ``source.snapshot`` true/first/last/incremental)."""
        return self.op == "r" or self.source.get("snapshot") not in _SNAPSHOT_FALSE

    @property
    def commit_ts_ms(self) -> int | None:
        """When the source committed the change (``source.ts_ms``; else the event's)."""
        ts = self.source.get("ts_ms")
        return ts if type(ts) is int else self.ts_ms

    @property
    def table(self) -> str | None:
        """``schema.table`` (or ``table``) the change came from, per ``source``."""
        table = self.source.get("table")
        if not isinstance(table, str) or not table:
            return None
        schema = self.source.get("schema")
        return f"{schema}.{table}" if isinstance(schema, str) and schema else table

    @property
    def lsn(self) -> int | None:
        lsn = self.source.get("lsn")
        return lsn if type(lsn) is int else None

    @property
    def txid(self) -> int | None:
        txid = self.source.get("txId")
        return txid if type(txid) is int else None

    def source_position(self) -> str:
        """The source's own position, as Debezium reports it: LSN, binlog file:pos, SCN."""
        s = self.source
        parts = []
        if self.lsn is not None:
            parts.append(f"lsn={_lsn_text(self.lsn)}")
        if isinstance(s.get("file"), str) and s.get("pos") is not None:
            parts.append(f"binlog={s['file']}:{s['pos']}")
        for key in ("scn", "commit_lsn", "change_lsn"):  # Oracle, SQL Server
            if s.get(key) is not None:
                parts.append(f"{key}={s[key]}")
        return " ".join(parts)


def _lsn_text(lsn: int) -> str:
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def parse_envelope(
    value: Any, types: ColumnTypes, columns: Collection[str], formats: Mapping[str, ColumnType]
) -> Change | None:
    """The :class:`Change` of one decoded message value; ``None`` when it is no row change.

    Rows keep only ``columns`` (what the mapping reads), each decoded by its type from
    ``types`` (the message's schema), else from ``formats`` (the columns' ``format:``).
    """
    if not isinstance(value, Mapping):
        raise EnvelopeError(f"the message is a {type(value).__name__}, not a change event")
    op = value.get("op")
    if op is None:
        if value.get("status") in ("BEGIN", "END") and "id" in value:
            return None  # a transaction-metadata event (provide.transaction.metadata)
        raise EnvelopeError(
            "no op: not a Debezium change event (an unwrapped ExtractNewRecordState event "
            "or another producer's message?)",
        )
    if op == MESSAGE:
        return None
    if op == TRUNCATE:
        source = value.get("source")
        table = source.get("table") if isinstance(source, Mapping) else None
        raise EnvelopeError(
            f"truncate of {table or 'the table'}: the hub does not apply a truncate; "
            "re-read the table (a Debezium snapshot) to bring the hub in line",
            kind="truncate",
        )
    if op not in ROW_OPS:
        raise EnvelopeError(f"unknown op {str(op)[:8]!r} (expected c, u, d, r or t)")
    source = value.get("source")
    if source is None:
        source = {}
    elif not isinstance(source, Mapping):
        raise EnvelopeError("source is not an object")
    ts_ms = value.get("ts_ms")
    if ts_ms is not None and type(ts_ms) is not int:
        raise EnvelopeError("ts_ms is not an integer")
    transaction = value.get("transaction")
    if transaction is not None and not isinstance(transaction, Mapping):
        raise EnvelopeError("transaction is not an object")
    before = _row(value, "before", types, columns, formats)
    after = _row(value, "after", types, columns, formats)
    if op == "d":
        if before is None:
            raise EnvelopeError("a delete without a before-image (REPLICA IDENTITY?)")  # fmt: skip
    elif after is None:
        raise EnvelopeError(f"op {op} without an after-image")
    return Change(op, before, after, source, ts_ms, transaction)


def _row(
    value: Mapping[str, Any],
    part: str,
    types: ColumnTypes,
    columns: Collection[str],
    formats: Mapping[str, ColumnType],
) -> dict[str, Any] | None:
    row = value.get(part)
    if row is None:
        return None
    if not isinstance(row, Mapping):
        raise EnvelopeError(f"{part} is not an object")
    out: dict[str, Any] = {}
    for column in columns:
        if column in row:
            ctype = types.get(column) or formats.get(column)
            out[column] = decode_value(column, ctype, row[column])
    return out


def column_formats(source: SourceConfig) -> dict[str, ColumnType]:
    """Columns whose ``format:`` names a Debezium logical type (values arriving raw)."""
    out: dict[str, ColumnType] = {}
    for field in source.columns:
        mapping = source.mapping(field)
        ctype = format_type(mapping.format) if mapping is not None else None
        if ctype is not None:
            out[mapping.column] = ctype
    return out

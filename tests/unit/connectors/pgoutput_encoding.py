"""Test-only encoder of pgoutput protocol-1 messages and of PostgreSQL's text output, so
tests can build exactly what the server sends."""

from __future__ import annotations

import struct
from datetime import date, datetime, timedelta
from decimal import Decimal
from uuid import UUID

from connectors.logical.pgoutput.messages import UNCHANGED


def _string(text: str) -> bytes:
    return text.encode() + b"\0"


def begin(final_lsn: int, commit_ts_us: int, xid: int) -> bytes:
    return b"B" + struct.pack("!QqI", final_lsn, commit_ts_us, xid)


def commit(commit_lsn: int, end_lsn: int, commit_ts_us: int, flags: int = 0) -> bytes:
    return b"C" + struct.pack("!BQQq", flags, commit_lsn, end_lsn, commit_ts_us)


def origin(commit_lsn: int, name: str) -> bytes:
    return b"O" + struct.pack("!Q", commit_lsn) + _string(name)


def relation(
    oid: int,
    namespace: str,
    name: str,
    columns: list[tuple[int, str, int, int]],
    replica_identity: str = "d",
) -> bytes:
    """``columns`` as (flags, name, type oid, type modifier)."""
    out = [b"R", struct.pack("!I", oid), _string(namespace), _string(name)]
    out.append(struct.pack("!cH", replica_identity.encode(), len(columns)))
    for flags, column, type_oid, typmod in columns:
        out += [struct.pack("!B", flags), _string(column), struct.pack("!Ii", type_oid, typmod)]
    return b"".join(out)


def type_(oid: int, namespace: str, name: str) -> bytes:
    return b"Y" + struct.pack("!I", oid) + _string(namespace) + _string(name)


def tuple_data(values: list) -> bytes:
    """None -> 'n', UNCHANGED -> 'u', str/bytes -> 't' (text as PostgreSQL prints it)."""
    out = [struct.pack("!H", len(values))]
    for value in values:
        if value is None:
            out.append(b"n")
        elif value is UNCHANGED:
            out.append(b"u")
        else:
            raw = value.encode() if isinstance(value, str) else value
            out.append(b"t" + struct.pack("!I", len(raw)) + raw)
    return b"".join(out)


def insert(oid: int, new: list) -> bytes:
    return b"I" + struct.pack("!I", oid) + b"N" + tuple_data(new)


def update(oid: int, new: list, old: list | None = None, old_kind: str = "K") -> bytes:
    head = b"U" + struct.pack("!I", oid)
    if old is not None:
        head += old_kind.encode() + tuple_data(old)
    return head + b"N" + tuple_data(new)


def delete(oid: int, old: list, old_kind: str = "K") -> bytes:
    return b"D" + struct.pack("!I", oid) + old_kind.encode() + tuple_data(old)


def truncate(oids: list[int], options: int = 0) -> bytes:
    return b"T" + struct.pack(f"!IB{len(oids)}I", len(oids), options, *oids)


def message(prefix: str, content: bytes, lsn: int, transactional: bool = False) -> bytes:
    head = b"M" + struct.pack("!BQ", int(transactional), lsn) + _string(prefix)
    return head + struct.pack("!I", len(content)) + content


# ------------------------------------------------------------- PostgreSQL text output


def numeric_text(value: Decimal) -> str:
    """numeric_out: plain notation (never an exponent), 'NaN', 'Infinity', '-Infinity'."""
    if value.is_nan():
        return "NaN"
    if value.is_infinite():
        return "-Infinity" if value < 0 else "Infinity"
    return format(value, "f")


def date_text(value: date) -> str:
    return value.isoformat()


def offset_text(offset: timedelta) -> str:
    """The offset as PG prints it under DateStyle ISO: +HH, +HH:MM or +HH:MM:SS."""
    seconds = int(offset.total_seconds())
    sign = "-" if seconds < 0 else "+"
    hours, rest = divmod(abs(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{sign}{hours:02d}"
    if minutes or secs:
        text += f":{minutes:02d}"
    if secs:
        text += f":{secs:02d}"
    return text


def timestamp_text(value: datetime) -> str:
    """timestamp_out / timestamptz_out with DateStyle ISO: fraction without trailing zeros."""
    text = value.strftime("%Y-%m-%d %H:%M:%S")
    if value.year < 1000:  # strftime does not zero-pad years on every platform
        text = f"{value.year:04d}" + text[text.index("-") :]
    if value.microsecond:
        text += f".{value.microsecond:06d}".rstrip("0")
    offset = value.utcoffset()
    if offset is not None:
        text += offset_text(offset)
    return text


def bool_text(value: bool) -> str:
    return "t" if value else "f"


def uuid_text(value: UUID) -> str:
    return str(value)

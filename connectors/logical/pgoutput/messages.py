"""The pgoutput wire protocol, version 1: its message types, LSNs, and the exact parser of
PostgreSQL's binary logical-replication messages."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from struct import Struct
from typing import Any, Final

from connectors.logical.pgoutput.values import CONVERTERS
from hub.errors import FatalError, SkippableError


class PgOutputError(FatalError):
    """A pgoutput message is malformed or not understood (truncated, unknown type, a change
    for a relation never described). The stream cannot be followed past it: stop."""


class PgValueError(SkippableError):
    """One column's text cannot be converted to its Python type: dead-letter the change.

    The reason names the column and type but never the value (it may be personal data).
    """


class _Unchanged:
    """Marker for an unchanged TOASTed value ('u'): the change does not carry it."""

    __slots__ = ()
    _instance: _Unchanged | None = None

    def __new__(cls) -> _Unchanged:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNCHANGED"

    def __reduce__(self) -> str:
        return "UNCHANGED"


UNCHANGED: Final = _Unchanged()
"""Value of a column whose TOASTed value did not change: callers must keep the value they
hold and never store this marker (or null) in its place."""

TupleValue = bytes | None | _Unchanged
"""A raw tuple column: text bytes ('t'), ``None`` for SQL NULL ('n'), or :data:`UNCHANGED`."""

PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
PG_EPOCH_UNIX_US = 946_684_800_000_000
"""PostgreSQL's epoch (2000-01-01 UTC) in microseconds since the Unix epoch."""


def pg_timestamp(us: int) -> datetime:
    """An aware UTC datetime for a protocol timestamp (µs since 2000-01-01 UTC)."""
    return PG_EPOCH + timedelta(microseconds=us)


_LSN = re.compile(r"[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}")


def lsn_to_int(lsn: str) -> int:
    """The 64-bit position of an LSN in PostgreSQL's text form ``"16/B374D848"``."""
    if not _LSN.fullmatch(lsn):
        raise ValueError(f"not a PostgreSQL LSN: {lsn!r}")
    high, _, low = lsn.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


def int_to_lsn(position: int) -> str:
    """The text form of a 64-bit LSN, as PostgreSQL prints it (``"0/16B3748"``)."""
    if not 0 <= position < 1 << 64:
        raise ValueError(f"LSN out of range: {position}")
    return f"{position >> 32:X}/{position & 0xFFFFFFFF:X}"


# ---------------------------------------------------------------------------- messages


class _CommitTime:
    __slots__ = ()
    commit_ts_us: int

    @property
    def commit_time(self) -> datetime:
        """Commit time as an aware UTC datetime."""
        return pg_timestamp(self.commit_ts_us)

    @property
    def commit_ts_ms(self) -> int:
        """Commit time in milliseconds since the Unix epoch (for ``source.commit_ts_ms``)."""
        return (self.commit_ts_us + PG_EPOCH_UNIX_US) // 1000


@dataclass(frozen=True, slots=True)
class Begin(_CommitTime):
    """'B': a transaction starts; its changes follow, then :class:`Commit`."""

    final_lsn: int
    commit_ts_us: int  # µs since 2000-01-01 UTC
    xid: int


@dataclass(frozen=True, slots=True)
class Commit(_CommitTime):
    """'C': the transaction ends. ``end_lsn`` is where decoding resumes after it."""

    flags: int
    commit_lsn: int
    end_lsn: int
    commit_ts_us: int


@dataclass(frozen=True, slots=True)
class Origin:
    """'O': the transaction was replicated from another node (replication origin)."""

    commit_lsn: int
    name: str


@dataclass(frozen=True, slots=True)
class Column:
    """One column of a :class:`Relation`. ``type_modifier`` is -1 when the type has none."""

    flags: int
    name: str
    type_oid: int
    type_modifier: int

    @property
    def is_key(self) -> bool:
        """Part of the replica identity (the key sent in 'K' old tuples)."""
        return bool(self.flags & 1)


@dataclass(frozen=True, slots=True)
class Relation:
    """'R': a table's shape, sent before its first change in a decoding session and again
    after it changes. ``replica_identity`` is ``relreplident``: 'd' default (primary key),
    'n' nothing, 'f' full, 'i' index."""

    relation_id: int
    namespace: str
    name: str
    replica_identity: str
    columns: tuple[Column, ...]
    # (column name, converter or None for text, is key) per column, built once.
    decoders: tuple[tuple[str, Any, bool], ...] = field(
        init=False, repr=False, compare=False, default=()
    )

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "decoders",
            tuple((c.name, CONVERTERS.get(c.type_oid), c.is_key) for c in self.columns),
        )

    @property
    def qualified_name(self) -> str:
        """``schema.table``; pgoutput sends an empty namespace for pg_catalog."""
        return f"{self.namespace or 'pg_catalog'}.{self.name}"

    @property
    def key_columns(self) -> tuple[str, ...]:
        """Names of the replica-identity columns, in table order."""
        return tuple(c.name for c in self.columns if c.is_key)


@dataclass(frozen=True, slots=True)
class Type:
    """'Y': a non-built-in column type's name, sent before a Relation that uses it."""

    type_oid: int
    namespace: str
    name: str


@dataclass(frozen=True, slots=True)
class Insert:
    """'I': a new row."""

    relation_id: int
    new: tuple[TupleValue, ...]


@dataclass(frozen=True, slots=True)
class Update:
    """'U': a changed row. ``old_kind`` is 'K' (``old`` holds the replica-identity columns;
    the others are null), 'O' (``old`` is the whole old row: REPLICA IDENTITY FULL) or
    ``None`` (no old tuple: the key did not change under REPLICA IDENTITY DEFAULT)."""

    relation_id: int
    old_kind: str | None
    old: tuple[TupleValue, ...] | None
    new: tuple[TupleValue, ...]


@dataclass(frozen=True, slots=True)
class Delete:
    """'D': a deleted row; ``old_kind``/``old`` as in :class:`Update` ('K' or 'O')."""

    relation_id: int
    old_kind: str
    old: tuple[TupleValue, ...]


@dataclass(frozen=True, slots=True)
class Truncate:
    """'T': the relations were truncated."""

    options: int
    relation_ids: tuple[int, ...]

    @property
    def cascade(self) -> bool:
        return bool(self.options & 1)

    @property
    def restart_identity(self) -> bool:
        return bool(self.options & 2)


@dataclass(frozen=True, slots=True)
class LogicalMessage:
    """'M': a ``pg_logical_emit_message`` payload (e.g. a heartbeat)."""

    flags: int
    lsn: int
    prefix: str
    content: bytes

    @property
    def transactional(self) -> bool:
        return bool(self.flags & 1)


Message = (
    Begin | Commit | Origin | Relation | Type | Insert | Update | Delete | Truncate | LogicalMessage
)

# ---------------------------------------------------------------------------- parsing

_U8 = Struct("!B")
_U16 = Struct("!H")
_U32 = Struct("!I")
_U64 = Struct("!Q")
_BEGIN = Struct("!QqI")
_COMMIT = Struct("!BQQq")
_RELATION_TAIL = Struct("!cH")
_COLUMN_TYPE = Struct("!Ii")
_TRUNCATE = Struct("!IB")
_MESSAGE_HEAD = Struct("!BQ")

_N, _T, _U, _K, _O, _B = 0x6E, 0x74, 0x75, 0x4B, 0x4F, 0x62


class _Malformed(Exception):
    def __init__(self, offset: int, detail: str):
        self.offset = offset
        self.detail = detail


def _unpack(st: Struct, data: bytes, pos: int, what: str) -> tuple:
    if pos + st.size > len(data):
        raise _Malformed(pos, f"{what}: need {st.size} bytes, {len(data) - pos} left")
    return st.unpack_from(data, pos)


def _string(data: bytes, pos: int, what: str) -> tuple[str, int]:
    end = data.find(b"\0", pos)
    if end < 0:
        raise _Malformed(pos, f"{what}: unterminated string")
    try:
        return data[pos:end].decode(), end + 1
    except UnicodeDecodeError:
        raise _Malformed(pos, f"{what}: not UTF-8") from None


def _tuple(data: bytes, pos: int) -> tuple[tuple[TupleValue, ...], int]:
    (count,) = _unpack(_U16, data, pos, "tuple column count")
    pos += 2
    size = len(data)
    values: list[TupleValue] = []
    append = values.append
    unpack_len = _U32.unpack_from
    for index in range(count):
        if pos >= size:
            raise _Malformed(pos, f"tuple column {index}: missing")
        kind = data[pos]
        pos += 1
        if kind == _T:
            if pos + 4 > size:
                raise _Malformed(pos, f"tuple column {index}: missing length")
            (length,) = unpack_len(data, pos)
            pos += 4
            end = pos + length
            if end > size:
                raise _Malformed(
                    pos, f"tuple column {index}: {length} bytes announced, {size - pos} left"
                )
            append(data[pos:end])
            pos = end
        elif kind == _N:
            append(None)
        elif kind == _U:
            append(UNCHANGED)
        elif kind == _B:
            raise _Malformed(pos - 1, f"tuple column {index}: binary format ('b') not supported")
        else:
            raise _Malformed(pos - 1, f"tuple column {index}: unknown kind {kind!r}")
    return tuple(values), pos


def _parse_begin(data: bytes) -> tuple[Message, int]:
    lsn, ts, xid = _unpack(_BEGIN, data, 1, "begin")
    return Begin(lsn, ts, xid), 1 + _BEGIN.size


def _parse_commit(data: bytes) -> tuple[Message, int]:
    flags, lsn, end_lsn, ts = _unpack(_COMMIT, data, 1, "commit")
    return Commit(flags, lsn, end_lsn, ts), 1 + _COMMIT.size


def _parse_origin(data: bytes) -> tuple[Message, int]:
    (lsn,) = _unpack(_U64, data, 1, "origin lsn")
    name, pos = _string(data, 9, "origin name")
    return Origin(lsn, name), pos


def _parse_relation(data: bytes) -> tuple[Message, int]:
    (oid,) = _unpack(_U32, data, 1, "relation id")
    namespace, pos = _string(data, 5, "namespace")
    name, pos = _string(data, pos, "relation name")
    identity, count = _unpack(_RELATION_TAIL, data, pos, "replica identity and column count")
    pos += _RELATION_TAIL.size
    columns = []
    for index in range(count):
        (flags,) = _unpack(_U8, data, pos, f"column {index} flags")
        column_name, pos = _string(data, pos + 1, f"column {index} name")
        type_oid, typmod = _unpack(_COLUMN_TYPE, data, pos, f"column {index} type")
        pos += _COLUMN_TYPE.size
        columns.append(Column(flags, column_name, type_oid, typmod))
    return Relation(oid, namespace, name, identity.decode("latin-1"), tuple(columns)), pos


def _parse_type(data: bytes) -> tuple[Message, int]:
    (oid,) = _unpack(_U32, data, 1, "type id")
    namespace, pos = _string(data, 5, "type namespace")
    name, pos = _string(data, pos, "type name")
    return Type(oid, namespace, name), pos


def _expect(data: bytes, pos: int, allowed: bytes, what: str) -> int:
    if pos >= len(data):
        raise _Malformed(pos, f"{what}: missing")
    kind = data[pos]
    if kind not in allowed:
        raise _Malformed(pos, f"{what}: got {chr(kind)!r}, expected one of {allowed.decode()}")
    return kind


def _parse_insert(data: bytes) -> tuple[Message, int]:
    (oid,) = _unpack(_U32, data, 1, "relation id")
    _expect(data, 5, b"N", "new tuple marker")
    new, pos = _tuple(data, 6)
    return Insert(oid, new), pos


def _parse_update(data: bytes) -> tuple[Message, int]:
    (oid,) = _unpack(_U32, data, 1, "relation id")
    kind = _expect(data, 5, b"KON", "tuple marker")
    old_kind = old = None
    pos = 6
    if kind != ord("N"):
        old_kind = chr(kind)
        old, pos = _tuple(data, pos)
        _expect(data, pos, b"N", "new tuple marker")
        pos += 1
    new, pos = _tuple(data, pos)
    return Update(oid, old_kind, old, new), pos


def _parse_delete(data: bytes) -> tuple[Message, int]:
    (oid,) = _unpack(_U32, data, 1, "relation id")
    kind = _expect(data, 5, b"KO", "old tuple marker")
    old, pos = _tuple(data, 6)
    return Delete(oid, chr(kind), old), pos


def _parse_truncate(data: bytes) -> tuple[Message, int]:
    count, options = _unpack(_TRUNCATE, data, 1, "truncate header")
    pos = 1 + _TRUNCATE.size
    if pos + 4 * count > len(data):
        raise _Malformed(pos, f"{count} relation ids announced, {len(data) - pos} bytes left")
    ids = Struct(f"!{count}I").unpack_from(data, pos)
    return Truncate(options, ids), pos + 4 * count


def _parse_logical_message(data: bytes) -> tuple[Message, int]:
    flags, lsn = _unpack(_MESSAGE_HEAD, data, 1, "message header")
    prefix, pos = _string(data, 1 + _MESSAGE_HEAD.size, "message prefix")
    (length,) = _unpack(_U32, data, pos, "message length")
    pos += 4
    if pos + length > len(data):
        raise _Malformed(pos, f"content: {length} bytes announced, {len(data) - pos} left")
    return LogicalMessage(flags, lsn, prefix, data[pos : pos + length]), pos + length


_PARSERS = {
    ord("B"): ("Begin", _parse_begin),
    ord("C"): ("Commit", _parse_commit),
    ord("O"): ("Origin", _parse_origin),
    ord("R"): ("Relation", _parse_relation),
    ord("Y"): ("Type", _parse_type),
    ord("I"): ("Insert", _parse_insert),
    ord("U"): ("Update", _parse_update),
    ord("D"): ("Delete", _parse_delete),
    ord("T"): ("Truncate", _parse_truncate),
    ord("M"): ("Message", _parse_logical_message),
}


def parse_message(data: bytes | bytearray | memoryview) -> Message:
    """Parse one pgoutput message (one ``data`` value of
    ``pg_logical_slot_peek_binary_changes(..., 'proto_version', '1', ...)``).

    Raises :class:`PgOutputError` naming the message type and byte offset when the message
    is truncated, has trailing bytes, or is of a type protocol version 1 does not send.
    """
    if type(data) is not bytes:
        data = bytes(data)
    if not data:
        raise PgOutputError("empty pgoutput message")
    entry = _PARSERS.get(data[0])
    if entry is None:
        raise PgOutputError(
            f"unsupported pgoutput message type {chr(data[0])!r} at offset 0 "
            f"(protocol version 1, without streaming, was expected)"
        )
    kind, parse = entry
    try:
        message, end = parse(data)
    except _Malformed as exc:
        raise PgOutputError(
            f"malformed {kind} message at offset {exc.offset}: {exc.detail}"
        ) from None
    if end != len(data):
        raise PgOutputError(
            f"malformed {kind} message at offset {end}: {len(data) - end} trailing bytes"
        )
    return message

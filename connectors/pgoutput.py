"""Exact parser for PostgreSQL's binary ``pgoutput`` logical-replication messages, protocol
version 1, and conversion of their text column values to Python values."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from struct import Struct
from typing import Any, Final

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
            tuple((c.name, _CONVERTERS.get(c.type_oid), c.is_key) for c in self.columns),
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


# ---------------------------------------------------------------------------- values

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


_CONVERTERS: dict[int, Any] = {
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

_HINTS = {
    DATE: "not an ISO date within years 1-9999 (DateStyle must be ISO; BC dates are not supported)",
    TIMESTAMP: "not an ISO timestamp within years 1-9999 (DateStyle must be ISO)",
    TIMESTAMPTZ: "not an ISO timestamp with offset within years 1-9999 (DateStyle must be ISO)",
    NUMERIC: "not a numeric literal",
    BOOL: "not 't' or 'f'",
    UUID: "not a UUID",
}


def decode_tuple(
    relation: Relation, values: tuple[TupleValue, ...], *, key_only: bool = False
) -> dict[str, Any]:
    """Column name -> Python value for one tuple of ``relation``.

    Values: NULL -> ``None``; unchanged TOAST -> :data:`UNCHANGED`; text, varchar, bpchar
    (blank padding kept, exactly as PostgreSQL sends it), name, json, jsonb and unknown types
    -> ``str``; int2/int4/int8/oid -> ``int``; numeric -> ``Decimal`` (NaN and ±Infinity
    included, never float); bool -> ``bool``; date -> ``date`` ('infinity'/'-infinity' ->
    ``date.max``/``date.min``); timestamp -> naive ``datetime``; timestamptz -> aware
    ``datetime`` with the offset PG printed (infinities -> ``datetime.max``/``min`` in UTC);
    uuid -> ``UUID``. Text is decoded as UTF-8 (the database encoding must be UTF8).

    With ``key_only`` only replica-identity columns are returned: use it for 'K' old tuples,
    where the other columns are sent as null but are in fact unknown. Raises
    :class:`PgValueError` (column set) for a value that cannot be converted and
    :class:`PgOutputError` when the tuple does not match the relation's column count.
    """
    decoders = relation.decoders
    if len(values) != len(decoders):
        raise PgOutputError(
            f"tuple of {len(values)} columns for relation {relation.qualified_name} "
            f"of {len(decoders)} columns"
        )
    row: dict[str, Any] = {}
    for index, ((name, convert, is_key), raw) in enumerate(zip(decoders, values, strict=True)):
        if key_only and not is_key:
            continue
        if raw is None or raw is UNCHANGED:
            row[name] = raw
            continue
        try:
            text = raw.decode()
            row[name] = text if convert is None else convert(text)
        except UnicodeDecodeError:
            raise PgValueError(
                f"column {name!r} of {relation.qualified_name}: not UTF-8 text "
                f"(the database encoding must be UTF8)",
                column=name,
            ) from None
        except (ValueError, ArithmeticError, InvalidOperation):
            column = relation.columns[index]
            type_name = TYPE_NAMES.get(column.type_oid, str(column.type_oid))
            raise PgValueError(
                f"column {name!r} of {relation.qualified_name}: {type_name} value "
                f"{_HINTS.get(column.type_oid, 'not convertible')}",
                column=name,
            ) from None
    return row


@dataclass(frozen=True, slots=True)
class RowChange:
    """One row change decoded against its relation. ``op`` is 'c', 'u' or 'd'. ``before``
    is ``None`` when the change carries no old tuple; when ``before_is_key_only`` it holds
    only the replica-identity columns."""

    relation: Relation
    op: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    before_is_key_only: bool


class RelationCache:
    """The Relation and Type messages seen in a decoding session, by OID.

    pgoutput describes a relation once per decoding session (each call of the
    ``pg_logical_slot_*_changes`` functions is one) before its first change, and again when
    it changes. Feed every message to :meth:`observe`, in order; changes then decode with
    the relation shape in force when they were written.
    """

    __slots__ = ("_relations", "_types")

    def __init__(self) -> None:
        self._relations: dict[int, Relation] = {}
        self._types: dict[int, Type] = {}

    def observe(self, message: Message) -> None:
        """Remember ``message`` if it is a Relation or Type; ignore anything else."""
        if type(message) is Relation:
            self._relations[message.relation_id] = message
        elif type(message) is Type:
            self._types[message.type_oid] = message

    def get(self, relation_id: int) -> Relation:
        """The relation's latest description; :class:`PgOutputError` if none was seen."""
        try:
            return self._relations[relation_id]
        except KeyError:
            raise PgOutputError(
                f"change for relation {relation_id} before its Relation message: "
                f"messages must be read from the start of a decoding session"
            ) from None

    def type_name(self, type_oid: int) -> str | None:
        """``namespace.name`` of a type described by a Type message, or of a built-in."""
        described = self._types.get(type_oid)
        if described is not None:
            return f"{described.namespace}.{described.name}"
        return TYPE_NAMES.get(type_oid)

    def __contains__(self, relation_id: object) -> bool:
        return relation_id in self._relations

    def __len__(self) -> int:
        return len(self._relations)

    def decode_change(self, message: Insert | Update | Delete) -> RowChange:
        """Decode an Insert, Update or Delete; see :func:`decode_tuple` for the values."""
        relation = self.get(message.relation_id)
        kind = type(message)
        if kind is Insert:
            return RowChange(relation, "c", None, decode_tuple(relation, message.new), False)
        if kind is Update:
            key_only = message.old_kind == "K"
            before = (
                None
                if message.old is None
                else decode_tuple(relation, message.old, key_only=key_only)
            )
            return RowChange(relation, "u", before, decode_tuple(relation, message.new), key_only)
        if kind is Delete:
            key_only = message.old_kind == "K"
            before = decode_tuple(relation, message.old, key_only=key_only)
            return RowChange(relation, "d", before, None, key_only)
        raise TypeError(f"not a row change: {kind.__name__}")

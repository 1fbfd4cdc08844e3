"""A compiled Avro writer for the connectors' hot path: the same single-object bytes as
:class:`hub.avro.Encoder`, several times faster, built from the shipped schema itself.

fastavro re-walks the schema for every record (~40 µs for a ChangeEvent); this module turns
the parsed schema into nested closures once. It covers what the hub's schemas use —
records, enums, ``["null", T]`` unions, maps, arrays, strings, bytes, booleans, int/long
(``date`` logical type included) — and :func:`compile_encoder` returns ``None`` for any other
schema, so callers fall back to :class:`hub.avro.Encoder`. Tests pin byte equality with it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date
from typing import Any

from hub.avro import MAGIC, AvroEncodeError, shipped

Writer = Callable[[bytearray, Any], None]

_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_INT_MIN, _INT_MAX = -(1 << 31), (1 << 31) - 1
_LONG_MIN, _LONG_MAX = -(1 << 63), (1 << 63) - 1


class _Unsupported(Exception):
    pass


def _write_long(out: bytearray, n: int) -> None:
    if 0 <= n < 64:
        out.append(n << 1)
        return
    n = (n << 1) ^ (n >> 63)
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _long(out: bytearray, v: Any) -> None:
    if type(v) is not int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"{type(v).__name__} is not a long")
    if not _LONG_MIN <= v <= _LONG_MAX:
        raise ValueError(f"{v} does not fit a long")
    _write_long(out, v)


def _int(out: bytearray, v: Any) -> None:
    if type(v) is not int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"{type(v).__name__} is not an int")
    if not _INT_MIN <= v <= _INT_MAX:
        raise ValueError(f"{v} does not fit an int")
    _write_long(out, v)


def _date(out: bytearray, v: Any) -> None:
    if type(v) is date:
        _write_long(out, v.toordinal() - _EPOCH_ORDINAL)
    else:
        _int(out, v)


def _string(out: bytearray, v: Any) -> None:
    b = v.encode()  # AttributeError for a non-str: reported as AvroEncodeError
    n = len(b)
    if n < 64:
        out.append(n << 1)
    else:
        _write_long(out, n)
    out += b


def _bytes(out: bytearray, v: Any) -> None:
    if not isinstance(v, bytes | bytearray | memoryview):
        raise TypeError(f"{type(v).__name__} is not bytes")
    _write_long(out, len(v))
    out += v


def _boolean(out: bytearray, v: Any) -> None:
    if type(v) is not bool:
        raise TypeError(f"{type(v).__name__} is not a boolean")
    out.append(1 if v else 0)


def _null(out: bytearray, v: Any) -> None:
    if v is not None:
        raise TypeError(f"{type(v).__name__} is not null")


_PRIMITIVES: dict[str, Writer] = {
    "null": _null,
    "boolean": _boolean,
    "int": _int,
    "long": _long,
    "string": _string,
    "bytes": _bytes,
}


def _compile(schema: Any, names: dict[str, Writer]) -> Writer:
    if isinstance(schema, str):
        if schema in _PRIMITIVES:
            return _PRIMITIVES[schema]
        if schema in names:
            return lambda out, v: names[schema](out, v)  # named type, possibly recursive
        raise _Unsupported(schema)
    if isinstance(schema, list):
        return _union(schema, names)
    kind = schema.get("type")
    logical = schema.get("logicalType")
    if kind == "int" and logical == "date":
        return _date
    if kind in _PRIMITIVES and logical is None:
        return _PRIMITIVES[kind]
    if kind == "record":
        return _record(schema, names)
    if kind == "enum":
        index = {s: i for i, s in enumerate(schema["symbols"])}

        def enum(out: bytearray, v: Any) -> None:
            _write_long(out, index[v])  # KeyError for an unknown symbol

        names[schema["name"]] = enum
        return enum
    if kind == "map":
        values = _compile(schema["values"], names)

        def map_(out: bytearray, v: Mapping[str, Any]) -> None:
            if v:
                _write_long(out, len(v))
                for key, item in v.items():
                    _string(out, key)
                    values(out, item)
            out.append(0)

        return map_
    if kind == "array":
        items = _compile(schema["items"], names)

        def array(out: bytearray, v: Any) -> None:
            if v:
                _write_long(out, len(v))
                for item in v:
                    items(out, item)
            out.append(0)

        return array
    raise _Unsupported(str(kind))


def _union(branches: list, names: dict[str, Writer]) -> Writer:
    if len(branches) != 2 or "null" not in branches:
        raise _Unsupported("union other than [null, T]")
    null_index = branches.index("null")
    other = _compile(branches[1 - null_index], names)
    null_tag = 0 if null_index == 0 else 2  # zigzag of the branch index
    other_tag = 2 if null_index == 0 else 0
    if other is _string and null_index == 0:

        def optional_string(out: bytearray, v: Any) -> None:
            if v is None:
                out.append(0)
            else:
                b = v.encode()
                n = len(b)
                if n < 64:
                    out.append(2)
                    out.append(n << 1)
                else:
                    out.append(2)
                    _write_long(out, n)
                out += b

        return optional_string

    def union(out: bytearray, v: Any) -> None:
        if v is None:
            out.append(null_tag)
        else:
            out.append(other_tag)
            other(out, v)

    return union


def _record(schema: Mapping[str, Any], names: dict[str, Writer]) -> Writer:
    fields: list[tuple[str, Writer, Any, bool]] = []

    def record(out: bytearray, v: Mapping[str, Any]) -> None:
        get = v.get
        for name, write, default, has_default in fields:
            value = get(name, default)
            if value is None and not has_default and name not in v:
                raise KeyError(f"missing field {name}")
            write(out, value)

    names[schema["name"]] = record
    for f in schema["fields"]:
        has_default = "default" in f
        default = f.get("default")
        if isinstance(default, dict | list):
            default = type(default)(default)
        fields.append((f["name"], _compile(f["type"], names), default, has_default))
    return record


class FastEncoder:
    """Encodes records of one shipped schema as single-object messages, like
    :class:`hub.avro.Encoder` (same bytes, same :class:`AvroEncodeError` on a bad record)."""

    __slots__ = ("name", "_header", "_write")

    def __init__(self, name: str, header: bytes, write: Writer):
        self.name = name
        self._header = header
        self._write = write

    def encode(self, record: Mapping[str, Any]) -> bytes:
        out = bytearray(self._header)
        try:
            self._write(out, record)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            key = record.get("record_key") if isinstance(record, Mapping) else None
            raise AvroEncodeError(
                f"record does not fit Avro schema {self.name}: {exc}",
                record_key=key if isinstance(key, str) else None,
            ) from exc
        return bytes(out)


def compile_encoder(name: str) -> FastEncoder | None:
    """A :class:`FastEncoder` for the shipped schema ``name``, or ``None`` if it uses a
    construct this writer does not cover."""
    schemas = shipped()
    try:
        write = _compile(schemas.schema(name), {})
    except _Unsupported:
        return None
    return FastEncoder(name, MAGIC + schemas.fingerprint(name), write)

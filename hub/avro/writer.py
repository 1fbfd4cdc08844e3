"""A compiled Avro writer for the hot paths (connectors' change events, the reconciler's
mismatch events): the same single-object bytes as :class:`hub.avro.codec.Encoder`, several times
faster, built from the shipped schema itself.

fastavro re-walks the schema for every record (~40 µs for a ChangeEvent); this module
generates, once, Python source that writes one record of a schema with every field's code
inlined, and compiles it: ~13 µs for a ChangeEvent of varied rows, where nested closures
(one call per field) took ~22 µs. It covers what the hub's schemas use — records, enums,
``["null", T]`` unions, maps, arrays, strings, bytes, booleans, int/long (``date`` logical
type included), float and double — and :func:`compile_encoder` returns ``None`` for any
other schema, so callers fall back to :class:`hub.avro.codec.Encoder`. Tests pin byte equality
with it.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from datetime import date
from typing import Any

from hub.avro.codec import ENCODE_ERRORS, MAGIC, PRIMITIVES, encode_error, shipped

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


def _ranged(what: str, low: int, high: int) -> Writer:
    """The checked writer of an Avro ``int`` or ``long`` (the generated code's slow path)."""

    def write(out: bytearray, v: Any) -> None:
        if type(v) is not int:
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError(f"{type(v).__name__} is not {what}")
        if not low <= v <= high:
            raise ValueError(f"{v} does not fit {what}")
        _write_long(out, v)

    return write


_long = _ranged("a long", _LONG_MIN, _LONG_MAX)
_int = _ranged("an int", _INT_MIN, _INT_MAX)


def _bytes(out: bytearray, v: Any) -> None:
    if not isinstance(v, bytes | bytearray | memoryview):
        raise TypeError(f"{type(v).__name__} is not bytes")
    _write_long(out, len(v))
    out += v


def _boolean(out: bytearray, v: Any) -> None:
    if type(v) is not bool:
        raise TypeError(f"{type(v).__name__} is not a boolean")
    out.append(1 if v else 0)


def _float_value(v: Any) -> float:
    if type(v) is not float and (isinstance(v, bool) or not isinstance(v, int | float)):
        raise TypeError(f"{type(v).__name__} is not a number")
    return v  # an int too large for a double: OverflowError from pack


def _double(out: bytearray, v: Any) -> None:
    out += _pack_double(_float_value(v))


def _float(out: bytearray, v: Any) -> None:
    out += _pack_float(_float_value(v))


_pack_double = struct.Struct("<d").pack
_pack_float = struct.Struct("<f").pack


def _null(out: bytearray, v: Any) -> None:
    if v is not None:
        raise TypeError(f"{type(v).__name__} is not null")


class _Generator:
    """Emits the source of one writer function per named record, enum, map and array, with
    every field's code inlined (the common cases — a short string, a small non-negative
    number, a null branch — first), and compiles it once."""

    def __init__(self) -> None:
        self.functions: dict[str, list[str]] = {}  # function name -> source lines
        self.named: dict[str, str] = {}  # full type name -> function name
        self.scope: dict[str, Any] = {
            "_write_long": _write_long,
            "_long": _long,
            "_int": _int,
            "_bytes": _bytes,
            "_boolean": _boolean,
            "_null": _null,
            "_float": _float,
            "_double": _double,
            "_pack_double": _pack_double,
            "_date_type": date,
            "_EPOCH": _EPOCH_ORDINAL,
        }
        self._n = 0

    def const(self, value: Any) -> str:
        self._n += 1
        name = f"K{self._n}"
        self.scope[name] = value
        return name

    def var(self) -> str:
        self._n += 1
        return f"x{self._n}"

    def emit(self, schema: Any, x: str, out: list[str], ind: str) -> None:
        """Lines writing the value held in variable ``x`` to the bytearray ``out``."""
        if isinstance(schema, str):
            if schema in self.named:  # a named type, possibly recursive
                out.append(f"{ind}{self.named[schema]}(out, {x})")
                return
            if schema not in PRIMITIVES:
                raise _Unsupported(schema)
            schema = {"type": schema}
        if isinstance(schema, list):
            self._union(schema, x, out, ind)
            return
        kind = schema.get("type")
        logical = schema.get("logicalType")
        if kind == "int" and logical == "date":
            out += [
                f"{ind}if type({x}) is _date_type:",
                f"{ind}    _write_long(out, {x}.toordinal() - _EPOCH)",
                f"{ind}else:",
                f"{ind}    _int(out, {x})",
            ]
        elif kind in PRIMITIVES and logical is not None:
            raise _Unsupported(str(logical))
        elif kind == "string":
            out += [
                f"{ind}b = {x}.encode()",  # AttributeError for a non-str
                f"{ind}m = len(b)",
                f"{ind}if m < 64:",
                f"{ind}    out.append(m << 1)",
                f"{ind}else:",
                f"{ind}    _write_long(out, m)",
                f"{ind}out += b",
            ]
        elif kind in ("int", "long"):
            out += [
                f"{ind}if type({x}) is int and 0 <= {x} < 64:",
                f"{ind}    out.append({x} << 1)",
                f"{ind}else:",
                f"{ind}    _{kind}(out, {x})",  # type and range checks
            ]
        elif kind == "boolean":
            out += [
                f"{ind}if {x} is True:",
                f"{ind}    out.append(1)",
                f"{ind}elif {x} is False:",
                f"{ind}    out.append(0)",
                f"{ind}else:",
                f"{ind}    _boolean(out, {x})",  # raises
            ]
        elif kind == "double":
            out += [
                f"{ind}if type({x}) is float:",
                f"{ind}    out += _pack_double({x})",
                f"{ind}else:",
                f"{ind}    _double(out, {x})",  # an int, or a TypeError
            ]
        elif kind in ("bytes", "null", "float"):
            out.append(f"{ind}_{kind}(out, {x})")
        elif kind == "record":
            out.append(f"{ind}{self._record(schema)}(out, {x})")
        elif kind == "enum":
            out.append(f"{ind}{self._enum(schema)}(out, {x})")
        elif kind in ("map", "array"):
            out.append(f"{ind}{self._block(kind, schema)}(out, {x})")
        else:
            raise _Unsupported(str(kind))

    def _union(self, branches: list, x: str, out: list[str], ind: str) -> None:
        if len(branches) != 2 or "null" not in branches:
            raise _Unsupported("union other than [null, T]")
        null_index = branches.index("null")
        other: list[str] = []
        self.emit(branches[1 - null_index], x, other, ind + "    ")
        out += [
            f"{ind}if {x} is None:",
            f"{ind}    out.append({0 if null_index == 0 else 2})",  # zigzag of the branch index
            f"{ind}else:",
            f"{ind}    out.append({2 if null_index == 0 else 0})",
            *other,
        ]

    def _function(self, full: str, body: Callable[[list[str]], None], *, named: bool = True) -> str:
        name = "_write_" + "".join(c if c.isalnum() else "_" for c in full) + f"_{self._n}"
        self._n += 1
        if named:  # records and enums: later references use the name
            self.named.setdefault(full, name)
        lines = [f"def {name}(out, v):"]
        self.functions[name] = lines  # reserved first: a recursive reference calls it
        body(lines)
        return name

    def _record(self, schema: Mapping[str, Any]) -> str:
        def body(lines: list[str]) -> None:
            lines.append("    get = v.get")
            for f in schema["fields"]:
                x, field = self.var(), f["name"]
                if "default" in f:
                    default = f["default"]
                    if isinstance(default, dict | list):
                        default = type(default)(default)
                    lines.append(f"    {x} = get({field!r}, {self.const(default)})")
                else:
                    lines += [
                        f"    {x} = get({field!r})",
                        f"    if {x} is None and {field!r} not in v:",
                        f"        raise KeyError({f'missing field {field}'!r})",
                    ]
                self.emit(f["type"], x, lines, "    ")

        return self._function(schema["name"], body)

    def _enum(self, schema: Mapping[str, Any]) -> str:
        index = self.const({s: i for i, s in enumerate(schema["symbols"])})
        return self._function(
            schema["name"],
            lambda lines: lines.append(f"    _write_long(out, {index}[v])"),  # KeyError: unknown
        )

    def _block(self, kind: str, schema: Mapping[str, Any]) -> str:
        def body(lines: list[str]) -> None:
            lines += ["    if v:", "        _write_long(out, len(v))"]
            if kind == "map":
                lines.append("        for key, item in v.items():")
                self.emit("string", "key", lines, "            ")
                self.emit(schema["values"], "item", lines, "            ")
            else:
                lines.append("        for item in v:")
                self.emit(schema["items"], "item", lines, "            ")
            lines.append("    out.append(0)")

        return self._function(kind, body, named=False)

    def compile(self, schema: Any) -> Writer:
        lines = ["def write(out, v):"]
        self.emit(schema, "v", lines, "    ")
        source = "\n".join(line for fn in self.functions.values() for line in fn)
        source += "\n" + "\n".join(lines) + "\n"
        exec(compile(source, "<avrowriter>", "exec"), self.scope)  # noqa: S102 - our own source
        return self.scope["write"]


class FastEncoder:
    """Encodes records of one shipped schema as single-object messages, like
    :class:`hub.avro.codec.Encoder` (same bytes, same :class:`AvroEncodeError` on a bad record)."""

    __slots__ = ("name", "_header", "_write")

    def __init__(self, name: str, header: bytes, write: Writer):
        self.name = name
        self._header = header
        self._write = write

    def encode(self, record: Mapping[str, Any]) -> bytes:
        out = bytearray(self._header)
        try:
            self._write(out, record)
        except ENCODE_ERRORS as exc:
            raise encode_error(self.name, record, exc) from exc
        return bytes(out)


def compile_encoder(name: str) -> FastEncoder | None:
    """A :class:`FastEncoder` for the shipped schema ``name``, or ``None`` if it uses a
    construct this writer does not cover."""
    schemas = shipped()
    try:
        write = _Generator().compile(schemas.schema(name))
    except _Unsupported:
        return None
    return FastEncoder(name, MAGIC + schemas.fingerprint(name), write)

"""A compiled Avro reader for the reconciler's hot path: the same records as
:meth:`hub.avro.codec.Decoder.decode`, about three times as fast, generated from the shipped
schema itself.

fastavro walks the schema for every message (~25 µs for a ChangeEvent, as much as the
rest of the reconciler's work on it). This module generates, once, Python source that
reads one record of a schema with every field's code inlined (the common one-byte length
and union cases first) and compiles it. It covers what the hub's schemas use — records,
enums, unions, maps, arrays, strings, bytes, booleans, int/long (``date`` logical type
included), float and double — and :func:`compile_reader` returns ``None`` for anything
else. Messages written with another schema version (a released one) are handed to
:class:`hub.avro.codec.Decoder`, which resolves them; tests pin equality with it.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from datetime import date
from typing import Any

from hub.avro.codec import HEADER_SIZE, MAGIC, PRIMITIVES, AvroDecodeError, Decoder, shipped

_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


class _Unsupported(Exception):
    pass


def _long(b: bytes, pos: int) -> tuple[int, int]:
    c = b[pos]
    pos += 1
    n = c & 0x7F
    shift = 7
    while c & 0x80:
        c = b[pos]
        pos += 1
        n |= (c & 0x7F) << shift
        shift += 7
    return (n >> 1) ^ -(n & 1), pos


def _string(b: bytes, pos: int) -> tuple[str, int]:
    n, pos = _long(b, pos)
    end = pos + n
    if n < 0 or end > len(b):
        raise AvroDecodeError("corrupt string length")
    return b[pos:end].decode(), end


def _bytes(b: bytes, pos: int) -> tuple[bytes, int]:
    n, pos = _long(b, pos)
    end = pos + n
    if n < 0 or end > len(b):
        raise AvroDecodeError("corrupt bytes length")
    return b[pos:end], end


def _bad(what: str) -> None:
    raise AvroDecodeError(what)


class _Generator:
    """Emits the source of one reader function per named record; other types inline."""

    def __init__(self) -> None:
        self.functions: dict[str, list[str]] = {}  # full name -> source lines
        self.constants: dict[str, Any] = {
            "_long": _long,
            "_string": _string,
            "_bytes": _bytes,
            "_bad": _bad,
            "_fromordinal": date.fromordinal,
            "_EPOCH": _EPOCH_ORDINAL,
            "_float": struct.Struct("<f").unpack_from,
            "_double": struct.Struct("<d").unpack_from,
        }
        self.named: dict[str, Any] = {}  # full name -> schema
        self._n = 0

    def var(self) -> str:
        self._n += 1
        return f"v{self._n}"

    def const(self, value: Any) -> str:
        name = f"K{len(self.constants)}"
        self.constants[name] = value
        return name

    def emit(self, schema: Any, ns: str, target: str, out: list[str], ind: str) -> None:
        """Lines reading one value of ``schema`` at ``p`` into ``target``, advancing ``p``."""
        if isinstance(schema, str):
            prim = {"type": schema} if schema in PRIMITIVES else None
            if prim is None:
                full = schema if "." in schema or not ns else f"{ns}.{schema}"
                if full not in self.named and schema in self.named:
                    full = schema
                if full not in self.named:
                    raise _Unsupported(schema)
                self._call_named(full, target, out, ind)
                return
            schema = prim
        if isinstance(schema, list):
            self._union(schema, ns, target, out, ind)
            return
        kind = schema["type"]
        logical = schema.get("logicalType")
        if logical is not None and not (logical == "date" and kind == "int"):
            raise _Unsupported(logical)
        if kind in ("int", "long"):
            out += [
                f"{ind}c = b[p]",
                f"{ind}if c < 128:",
                f"{ind}    {target} = (c >> 1) ^ -(c & 1)",
                f"{ind}    p += 1",
                f"{ind}else:",
                f"{ind}    {target}, p = _long(b, p)",
            ]
            if logical == "date":
                out.append(f"{ind}{target} = _fromordinal(_EPOCH + {target})")
        elif kind == "string":
            out += [
                f"{ind}c = b[p]",
                f"{ind}if c < 128 and not c & 1:",
                f"{ind}    e = p + 1 + (c >> 1)",
                f"{ind}    if e > n: _bad('truncated string')",
                f"{ind}    {target} = b[p + 1:e].decode()",
                f"{ind}    p = e",
                f"{ind}else:",
                f"{ind}    {target}, p = _string(b, p)",
            ]
        elif kind == "bytes":
            out.append(f"{ind}{target}, p = _bytes(b, p)")
        elif kind == "boolean":
            out += [f"{ind}{target} = b[p] != 0", f"{ind}p += 1"]
        elif kind == "null":
            out.append(f"{ind}{target} = None")
        elif kind == "float":
            out += [f"{ind}{target} = _float(b, p)[0]", f"{ind}p += 4"]
        elif kind == "double":
            out += [f"{ind}{target} = _double(b, p)[0]", f"{ind}p += 8"]
        elif kind in ("record", "enum"):
            full, inner_ns = _full_name(schema, ns)
            self.named[full] = schema
            if kind == "record":
                self._record_function(full, schema, inner_ns)
            else:
                self._enum_function(full, schema)
            self._call_named(full, target, out, ind)
        elif kind in ("map", "array"):
            item_schema = schema["values"] if kind == "map" else schema["items"]
            fn = self._block_function(kind, item_schema, ns)
            out.append(f"{ind}{target}, p = {fn}(b, p, n)")
        else:
            raise _Unsupported(kind)

    def _call_named(self, full: str, target: str, out: list[str], ind: str) -> None:
        out.append(f"{ind}{target}, p = {_fn_name(full)}(b, p, n)")

    def _union(self, branches: list, ns: str, target: str, out: list[str], ind: str) -> None:
        out += [
            f"{ind}c = b[p]",
            f"{ind}if c >= 128 or c & 1: _bad('corrupt union index')",
            f"{ind}p += 1",
        ]
        for i, branch in enumerate(branches):
            out.append(f"{ind}{'if' if i == 0 else 'elif'} c == {2 * i}:")
            body: list[str] = []
            self.emit(branch, ns, target, body, ind + "    ")
            out += body
        out += [f"{ind}else:", f"{ind}    _bad('union index out of range')"]

    def _record_function(self, full: str, schema: dict, ns: str) -> None:
        if full in self.functions:
            return
        self.functions[full] = []  # reserved: a recursive reference calls the function
        lines = [f"def {_fn_name(full)}(b, p, n):"]
        names = []
        for field in schema["fields"]:
            v = self.var()
            names.append((field["name"], v))
            self.emit(field["type"], ns, v, lines, "    ")
        items = ", ".join(f"{k!r}: {v}" for k, v in names)
        lines.append(f"    return {{{items}}}, p")
        self.functions[full] = lines

    def _enum_function(self, full: str, schema: dict) -> None:
        symbols = self.const(tuple(schema["symbols"]))
        self.functions[full] = [
            f"def {_fn_name(full)}(b, p, n):",
            "    i, p = _long(b, p)",
            f"    if not 0 <= i < len({symbols}): _bad('enum index out of range')",
            f"    return {symbols}[i], p",
        ]

    def _block_function(self, kind: str, item_schema: Any, ns: str) -> str:
        name = f"_blocks{len(self.functions)}"
        lines = [
            f"def {name}(b, p, n):",
            "    out = {}" if kind == "map" else "    out = []",
            "    while True:",
            "        count, p = _long(b, p)",
            "        if count == 0:",
            "            return out, p",
            "        if count < 0:",
            "            count = -count",
            "            _size, p = _long(b, p)",
            "        for _ in range(count):",
        ]
        if kind == "map":
            lines.append("            key, p = _string(b, p)")
            self.emit(item_schema, ns, "out[key]", lines, "            ")
        else:
            self.emit(item_schema, ns, "item", lines, "            ")
            lines.append("            out.append(item)")
        self.functions[name] = lines
        return name

    def compile(self, schema: dict) -> Callable[[bytes, int], tuple[dict, int]]:
        lines: list[str] = ["def read(b, p):", "    n = len(b)"]
        self.emit(schema, "", "root", lines, "    ")
        lines.append("    return root, p")
        source = "\n".join(line for fn in self.functions.values() for line in fn)
        source += "\n" + "\n".join(lines) + "\n"
        scope = dict(self.constants)
        exec(compile(source, "<avroreader>", "exec"), scope)  # noqa: S102 - our own source
        return scope["read"]


def _full_name(schema: dict, ns: str) -> tuple[str, str]:
    name = schema["name"]
    if "." in name:
        return name, name.rpartition(".")[0]
    inner = schema.get("namespace") or ns
    return (f"{inner}.{name}" if inner else name), inner


def _fn_name(full: str) -> str:
    return "_read_" + full.replace(".", "_")


def compile_reader(name: str) -> Callable[[bytes], tuple[str, dict]] | None:
    """A decode function for messages of the current shipped schema ``name``, with the
    return value and errors of :meth:`hub.avro.codec.Decoder.decode` (to which it hands any
    message written with another schema); ``None`` when the schema uses a construct this
    module does not compile."""
    entry = shipped().current[name]
    try:
        body = _Generator().compile(entry.raw)
    except _Unsupported:
        return None
    header = MAGIC + entry.fingerprint
    fallback = Decoder().decode

    def decode(data: bytes) -> tuple[str, dict]:
        if data[:HEADER_SIZE] != header:
            return fallback(data)
        try:
            record, end = body(data, HEADER_SIZE)
        except AvroDecodeError as exc:
            raise AvroDecodeError(f"corrupt Avro body for {name}: {exc.reason}") from exc
        except (IndexError, ValueError, OverflowError, struct.error) as exc:
            raise AvroDecodeError(
                f"truncated or corrupt Avro body for {name}: {type(exc).__name__}: {exc}"
            ) from exc
        if end != len(data):
            raise AvroDecodeError(
                f"corrupt Avro message for {name}: {len(data) - end} trailing bytes"
            )
        return name, record

    return decode

"""Avro single-object encoding of the hub's messages: every message names its schema by
fingerprint, so no registry server is needed (SPEC §3)."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from io import BytesIO
from os import PathLike
from pathlib import Path
from types import MappingProxyType
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint as _fastavro_fingerprint
from fastavro.schema import to_parsing_canonical_form

from hub.errors import SkippableError

MAGIC = b"\xc3\x01"
"""The two marker bytes that open every single-object encoded message (Avro spec)."""
HEADER_SIZE = 10
"""Marker plus the 8-byte CRC-64-AVRO fingerprint."""
SCHEMA_PACKAGE = "schemas.avro"
RELEASED_DIR = "released"


class AvroDecodeError(SkippableError):
    """A message is not a decodable hub message (bad marker, unknown schema, corrupt body)."""


class AvroEncodeError(SkippableError):
    """A record does not fit its schema (missing field, wrong type): dead-letter it."""


def schema_fingerprint(schema: Any) -> bytes:
    """The 8-byte little-endian CRC-64-AVRO fingerprint of ``schema``'s Parsing Canonical Form.

    ``schema`` is the schema as JSON data (not parsed by fastavro). These are the bytes that
    follow the marker in a single-object encoded message.
    """
    # fastavro returns the fingerprint as the hex of the little-endian bytes (what Java's
    # SchemaNormalization.parsingFingerprint("CRC-64-AVRO", s) gives); the test pins it to
    # the Avro spec's vectors.
    return bytes.fromhex(_fastavro_fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))


PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
"""The Avro primitive type names."""


def qualify(name: str, namespace: str | None) -> str:
    """``name`` as a full name: already dotted names and names without a namespace stay as
    they are (the Avro spec's name resolution)."""
    return name if "." in name or not namespace else f"{namespace}.{name}"


def full_name(schema: Mapping[str, Any]) -> str:
    """The full name of a named schema (``namespace.name``), as JSON data."""
    return qualify(schema["name"], schema.get("namespace"))


def _parse(schema: Mapping[str, Any]) -> dict:
    # Each schema is parsed with its own name table: released and current versions reuse
    # the same names, and every file is self-contained.
    return parse_schema(schema, named_schemas={})


@dataclass(frozen=True, slots=True)
class SchemaVersion:
    """One schema as shipped (``version`` "current") or as released (e.g. "0.1.0")."""

    name: str
    version: str
    fingerprint: bytes
    raw: Mapping[str, Any]
    parsed: dict


def read_schema_dir(directory: Traversable | PathLike[str] | str) -> dict[str, Mapping[str, Any]]:
    """The ``*.avsc`` files of one directory as ``{file name: schema JSON}``, sorted by name."""
    root = Path(directory) if isinstance(directory, str | PathLike) else directory
    found = {}
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if entry.is_file() and entry.name.endswith(".avsc"):
            found[entry.name] = json.loads(entry.read_text(encoding="utf-8"))
    return found


def version_key(version: str) -> tuple:
    """Sort key for release directory names: numeric parts compare as numbers."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in version.split("."))


def release_dirs(directory: Traversable | PathLike[str] | str) -> dict[str, Traversable]:
    """The release directories under ``directory/released/`` as ``{version: directory}``,
    oldest first; names starting with ``_`` or ``.`` are not releases."""
    root = Path(directory) if isinstance(directory, str | PathLike) else directory
    released = root / RELEASED_DIR
    if not released.is_dir():
        return {}
    versions = [
        e.name for e in released.iterdir() if e.is_dir() and not e.name.startswith(("_", "."))
    ]
    return {v: released / v for v in sorted(versions, key=version_key)}


def released_versions(
    directory: Traversable | PathLike[str] | str,
) -> dict[str, dict[str, Mapping[str, Any]]]:
    """Every release under ``directory/released/`` as ``{version: {file: schema}}``, oldest first."""
    return {v: read_schema_dir(d) for v, d in release_dirs(directory).items()}


class SchemaSet:
    """The current schemas (written by :class:`Encoder`, read into by :class:`Decoder`) plus
    the writer schemas of earlier releases that :class:`Decoder` still accepts.

    A message written with a released schema decodes into the current schema of the same
    full name (or of the current schema that lists that name in ``aliases``) by Avro schema
    resolution; a released schema with no current counterpart decodes as written.
    """

    def __init__(
        self,
        current: Iterable[Mapping[str, Any]],
        released: Mapping[str, Iterable[Mapping[str, Any]]] | None = None,
    ):
        self.current: dict[str, SchemaVersion] = {}
        for raw in current:
            entry = SchemaVersion(
                full_name(raw), "current", schema_fingerprint(raw), raw, _parse(raw)
            )
            if entry.name in self.current:
                raise ValueError(f"Avro schema {entry.name} is defined twice")
            self.current[entry.name] = entry
        by_alias: dict[str, SchemaVersion] = {}
        for entry in self.current.values():
            namespace = entry.raw.get("namespace")
            for alias in entry.raw.get("aliases", ()):
                by_alias[qualify(alias, namespace)] = entry
        # fingerprint -> (name reported, writer schema, reader schema or None when identical)
        self._readers: dict[bytes, tuple[str, dict, dict | None]] = {
            e.fingerprint: (e.name, e.parsed, None) for e in self.current.values()
        }
        self.released: list[SchemaVersion] = []
        # Newest release first, so a fingerprint shared by several releases is listed once.
        for version, schemas in sorted(
            (released or {}).items(), key=lambda kv: version_key(kv[0]), reverse=True
        ):
            for raw in schemas:
                entry = SchemaVersion(
                    full_name(raw), version, schema_fingerprint(raw), raw, _parse(raw)
                )
                self.released.append(entry)
                if entry.fingerprint in self._readers:
                    continue
                reader = self.current.get(entry.name) or by_alias.get(entry.name)
                if reader is None:
                    self._readers[entry.fingerprint] = (entry.name, entry.parsed, None)
                else:
                    self._readers[entry.fingerprint] = (reader.name, entry.parsed, reader.parsed)

    @classmethod
    def from_directory(cls, directory: Traversable | PathLike[str] | str) -> SchemaSet:
        """Current ``*.avsc`` files of ``directory`` plus every ``released/<version>/``."""
        return cls(
            read_schema_dir(directory).values(),
            {v: files.values() for v, files in released_versions(directory).items()},
        )

    @property
    def names(self) -> tuple[str, ...]:
        """Full names of the current schemas."""
        return tuple(self.current)

    def schema(self, name: str) -> dict:
        """The parsed current schema ``name`` (e.g. ``"hub.ChangeEvent"``)."""
        return self._entry(name).parsed

    def fingerprint(self, name: str) -> bytes:
        """The 8-byte fingerprint the current schema ``name`` writes in message headers."""
        return self._entry(name).fingerprint

    def encoder(self, name: str) -> Encoder:
        """A new :class:`Encoder` for the current schema ``name``."""
        return Encoder(name, self)

    def decoder(self) -> Decoder:
        """A new :class:`Decoder` that accepts current and released writer schemas."""
        return Decoder(self)

    def _entry(self, name: str) -> SchemaVersion:
        try:
            return self.current[name]
        except KeyError:
            raise KeyError(
                f"unknown Avro schema {name!r}; known: {', '.join(self.current)}"
            ) from None


ENCODE_ERRORS = (ValueError, TypeError, KeyError, AttributeError, OverflowError)
"""What writing a record that does not fit its schema raises (fastavro or the compiled
writer of :mod:`hub.avro.writer`)."""


def encode_error(schema: str, record: Any, exc: Exception) -> AvroEncodeError:
    """The :class:`AvroEncodeError` for ``record`` not fitting ``schema``; it names the
    record key when the record has one."""
    key = record.get("record_key") if isinstance(record, Mapping) else None
    return AvroEncodeError(
        f"record does not fit Avro schema {schema}: {exc}",
        record_key=key if isinstance(key, str) else None,
    )


class Encoder:
    """Encodes records of one schema as single-object messages.

    ``encode(record)`` takes a dict whose fields follow the schema (dates as
    ``datetime.date``, optional fields may be left out) and returns header + body. It raises
    :class:`AvroEncodeError` when the record does not fit. Thread-safe.
    """

    __slots__ = ("name", "fingerprint", "_header", "_schema", "_branch_fields")

    def __init__(self, name: str, schemas: SchemaSet | None = None):
        schemas = schemas or shipped()
        entry = schemas._entry(name)
        self.name = name
        self.fingerprint = entry.fingerprint
        self._header = MAGIC + entry.fingerprint
        self._schema = entry.parsed
        # Top-level ["null", Record] fields: naming the branch (fastavro's tuple notation)
        # spares fastavro from validating the whole nested record to pick the branch, which
        # halves the cost of a ChangeEvent.
        self._branch_fields = tuple(_record_branch_fields(entry.parsed))

    def encode(self, record: Mapping[str, Any]) -> bytes:
        """The single-object encoding of ``record``."""
        if self._branch_fields:
            record = dict(record)
            for field, branch in self._branch_fields:
                value = record.get(field)
                if type(value) is dict:
                    record[field] = (branch, value)
        # A fresh buffer per call measured as fast as reusing one, and keeps this thread-safe.
        buffer = BytesIO()
        buffer.write(self._header)
        try:
            schemaless_writer(buffer, self._schema, record)
        except ENCODE_ERRORS as exc:
            raise encode_error(self.name, record, exc) from exc
        return buffer.getvalue()


def _record_branch_fields(parsed: Mapping[str, Any]) -> Iterable[tuple[str, str]]:
    if parsed.get("type") != "record":
        return
    for field in parsed["fields"]:
        branches = field["type"]
        if not isinstance(branches, list):
            continue
        records = [b for b in branches if isinstance(b, dict) and b.get("type") == "record"]
        if len(records) == 1 and len(branches) == 2 and "null" in branches:
            yield field["name"], records[0]["name"]
        elif len(records) == 0 and len(branches) == 2 and "null" in branches:
            # A reference to a record defined earlier in the schema ("hub.CitizenRecord").
            other = branches[1] if branches[0] == "null" else branches[0]
            if isinstance(other, str) and "." in other:
                yield field["name"], other


class Decoder:
    """Decodes single-object messages written with any current or released hub schema.

    ``decode(data)`` returns ``(full schema name, record)``; a message written with an
    earlier released schema comes back in the current schema's shape (new fields carry
    their defaults). Raises :class:`AvroDecodeError` for a bad marker, an unknown
    fingerprint, a truncated or corrupt body, or trailing bytes. Thread-safe.
    """

    __slots__ = ("_readers",)

    def __init__(self, schemas: SchemaSet | None = None):
        self._readers = (schemas or shipped())._readers

    def decode(self, data: bytes) -> tuple[str, dict]:
        """``(schema full name, record)`` of one message."""
        if type(data) is not bytes:
            data = bytes(data)
        if data[:2] != MAGIC:
            raise AvroDecodeError(
                f"not an Avro single-object message: starts with {data[:2].hex() or 'nothing'}, "
                f"expected c301"
            )
        found = self._readers.get(data[2:HEADER_SIZE])
        if found is None:
            if len(data) < HEADER_SIZE:
                raise AvroDecodeError(f"truncated Avro header: {len(data)} of {HEADER_SIZE} bytes")
            raise AvroDecodeError(
                f"unknown Avro schema fingerprint {data[2:HEADER_SIZE].hex()}: "
                f"written with a schema this hub neither ships nor released"
            )
        name, writer, reader = found
        buffer = BytesIO(data)
        buffer.seek(HEADER_SIZE)
        try:
            record = schemaless_reader(buffer, writer, reader)
        except Exception as exc:  # any failure here means the body is not what the header says
            raise AvroDecodeError(
                f"truncated or corrupt Avro body for {name}: {type(exc).__name__}: {exc}"
            ) from exc
        if buffer.tell() != len(data):
            raise AvroDecodeError(
                f"corrupt Avro message for {name}: {len(data) - buffer.tell()} trailing bytes"
            )
        return name, record


@functools.cache
def shipped() -> SchemaSet:
    """The schemas shipped in the ``schemas.avro`` package, with its released versions."""
    return SchemaSet.from_directory(resources.files(SCHEMA_PACKAGE))


def load_schemas() -> Mapping[str, dict]:
    """The shipped current schemas, parsed once, by full name (``"hub.ChangeEvent"`` ...)."""
    return MappingProxyType({name: e.parsed for name, e in shipped().current.items()})


def encode(name: str, record: Mapping[str, Any]) -> bytes:
    """Encode ``record`` with the shipped schema ``name``; see :class:`Encoder`.

    Hot paths should hold an :class:`Encoder` instead of naming the schema per call.
    """
    return _shipped_encoder(name).encode(record)


@functools.cache
def _shipped_encoder(name: str) -> Encoder:
    return Encoder(name, shipped())


def decode(data: bytes) -> tuple[str, dict]:
    """Decode one message with the shipped schemas; see :class:`Decoder`."""
    return _shipped_decoder().decode(data)


@functools.cache
def _shipped_decoder() -> Decoder:
    return Decoder(shipped())

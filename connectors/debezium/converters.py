"""Kafka Connect value converters Debezium writes with, read back: JSON (with or without
``schemas.enable``, told apart per message) and Avro in the Confluent wire format, its
schemas fetched from a schema registry (``GET /schemas/ids/{id}``, cached)."""

from __future__ import annotations

import base64
import io
import json
import struct
import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

import fastavro

from connectors.debezium.envelope import EnvelopeError
from connectors.debezium.logical import ColumnTypes, avro_types, connect_types
from hub.config import DebeziumConfig
from hub.errors import FatalError, RetriableError

MAGIC = 0
REGISTRY_TIMEOUT_S = 10.0


@dataclass(slots=True)
class Decoded:
    """A message value as data, with its columns' logical types (empty when schemaless)."""

    value: Any
    types: ColumnTypes


_NO_TYPES: ColumnTypes = {}


class JsonConverter:
    """``org.apache.kafka.connect.json.JsonConverter``: ``{"schema", "payload"}`` when
    ``schemas.enable`` is on (the schema gives the logical types), the bare value otherwise."""

    def decode(self, data: bytes) -> Decoded:
        try:
            value = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise EnvelopeError(f"not JSON: {type(exc).__name__} at byte "
                                f"{getattr(exc, 'pos', '?')}") from None  # fmt: skip
        if isinstance(value, dict) and value.keys() == {"schema", "payload"}:
            return Decoded(value["payload"], connect_types(value["schema"]))
        return Decoded(value, _NO_TYPES)


class SchemaRegistry:
    """A Confluent-compatible schema registry, read-only: schemas by id, cached for good
    (an id names one schema forever). Thread-safe."""

    def __init__(self, url: str, timeout_s: float = REGISTRY_TIMEOUT_S):
        parts = urllib.parse.urlsplit(url.rstrip("/"))
        self._headers = {"Accept": "application/vnd.schemaregistry.v1+json"}
        if parts.username is not None:  # http://user:password@host: basic authentication
            token = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
            self._headers["Authorization"] = "Basic " + base64.b64encode(token.encode()).decode()
        host = parts.hostname or ""
        netloc = f"[{host}]" if ":" in host else host
        if parts.port is not None:
            netloc += f":{parts.port}"
        self.url = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))
        """The registry's address without credentials: safe to print."""
        self.timeout_s = timeout_s
        self._schemas: dict[int, tuple[Any, ColumnTypes]] = {}
        self._lock = threading.Lock()

    def get(self, path: str) -> Any:
        """The JSON answer of ``GET <url><path>``: RetriableError when the registry is
        unreachable or fails (5xx), EnvelopeError for a 404."""
        request = urllib.request.Request(self.url + path, headers=self._headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                raise EnvelopeError(f"schema registry: {path} not found") from None  # fmt: skip
            if exc.code in (401, 403):
                raise FatalError(
                    f"schema registry {self.url}: HTTP {exc.code} {exc.reason}"
                ) from None
            raise RetriableError(f"schema registry {self.url}: HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise RetriableError(f"schema registry {self.url}: {exc}") from None

    def schema(self, schema_id: int) -> tuple[Any, ColumnTypes]:
        """The parsed Avro schema with id ``schema_id`` and its columns' logical types."""
        hit = self._schemas.get(schema_id)
        if hit is not None:
            return hit
        answer = self.get(f"/schemas/ids/{schema_id}")
        try:
            raw = json.loads(answer["schema"])
            parsed = fastavro.parse_schema(raw)
        except (KeyError, TypeError, ValueError, fastavro.schema.SchemaParseException) as exc:
            raise EnvelopeError(f"schema id {schema_id} is not an Avro schema: {exc}") from None  # fmt: skip
        with self._lock:
            self._schemas[schema_id] = (parsed, avro_types(raw))
        return self._schemas[schema_id]


class AvroConverter:
    """``io.confluent.connect.avro.AvroConverter``: magic byte 0, a 4-byte schema id, the
    Avro body. fastavro decodes Avro's own logical types (decimal, date, timestamp-*)."""

    def __init__(self, registry: SchemaRegistry):
        self.registry = registry

    def decode(self, data: bytes) -> Decoded:
        if len(data) < 5 or data[0] != MAGIC:
            raise EnvelopeError("not in the Confluent Avro wire format (magic byte 0, "
                                "schema id)")  # fmt: skip
        (schema_id,) = struct.unpack(">I", data[1:5])
        schema, types = self.registry.schema(schema_id)
        try:
            value = fastavro.schemaless_reader(io.BytesIO(data[5:]), schema)
        except Exception as exc:  # noqa: BLE001 - fastavro raises anything on a bad body
            raise EnvelopeError(f"Avro body does not match schema id {schema_id}: "
                                f"{type(exc).__name__}") from None  # fmt: skip
        return Decoded(value, types)


def converter_for(cfg: DebeziumConfig) -> JsonConverter | AvroConverter:
    """The converter the source's ``debezium.converter`` names."""
    if cfg.converter == "avro":
        assert cfg.schema_registry_url is not None  # the config requires it
        return AvroConverter(SchemaRegistry(cfg.schema_registry_url))
    return JsonConverter()

"""Source row → canonical citizen record (SPEC §3, §4), per a source's column and value mapping.

A value that cannot be mapped raises :class:`~hub.errors.SkippableError` naming the column.
"""

from __future__ import annotations

import base64
import json
import re
import unicodedata
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from connectors.logical.pgoutput.messages import UNCHANGED
from hub.config import ColumnMapping, SourceConfig
from hub.errors import ConfigError, SkippableError
from hub.idschemes import IdScheme
from hub.vocabulary import CANONICAL_FIELDS, DATE_FIELDS

UNCHANGED_ATTRIBUTE = "hub.unchanged"
"""``attributes`` key listing (comma-separated) the canonical fields whose source value did
not change and is not carried by the event (PostgreSQL unchanged TOAST): a consumer keeps
the value it holds for them; the field itself is null in the event."""

KEY_SEPARATOR = "|"


class NotInValueMap(ValueError):
    """A source value that a field's value map does not cover."""


class UnmappedValueError(SkippableError):
    """A row's value is not in its field's value map (a :class:`SkippableError` like any
    other; ``field`` names the canonical field, so a check can list the map's gaps)."""

    def __init__(self, reason: str, *, column: str, field: str):
        super().__init__(reason, column=column)
        self.field = field


def join_key(values: Sequence[Any]) -> str:
    """The text form of a (possibly composite) primary key: parts joined by ``|``.

    ``\\`` and ``|`` inside a part are escaped with ``\\``, so distinct keys never collide.
    """
    if len(values) == 1:
        return _key_part(values[0])
    return KEY_SEPARATOR.join(_key_part(v) for v in values)


def _key_part(value: Any) -> str:
    text = "" if value is None else value_text(value)
    if "\\" in text or KEY_SEPARATOR in text:
        text = text.replace("\\", "\\\\").replace(KEY_SEPARATOR, "\\" + KEY_SEPARATOR)
    return text


def value_text(value: Any) -> str:
    """Text of a source value as it goes into a string field or ``attributes``."""
    kind = type(value)
    if kind is str:
        return value
    if kind is bool:
        return "true" if value else "false"
    if kind is int or kind is uuid.UUID:
        return str(value)
    if kind is Decimal:
        return format(value, "f") if value.is_finite() else str(value)
    if kind is date or kind is datetime:
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        raise ValueError("a binary value cannot be mapped onto text")
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _fold(text: str) -> str:
    return unicodedata.normalize("NFC", text).strip().casefold()


class _Field:
    """One canonical field: where its value comes from and how it is converted."""

    __slots__ = ("name", "column", "attribute", "convert", "default")

    def __init__(self, name: str, mapping: ColumnMapping):
        self.name = name
        self.column = mapping.column
        self.attribute = (
            name.removeprefix("attributes.") if name.startswith("attributes.") else None
        )
        self.convert = _converter(name, mapping)
        self.default = None
        if mapping.default is not None:
            try:
                self.default = self.convert(mapping.default)
            except ValueError as exc:
                # A default that cannot be converted is a config problem, not a row problem.
                raise ConfigError([f"columns.{name}.default: {exc}"]) from None


def _converter(field: str, mapping: ColumnMapping) -> Callable[[Any], Any]:
    """A function source value → canonical value; raises ValueError with the reason."""
    value_map = mapping.map
    if value_map is not None:
        exact = dict(value_map)
        folded = {_fold(k): v for k, v in value_map.items()}
        known = ", ".join(sorted(value_map)) or "none"
        then = _plain_converter(field, None)

        def mapped(value: Any) -> Any:
            text = value_text(value)
            if text in exact:
                out = exact[text]
            else:
                key = _fold(text)
                if key not in folded:
                    raise NotInValueMap(f"value not in the value map of {field} (known: {known})")
                out = folded[key]
            return None if out is None else then(out)

        return mapped
    return _plain_converter(field, mapping.format)


def _plain_converter(field: str, fmt: str | None) -> Callable[[Any], Any]:
    if field in DATE_FIELDS:
        return _date_converter(fmt)
    if field == "sex":
        return _sex
    return value_text


def _sex(value: Any) -> str:
    text = value_text(value).strip().upper()
    if text in ("M", "F"):
        return text
    raise ValueError('sex must be "M" or "F" (configure a value map, e.g. {Nam: M, Nữ: F})')


_DATE_CACHE_SIZE = 65_536


def _date_converter(fmt: str | None) -> Callable[[Any], date | None]:
    parse_text = _compile_date_format(fmt) if fmt else _parse_iso_date
    # Dates repeat (birth dates, filing days): a bounded cache spares most parsing.
    cache: dict[str, date] = {}

    def convert(value: Any) -> date | None:
        kind = type(value)
        if kind is date:
            return value
        if kind is datetime:
            return value.date()
        if kind is int and fmt:
            value = str(value)
        elif kind is not str:
            raise ValueError(f"a {kind.__name__} value is not a date")
        hit = cache.get(value)
        if hit is not None:
            return hit
        text = value.strip()
        if not text:
            return None
        result = parse_text(text)
        if len(cache) < _DATE_CACHE_SIZE:
            cache[value] = result
        return result

    return convert


def _parse_iso_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text).date()
    except ValueError:
        raise ValueError(
            "text is not an ISO date (YYYY-MM-DD); configure a format, e.g. %d/%m/%Y"
        ) from None


_DATE_PARTS = {"%d": r"(?P<d>\d{1,2})", "%m": r"(?P<m>\d{1,2})", "%Y": r"(?P<Y>\d{4})"}


def _compile_date_format(fmt: str) -> Callable[[str], date]:
    """A parser for ``fmt``: a regular expression for the common day/month/year formats
    (strptime costs ~30 µs a call), ``datetime.strptime`` for anything else."""

    def strptime(text: str) -> date:
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            raise ValueError(f"text is not a date in format {fmt}") from None

    pattern, i = "", 0
    while i < len(fmt):
        part = fmt[i : i + 2]
        if part in _DATE_PARTS:
            pattern += _DATE_PARTS[part]
            i += 2
        elif fmt[i] == "%":
            return strptime
        else:
            pattern += re.escape(fmt[i])
            i += 1
    if not all(p in fmt for p in _DATE_PARTS):
        return strptime
    match = re.compile(pattern).fullmatch

    def fast(text: str) -> date:
        m = match(text)
        if m is None:
            raise ValueError(f"text is not a date in format {fmt}")
        try:
            return date(int(m["Y"]), int(m["m"]), int(m["d"]))
        except ValueError:
            raise ValueError(f"text is not a date in format {fmt}") from None

    return fast


class RecordMapper:
    """Maps one source's rows (``{column: value}``) onto canonical records.

    Built once per connector from its :class:`~hub.config.SourceConfig`; stateless and
    thread-safe. Python values as psycopg or the pgoutput decoder return them are accepted
    (str, int, Decimal, bool, date, datetime, UUID); text dates follow the configured
    ``format`` (ISO without one); value maps match exactly, then ignoring case, surrounding
    blanks and Unicode normalization form.
    """

    def __init__(self, connector: str, source: SourceConfig, id_scheme: IdScheme):
        self.connector = connector
        self.source = source
        self.id_scheme = id_scheme
        self.key_columns = source.key_columns
        self.fields: tuple[_Field, ...] = tuple(
            _Field(name, mapping)
            for name in (*CANONICAL_FIELDS, *sorted(k for k in source.columns if "." in k))
            if (mapping := source.mapping(name)) is not None
        )
        self.citizen_id_column = source.mapping("citizen_id").column  # required by config
        seen: dict[str, None] = dict.fromkeys(self.key_columns)
        for f in self.fields:
            seen.setdefault(f.column)
        self.columns: tuple[str, ...] = tuple(seen)
        """Every source column the mapping reads: key columns first, then mapped ones."""

    def record_key(self, row: Mapping[str, Any]) -> str:
        """The row's primary key as text (see :func:`join_key`)."""
        try:
            return join_key([row[c] for c in self.key_columns])
        except KeyError as exc:
            raise SkippableError(
                f"key column {exc.args[0]} is missing", column=exc.args[0]
            ) from None

    def map(self, row: Mapping[str, Any], *, partial: bool = False) -> dict[str, Any]:
        """The canonical record (``hub.CitizenRecord`` fields) of ``row``.

        With ``partial`` a column missing from ``row`` leaves its field null (a before-image
        that carries only the key); otherwise a missing column is an error. A value equal to
        ``unchanged`` (the pgoutput marker) leaves the field null and lists it under
        ``attributes["hub.unchanged"]``. Raises :class:`SkippableError` with the column
        and the reason (never the value) when a value cannot be mapped.
        """
        record: dict[str, Any] = {}
        attributes: dict[str, str] = {}
        unchanged: list[str] = []
        for f in self.fields:
            try:
                value = row[f.column]
            except KeyError:
                if partial:
                    continue
                raise SkippableError(f"column {f.column} is missing", column=f.column) from None
            if value is UNCHANGED:
                unchanged.append(f.name)
                if f.attribute is None:
                    record[f.name] = None
                continue
            if value is None:
                out = f.default
            else:
                try:
                    out = f.convert(value)
                except NotInValueMap as exc:
                    raise UnmappedValueError(
                        f"column {f.column} ({f.name}): {exc}", column=f.column, field=f.name
                    ) from None
                except ValueError as exc:
                    raise SkippableError(
                        f"column {f.column} ({f.name}): {exc}", column=f.column
                    ) from None
                if out is None:
                    out = f.default
            if f.attribute is not None:
                if out is not None:
                    attributes[f.attribute] = out if type(out) is str else value_text(out)
            else:
                record[f.name] = out
        if unchanged:
            attributes[UNCHANGED_ATTRIBUTE] = ",".join(unchanged)
        record["attributes"] = attributes
        return record

    def kafka_key(self, record: Mapping[str, Any] | None, record_key: str) -> bytes:
        """The normalized citizen ID, or ``<connector>:<record_key>`` when there is none."""
        citizen = None if record is None else record.get("citizen_id")
        normalized = self.id_scheme.normalize(citizen) if citizen is not None else None
        if normalized:
            return normalized.encode()
        return f"{self.connector}:{record_key}".encode()


# ------------------------------------------------------------------ raw rows for dead letters


def encode_row(row: Mapping[str, Any] | None) -> Any:
    """A raw row as JSON data that :func:`decode_row` turns back into the same Python values."""
    if row is None:
        return None
    return {k: tag_value(v) for k, v in row.items()}


def tag_value(value: Any) -> Any:
    """A Python value as JSON data, tagged so :func:`untag_value` restores its exact type."""
    if value is None or type(value) in (str, int, bool):
        return value
    if value is UNCHANGED:
        return {"$unchanged": True}
    if type(value) is Decimal:
        return {"$decimal": str(value)}
    if type(value) is date:
        return {"$date": value.isoformat()}
    if type(value) is datetime:
        return {"$datetime": value.isoformat()}
    if type(value) is uuid.UUID:
        return {"$uuid": str(value)}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$bytes": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, float):
        return value
    return str(value)


def decode_row(data: Any) -> dict[str, Any] | None:
    """Inverse of :func:`encode_row`."""
    if data is None:
        return None
    return {k: untag_value(v) for k, v in data.items()}


def untag_value(value: Any) -> Any:
    """Inverse of :func:`tag_value`."""
    if not isinstance(value, dict):
        return value
    (tag, text), *_ = value.items()
    if tag == "$unchanged":
        return UNCHANGED
    if tag == "$decimal":
        return Decimal(text)
    if tag == "$date":
        return date.fromisoformat(text)
    if tag == "$datetime":
        return datetime.fromisoformat(text)
    if tag == "$uuid":
        return uuid.UUID(text)
    if tag == "$bytes":
        return base64.b64decode(text)
    return value


def dump_payload(payload: Mapping[str, Any]) -> bytes:
    """JSON bytes of a dead-letter payload (raw rows encoded with :func:`encode_row`)."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()

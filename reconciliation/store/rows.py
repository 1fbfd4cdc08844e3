"""The rows the reconciler keeps: a citizen of the registry replica and the last known
state of a sector record, as read from and written to their tables."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from datetime import date, datetime
from operator import attrgetter

SectorKey = tuple[str, str]
"""(sector, record_key)."""

Attributes = dict[str, str] | str
"""Extra source columns: a dict from a change event, or the stored JSON text as read back
(not parsed: rules never read it, and parsing it cost more than the rest of a read)."""


def attributes_json(value: Attributes) -> str:
    """The JSON text of ``attributes`` for a jsonb column."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True) if value else "{}"


def same_state(a: RegistryRow | SectorRow | None, b: RegistryRow | SectorRow | None) -> bool:
    """Whether two rows hold the same values (attributes compared as data)."""
    if a is None or b is None:
        return a is b
    if type(a) is not type(b) or _values(a) != _values(b):
        return False
    return _attributes(a.attributes) == _attributes(b.attributes)


def _values(row: RegistryRow | SectorRow) -> tuple:
    getter = _REGISTRY_VALUES if type(row) is RegistryRow else _SECTOR_VALUES
    return getter(row)


def _attributes(value: Attributes) -> dict:
    if not isinstance(value, str):
        return value
    return {} if value == "{}" else json.loads(value)


@dataclass(slots=True)
class RegistryRow:
    """One citizen in the registry replica (citizen IDs normalized, name folded)."""

    citizen_id: str
    record_key: str | None = None
    legacy_id: str | None = None
    full_name: str | None = None
    name_folded: str | None = None
    date_of_birth: date | None = None
    sex: str | None = None
    province_code: str | None = None
    address: str | None = None
    date_of_death: date | None = None
    attributes: Attributes = field(default_factory=dict)
    source_position: str | None = None
    source_lsn: int | None = None
    source_ts: datetime | None = None

    def same_facts(self, other: RegistryRow | None) -> bool:
        """True when ``other`` holds the same values rules read (a re-delivery, say)."""
        return other is not None and (
            self.citizen_id,
            self.legacy_id,
            self.full_name,
            self.date_of_birth,
            self.sex,
            self.province_code,
            self.date_of_death,
        ) == (
            other.citizen_id,
            other.legacy_id,
            other.full_name,
            other.date_of_birth,
            other.sex,
            other.province_code,
            other.date_of_death,
        )


@dataclass(slots=True)
class SectorRow:
    """The last known state of one sector record; ``citizen_id`` is the normalized ID when it
    is usable (current or legacy form), else ``None``."""

    sector: str
    record_key: str
    citizen_id_raw: str | None = None
    citizen_id: str | None = None
    legacy_id: str | None = None
    full_name: str | None = None
    name_folded: str | None = None
    date_of_birth: date | None = None
    sex: str | None = None
    province_code: str | None = None
    address: str | None = None
    status: str | None = None
    last_activity_date: date | None = None
    attributes: Attributes = field(default_factory=dict)
    verified: bool = False
    source_ts: datetime | None = None
    source_lsn: int | None = None

    @property
    def key(self) -> SectorKey:
        return (self.sector, self.record_key)


REGISTRY_COLUMNS = tuple(f.name for f in fields(RegistryRow))
"""The ``registry_citizens`` columns a :class:`RegistryRow` holds, in its field order (the
order rows are read, staged and written in)."""
SECTOR_COLUMNS = tuple(f.name for f in fields(SectorRow))
"""The ``sector_records`` columns a :class:`SectorRow` holds, in its field order."""

_REGISTRY_VALUES = attrgetter(*(c for c in REGISTRY_COLUMNS if c != "attributes"))
_SECTOR_VALUES = attrgetter(*(c for c in SECTOR_COLUMNS if c != "attributes"))


_REGISTRY_ALL = attrgetter(*REGISTRY_COLUMNS)
_SECTOR_ALL = attrgetter(*SECTOR_COLUMNS)
_REGISTRY_ATTRIBUTES = REGISTRY_COLUMNS.index("attributes")
_SECTOR_ATTRIBUTES = SECTOR_COLUMNS.index("attributes")


def as_tuple(row: RegistryRow | SectorRow) -> tuple:
    """The row's values in column order, ``attributes`` as JSON text (for staging)."""
    if type(row) is RegistryRow:
        values, i = _REGISTRY_ALL(row), _REGISTRY_ATTRIBUTES
    else:
        values, i = _SECTOR_ALL(row), _SECTOR_ATTRIBUTES
    return (*values[:i], attributes_json(row.attributes), *values[i + 1 :])

"""The ID-scheme contract: :class:`IdScheme` (normalize a raw ID, then parse it) and the
:class:`IdInfo` it returns."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from datetime import date
from typing import ClassVar, Literal

IdKind = Literal["current", "legacy", "invalid"]
Sex = Literal["M", "F"]
SEX_WORDS: dict[str, str] = {"M": "male", "F": "female"}

# Separators people type inside IDs, and the non-ASCII digits they type them with.
_NORMALIZE_TABLE: dict[int, int | None] = {
    **{ord(c): None for c in " \t\r\n\u00a0\u2009\u202f-\u2010\u2011\u2012\u2013\u2014\u2212."},
    **{0x0660 + i: ord("0") + i for i in range(10)},  # Arabic-Indic ٠..٩
    **{0x06F0 + i: ord("0") + i for i in range(10)},  # Eastern Arabic-Indic ۰..۹
    **{0xFF10 + i: ord("0") + i for i in range(10)},  # fullwidth ０..９
}


@dataclass(frozen=True, slots=True)
class IdInfo:
    """What an ID's structure says: its kind, why it is not current, and the encoded attributes.

    ``reason`` is set exactly when ``kind`` is not ``"current"``. The attributes are
    ``None`` when the scheme does not encode them (or the ID is invalid/legacy).
    """

    kind: IdKind
    reason: str | None = None
    birth_year: int | None = None
    birth_date: date | None = None
    sex: Sex | None = None
    region_code: str | None = None

    @classmethod
    def invalid(cls, reason: str) -> IdInfo:
        """An ID that fails the scheme's structure check, with the reason shown to stewards."""
        return cls(kind="invalid", reason=reason)


@dataclass(frozen=True, slots=True)
class IdPart:
    """One part of an ID in a steward's words: ``digits 1–3: province 001 → Hà Nội``.

    ``positions`` names the digits (1-based), ``label`` what they hold, ``digits`` the digits
    themselves, ``meaning`` what they say. ``field`` is the canonical record field the part
    speaks about (``date_of_birth``, ``sex``, ``province_code``) or ``None``, and ``value``
    what it says about that field in the record's own form (``"F"``, ``"1985"``,
    ``"1985-02-03"``, ``"001"``), so a page can set it beside the record's value.
    """

    positions: str
    label: str
    digits: str
    meaning: str
    field: str | None = None
    value: str | None = None

    def text(self) -> str:
        return f"{self.positions}: {self.label} {self.digits} → {self.meaning}"


def digits_at(first: int, last: int) -> str:
    """``digit 4`` or ``digits 1–3`` (1-based, inclusive)."""
    return f"digit {first}" if first == last else f"digits {first}–{last}"


class IdScheme(abc.ABC):
    """A national ID scheme, chosen by ``name`` in the config (``id_scheme``).

    Contract for implementations:

    - ``normalize`` receives any raw value from a sector or the registry and returns the
      canonical digit string used as the matching key (or ``None`` when there is no ID).
      It never raises; the default strips separators and converts non-ASCII digits.
    - ``parse`` receives a value returned by ``normalize`` and returns an :class:`IdInfo`.
      It never raises on bad input: a malformed ID is data, reported as
      ``kind="invalid"`` with a human-readable ``reason`` (it becomes ``ID_INVALID``).
      Schemes are stateless and thread-safe; one instance serves every record.
    """

    name: ClassVar[str]

    def normalize(self, raw: str | None) -> str | None:
        """Strip spaces, dashes and dots and convert Arabic-Indic digits; blank → ``None``."""
        if raw is None:
            return None
        value = str(raw).translate(_NORMALIZE_TABLE)
        return value or None

    @abc.abstractmethod
    def parse(self, normalized: str) -> IdInfo:
        """Check the structure of a normalized ID and decode what it encodes."""

    def explain(self, normalized: str) -> tuple[IdPart, ...]:
        """What each part of a normalized ID says, in order; ``()`` for an ID the scheme
        cannot read (invalid). Never raises. The default, for a scheme that does not say
        where its attributes sit, lists what :meth:`parse` decodes without positions; a
        scheme with a fixed layout overrides it. The parts agree with :meth:`parse`."""
        info = self.parse(normalized)
        if info.kind == "invalid":
            return ()
        if info.kind == "legacy":
            return (IdPart("all digits", "legacy number", normalized, info.reason or "legacy"),)
        parts = []
        if info.region_code is not None:
            code = info.region_code
            parts.append(IdPart("encoded", "region", code, code, "province_code", code))
        if info.birth_date is not None:
            born = info.birth_date.isoformat()
            parts.append(IdPart("encoded", "birth date", born, born, "date_of_birth", born))
        elif info.birth_year is not None:
            year = str(info.birth_year)
            parts.append(IdPart("encoded", "birth year", year, year, "date_of_birth", year))
        if info.sex is not None:
            parts.append(IdPart("encoded", "sex", info.sex, SEX_WORDS[info.sex], "sex", info.sex))
        return tuple(parts)

    def inspect(self, raw: str | None) -> IdInfo | None:
        """Normalize then parse; ``None`` when there is no ID at all."""
        normalized = self.normalize(raw)
        return None if normalized is None else self.parse(normalized)

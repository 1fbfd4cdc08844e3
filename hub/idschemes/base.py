"""The ID-scheme contract: :class:`IdScheme` (normalize a raw ID, then parse it) and the
:class:`IdInfo` it returns."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from datetime import date
from typing import ClassVar, Literal

IdKind = Literal["current", "legacy", "invalid"]
Sex = Literal["M", "F"]

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

    def inspect(self, raw: str | None) -> IdInfo | None:
        """Normalize then parse; ``None`` when there is no ID at all."""
        normalized = self.normalize(raw)
        return None if normalized is None else self.parse(normalized)

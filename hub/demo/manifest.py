"""What one generation run produces: the rows of every demo table, and the manifest of every
mismatch the reconciler must raise on them (and no other)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True, order=True, slots=True)
class Mismatch:
    """One rule the reconciler must raise on one sector record."""

    sector: str
    record_key: str
    rule: str
    field: str


@dataclass(frozen=True)
class Manifest:
    """What was generated and every mismatch the reconciler must find in it (and no other).

    ``registry_anomalies`` lists the registry citizens whose own ID disagrees with their
    registry birth year or sex (a registry data-entry error); their sector records carry
    ``ID_ATTRIBUTES_INCONSISTENT``.
    """

    seed: int
    citizens: int
    as_of: str
    records: dict[str, int]
    mismatches: list[Mismatch]
    rates: dict[str, float]
    registry_anomalies: list[dict[str, str]] = field(default_factory=list)
    shares: dict[str, Any] = field(default_factory=dict)
    id_scheme: str = "vn"
    noise: dict[str, dict[str, int]] = field(default_factory=dict)
    """Variants injected that are *not* mismatches (SPEC §5): ``names``/``ids`` → kind → count."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "citizens": self.citizens,
            "as_of": self.as_of,
            "records": dict(self.records),
            "mismatches": [
                {"sector": m.sector, "record_key": m.record_key, "rule": m.rule, "field": m.field}
                for m in self.mismatches
            ],
            "rates": dict(self.rates),
            "registry_anomalies": list(self.registry_anomalies),
            "shares": self.shares,
            "id_scheme": self.id_scheme,
            "noise": self.noise,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=1)

    def write(self, path: Path) -> None:
        Path(path).write_text(self.to_json() + "\n", encoding="utf-8")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Manifest:
        return cls(
            seed=data["seed"],
            citizens=data["citizens"],
            as_of=data["as_of"],
            records=dict(data["records"]),
            mismatches=[Mismatch(**m) for m in data["mismatches"]],
            rates=dict(data["rates"]),
            registry_anomalies=list(data.get("registry_anomalies", [])),
            shares=dict(data.get("shares", {})),
            id_scheme=data.get("id_scheme", "vn"),
            noise=dict(data.get("noise", {})),
        )

    @classmethod
    def read(cls, path: Path) -> Manifest:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    def counts(self) -> dict[tuple[str, str], int]:
        """Expected mismatches per (sector, rule)."""
        out: dict[tuple[str, str], int] = {}
        for m in self.mismatches:
            out[(m.sector, m.rule)] = out.get((m.sector, m.rule), 0) + 1
        return out


@dataclass(frozen=True)
class Population:
    """The generated rows of every demo table (in ``SOURCE_TABLES`` column order) and the manifest."""

    rows: dict[str, list[tuple[Any, ...]]]
    manifest: Manifest

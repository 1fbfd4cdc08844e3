"""Generate the demo population and sector records with injected mismatches, and load them.

Everything is drawn from one ``random.Random(seed)``: the same ``(citizens, seed)`` gives
the same rows and the same manifest, byte for byte. The manifest lists, for every
injected anomaly, exactly the rules the reconciler must raise on it (SPEC §5).
"""

from __future__ import annotations

import json
import operator
import random
import unicodedata
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any

import psycopg

from hub.db import psycopg_conninfo
from hub.demo import egypt
from hub.demo.population import SECTORS, SourceTable, source_tables
from hub.errors import FatalError, RetriableError
from hub.idschemes.vn import PROVINCE_CODES, VietnamPersonalId, make_id
from hub.vocabulary import RULE_FIELDS

AS_OF = date(2025, 6, 30)
"""The demo's "today": activity dates never pass it, so the data does not depend on the clock."""

FIRST_BIRTH_YEAR, LAST_BIRTH_YEAR = 1930, 2006

SECTOR_SHARES: dict[str, float] = {"tax": 0.6, "banking": 0.7, "labour": 0.5, "construction": 0.1}
"""Share of citizens holding a record in each sector."""

LEGACY_ID_SHARE = 0.2
"""Share of citizens who also carry a legacy 9-digit CMND number."""

RATES: dict[str, float] = {
    "ID_MISSING": 0.008,
    "ID_INVALID": 0.006,
    "ID_LEGACY": 0.01,
    "ID_NOT_IN_REGISTRY": 0.006,
    "ID_ATTRIBUTES_INCONSISTENT": 0.005,
    "NAME_MISMATCH": 0.02,
    "DOB_MISMATCH": 0.012,
    "SEX_MISMATCH": 0.005,
    "DECEASED_ACTIVE": 0.008,
    "DUPLICATE_ID": 0.005,
    "PROVINCE_MISMATCH": 0.01,
}
"""Share of a sector's records on which each anomaly is injected (at least MIN_PER_RULE).

``ID_ATTRIBUTES_INCONSISTENT`` counts registry citizens given a data-entry error (their
records in every sector then disagree with their ID); ``DUPLICATE_ID`` counts groups.
The manifest can hold more entries than injections: one anomaly may raise two rules,
and a duplicate group lists each of its records.
"""

MIN_PER_RULE = 3
"""Every applicable (sector, rule) gets at least this many injections, so small demos show all."""

BENIGN_RATE = 0.01
"""Share of (non-bank) sector names written in a spelling that folds equal (NFD, old tone
placement, upper case, double spaces), and of IDs typed with separators: not mismatches."""


# Activity windows of living citizens' sector records: last filing, transaction,
# social-insurance payment, permit issue.
_ACTIVITY_FROM: dict[str, date] = {
    "tax": date(2023, 1, 1),
    "banking": date(2024, 1, 1),
    "labour": date(2021, 1, 1),
    "construction": date(2012, 1, 1),
}
_ACTIVE_SHARE: dict[str, float] = {"tax": 0.93, "banking": 0.9, "labour": 0.8}
_PERMIT_VALID_DAYS = 5 * 365
_SCHEME = VietnamPersonalId()

# ---------------------------------------------------------------------------------------
# Names, provinces, addresses

_FAMILY = (
    ("Nguyễn", 38), ("Trần", 11), ("Lê", 9.5), ("Phạm", 7), ("Hoàng", 4), ("Huỳnh", 3.5),
    ("Phan", 4.5), ("Vũ", 2.5), ("Võ", 2.5), ("Đặng", 2.1), ("Bùi", 2), ("Đỗ", 1.4),
    ("Hồ", 1.3), ("Ngô", 1.3), ("Dương", 1), ("Lý", 0.5), ("Trương", 0.8), ("Đinh", 0.7),
    ("Mai", 0.5), ("Lâm", 0.5), ("Cao", 0.4), ("Lương", 0.4), ("Trịnh", 0.5), ("Đoàn", 0.5),
    ("Hà", 0.4), ("Tạ", 0.3), ("Tô", 0.2), ("Châu", 0.2), ("Lưu", 0.3), ("Kiều", 0.1),
)  # fmt: skip
_MIDDLE = {
    "M": (
        ("Văn", 30), ("Hữu", 6), ("Đức", 8), ("Minh", 8), ("Quốc", 6), ("Thanh", 6),
        ("Công", 5), ("Quang", 6), ("Hoàng", 4), ("Ngọc", 3), ("Xuân", 3), ("Anh", 3),
        ("Gia", 3), ("Trọng", 3), ("Đình", 4), ("Tiến", 2), ("Thành", 3), ("Bảo", 2),
    ),
    "F": (
        ("Thị", 40), ("Ngọc", 8), ("Thu", 6), ("Thanh", 6), ("Kim", 5), ("Minh", 4),
        ("Bích", 3), ("Mỹ", 4), ("Phương", 4), ("Hồng", 5), ("Thùy", 4), ("Khánh", 3),
        ("Bảo", 3), ("Quỳnh", 3), ("Hoài", 2), ("Diệu", 2), ("Tuyết", 2), ("Thúy", 2),
    ),
}  # fmt: skip
_GIVEN = {
    "M": (
        "An", "Bảo", "Bình", "Cường", "Chiến", "Dũng", "Duy", "Đạt", "Đông", "Đức", "Giang",
        "Hải", "Hào", "Hiếu", "Hòa", "Hoàng", "Hùng", "Huy", "Khang", "Khánh", "Khoa", "Kiên",
        "Lâm", "Long", "Lộc", "Minh", "Nam", "Nghĩa", "Nhân", "Phát", "Phong", "Phúc", "Quân",
        "Quang", "Sơn", "Tài", "Tâm", "Thắng", "Thành", "Thịnh", "Toàn", "Trí", "Trung",
        "Tuấn", "Tùng", "Việt", "Vinh", "Vũ", "Thủy", "Khải",
    ),
    "F": (
        "Anh", "Châu", "Chi", "Diệp", "Dung", "Duyên", "Giang", "Hà", "Hạnh", "Hằng", "Hiền",
        "Hoa", "Hòa", "Hồng", "Hương", "Huyền", "Lan", "Liên", "Linh", "Loan", "Mai", "My",
        "Nga", "Ngân", "Ngọc", "Nhung", "Oanh", "Phương", "Quyên", "Quỳnh", "Tâm", "Thảo",
        "Thủy", "Thúy", "Trang", "Trâm", "Trinh", "Tuyết", "Uyên", "Vân", "Vy", "Xuân", "Yến",
    ),
}  # fmt: skip
# Spellings from before the 1980s tone-placement reform: same name, folds equal.
_OLD_TONE = {"Hòa": "Hoà", "Thủy": "Thuỷ", "Thúy": "Thuý", "Thùy": "Thuỳ", "Khỏe": "Khoẻ"}
_STREETS = (
    "Lê Lợi", "Trần Hưng Đạo", "Nguyễn Trãi", "Hai Bà Trưng", "Lý Thường Kiệt", "Quang Trung",
    "Hùng Vương", "Điện Biên Phủ", "Phan Đình Phùng", "Nguyễn Huệ", "Lê Duẩn", "Võ Văn Tần",
    "Cách Mạng Tháng Tám", "Nguyễn Văn Cừ", "Bạch Đằng", "Trường Chinh", "Lạc Long Quân",
    "Pasteur", "Hoàng Diệu", "Tôn Đức Thắng", "Phạm Văn Đồng", "Nguyễn Thị Minh Khai",
)  # fmt: skip
# Population weights of the largest provinces (others weigh 1).
_PROVINCE_WEIGHTS = {
    "079": 9.0, "001": 8.5, "038": 3.7, "040": 3.4, "075": 3.2, "074": 2.6, "031": 2.1,
    "030": 1.9, "036": 1.8, "089": 1.9, "091": 1.7, "034": 1.9, "024": 1.8, "066": 1.9,
}  # fmt: skip
_PROVINCES = tuple(sorted(PROVINCE_CODES))
_UNKNOWN_PROVINCES = tuple(f"{i:03d}" for i in range(100) if f"{i:03d}" not in PROVINCE_CODES)


def _fold_table() -> dict[int, str | None]:
    table: dict[int, str | None] = {ord("đ"): "d", ord("Đ"): "D"}
    for cp in range(0x00C0, 0x1F00):
        ch = chr(cp)
        if unicodedata.combining(ch):
            table[cp] = None
            continue
        base = "".join(c for c in unicodedata.normalize("NFD", ch) if not unicodedata.combining(c))
        if base != ch and base.isascii():
            table[cp] = base
    return table


_FOLD = _fold_table()


def fold_name(name: str) -> str:
    """Upper-case ASCII, single-spaced (``Đặng  Thị Hoà`` → ``DANG THI HOA``): how bank files
    store names, and the form in which two names are the same name."""
    return " ".join(name.translate(_FOLD).upper().split())


# ---------------------------------------------------------------------------------------
# Manifest


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


# ---------------------------------------------------------------------------------------
# Generation


class _Citizen:
    __slots__ = (
        "citizen_id", "legacy_id", "full_name", "date_of_birth", "sex", "province_code",
        "address", "date_of_death", "updated_at", "sectors", "reserved",
    )  # fmt: skip

    def __init__(self) -> None:
        self.legacy_id: str | None = None
        self.date_of_death: date | None = None
        self.sectors: list[str] = []
        # "date_of_birth" or "sex" when the registry itself disagrees with the citizen's ID;
        # such a citizen's sector records are left clean copies of the registry.
        self.reserved: str | None = None


class _Record:
    """A sector record in canonical terms; ``full_name`` is already in the sector's spelling."""

    __slots__ = (
        "key", "citizen", "citizen_id", "full_name", "date_of_birth", "sex", "province_code",
        "last_activity_date", "status", "updated_at", "extra", "injected",
    )  # fmt: skip

    def __init__(self, key: str, citizen: _Citizen) -> None:
        self.key = key
        self.citizen = citizen
        self.citizen_id: str | None = citizen.citizen_id
        self.full_name = citizen.full_name
        self.date_of_birth = citizen.date_of_birth
        self.sex = citizen.sex
        self.province_code = citizen.province_code
        self.extra: dict[str, Any] = {}
        self.injected = False


def build(
    citizens: int,
    seed: int = 6,
    *,
    sectors: Sequence[str] = SECTORS,
    shares: Mapping[str, float] | None = None,
    part: tuple[int, int] = (0, 1),
    scheme: str = "vn",
) -> Population:
    """Generate the registry, the sectors and the manifest; pure and deterministic.

    ``scheme`` picks the population: ``vn`` (Vietnamese names, 12-digit CCCD, legacy CMND)
    or ``eg`` (Egyptian Arabic names, 14-digit national numbers, no legacy IDs, so no
    ``ID_LEGACY``) with the tables of :func:`~hub.demo.population.source_tables`.

    ``sectors`` limits the sectors generated (in ``SECTORS`` order), ``shares`` overrides
    their ``SECTOR_SHARES``. ``part=(i, parts)`` builds the i-th of ``parts`` independent
    parts of a population of ``citizens`` (see :func:`part_sizes`): its own seed and
    disjoint citizen-ID serials, legacy numbers and record keys, so the parts of a large
    population can be built and loaded one after another (or side by side) in bounded
    memory. ``part=(0, 1)`` is the whole population, as it always was.
    """
    if citizens < 0:
        raise ValueError("citizens must be >= 0")
    index, parts = part
    if parts < 1 or not 0 <= index < parts:
        raise ValueError(f"part {index} of {parts} does not exist")
    unknown = [s for s in sectors if s not in SECTORS]
    if unknown:
        raise ValueError(f"unknown sector {unknown[0]!r}")
    source_tables(scheme)  # ValueError on an unknown scheme
    return _Builder(citizens, seed, sectors=sectors, shares=shares, part=part, scheme=scheme).run()


def _share(lo: int, hi: int, part: tuple[int, int]) -> range:
    """Part ``(i, parts)``'s share of the numbers ``[lo, hi)``: disjoint across parts."""
    index, parts = part
    return range(lo + (hi - lo) * index // parts, lo + (hi - lo) * (index + 1) // parts)


def part_sizes(citizens: int, parts: int) -> list[int]:
    """Citizens in each of ``parts`` parts (the first ones take the remainder)."""
    base, extra = divmod(citizens, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


class _Builder:
    """One generation run. Stages draw from the one rng in a fixed order: registry,
    sector memberships, registry-side errors, clean sector records, injections."""

    def __init__(
        self,
        total: int,
        seed: int,
        *,
        sectors: Sequence[str] = SECTORS,
        shares: Mapping[str, float] | None = None,
        part: tuple[int, int] = (0, 1),
        scheme: str = "vn",
    ) -> None:
        index, parts = part
        self.eg = scheme == "eg"
        self.id_scheme = scheme
        self.tables = source_tables(scheme)
        self.scheme = egypt.SCHEME if self.eg else _SCHEME
        sizes = part_sizes(total, parts)
        self.n = sizes[index]
        self.seed = seed
        self.rng = random.Random(seed if parts == 1 else f"{seed}:{index}/{parts}")
        self.sectors = tuple(s for s in SECTORS if s in sectors)
        self.shares = {**SECTOR_SHARES, **(shares or {})}
        # This part's share of every number space, so parts never collide: ID serials,
        # legacy numbers, random record keys, and sequential keys (a part has < 2n records).
        self.serials = _share(0, 1_000_000, part)
        self.legacy_numbers = _share(10_000_000, 1_000_000_000, part)
        self.tax_codes = (
            _share(100_000_000, 1_000_000_000, part)  # 9-digit registration numbers
            if self.eg
            else _share(8_000_000_000, 9_000_000_000, part)
        )
        self.eg_serials = _share(0, egypt.MAX_SERIAL + 1, part)
        self.insurance_numbers = _share(0, 100_000_000, part)
        self.bank_codes = _share(1_000_000_000, 10_000_000_000, part)
        self.key_base = 2 * sum(sizes[:index])
        self.people: list[_Citizen] = []
        self.used_ids: set[str] = set()
        self.records: dict[str, list[_Record]] = {}
        self.notes: list[tuple[str, _Record, str]] = []  # keys are final only at the end
        self.registry_anomalies: list[dict[str, str]] = []

    def run(self) -> Population:
        self._citizens()
        self._memberships()
        self._registry_anomalies()
        for sector in self.sectors:
            self.records[sector] = self._clean_records(sector)
        for sector in self.sectors:
            self._inject(sector)
        self._permit_numbers()
        if self.eg:  # the permit office types IDs in Arabic-Indic digits
            for r in self.records.get("construction", ()):
                if r.citizen_id:
                    r.citizen_id = egypt.arabic_indic(r.citizen_id)
        order = {s: i for i, s in enumerate(SECTORS)}
        mismatches = sorted(
            (Mismatch(sector, r.key, rule, RULE_FIELDS[rule]) for sector, r, rule in self.notes),
            key=lambda m: (order[m.sector], m.record_key, m.rule),
        )
        rows = {"registry": _render(self.tables["registry"], self.people)}
        for sector in self.sectors:
            rows[sector] = _render(self.tables[sector], self.records[sector])
        dead = sum(1 for c in self.people if c.date_of_death)
        legacy = sum(1 for c in self.people if c.legacy_id)
        manifest = Manifest(
            seed=self.seed,
            citizens=self.n,
            as_of=AS_OF.isoformat(),
            records={s: len(rows[s]) for s in self.sectors},
            mismatches=mismatches,
            rates=dict(RATES),
            registry_anomalies=sorted(self.registry_anomalies, key=lambda a: a["citizen_id"]),
            shares={
                "sectors": {s: self.shares[s] for s in self.sectors},
                "deceased": round(dead / self.n, 4) if self.n else 0.0,
                "legacy_id": round(legacy / self.n, 4) if self.n else 0.0,
                "benign_spelling": BENIGN_RATE,
                "min_per_rule": MIN_PER_RULE,
            },
            id_scheme=self.id_scheme,
            noise=self._noise(),
        )
        return Population(rows=rows, manifest=manifest)

    def _noise(self) -> dict[str, dict[str, int]]:
        """Count the injected variants that are the same name or the same ID (SPEC §5)."""
        names: dict[str, int] = {}
        ids: dict[str, int] = {}
        same = egypt.fold_arabic if self.eg else fold_name
        for sector in self.sectors:
            for r in self.records[sector]:
                official = r.citizen.full_name
                if r.full_name != official and same(r.full_name) == same(official):
                    kinds = egypt.variant_kinds(r.full_name, official) if self.eg else []
                    for kind in kinds or ["spelling"]:
                        names[kind] = names.get(kind, 0) + 1
                cid = r.citizen_id
                if cid and cid != r.citizen.citizen_id:
                    if self.scheme.normalize(cid) == r.citizen.citizen_id:
                        kind = "separators" if cid.isascii() else "arabic_indic_digits"
                        ids[kind] = ids.get(kind, 0) + 1
        return {"names": dict(sorted(names.items())), "ids": dict(sorted(ids.items()))}

    # -- the registry ------------------------------------------------------------------

    def _citizens(self) -> None:
        if self.eg:
            self._citizens_eg()
            return
        # rng.random() arithmetic instead of randrange/randint: 5× faster, equally seeded.
        rng, n = self.rng, self.n
        rnd = rng.random
        years = list(range(FIRST_BIRTH_YEAR, LAST_BIRTH_YEAR + 1))
        weights = [
            0.3 if y < 1950 else 0.8 if y < 1970 else 1.3 if y < 2000 else 1.1 for y in years
        ]
        birth_years = rng.choices(years, weights=weights, k=n)
        provinces = rng.choices(
            _PROVINCES, weights=[_PROVINCE_WEIGHTS.get(p, 1.0) for p in _PROVINCES], k=n
        )
        families = rng.choices([f for f, _ in _FAMILY], weights=[w for _, w in _FAMILY], k=n)
        middles = {s: ([m for m, _ in _MIDDLE[s]], [w for _, w in _MIDDLE[s]]) for s in ("M", "F")}
        first_middle = {s: rng.choices(*middles[s], k=n) for s in ("M", "F")}
        first_of_year = {y: date(y, 1, 1).toordinal() for y in range(1900, 2101)}
        registered_from = datetime(2021, 7, 1, tzinfo=UTC).timestamp()
        span_s = datetime(2025, 6, 30, tzinfo=UTC).timestamp() - registered_from
        death_lo = date(2015, 1, 1).toordinal()
        death_span = (AS_OF - timedelta(days=60)).toordinal() - death_lo + 1
        n_streets = len(_STREETS)
        serials, n_serials = self.serials, len(self.serials)
        legacy_count = 0
        for i in range(n):
            c = _Citizen()
            year = birth_years[i]
            days = 366 if year % 4 == 0 and (year % 100 or year % 400 == 0) else 365
            dob = date.fromordinal(first_of_year[year] + int(rnd() * days))
            sex = "M" if rnd() < 0.5 else "F"
            province = provinces[i]
            while True:
                cid = make_id(province, year, sex, serials[int(rnd() * n_serials)])
                if cid not in self.used_ids:
                    break
            self.used_ids.add(cid)
            given = _GIVEN[sex]
            words = [families[i], first_middle[sex][i]]
            if rnd() < 0.15:  # two middle names: Nguyễn Thị Thu Hà
                words += rng.choices(*middles[sex])
            words.append(given[int(rnd() * len(given))])
            while len(set(words)) < len(words):  # no "Hoàng Hoàng Minh", "Minh Minh"
                words[1:] = [*rng.choices(*middles[sex], k=len(words) - 2), rng.choice(given)]
            if len(words) == 4 and words[2] in ("Thị", "Văn"):
                words[1], words[2] = words[2], words[1]
            c.citizen_id = cid
            c.full_name = " ".join(words)
            c.date_of_birth = dob
            c.sex = sex
            c.province_code = province
            c.address = (
                f"Số {1 + int(rnd() * 350)} đường {_STREETS[int(rnd() * n_streets)]}, "
                f"Phường {1 + int(rnd() * 20)}, {PROVINCE_CODES[province]}"
            )
            c.updated_at = datetime.fromtimestamp(registered_from + int(rnd() * span_s), UTC)
            if year <= 2002 and rnd() < LEGACY_ID_SHARE * 1.2:
                legacy_count += 1
                c.legacy_id = ""  # numbered below, in one draw
            p_death = 0.17 if year < 1950 else 0.05 if year < 1965 else 0.014 if year < 1990 else 0
            if rnd() < p_death:
                c.date_of_death = date.fromordinal(death_lo + int(rnd() * death_span))
            self.people.append(c)
        numbers = iter(rng.sample(self.legacy_numbers, legacy_count))
        for c in self.people:
            if c.legacy_id is not None:
                c.legacy_id = f"{next(numbers):09d}"

    def _citizens_eg(self) -> None:
        """Egyptian citizens: national numbers encoding birth date, governorate and sex."""
        rng, n = self.rng, self.n
        years = list(range(FIRST_BIRTH_YEAR, LAST_BIRTH_YEAR + 1))
        weights = [
            0.3 if y < 1950 else 0.8 if y < 1970 else 1.3 if y < 2000 else 1.1 for y in years
        ]
        birth_years = rng.choices(years, weights=weights, k=n)
        govs = egypt.GOVERNORATES
        residence = rng.choices(
            govs, weights=[egypt.GOVERNORATE_WEIGHTS.get(g, 1.0) for g in govs], k=n
        )
        registered_from = datetime(2021, 7, 1, tzinfo=UTC).timestamp()
        span_s = datetime(2025, 6, 30, tzinfo=UTC).timestamp() - registered_from
        death_lo = date(2015, 1, 1).toordinal()
        death_span = (AS_OF - timedelta(days=60)).toordinal() - death_lo + 1
        serials = self.eg_serials
        if not serials:
            raise ValueError("too many parts for the eg scheme's serial numbers")
        for i in range(n):
            c = _Citizen()
            year = birth_years[i]
            days = 366 if year % 4 == 0 and (year % 100 or year % 400 == 0) else 365
            dob = date.fromordinal(date(year, 1, 1).toordinal() + rng.randrange(days))
            sex = "M" if rng.random() < 0.5 else "F"
            province = residence[i]
            born_in = "88" if rng.random() < egypt.BORN_ABROAD_SHARE else province
            while True:
                cid = egypt.make_id(dob, born_in, sex, rng.choice(serials), rng.randrange(10))
                if cid not in self.used_ids:
                    break
            self.used_ids.add(cid)
            c.citizen_id = cid
            c.full_name = egypt.full_name(sex, rng)
            c.date_of_birth = dob
            c.sex = sex
            c.province_code = province
            c.address = egypt.address(province, rng)
            c.updated_at = datetime.fromtimestamp(registered_from + int(rng.random() * span_s), UTC)
            p_death = 0.17 if year < 1950 else 0.05 if year < 1965 else 0.014 if year < 1990 else 0
            if rng.random() < p_death:
                c.date_of_death = date.fromordinal(death_lo + int(rng.random() * death_span))
            self.people.append(c)

    def _memberships(self) -> None:
        rng = self.rng
        shares = [(sector, self.shares[sector]) for sector in self.sectors]
        for c in self.people:
            for sector, share in shares:
                if rng.random() < share:
                    c.sectors.append(sector)
        # Enough deceased members in every sector for DECEASED_ACTIVE plus clean ones.
        dead = [c for c in self.people if c.date_of_death]
        for sector in self.sectors:
            members = round(self.n * self.shares[sector])
            want = self._count("DECEASED_ACTIVE", members) + 2
            have = sum(1 for c in dead if sector in c.sectors)
            outsiders = [c for c in dead if sector not in c.sectors]
            rng.shuffle(outsiders)
            for c in outsiders[: max(0, want - have)]:
                c.sectors.append(sector)
        order = {s: i for i, s in enumerate(SECTORS)}
        for c in self.people:
            c.sectors.sort(key=order.__getitem__)

    def _registry_anomalies(self) -> None:
        """Registry citizens whose birth year or sex was mistyped: their ID disagrees."""
        rng = self.rng
        for sector in self.sectors:
            members = [c for c in self.people if sector in c.sectors]
            candidates = [c for c in members if not c.date_of_death and not c.reserved]
            rng.shuffle(candidates)
            for c in candidates[: self._count("ID_ATTRIBUTES_INCONSISTENT", len(members))]:
                # Construction has no sex column: only a wrong year shows there.
                kind = "date_of_birth" if sector == "construction" or rng.random() < 0.5 else "sex"
                c.reserved = kind
                if kind == "sex":
                    c.sex = "F" if c.sex == "M" else "M"
                else:
                    c.date_of_birth = _shift_year(c.date_of_birth, rng)
                self.registry_anomalies.append(
                    {
                        "citizen_id": c.citizen_id,
                        "rule": "ID_ATTRIBUTES_INCONSISTENT",
                        "field": kind,
                    }
                )

    def _count(self, rule: str, n_records: int) -> int:
        return max(MIN_PER_RULE, round(RATES[rule] * n_records))

    # -- sectors -------------------------------------------------------------------------

    def _clean_records(self, sector: str) -> list[_Record]:
        """Each member's record, agreeing with the registry in meaning."""
        rng = self.rng
        rnd = rng.random
        members = [c for c in self.people if sector in c.sectors]
        keys = self._keys(sector, members)
        lo_default = _ACTIVITY_FROM[sector].toordinal()
        as_of = AS_OF.toordinal()
        records = []
        for c, key in zip(members, keys, strict=True):
            r = _Record(key, c)
            adult = c.date_of_birth.toordinal() + 18 * 365 + 5
            if c.date_of_death:
                death = c.date_of_death.toordinal()
                lo = min(max(death - 3 * 365, adult), death)
                r.last_activity_date = date.fromordinal(lo + int(rnd() * (death - lo + 1)))
                r.status = "closed"
            else:
                lo = min(max(lo_default, adult), as_of)
                r.last_activity_date = date.fromordinal(lo + int(rnd() * (as_of - lo + 1)))
                if sector == "construction":
                    valid = as_of - r.last_activity_date.toordinal() <= _PERMIT_VALID_DAYS
                    r.status = "active" if valid else "closed"
                else:
                    r.status = "active" if rnd() < _ACTIVE_SHARE[sector] else "closed"
            r.updated_at = _stamp(r.last_activity_date, rng)
            if self.eg:
                if sector == "banking":
                    r.full_name = egypt.plain(r.full_name)
                elif rnd() < BENIGN_RATE * 3:  # Arabic spellings vary more than Vietnamese
                    r.full_name = egypt.benign_spelling(r.full_name, rng)
                if sector in ("tax", "labour") and rnd() < BENIGN_RATE:
                    r.citizen_id = egypt.arabic_indic(r.citizen_id)
            else:
                if sector == "banking":
                    r.full_name = fold_name(r.full_name)
                elif rnd() < BENIGN_RATE:
                    r.full_name = _benign_spelling(r.full_name, rng)
                if sector != "banking" and rnd() < BENIGN_RATE / 2:
                    cid = r.citizen_id
                    r.citizen_id = f"{cid[:3]} {cid[3:6]} {cid[6:]}"  # typed with separators
            records.append(r)
        if sector == "banking":
            rng.shuffle(records)  # ids follow account opening, not registry order
            codes = rng.sample(self.bank_codes, len(records))
            for i, (r, code) in enumerate(zip(records, codes, strict=True)):
                r.key = str(self.key_base + i + 1)
                r.extra["customer_no" if self.eg else "ma_khach_hang"] = f"{code}"
        return records

    def _keys(self, sector: str, members: Sequence[_Citizen]) -> list[str]:
        """Unique record keys in the sector's own numbering, one per member."""
        if sector in ("tax", "labour"):
            used: set[str] = set()
            return [self._new_key(sector, c, used) for c in members]
        return [""] * len(members)  # banking: numbered after shuffling; construction: later

    def _permit_numbers(self) -> None:
        """Construction permits are numbered by province and year of issue: GP-079-2021-000123."""
        for i, r in enumerate(self.records.get("construction", ())):
            if self.eg:  # رخصة رقم … لسنة …: governorate / year / number
                r.key = (
                    f"{r.citizen.province_code}/{r.last_activity_date.year}/"
                    f"{self.key_base + i + 1:06d}"
                )
                continue
            r.key = (
                f"GP-{r.citizen.province_code}-{r.last_activity_date.year}-"
                f"{self.key_base + i + 1:06d}"
            )

    def _new_key(self, sector: str, c: _Citizen, existing: set[str]) -> str:
        """A tax code (personal ones start with 8) or a social-insurance number (2-digit
        province prefix + 8 digits), not in ``existing`` (which it joins)."""
        rng = self.rng
        while True:
            if sector == "tax":
                key = f"{rng.choice(self.tax_codes)}"
            else:
                key = f"{int(c.province_code) % 100:02d}{rng.choice(self.insurance_numbers):08d}"
            if key not in existing:
                existing.add(key)
                return key

    # -- anomalies -----------------------------------------------------------------------

    def _inject(self, sector: str) -> None:
        rng = self.rng
        records = self.records[sector]
        table = self.tables[sector]
        has_sex = table.column_for("sex") is not None
        n = len(records)
        order = list(range(n))
        rng.shuffle(order)

        def pick(rule: str, ok: Callable[[_Record], bool]) -> list[_Record]:
            chosen = list(
                islice(
                    (records[i] for i in order if not records[i].injected and ok(records[i])),
                    self._count(rule, n),
                )
            )
            for r in chosen:
                r.injected = True
            return chosen

        def living(r: _Record) -> bool:
            return not r.citizen.date_of_death and not r.citizen.reserved

        def note(r: _Record, *rules: str) -> None:
            for rule in rules:
                self.notes.append((sector, r, rule))

        for r in pick("DECEASED_ACTIVE", lambda r: bool(r.citizen.date_of_death)):
            self._deceased_active(r)
            note(r, "DECEASED_ACTIVE")
        for r in pick("ID_LEGACY", lambda r: living(r) and r.citizen.legacy_id is not None):
            r.citizen_id = r.citizen.legacy_id
            note(r, "ID_LEGACY")
        if table.rules and table.rules.get("unique_citizen"):
            keys = {r.key for r in records}
            for r in pick("DUPLICATE_ID", living):
                r.status = "active"
                r.citizen_id = r.citizen.citizen_id  # not the separator-typed variant
                group = [r]
                for _ in range(1 if rng.random() < 0.8 else 2):
                    copy = _Record(self._new_key(sector, r.citizen, keys), r.citizen)
                    copy.full_name = r.full_name
                    copy.status = "active"
                    copy.last_activity_date = date.fromordinal(
                        rng.randint(_ACTIVITY_FROM[sector].toordinal(), AS_OF.toordinal())
                    )
                    copy.updated_at = _stamp(copy.last_activity_date, rng)
                    copy.injected = True
                    records.append(copy)
                    group.append(copy)
                for member in group:
                    note(member, "DUPLICATE_ID")
        for r in pick("ID_MISSING", living):
            r.citizen_id = rng.choice((None, "", " "))
            note(r, "ID_MISSING")
        for r in pick("ID_INVALID", living):
            r.citizen_id = self._invalid_id(r.citizen.citizen_id)
            note(r, "ID_INVALID")
        for r in pick("ID_NOT_IN_REGISTRY", living):
            c = r.citizen
            while True:
                if self.eg:
                    born_in = c.citizen_id[7:9]
                    serial = rng.choice(self.eg_serials)
                    cid = egypt.make_id(c.date_of_birth, born_in, c.sex, serial, rng.randrange(10))
                else:
                    serial = rng.choice(self.serials)
                    cid = make_id(c.province_code, c.date_of_birth.year, c.sex, serial)
                if cid not in self.used_ids:
                    break
            self.used_ids.add(cid)
            r.citizen_id = cid
            note(r, "ID_NOT_IN_REGISTRY")
        for r in pick("NAME_MISMATCH", living):
            if self.eg:
                name = egypt.other_name(r.citizen.full_name, r.citizen.sex, rng)
                r.full_name = egypt.plain(name) if sector == "banking" else name
            else:
                name = _other_name(r.citizen.full_name, r.citizen.sex, rng)
                r.full_name = fold_name(name) if sector == "banking" else name
            note(r, "NAME_MISMATCH")
        for r in pick("DOB_MISMATCH", living):
            r.date_of_birth = _other_dob(r.citizen.date_of_birth, rng)
            # A vn ID encodes the birth year, an eg ID the whole birth date.
            if self.eg or r.date_of_birth.year != r.citizen.date_of_birth.year:
                note(r, "DOB_MISMATCH", "ID_ATTRIBUTES_INCONSISTENT")
            else:
                note(r, "DOB_MISMATCH")
        if has_sex:
            for r in pick("SEX_MISMATCH", living):
                r.sex = "F" if r.citizen.sex == "M" else "M"
                note(r, "SEX_MISMATCH", "ID_ATTRIBUTES_INCONSISTENT")
        disabled = (table.rules or {}).get("disabled", ())
        if table.column_for("province_code") and "PROVINCE_MISMATCH" not in disabled:
            for r in pick("PROVINCE_MISMATCH", living):
                provinces = egypt.GOVERNORATES if self.eg else _PROVINCES
                r.province_code = rng.choice([p for p in provinces if p != r.citizen.province_code])
                note(r, "PROVINCE_MISMATCH")
        # Registry-side errors show on every (clean) record of those citizens.
        for r in records:
            kind = r.citizen.reserved
            if kind == "date_of_birth" or (kind == "sex" and has_sex):
                note(r, "ID_ATTRIBUTES_INCONSISTENT")

    def _deceased_active(self, r: _Record) -> None:
        """A deceased citizen's record that stays active or shows activity after the death."""
        rng = self.rng
        death = r.citizen.date_of_death
        assert death is not None
        variant = rng.randrange(3)
        if variant in (0, 2):
            r.status = "active"
        if variant in (1, 2):
            r.last_activity_date = date.fromordinal(
                rng.randint(death.toordinal() + 1, AS_OF.toordinal())
            )
            r.updated_at = _stamp(r.last_activity_date, rng)

    def _invalid_id(self, cid: str) -> str:
        """A mistyped ID that fails the structure check (never a 9-digit legacy look-alike)."""
        rng = self.rng
        if self.eg:
            while True:
                bad = egypt.invalid_id(cid, rng)
                if bad not in self.used_ids:
                    self.used_ids.add(bad)
                    return bad
        while True:
            variant = rng.randrange(5)
            if variant == 0:  # a digit dropped
                i = rng.randrange(12)
                bad = cid[:i] + cid[i + 1 :]
            elif variant == 1:  # a digit doubled
                i = rng.randrange(12)
                bad = cid[: i + 1] + cid[i:]
            elif variant == 2:  # letters for look-alike digits
                i = rng.randrange(3, 12)
                bad = cid[:i] + rng.choice("OIlSBZ") + cid[i + 1 :]
            elif variant == 3:  # a province code that does not exist
                bad = rng.choice(_UNKNOWN_PROVINCES) + cid[3:]
            else:  # the last digits cut off
                bad = cid[: rng.choice((8, 10, 11))]
            info = _SCHEME.inspect(bad)
            if info is not None and info.kind == "invalid" and bad not in self.used_ids:
                self.used_ids.add(bad)
                return bad


def _shift_year(d: date, rng: random.Random) -> date:
    """The same day in a different year (1–3 years off, kept within the birth-year range)."""
    deltas = [k for k in (-3, -2, -1, 1, 2, 3) if FIRST_BIRTH_YEAR <= d.year + k <= LAST_BIRTH_YEAR]
    year = d.year + rng.choice(deltas)
    return date(year, d.month, min(d.day, 28) if d.month == 2 else d.day)


def _other_dob(d: date, rng: random.Random) -> date:
    """A mistyped birth date: day and month swapped, a day off, or a year off."""
    while True:
        variant = rng.randrange(4)
        if variant == 0 and d.day <= 12 and d.day != d.month:
            return date(d.year, d.day, d.month)
        if variant in (1, 2):
            day = d.day + rng.choice((-3, -2, -1, 1, 2, 3))
            try:
                return d.replace(day=day)
            except ValueError:
                continue
        if variant == 3:
            return _shift_year(d, rng)


def _other_name(name: str, sex: str, rng: random.Random) -> str:
    """A name that differs after folding: another given name, a typo, or words reordered."""
    words = name.split(" ")
    folded = fold_name(name)
    while True:
        variant = rng.randrange(3)
        if variant == 0:
            other = [*words[:-1], rng.choice(_GIVEN[sex])]
        elif variant == 1:
            other = list(words)
            w = rng.randrange(len(other))
            other[w] = typo(other[w], rng)
        else:
            other = [*words[1:], words[0]]  # given-name-first order
        candidate = " ".join(other)
        if fold_name(candidate) != folded and candidate.strip():
            return candidate


def typo(word: str, rng: random.Random) -> str:
    """The word with one letter dropped, two swapped or one replaced (maybe by itself)."""
    i = rng.randrange(len(word))
    op = rng.randrange(3)
    if op == 0 and len(word) > 2:
        return word[:i] + word[i + 1 :]
    if op == 1 and i + 1 < len(word):
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    return word[:i] + rng.choice("aeinhtgu") + word[i + 1 :]


def _benign_spelling(name: str, rng: random.Random) -> str:
    """The same name as a sector might store it: folds equal to the registry's."""
    words = name.split(" ")
    old = [_OLD_TONE.get(w, w) for w in words]
    if old != words and rng.random() < 0.7:
        return " ".join(old)
    variant = rng.randrange(3)
    if variant == 0:
        return unicodedata.normalize("NFD", name)
    if variant == 1:
        return name.upper()
    return "  ".join(words)


_EPOCH = date(1970, 1, 1).toordinal()


def _stamp(day: date, rng: random.Random) -> datetime:
    """A moment during office hours (UTC) on ``day``: when the record was last written."""
    return datetime.fromtimestamp(
        (day.toordinal() - _EPOCH) * 86400 + 8 * 3600 + int(rng.random() * 36000), UTC
    )


def _render(table: SourceTable, items: Sequence[Any]) -> list[tuple[Any, ...]]:
    """Rows in the table's column order, canonical values turned back into stored ones.

    Driven by the same column specs as the DDL and the hub config, so the three agree.
    """
    attrs: list[str] = []
    convert: list[tuple[int, Callable[[Any], Any]]] = []
    for i, col in enumerate(table.columns):
        if col.canonical:
            attrs.append(col.canonical)
            if col.value_map is not None:
                convert.append((i, {v: k for k, v in col.value_map.items()}.__getitem__))
            elif col.date_format is not None:
                convert.append((i, operator.methodcaller("strftime", col.date_format)))
        elif col.name == table.key:
            attrs.append("key")
            if table.source == "banking":
                convert.append((i, int))
        elif col.name == "updated_at":
            attrs.append("updated_at")
        else:
            attrs.append("extra")
            convert.append((i, operator.itemgetter(col.name)))
    get = operator.attrgetter(*attrs)
    if not convert:
        return [get(o) for o in items]
    rows = []
    for o in items:
        row = list(get(o))
        for i, fn in convert:
            row[i] = fn(row[i])
        rows.append(tuple(row))
    return rows


# ---------------------------------------------------------------------------------------
# Loading


def generate(
    urls: Mapping[str, str],
    *,
    citizens: int,
    seed: int = 6,
    manifest_path: Path | None = None,
    scheme: str = "vn",
) -> Manifest:
    """Build the population and load it into the five existing databases in ``urls``.

    ``scheme`` (``vn`` or ``eg``) picks the population and its tables (see :func:`build`).

    ``urls`` maps ``registry``, ``tax``, ``banking``, ``labour`` and ``construction`` to
    PostgreSQL URLs (libpq or SQLAlchemy form). Each table is dropped and recreated, bulk
    loaded with COPY, then given its keys and indexes, in one transaction per database:
    a failure leaves that database as it was. Connection failures raise
    :class:`RetriableError`; other database errors :class:`FatalError`.
    """
    tables = source_tables(scheme)
    missing = [s for s in tables if s not in urls]
    if missing:
        raise ValueError(f"no database URL for {', '.join(missing)}")
    population = build(citizens, seed, scheme=scheme)
    with ThreadPoolExecutor(max_workers=len(tables)) as pool:
        futures = [
            pool.submit(load_table, urls[source], table, population.rows[source])
            for source, table in tables.items()
        ]
        for future in futures:
            future.result()
    if manifest_path is not None:
        population.manifest.write(manifest_path)
    return population.manifest


def load_table(url: str, table: SourceTable, rows: Sequence[tuple[Any, ...]]) -> None:
    """(Re)create ``table`` in the database at ``url`` and COPY ``rows`` into it."""
    with _table_errors(table):
        with psycopg.connect(psycopg_conninfo(url)) as conn, conn.cursor() as cur:
            cur.execute(table.drop_sql())
            cur.execute(table.create_sql())
            _copy(cur, table, rows)
            _finish(cur, table)


def create_table(url: str, table: SourceTable) -> None:
    """(Re)create ``table`` empty, without its keys and indexes: for loading in parts with
    :func:`append_rows`, then :func:`finish_table`."""
    with _table_errors(table):
        with psycopg.connect(psycopg_conninfo(url)) as conn, conn.cursor() as cur:
            cur.execute(table.drop_sql())
            cur.execute(table.create_sql())


def append_rows(url: str, table: SourceTable, rows: Sequence[tuple[Any, ...]]) -> None:
    """COPY ``rows`` into a table made by :func:`create_table`, in one transaction."""
    with _table_errors(table):
        with psycopg.connect(psycopg_conninfo(url)) as conn, conn.cursor() as cur:
            _copy(cur, table, rows)


def finish_table(url: str, table: SourceTable) -> None:
    """Give a table loaded in parts its keys and indexes, and its statistics."""
    with _table_errors(table):
        with psycopg.connect(psycopg_conninfo(url)) as conn, conn.cursor() as cur:
            _finish(cur, table)


def _copy(cur: psycopg.Cursor, table: SourceTable, rows: Sequence[tuple[Any, ...]]) -> None:
    with cur.copy(table.copy_sql()) as copy:
        for row in rows:
            copy.write_row(row)


def _finish(cur: psycopg.Cursor, table: SourceTable) -> None:
    for statement in table.after_load:
        cur.execute(statement)
    cur.execute(f"ANALYZE {table.table}")


@contextmanager
def _table_errors(table: SourceTable) -> Iterator[None]:
    try:
        yield
    except psycopg.OperationalError as exc:
        raise RetriableError(f"demo {table.source} database: {exc}".strip()) from exc
    except psycopg.Error as exc:
        raise FatalError(f"demo {table.source} database: {exc}".strip()) from exc

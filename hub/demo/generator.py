"""Generate the demo population and sector records with injected mismatches, and load them.

Everything is drawn from one ``random.Random(seed)``: the same ``(citizens, seed)`` gives
the same rows and the same manifest, byte for byte. The manifest lists, for every
injected anomaly, exactly the rules the reconciler must raise on it (SPEC §5).
"""

from __future__ import annotations

import operator
import random
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from hub.demo import egypt, vietnam
from hub.demo.anomalies import Injections, shift_year
from hub.demo.loading import load_table
from hub.demo.manifest import Manifest, Mismatch, Population
from hub.demo.population import SECTORS, SourceTable, source_tables
from hub.demo.records import (
    ACTIVITY_FROM,
    AS_OF,
    FIRST_BIRTH_YEAR,
    LAST_BIRTH_YEAR,
    Citizen,
    Record,
    stamp,
)
from hub.idschemes.vn import PROVINCE_CODES, make_id
from hub.vocabulary import RULE_FIELDS

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

_ACTIVE_SHARE: dict[str, float] = {"tax": 0.93, "banking": 0.9, "labour": 0.8}
_PERMIT_VALID_DAYS = 5 * 365


# ---------------------------------------------------------------------------------------
# Generation


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


class _Builder(Injections):
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
        self.scheme = egypt.SCHEME if self.eg else vietnam.SCHEME
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
        self.people: list[Citizen] = []
        self.used_ids: set[str] = set()
        self.records: dict[str, list[Record]] = {}
        self.notes: list[tuple[str, Record, str]] = []  # keys are final only at the end
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
        same = egypt.fold_arabic if self.eg else vietnam.fold_name
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
            vietnam.PROVINCES,
            weights=[vietnam.PROVINCE_WEIGHTS.get(p, 1.0) for p in vietnam.PROVINCES],
            k=n,
        )
        families = rng.choices(
            [f for f, _ in vietnam.FAMILY], weights=[w for _, w in vietnam.FAMILY], k=n
        )
        middles = {
            s: ([m for m, _ in vietnam.MIDDLE[s]], [w for _, w in vietnam.MIDDLE[s]])
            for s in ("M", "F")
        }
        first_middle = {s: rng.choices(*middles[s], k=n) for s in ("M", "F")}
        first_of_year = {y: date(y, 1, 1).toordinal() for y in range(1900, 2101)}
        registered_from = datetime(2021, 7, 1, tzinfo=UTC).timestamp()
        span_s = datetime(2025, 6, 30, tzinfo=UTC).timestamp() - registered_from
        death_lo = date(2015, 1, 1).toordinal()
        death_span = (AS_OF - timedelta(days=60)).toordinal() - death_lo + 1
        n_streets = len(vietnam.STREETS)
        serials, n_serials = self.serials, len(self.serials)
        legacy_count = 0
        for i in range(n):
            c = Citizen()
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
            given = vietnam.GIVEN[sex]
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
                f"Số {1 + int(rnd() * 350)} đường {vietnam.STREETS[int(rnd() * n_streets)]}, "
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
            c = Citizen()
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
                    c.date_of_birth = shift_year(c.date_of_birth, rng)
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

    def _clean_records(self, sector: str) -> list[Record]:
        """Each member's record, agreeing with the registry in meaning."""
        rng = self.rng
        rnd = rng.random
        members = [c for c in self.people if sector in c.sectors]
        keys = self._keys(sector, members)
        lo_default = ACTIVITY_FROM[sector].toordinal()
        as_of = AS_OF.toordinal()
        records = []
        for c, key in zip(members, keys, strict=True):
            r = Record(key, c)
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
            r.updated_at = stamp(r.last_activity_date, rng)
            if self.eg:
                if sector == "banking":
                    r.full_name = egypt.plain(r.full_name)
                elif rnd() < BENIGN_RATE * 3:  # Arabic spellings vary more than Vietnamese
                    r.full_name = egypt.benign_spelling(r.full_name, rng)
                if sector in ("tax", "labour") and rnd() < BENIGN_RATE:
                    r.citizen_id = egypt.arabic_indic(r.citizen_id)
            else:
                if sector == "banking":
                    r.full_name = vietnam.fold_name(r.full_name)
                elif rnd() < BENIGN_RATE:
                    r.full_name = vietnam.benign_spelling(r.full_name, rng)
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

    def _keys(self, sector: str, members: Sequence[Citizen]) -> list[str]:
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

    def _new_key(self, sector: str, c: Citizen, existing: set[str]) -> str:
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

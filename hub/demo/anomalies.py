"""The generator's last stage: the anomalies injected into each sector's clean records, each
noted with the rules the reconciler must raise on it (SPEC §5)."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import date
from itertools import islice

from hub.demo import egypt, vietnam
from hub.demo.population import SourceTable
from hub.demo.records import (
    ACTIVITY_FROM,
    AS_OF,
    FIRST_BIRTH_YEAR,
    LAST_BIRTH_YEAR,
    Record,
    stamp,
)
from hub.idschemes.vn import make_id


class Injections:
    """Mixed into the generator's builder, whose state it reads and writes: the rng, the
    sector ``records`` and ``tables``, the ``notes`` (sector, record, rule) of the manifest,
    the ``used_ids`` and the serial ranges; ``_count`` and ``_new_key`` are the builder's."""

    rng: random.Random
    eg: bool
    records: dict[str, list[Record]]
    tables: dict[str, SourceTable]
    notes: list[tuple[str, Record, str]]
    used_ids: set[str]
    serials: range
    eg_serials: range

    def _inject(self, sector: str) -> None:
        rng = self.rng
        records = self.records[sector]
        table = self.tables[sector]
        has_sex = table.column_for("sex") is not None
        n = len(records)
        order = list(range(n))
        rng.shuffle(order)

        def pick(rule: str, ok: Callable[[Record], bool]) -> list[Record]:
            chosen = list(
                islice(
                    (records[i] for i in order if not records[i].injected and ok(records[i])),
                    self._count(rule, n),
                )
            )
            for r in chosen:
                r.injected = True
            return chosen

        def living(r: Record) -> bool:
            return not r.citizen.date_of_death and not r.citizen.reserved

        def note(r: Record, *rules: str) -> None:
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
                    copy = Record(self._new_key(sector, r.citizen, keys), r.citizen)
                    copy.full_name = r.full_name
                    copy.status = "active"
                    copy.last_activity_date = date.fromordinal(
                        rng.randint(ACTIVITY_FROM[sector].toordinal(), AS_OF.toordinal())
                    )
                    copy.updated_at = stamp(copy.last_activity_date, rng)
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
                name = vietnam.other_name(r.citizen.full_name, r.citizen.sex, rng)
                r.full_name = vietnam.fold_name(name) if sector == "banking" else name
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
                provinces = egypt.GOVERNORATES if self.eg else vietnam.PROVINCES
                r.province_code = rng.choice([p for p in provinces if p != r.citizen.province_code])
                note(r, "PROVINCE_MISMATCH")
        # Registry-side errors show on every (clean) record of those citizens.
        for r in records:
            kind = r.citizen.reserved
            if kind == "date_of_birth" or (kind == "sex" and has_sex):
                note(r, "ID_ATTRIBUTES_INCONSISTENT")

    def _deceased_active(self, r: Record) -> None:
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
            r.updated_at = stamp(r.last_activity_date, rng)

    def _invalid_id(self, cid: str) -> str:
        """A mistyped ID that fails the structure check, not used before."""
        mistype = egypt.invalid_id if self.eg else vietnam.invalid_id
        while True:
            bad = mistype(cid, self.rng)
            if bad not in self.used_ids:
                self.used_ids.add(bad)
                return bad


def shift_year(d: date, rng: random.Random) -> date:
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
            return shift_year(d, rng)

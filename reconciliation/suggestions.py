"""Registry candidates for a sector record the registry does not match (SPEC §5).

A record with no usable ID, an ID the registry lacks, or a legacy ID gets up to three registry
citizens who may be the person it means. They are found through several blocking keys (one
indexed look-up each in the registry replica, for every probe of a batch at once), shortlisted
by name similarity, and scored like a record linker (Fellegi–Sunter): each compared part —
name, birth date, sex, province — adds the log-odds ``log2(m/u)`` of the level it agrees at,
and the sum, with a prior, becomes a probability in [0, 1]. The parts are kept with the score,
so a steward sees why a candidate is there ("name 0.93 · birth date day/month swapped · same
province").

The blocking keys (``hub.vocabulary.CANDIDATE_KEYS``; per sector ``rules.candidate_keys``):

- ``birth_date``: the same birth date.
- ``birth_date_swapped``: day and month swapped (``03/07`` for ``07/03``).
- ``birth_year_name``: the name key (:func:`name_key`) born within a year of the record's birth
  year. The name key is the folded name with its words sorted — a family name alone would be
  no key in Vietnam, where Nguyễn is about 38 % of the population — or, for Arabic names,
  the first and father's names, which survive a name shortened to two or three parts.
- ``name_province``: the folded full name, words in any order, in the record's province.
- ``id_encoded``: for an ID that is well formed but unknown to the registry, the name key born
  in the year the ID encodes (its sex is scored), so a record without a birth date is found.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Protocol

from rapidfuzz import fuzz, process

from hub.vocabulary import CANDIDATE_KEYS

MAX_SUGGESTIONS = 3
SHORTLIST = 5
"""Candidates per look-up that get the full score (by name similarity, or nearest birth)."""
PER_KEY = 50
"""Candidates one name look-up returns at most (birth-date look-ups: ``PER_DATE``)."""
PER_DATE = 5000
MIN_NAME = 50.0
"""Token-sort similarity (0–100) below which a name is not a candidate's."""
MIN_SCORE = 0.05
"""Candidates scoring below this are noise, not suggestions."""
PRIOR = 1e-5
"""The chance that a blocked pair is the same person before anything is compared."""

_ARABIC = re.compile(r"[\u0600-\u06FF]")


# -- the name keys (the SQL functions hub_name_key / hub_name_sorted mirror these) -----------


def name_sorted(folded: str) -> str:
    """The folded name's words in sorted (code point) order: word order does not count."""
    return " ".join(sorted(folded.split()))


def name_key(folded: str) -> str:
    """The name a ``birth_year_name`` look-up matches: the first two words of an Arabic name
    (first and father's names), else every word, sorted."""
    if _ARABIC.search(folded):
        return " ".join(folded.split()[:2])
    return name_sorted(folded)


# -- comparison levels and their weights ------------------------------------------------------

# level: (m, u) = P(agreement at this level | same person), P(... | different people).
# A missing value on either side is neutral (weight 0): it is evidence of nothing.
_NAME_LEVELS: tuple[tuple[str, float, float, float], ...] = (
    # level, lowest similarity, m, u
    ("equal", 1.0, 0.88, 0.001),
    ("close", 0.90, 0.07, 0.004),
    ("similar", 0.80, 0.04, 0.03),
    ("different", 0.0, 0.002, 0.965),
)
_DATE_WEIGHTS: dict[str, tuple[float, float]] = {
    "equal": (0.88, 1 / 29_000),
    "day_month_swapped": (0.03, 1 / 29_000),
    "one_digit": (0.04, 1 / 3_000),
    "year_off_by_one": (0.03, 1 / 14_500),
    "same_year": (0.01, 1 / 80),
    "different": (0.01, 0.9987),
    "id_year_same": (0.95, 1 / 80),
    "id_year_different": (0.05, 79 / 80),
}
_SEX_WEIGHTS = {"same": (0.97, 0.5), "different": (0.03, 0.5)}
_PROVINCE_WEIGHTS = {"same": (0.85, 1 / 63), "different": (0.15, 62 / 63)}
DATE_LABELS = {
    "equal": "same birth date",
    "day_month_swapped": "birth date day/month swapped",
    "one_digit": "birth date one digit off",
    "year_off_by_one": "birth year off by one",
    "same_year": "same birth year only",
    "different": "different birth date",
    "missing": "birth date missing",
    "id_year_same": "birth year as the ID encodes",
    "id_year_different": "birth year not the ID's",
}


def _weight(m: float, u: float) -> float:
    return math.log2(m / u)


def swap_day_month(d: date) -> date | None:
    """The date with day and month swapped, when that is another valid date."""
    if d.day == d.month or d.day > 12:
        return None
    return date(d.year, d.day, d.month)


def compare_dates(a: date | None, b: date | None) -> str:
    """How two birth dates agree: equal, day_month_swapped, one_digit, year_off_by_one,
    same_year, different, or missing (either side)."""
    if a is None or b is None:
        return "missing"
    if a == b:
        return "equal"
    if a.year == b.year and a.day == b.month and a.month == b.day:
        return "day_month_swapped"
    digits_a = str(a.year * 10000 + a.month * 100 + a.day).zfill(8)
    digits_b = str(b.year * 10000 + b.month * 100 + b.day).zfill(8)
    if sum(x != y for x, y in zip(digits_a, digits_b, strict=True)) == 1:
        return "one_digit"
    if abs(a.year - b.year) == 1 and (a.month, a.day) == (b.month, b.day):
        return "year_off_by_one"
    if a.year == b.year:
        return "same_year"
    return "different"


def name_similarity(a: str, b: str) -> float:
    """Similarity (0..1) of two folded names: the better of the names as written and with
    their words sorted, so neither another word order nor a typo in a word's first letters
    (which moves that word when sorting) costs more than it should."""
    return max(fuzz.ratio(a, b), fuzz.token_sort_ratio(a, b)) / 100.0


def name_level(similarity: float) -> str:
    for level, lowest, _m, _u in _NAME_LEVELS:
        if similarity >= lowest:
            return level
    return "different"  # pragma: no cover - the last level's floor is 0


@dataclass(frozen=True, slots=True)
class Probe:
    """What one sector record offers to find its citizen by (its name folded)."""

    name_folded: str
    date_of_birth: date | None = None
    sex: str | None = None
    province_code: str | None = None
    id_birth_year: int | None = None
    """The birth year a well-formed ID unknown to the registry encodes (``id_encoded``)."""
    id_sex: str | None = None
    keys: tuple[str, ...] = CANDIDATE_KEYS


@dataclass(frozen=True, slots=True)
class Citizen:
    """A registry citizen as the score compares it."""

    citizen_id: str
    full_name: str | None
    name_folded: str | None
    date_of_birth: date | None
    sex: str | None
    province_code: str | None


_NAME_W = {level: _weight(m, u) for level, _lo, m, u in _NAME_LEVELS}
_DATE_W = {level: _weight(m, u) for level, (m, u) in _DATE_WEIGHTS.items()} | {"missing": 0.0}
_SEX_W = {level: _weight(m, u) for level, (m, u) in _SEX_WEIGHTS.items()} | {"missing": 0.0}
_PROVINCE_W = {lv: _weight(m, u) for lv, (m, u) in _PROVINCE_WEIGHTS.items()} | {"missing": 0.0}
_PRIOR_W = math.log2(PRIOR / (1 - PRIOR))


def score(probe: Probe, citizen: Citizen) -> tuple[float, dict]:
    """The probability (0..1) that ``citizen`` is the person ``probe`` means, and its parts:
    ``name`` (similarity), ``name_level``, ``birth_date``, ``sex``, ``province`` (levels)."""
    similarity = name_similarity(probe.name_folded, citizen.name_folded or "")
    level = name_level(similarity)
    dob = compare_dates(probe.date_of_birth, citizen.date_of_birth)
    if dob == "missing" and probe.id_birth_year is not None and citizen.date_of_birth:
        # No birth date on the record, but its (unknown, well-formed) ID encodes the year.
        same = citizen.date_of_birth.year == probe.id_birth_year
        dob = "id_year_same" if same else "id_year_different"
    sex = _same(probe.sex or probe.id_sex, citizen.sex)
    province = _same(probe.province_code, citizen.province_code)
    total = _NAME_W[level] + _DATE_W[dob] + _SEX_W[sex] + _PROVINCE_W[province] + _PRIOR_W
    probability = 1 / (1 + 2 ** (-total))
    parts = {
        "name": round(similarity, 4),
        "name_level": level,
        "birth_date": dob,
        "sex": sex,
        "province": province,
    }
    return probability, parts


def _same(a: str | None, b: str | None) -> str:
    if not a or not b:
        return "missing"
    return "same" if a == b else "different"


def describe(parts: Mapping) -> str:
    """The parts in a steward's words: ``name 0.93 · birth date day/month swapped · same
    province``."""
    words = [f"name {parts.get('name', 0):.2f}"]
    words.append(DATE_LABELS.get(parts.get("birth_date", ""), "birth date ?"))
    for part in ("sex", "province"):
        level = parts.get(part)
        if level in ("same", "different"):
            words.append(f"{level} {part}")
    return " · ".join(words)


# -- the search ------------------------------------------------------------------------------


class RegistryIndex(Protocol):
    """The registry replica's look-ups. Each takes every probe value of a batch at once and
    answers ``{probe value: {citizen_id: name_folded}}``; none scans the whole registry."""

    def by_birth_date(self, dates: Sequence[date]) -> dict[date, dict[str, str]]: ...

    def by_name_years(
        self, keys: Sequence[tuple[str, int, int, date | None]]
    ) -> dict[tuple[str, int, int, date | None], dict[str, str]]:
        """``(name_folded, first year, last year, nearest to)``: citizens with that name key
        born in those years, the nearest birth dates first, at most ``PER_KEY``."""
        ...

    def by_name_province(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], dict]:
        """``(name_folded, province)``: citizens with that sorted name in that province."""
        ...

    def citizens(self, citizen_ids: Iterable[str]) -> dict[str, Citizen]: ...


@dataclass(slots=True)
class Suggestion:
    citizen_id: str
    full_name: str | None
    score: float
    parts: dict
    found_by: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "citizen_id": self.citizen_id,
            "full_name": self.full_name,
            "score": round(self.score, 4),
            "parts": self.parts,
            "found_by": self.found_by,
            "why": describe(self.parts),
        }


def _lookups(probe: Probe) -> list[tuple[str, object]]:
    """(key, look-up value) pairs a probe asks for."""
    keys, dob, out = probe.keys, probe.date_of_birth, []
    if dob is not None:
        if "birth_date" in keys:
            out.append(("birth_date", dob))
        swapped = swap_day_month(dob)
        if "birth_date_swapped" in keys and swapped is not None:
            out.append(("birth_date_swapped", swapped))
        if "birth_year_name" in keys:
            out.append(("birth_year_name", (probe.name_folded, dob.year - 1, dob.year + 1, dob)))
            # The same day a year off, by the birth-date index: a name shared by more than
            # PER_KEY people within the three years still finds its citizen.
            for shifted in _year_shifted(dob):
                out.append(("birth_year_name", shifted))
    if "name_province" in keys and probe.province_code:
        out.append(("name_province", (probe.name_folded, probe.province_code)))
    if "id_encoded" in keys and probe.id_birth_year is not None:
        year = probe.id_birth_year
        if dob is None or dob.year != year:  # else birth_year_name already covers that year
            out.append(("id_encoded", (probe.name_folded, year, year, dob)))
    return out


def _year_shifted(d: date) -> list[date]:
    out = []
    for year in (d.year - 1, d.year + 1):
        try:
            out.append(d.replace(year=year))
        except ValueError:  # 29 February
            out.append(date(year, 2, 28))
    return out


def _shortlist(name: str, key: str, value, born, named, placed) -> list[str]:
    """The citizens of one look-up worth a full score: a birth-date look-up's best names
    (a day holds hundreds of births), or a name look-up's first (nearest birth dates first),
    each at least ``MIN_NAME`` similar."""
    if isinstance(value, date):
        found = born.get(value, {})
        out: dict[str, None] = {}
        for scorer in (fuzz.token_sort_ratio, fuzz.ratio):  # as name_similarity takes both
            picked = process.extract(name, found, scorer=scorer, limit=SHORTLIST,
                                     score_cutoff=MIN_NAME)  # fmt: skip
            out.update((cid, None) for _folded, _score, cid in picked)
        return list(out)
    found = (placed if key == "name_province" else named).get(value, {})
    out = []
    for cid, folded in found.items():
        if name_similarity(name, folded) * 100 >= MIN_NAME:
            out.append(cid)
            if len(out) == SHORTLIST:
                break
    return out


def find_candidates(
    index: RegistryIndex,
    probes: Sequence[Probe],
    *,
    exclude: Sequence[Iterable[str]] | None = None,
    limit: int = MAX_SUGGESTIONS,
) -> list[list[Suggestion]]:
    """Up to ``limit`` scored candidates per probe, best first (ties by citizen ID).

    One look-up per key for the whole batch, one read of the shortlisted citizens; a probe
    without a folded name finds none. ``exclude[i]`` lists citizen IDs probe ``i`` already has.
    """
    asked = [_lookups(p) if p.name_folded else [] for p in probes]
    dates = sorted({v for pairs in asked for _k, v in pairs if isinstance(v, date)})
    years = sorted({v for pairs in asked for _k, v in pairs if isinstance(v, tuple) and len(v) == 4},
                   key=repr)  # fmt: skip
    places = sorted({v for pairs in asked for k, v in pairs if k == "name_province"})
    born = index.by_birth_date(dates) if dates else {}
    named = index.by_name_years(years) if years else {}
    placed = index.by_name_province(places) if places else {}

    shortlists: list[dict[str, list[str]]] = []
    for probe, pairs in zip(probes, asked, strict=True):
        found_by: dict[str, list[str]] = {}
        for key, value in pairs:
            for cid in _shortlist(probe.name_folded, key, value, born, named, placed):
                keys_of = found_by.setdefault(cid, [])
                if key not in keys_of:
                    keys_of.append(key)
        shortlists.append(found_by)
    citizens = index.citizens({cid for short in shortlists for cid in short})
    out: list[list[Suggestion]] = []
    for i, (probe, short) in enumerate(zip(probes, shortlists, strict=True)):
        skip = set(exclude[i]) if exclude is not None else set()
        scored = []
        for cid, keys in short.items():
            citizen = citizens.get(cid)
            if citizen is None or cid in skip:
                continue
            probability, parts = score(probe, citizen)
            if probability >= MIN_SCORE:
                scored.append(Suggestion(cid, citizen.full_name, probability, parts, keys))
        scored.sort(key=lambda s: (-round(s.score, 4), s.citizen_id))
        out.append(scored[:limit])
    return out


class MemoryRegistryIndex:
    """A :class:`RegistryIndex` over citizens in memory: for unit tests and the quality
    benchmark's reference; the reconciler reads PostgreSQL (``reconciliation.store.registry``)."""

    def __init__(self, citizens: Iterable[Citizen]):
        self._citizens = {c.citizen_id: c for c in citizens}

    def by_birth_date(self, dates: Sequence[date]) -> dict[date, dict[str, str]]:
        wanted = set(dates)
        out: dict[date, dict[str, str]] = {d: {} for d in wanted}
        for c in self._citizens.values():
            if c.date_of_birth in wanted and c.name_folded:
                out[c.date_of_birth][c.citizen_id] = c.name_folded
        return out

    def by_name_years(self, keys):
        out = {}
        for key in keys:
            folded, first, last, near = key
            want = name_key(folded)
            hits = [
                c
                for c in self._citizens.values()
                if c.name_folded and c.date_of_birth and first <= c.date_of_birth.year <= last
                and name_key(c.name_folded) == want
            ]  # fmt: skip
            centre = near or date(first, 7, 1)
            hits.sort(key=lambda c: (abs((c.date_of_birth - centre).days), c.citizen_id))
            out[key] = {c.citizen_id: c.name_folded for c in hits[:PER_KEY]}
        return out

    def by_name_province(self, keys):
        out = {}
        for key in keys:
            folded, province = key
            want = name_sorted(folded)
            hits = sorted(
                c.citizen_id
                for c in self._citizens.values()
                if c.name_folded and c.province_code == province
                and name_sorted(c.name_folded) == want
            )  # fmt: skip
            out[key] = {cid: self._citizens[cid].name_folded for cid in hits[:PER_KEY]}
        return out

    def citizens(self, citizen_ids: Iterable[str]) -> dict[str, Citizen]:
        return {cid: self._citizens[cid] for cid in citizen_ids if cid in self._citizens}

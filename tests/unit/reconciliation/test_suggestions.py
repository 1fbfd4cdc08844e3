"""Registry candidates: each blocking key, the date and name levels, and the score."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.vocabulary import CANDIDATE_KEYS
from reconciliation.names import fold
from reconciliation.suggestions import (
    Citizen,
    MemoryRegistryIndex,
    Probe,
    compare_dates,
    describe,
    find_candidates,
    name_key,
    name_sorted,
    score,
    swap_day_month,
)

dates = st.dates(min_value=date(1900, 1, 1), max_value=date(2099, 12, 31))
words = st.lists(st.sampled_from(["nguyen", "van", "an", "thi", "binh", "le", "hoa"]), min_size=1,
                 max_size=5)  # fmt: skip


def citizen(cid: str, name: str, dob: date | None, sex="M", province="079") -> Citizen:
    return Citizen(cid, name, fold(name), dob, sex, province)


TRUE = citizen("079085000001", "Nguyễn Văn An", date(1985, 3, 7))
NOISE = [
    citizen("079085000002", "Nguyễn Văn Bình", date(1985, 3, 7)),
    citizen("079085000003", "Trần Thị Hoa", date(1985, 7, 3), sex="F"),
    citizen("079084000004", "Lê Văn An", date(1984, 3, 7)),
    citizen("001085000005", "Nguyễn Văn An", date(1985, 3, 7), province="001"),
]
INDEX = MemoryRegistryIndex([TRUE, *NOISE[:3]])  # the province twin is scored apart, below


@given(dates)
def test_a_swap_twice_is_the_date_and_compares_as_swapped(d):
    swapped = swap_day_month(d)
    if d.day > 12 or d.day == d.month:
        assert swapped is None
    else:
        assert swapped is not None and swap_day_month(swapped) == d
        assert compare_dates(d, swapped) == "day_month_swapped"


@given(dates, st.integers(min_value=-1, max_value=1))
def test_dates_a_year_apart_on_the_same_day_are_year_off_by_one(d, step):
    if step == 0 or (d.month, d.day) == (2, 29):
        return
    other = d.replace(year=d.year + step)
    assert compare_dates(d, other) in ("year_off_by_one", "one_digit")


@given(dates)
def test_levels_are_symmetric_and_equal_only_for_the_same_date(d):
    other = d + timedelta(days=40)
    assert compare_dates(d, d) == "equal"
    assert compare_dates(d, other) == compare_dates(other, d) != "equal"
    assert compare_dates(d, None) == compare_dates(None, d) == "missing"


def test_a_day_typed_wrong_is_one_digit():
    assert compare_dates(date(1985, 3, 7), date(1985, 3, 9)) == "one_digit"
    assert compare_dates(date(1985, 3, 7), date(1985, 11, 20)) == "same_year"


@given(st.permutations(["nguyen", "van", "an"]))
def test_the_name_key_ignores_word_order(order):
    assert name_key(" ".join(order)) == name_sorted("an nguyen van") == "an nguyen van"


def test_an_arabic_name_key_is_the_first_and_fathers_names():
    assert name_key(fold("محمد أحمد علي حسن")) == name_key(fold("محمد احمد علي")) == "محمد احمد"


@given(words, dates, st.sampled_from(["M", "F", None]))
def test_the_score_is_a_probability_and_an_exact_copy_scores_highest(ws, d, sex):
    name = " ".join(ws)
    same = Citizen("1", name, name, d, sex, "079")
    probe = Probe(name, d, sex, "079")
    best, parts = score(probe, same)
    assert 0.0 <= best <= 1.0
    assert parts["name"] == 1.0 and parts["birth_date"] == "equal"
    for other in (d + timedelta(days=400), None):
        worse, _ = score(probe, Citizen("2", name, name, other, sex, "079"))
        assert worse < best


def test_the_evidence_ranks_as_a_steward_would():
    probe = Probe(fold("Nguyễn Văn An"), date(1985, 3, 7), "M", "079")
    exact = score(probe, TRUE)[0]
    swapped = score(probe, citizen("x", "Nguyễn Văn An", date(1985, 7, 3)))[0]
    other_province = score(probe, NOISE[3])[0]
    other_name = score(probe, NOISE[0])[0]
    assert exact > other_province > other_name
    assert exact > swapped > other_name
    assert exact > 0.99


def test_parts_read_as_a_sentence():
    parts = score(Probe(fold("Nguyen Van An"), date(1985, 7, 3), None, "079"), TRUE)[1]
    assert describe(parts) == "name 1.00 · birth date day/month swapped · same province"


def ids(found):
    return [s.citizen_id for s in found]


@pytest.mark.parametrize(
    ("probe", "key"),
    [
        (Probe(fold("NGUYEN VAN AN"), date(1985, 3, 7), "M", "079"), "birth_date"),
        (Probe(fold("NGUYEN VAN ANH"), date(1985, 7, 3), "M"), "birth_date_swapped"),
        (Probe(fold("NGUYEN VAN AN"), date(1986, 3, 7), "M"), "birth_year_name"),
        (Probe(fold("AN NGUYEN VAN"), date(1985, 3, 9), "M"), "birth_year_name"),
        (Probe(fold("Văn An Nguyễn"), None, "M", "079"), "name_province"),
        (Probe(fold("NGUYEN VAN AN"), None, None, None, 1985, "M"), "id_encoded"),
    ],
    ids=["exact", "swapped", "year+1", "day-typo+order", "no-dob", "id-year"],
)
def test_each_blocking_key_finds_the_citizen_first_and_only_that_key_does(probe, key):
    (found,) = find_candidates(INDEX, [probe])
    assert ids(found)[0] == TRUE.citizen_id
    assert key in found[0].found_by
    others = tuple(k for k in CANDIDATE_KEYS if k != key)
    (without,) = find_candidates(INDEX, [Probe(**{**_fields(probe), "keys": others})])
    assert TRUE.citizen_id not in ids(without) or key == "birth_date"


def _fields(p: Probe) -> dict:
    return {f: getattr(p, f) for f in Probe.__slots__}


def test_at_most_three_candidates_and_the_excluded_are_left_out():
    probe = Probe(fold("Nguyen Van An"), date(1985, 3, 7), "M", None)
    (found,) = find_candidates(INDEX, [probe])
    assert len(found) <= 3
    (again,) = find_candidates(INDEX, [probe], exclude=[[TRUE.citizen_id]])
    assert TRUE.citizen_id not in ids(again)


def test_a_probe_without_a_name_or_any_key_finds_nothing():
    assert find_candidates(INDEX, [Probe(""), Probe(fold("An"), keys=())]) == [[], []]

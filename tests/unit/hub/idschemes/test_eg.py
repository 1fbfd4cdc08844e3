"""Egypt's 14-digit national number: structure, birth date, governorate and sex."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.idschemes import get_scheme
from hub.idschemes.eg import GOVERNORATE_CODES, EgyptNationalNumber, make_id
from tests.unit.hub.idschemes.contract import IdSchemeContract

scheme = EgyptNationalNumber()


def test_governorate_table_holds_the_official_codes():
    assert len(GOVERNORATE_CODES) == 28
    assert GOVERNORATE_CODES["01"] == "Cairo"
    assert GOVERNORATE_CODES["21"] == "Giza"
    assert "88" in GOVERNORATE_CODES  # born abroad


@given(
    birth_date=st.dates(date(1900, 1, 1), date(2099, 12, 31)),
    governorate=st.sampled_from(sorted(GOVERNORATE_CODES)),
    sex=st.sampled_from(["M", "F"]),
    serial=st.integers(0, 4999),
    check=st.integers(0, 9),
)
def test_every_generated_id_parses_back_to_its_attributes(
    birth_date, governorate, sex, serial, check
):
    value = make_id(birth_date, governorate, sex, serial, check)
    info = scheme.parse(value)
    assert len(value) == 14
    assert info.kind == "current"
    assert info.reason is None
    assert (info.birth_date, info.birth_year, info.sex, info.region_code) == (
        birth_date,
        birth_date.year,
        sex,
        governorate,
    )


@given(serials=st.lists(st.integers(0, 4999), min_size=2, max_size=2, unique=True))
def test_distinct_serials_give_distinct_ids(serials):
    ids = {make_id(date(1990, 1, 1), "01", "F", s) for s in serials}
    assert len(ids) == 2


@pytest.mark.parametrize(("sex_digit", "sex"), [("1", "M"), ("3", "M"), ("0", "F"), ("8", "F")])
def test_thirteenth_digit_odd_is_male_even_is_female(sex_digit, sex):
    assert scheme.parse(f"2900101010{sex_digit}{sex_digit}{sex_digit}5").sex == sex


def test_check_digit_is_never_used_to_reject():
    kinds = {scheme.parse(f"2900101010012{k}").kind for k in range(10)}
    assert kinds == {"current"}


def test_century_digit_three_is_born_in_the_2000s():
    info = scheme.parse("30502280100127")
    assert info.birth_date == date(2005, 2, 28)


class TestEgyptContract(IdSchemeContract):
    scheme = scheme
    malformed = [
        ("2900101010012", "got 13"),
        ("290010101001234", "got 15"),
        ("2900101010012X", "other than digits"),
        ("19001010100125", "century digit '1'"),
        ("29002300100125", "impossible birth date '900230'"),
        ("20102290100125", "impossible birth date '010229'"),  # 1901 is not a leap year
        ("29013010100125", "impossible birth date '901301'"),
        ("29001010500125", "unknown governorate code '05'"),
        ("29001012000125", "unknown governorate code '20'"),
    ]
    spellings = ["2 900101 01 0012 5", "2-900101-01-0012-5", "٢٩٠٠١٠١٠١٠٠١٢٥", "۲۹۰۰۱۰۱۰۱۰۰۱۲۵"]
    canonical = "29001010100125"


def test_leap_day_in_a_leap_year_is_a_real_date():
    assert scheme.parse("30002290100125").birth_date == date(2000, 2, 29)


def test_there_is_no_legacy_form():
    assert scheme.parse("012345678").kind == "invalid"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"birth_date": date(1899, 12, 31)}, "birth year"),
        ({"governorate": "05"}, "governorate"),
        ({"sex": "X"}, "sex"),
        ({"serial": 5000}, "serial"),
        ({"check": 10}, "check digit"),
    ],
)
def test_make_id_rejects_what_no_real_id_can_encode(kwargs, message):
    args = {"birth_date": date(1990, 1, 1), "governorate": "01", "sex": "M", "serial": 1}
    with pytest.raises(ValueError, match=message):
        make_id(**(args | kwargs))


def test_registry_returns_the_egyptian_scheme():
    assert isinstance(get_scheme("eg"), EgyptNationalNumber)


def test_explain_says_what_each_part_of_an_egyptian_id_means():
    parts = scheme.explain("29001011234567")
    assert [p.positions for p in parts] == [
        "digit 1",
        "digits 2–7",
        "digits 8–9",
        "digits 10–13",
        "digit 14",
    ]
    assert parts[1].text() == "digits 2–7: birth date (YYMMDD) 900101 → 1990-01-01"
    assert parts[2].meaning == "Dakahlia"
    assert (parts[3].field, parts[3].value, parts[3].meaning) == ("sex", "F", "female")

"""Vietnam's 12-digit personal ID: structure, decoding and the legacy 9-digit CMND."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.errors import ConfigError
from hub.idschemes import SCHEMES, IdScheme, get_scheme
from hub.idschemes.vn import PROVINCE_CODES, VietnamPersonalId, make_id
from tests.unit.hub.idschemes.contract import IdSchemeContract

scheme = VietnamPersonalId()


def test_the_official_table_has_63_provinces_between_001_and_096():
    assert len(PROVINCE_CODES) == 63
    assert min(PROVINCE_CODES) == "001" and max(PROVINCE_CODES) == "096"
    assert PROVINCE_CODES["001"] == "Hà Nội"
    assert PROVINCE_CODES["079"] == "Hồ Chí Minh"
    assert PROVINCE_CODES["048"] == "Đà Nẵng"


@given(
    province=st.sampled_from(sorted(PROVINCE_CODES)),
    birth_year=st.integers(1900, 2199),
    sex=st.sampled_from(["M", "F"]),
    serial=st.integers(0, 999_999),
)
def test_every_generated_id_parses_back_to_its_attributes(province, birth_year, sex, serial):
    info = scheme.parse(make_id(province, birth_year, sex, serial))
    assert info.kind == "current"
    assert info.reason is None
    assert (info.birth_year, info.sex, info.region_code) == (birth_year, sex, province)
    assert info.birth_date is None  # the ID encodes only the year


@pytest.mark.parametrize(
    ("century_sex", "birth_year", "sex"),
    [("0", 1985, "M"), ("1", 1985, "F"), ("2", 2085, "M"), ("3", 2085, "F"), ("5", 2185, "F")],
)
def test_fourth_digit_encodes_century_and_sex(century_sex, birth_year, sex):
    info = scheme.parse(f"001{century_sex}85000123")
    assert (info.birth_year, info.sex) == (birth_year, sex)


def test_nine_digits_is_a_legacy_cmnd():
    info = scheme.parse("012345678")
    assert info.kind == "legacy"
    assert info.reason
    assert info.birth_year is None and info.sex is None


class TestVietnamContract(IdSchemeContract):
    scheme = scheme
    malformed = [
        ("07918500012", "got 11"),
        ("0791850001234", "got 13"),
        ("07918500012A", "other than digits"),
        ("003185000123", "unknown province code '003'"),
        ("097185000123", "unknown province code '097'"),
        ("000185000123", "unknown province code '000'"),
    ]
    spellings = [
        "079 185 000 123",
        "079-185-000-123",
        "079.185.000.123",
        " 079185000123\t",
        "٠٧٩١٨٥٠٠٠١٢٣",
        "۰۷۹۱۸۵۰۰۰۱۲۳",
    ]
    canonical = "079185000123"


def test_inspect_normalizes_before_parsing():
    assert scheme.inspect("079 185 000 123").kind == "current"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("003", 1985, "M", 1), "province"),
        (("001", 1899, "M", 1), "birth year"),
        (("001", 1985, "X", 1), "sex"),
        (("001", 1985, "M", 1_000_000), "serial"),
    ],
)
def test_make_id_rejects_what_no_real_id_can_encode(args, message):
    with pytest.raises(ValueError, match=message):
        make_id(*args)


def test_registry_knows_both_built_in_schemes():
    assert isinstance(get_scheme("vn"), VietnamPersonalId)
    assert set(SCHEMES) >= {"vn", "eg"}
    assert all(isinstance(s, IdScheme) and s.name == name for name, s in SCHEMES.items())


def test_unknown_scheme_is_a_config_error_naming_the_known_ones():
    with pytest.raises(ConfigError) as excinfo:
        get_scheme("fr")
    assert excinfo.value.problems == ["id_scheme: unknown scheme 'fr' (known: eg, vn)"]


def test_explain_says_what_each_part_of_a_vietnamese_id_means():
    texts = [p.text() for p in scheme.explain("001185000123")]
    assert texts == [
        "digits 1–3: province 001 → Hà Nội",
        "digit 4: century and sex 1 → female, born 1900–1999",
        "digits 5–6: birth year 85 → 1985",
        "digits 7–12: serial number 000123 → a running number",
    ]
    (legacy,) = scheme.explain("012345678")
    assert legacy.positions == "digits 1–9" and legacy.field is None

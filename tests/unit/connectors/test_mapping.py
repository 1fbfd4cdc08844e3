"""Row → canonical record mapping: value maps, text dates, type coercion, dead-letter reasons."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.logical.pgoutput.messages import UNCHANGED
from connectors.mapping import (
    UNCHANGED_ATTRIBUTE,
    RecordMapper,
    decode_row,
    encode_row,
    join_key,
)
from hub.config import SourceConfig
from hub.errors import ConfigError, SkippableError
from hub.idschemes import get_scheme


def mapper(**columns) -> RecordMapper:
    base = {"citizen_id": "so_cccd"}
    base.update(columns)
    source = SourceConfig(url="postgresql://x@y/z", table="t", key="ma", columns=base)
    return RecordMapper("tax", source, get_scheme("vn"))


ROW = {"ma": "MST1", "so_cccd": "001 090 012345", "ten": "Nguyễn Văn An", "ngay": "02/01/1990",
       "gt": "Nam", "tt": "active", "ngay_nop": date(2024, 3, 1)}  # fmt: skip


def test_a_row_maps_onto_every_configured_field_and_nothing_else():
    m = mapper(full_name="ten", date_of_birth={"column": "ngay", "format": "%d/%m/%Y"},
               sex={"column": "gt", "map": {"Nam": "M", "Nữ": "F"}}, status="tt",
               last_activity_date="ngay_nop")  # fmt: skip
    assert m.map(ROW) == {
        "citizen_id": "001 090 012345",  # as the source holds it
        "full_name": "Nguyễn Văn An",
        "date_of_birth": date(1990, 1, 2),
        "sex": "M",
        "status": "active",
        "last_activity_date": date(2024, 3, 1),
        "attributes": {},
    }
    assert m.columns == ("ma", "so_cccd", "ten", "ngay", "gt", "tt", "ngay_nop")


def test_the_kafka_key_is_the_normalized_citizen_id_else_sector_and_record_key():
    m = mapper()
    assert m.kafka_key({"citizen_id": "001 090-012345"}, "MST1") == b"001090012345"
    assert m.kafka_key({"citizen_id": "  "}, "MST1") == b"tax:MST1"
    assert m.kafka_key({"citizen_id": None}, "MST1") == b"tax:MST1"
    assert m.kafka_key(None, "MST1") == b"tax:MST1"


def test_value_maps_match_exactly_then_ignoring_case_blanks_and_normalization_form():
    m = mapper(sex={"column": "gt", "map": {"Nam": "M", "Nữ": "F", "Không rõ": None}})
    decomposed_nu = "Nu\u031b\u0303"  # "Nữ" in NFD
    for raw, expected in [("Nam", "M"), (" NAM ", "M"), ("nữ", "F"), (decomposed_nu, "F"),
                          ("Không rõ", None)]:  # fmt: skip
        assert m.map({"so_cccd": "1", "gt": raw})["sex"] == expected, raw


def test_an_unknown_enum_value_is_skippable_and_names_the_column_not_the_value():
    m = mapper(sex={"column": "gt", "map": {"Nam": "M", "Nữ": "F"}})
    with pytest.raises(SkippableError) as err:
        m.map({"so_cccd": "1", "gt": "Khác"})
    assert err.value.column == "gt"
    assert "value map" in err.value.reason and "Nam, Nữ" in err.value.reason
    assert "Khác" not in err.value.reason


def test_sex_without_a_map_accepts_only_m_and_f():
    m = mapper(sex="gt")
    assert m.map({"so_cccd": "1", "gt": "f"})["sex"] == "F"
    with pytest.raises(SkippableError, match="value map"):
        m.map({"so_cccd": "1", "gt": "Nam"})


@pytest.mark.parametrize(
    ("fmt", "text", "expected"),
    [
        ("%d/%m/%Y", "31/12/1999", date(1999, 12, 31)),
        ("%d/%m/%Y", "1/2/1990", date(1990, 2, 1)),
        ("%Y%m%d", "19900102", date(1990, 1, 2)),
        ("%d-%b-%Y", "02-Jan-1990", date(1990, 1, 2)),  # strptime fallback
        (None, "1990-01-02", date(1990, 1, 2)),
        (None, "1990-01-02 10:00:00", date(1990, 1, 2)),
    ],
)
def test_text_dates_follow_the_configured_format(fmt, text, expected):
    spec = {"column": "ngay", "format": fmt} if fmt else "ngay"
    assert (
        mapper(date_of_birth=spec).map({"so_cccd": "1", "ngay": text})["date_of_birth"] == expected
    )


@pytest.mark.parametrize("text", ["31/02/1990", "1990-01-02", "02/01/90", "abc"])
def test_a_date_not_in_the_format_is_skippable_with_the_format_in_the_reason(text):
    m = mapper(date_of_birth={"column": "ngay", "format": "%d/%m/%Y"})
    with pytest.raises(SkippableError) as err:
        m.map({"so_cccd": "1", "ngay": text})
    assert err.value.column == "ngay" and "%d/%m/%Y" in err.value.reason


def test_blank_text_dates_and_nulls_become_null_or_the_default():
    m = mapper(date_of_birth="ngay", status={"column": "tt", "default": "active"})
    record = m.map({"so_cccd": "1", "ngay": "  ", "tt": None})
    assert record["date_of_birth"] is None and record["status"] == "active"


def test_a_default_that_cannot_be_converted_is_a_config_error():
    with pytest.raises(ConfigError, match="columns.date_of_birth.default"):
        mapper(date_of_birth={"column": "ngay", "default": "not a date"})


def test_values_of_other_types_become_text_exactly():
    m = mapper(province_code="p", **{"attributes.so_tien": "tien", "attributes.ok": "ok",
                                     "attributes.uid": "uid", "attributes.ts": "ts"})  # fmt: skip
    uid = uuid.uuid4()
    record = m.map({"so_cccd": 1234, "p": 1, "tien": Decimal("1E+3"), "ok": True, "uid": uid,
                    "ts": datetime(2024, 1, 2, 3, 4, tzinfo=UTC)})  # fmt: skip
    assert record["citizen_id"] == "1234" and record["province_code"] == "1"
    assert record["attributes"] == {"so_tien": "1000", "ok": "true", "uid": str(uid),
                                    "ts": "2024-01-02T03:04:00+00:00"}  # fmt: skip


def test_a_binary_value_in_a_text_field_is_skippable():
    with pytest.raises(SkippableError, match="binary"):
        mapper(full_name="ten").map({"so_cccd": "1", "ten": b"\x00"})


def test_unchanged_toast_values_stay_null_and_are_listed_for_consumers():
    m = mapper(full_name="ten", address="dc")
    record = m.map({"so_cccd": "1", "ten": UNCHANGED, "dc": UNCHANGED})
    assert record["full_name"] is None and record["address"] is None
    assert record["attributes"] == {UNCHANGED_ATTRIBUTE: "full_name,address"}


def test_a_partial_before_image_maps_only_the_columns_it_carries():
    m = mapper(full_name="ten")
    assert m.map({"so_cccd": "1"}, partial=True) == {"citizen_id": "1", "attributes": {}}
    with pytest.raises(SkippableError, match="column ten is missing"):
        m.map({"so_cccd": "1"})


@given(st.lists(st.text(), min_size=1, max_size=3), st.lists(st.text(), min_size=1, max_size=3))
def test_distinct_composite_keys_never_join_to_the_same_text(a, b):
    if len(a) == len(b) and a != b:
        assert join_key(a) != join_key(b)


_values = st.one_of(
    st.none(),
    st.text(),
    st.integers(),
    st.booleans(),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.dates(),
    st.datetimes(timezones=st.sampled_from([None, UTC])),
    st.uuids(),
    st.binary(max_size=8),
)


@given(st.dictionaries(st.text(min_size=1, max_size=8), _values, max_size=6))
def test_raw_rows_survive_the_dead_letter_payload_round_trip(row):
    assert decode_row(encode_row(row)) == row


@given(st.text())
def test_any_text_in_a_text_field_maps_to_itself_or_is_never_an_error(text):
    assert mapper(full_name="ten").map({"so_cccd": "1", "ten": text})["full_name"] == text


@given(st.dates(min_value=date(1000, 1, 1)))
def test_every_date_round_trips_through_its_configured_text_format(d):
    m = mapper(date_of_birth={"column": "ngay", "format": "%d/%m/%Y"})
    text = f"{d.day:02d}/{d.month:02d}/{d.year:04d}"
    assert m.map({"so_cccd": "1", "ngay": text})["date_of_birth"] == d

"""Debezium's logical types decoded to Python values, for any value (hypothesis): the
right value for well-formed input, a LogicalValueError naming the column (never the
value) for anything else, and no other exception escaping."""

from __future__ import annotations

import base64
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from connectors.debezium.logical import (
    KNOWN_NAMES,
    ColumnType,
    LogicalValueError,
    avro_types,
    connect_types,
    decode_value,
    format_type,
)
from tests.unit.connectors.debezium import records as rec

relaxed = settings(deadline=None)
"""No per-example deadline: example timings vary on a shared, loaded machine."""

EPOCH = datetime(1970, 1, 1)
DBZ, CONNECT = "io.debezium.", "org.apache.kafka.connect.data."


def t(name: str, **params) -> ColumnType:
    return ColumnType(name, params)


@relaxed
@given(st.dates())
def test_date_is_days_since_the_epoch(day):
    days = (day - date(1970, 1, 1)).days
    assert decode_value("d", t(f"{DBZ}time.Date"), days) == day
    assert decode_value("d", t(f"{CONNECT}Date"), days) == day
    assert decode_value("d", t(f"{CONNECT}Date"), day) == day  # Avro's date, already decoded


@relaxed
@given(st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1)))
def test_timestamps_in_milli_micro_and_nano_seconds(moment):
    micros = (moment - EPOCH) // timedelta(microseconds=1)
    assert decode_value("c", t(f"{DBZ}time.MicroTimestamp"), micros) == moment
    assert decode_value("c", t(f"{DBZ}time.NanoTimestamp"), micros * 1000 + 999) == moment
    millis = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
    assert decode_value("c", t(f"{DBZ}time.Timestamp"), micros // 1000) == millis
    assert decode_value("c", t(f"{CONNECT}Timestamp"), micros // 1000) == millis.replace(tzinfo=UTC)


@relaxed
@given(st.times())
def test_times_of_day(clock):
    micros = ((clock.hour * 60 + clock.minute) * 60 + clock.second) * 1_000_000 + clock.microsecond
    assert decode_value("t", t(f"{DBZ}time.MicroTime"), micros) == clock
    assert decode_value("t", t(f"{DBZ}time.NanoTime"), micros * 1000) == clock
    assert decode_value("t", t(f"{DBZ}time.Time"), micros // 1000) == clock.replace(
        microsecond=clock.microsecond // 1000 * 1000
    )


@relaxed
@given(st.datetimes(timezones=st.timezones()))
def test_zoned_timestamp_is_an_iso_text(moment):
    text = moment.isoformat()  # the offset Debezium wrote, also inside a DST fold
    assert decode_value("z", t(f"{DBZ}time.ZonedTimestamp"), text).isoformat() == text


@relaxed
@given(st.decimals(allow_nan=False, allow_infinity=False, places=4,
                   min_value=-(10**20), max_value=10**20))  # fmt: skip
def test_precise_decimal_is_base64_two_complement_bytes_with_the_scale(value):
    raw = rec.decimal_bytes(value, 4)
    assert (
        decode_value("n", t(f"{CONNECT}Decimal", scale="4"), base64.b64encode(raw).decode())
        == value
    )
    assert decode_value("n", t(f"{CONNECT}Decimal", scale="4"), raw) == value  # Avro bytes
    variable = {"scale": 4, "value": base64.b64encode(raw).decode()}
    assert decode_value("n", t(f"{DBZ}data.VariableScaleDecimal"), variable) == value


def test_double_and_string_decimal_modes_and_other_semantic_types_pass_as_they_are():
    assert decode_value("n", ColumnType(None), 1234.5) == 1234.5  # decimal.handling.mode=double
    assert decode_value("n", ColumnType(None), "1234.50") == "1234.50"  # =string
    assert decode_value("j", t(f"{DBZ}data.Json"), '{"a": 1}') == '{"a": 1}'
    assert decode_value("y", t(f"{DBZ}time.Year"), 1990) == 1990
    assert decode_value("d", t(f"{DBZ}time.Date"), None) is None


ANY = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.binary(),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


@relaxed
@given(st.sampled_from(KNOWN_NAMES), ANY, st.sampled_from([None, "2", "x", "-3"]))
@example("io.debezium.time.ZonedTimestamp", "0000", None)  # fromisoformat's message quotes it
def test_any_value_of_any_type_decodes_or_fails_with_the_column_only(name, value, scale):
    ctype = ColumnType(name, {"scale": scale} if scale is not None else None)
    try:
        decode_value("secret_col", ctype, value)
    except LogicalValueError as exc:
        assert exc.column == "secret_col"
        assert exc.reason.startswith("column secret_col: not a ")
        if isinstance(value, str) and len(value) > 3:
            assert value not in exc.reason


@pytest.mark.parametrize(
    ("name", "value"),
    [(f"{DBZ}time.Date", "1990-01-02"), (f"{DBZ}time.Date", 10**12), (f"{DBZ}time.MicroTime", -1),
     (f"{DBZ}time.ZonedTimestamp", "yesterday"), (f"{CONNECT}Decimal", "!!!"),
     (f"{DBZ}data.VariableScaleDecimal", {"value": "AQ=="}), (f"{DBZ}time.MicroTimestamp", True)],
)  # fmt: skip
def test_values_that_do_not_fit_their_type_are_logical_value_errors(name, value):
    with pytest.raises(LogicalValueError, match="column c: not a"):
        decode_value("c", ColumnType(name, {"scale": "2"}), value)


def test_a_decimal_without_scale_is_an_error():
    with pytest.raises(LogicalValueError, match="no scale"):
        decode_value("c", ColumnType(f"{CONNECT}Decimal"), "AQ==")


def test_types_come_from_the_connect_schema_the_avro_schema_or_the_format():
    from_json = connect_types(rec.CONNECT_SCHEMA)
    from_avro = avro_types(rec.AVRO_ENVELOPE)
    for types in (from_json, from_avro):
        assert types["ngay_sinh"].name == f"{DBZ}time.Date"
        assert types["thu_nhap"].name == f"{CONNECT}Decimal"
        assert str(types["thu_nhap"].params["scale"]) == "2"
        assert types["cccd"].name is None
    assert format_type(f"{CONNECT}Decimal:3") == ColumnType(f"{CONNECT}Decimal", {"scale": "3"})
    assert format_type("%d/%m/%Y") is None and format_type(None) is None
    assert connect_types("nonsense") == {} and avro_types(["x"]) == {}


@relaxed
@given(ANY)
def test_schema_walks_never_raise(schema):
    connect_types(schema)
    avro_types(schema)
    connect_types({"fields": [{"field": "after", "fields": [schema]}]})

"""pgoutput parser: every message type, every column type, and round trips of values."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from connectors.logical.pgoutput.decode import (
    RelationCache,
    decode_tuple,
)
from connectors.logical.pgoutput.messages import (
    UNCHANGED,
    Begin,
    Column,
    Commit,
    Delete,
    Insert,
    LogicalMessage,
    Origin,
    PgOutputError,
    PgValueError,
    Relation,
    Truncate,
    Type,
    Update,
    int_to_lsn,
    lsn_to_int,
    parse_message,
    pg_timestamp,
)
from connectors.logical.pgoutput.values import (
    BOOL,
    BPCHAR,
    DATE,
    INT2,
    INT4,
    INT8,
    JSON,
    JSONB,
    NAME,
    NUMERIC,
    OID,
    TEXT,
    TIMESTAMP,
    TIMESTAMPTZ,
    UUID,
    VARCHAR,
)
from hub.errors import HubError, SkippableError
from tests.unit.connectors import pgoutput_encoding as enc

TS_US = 767_397_845_123_456  # 2024-04-25 22:04:05.123456 UTC, µs since 2000-01-01
CITIZENS_OID = 16_385
CITIZEN_COLUMNS = [
    (1, "so_dinh_danh", BPCHAR, 16),  # char(12): typmod = 12 + 4
    (0, "ho_ten", TEXT, -1),
    (0, "ngay_sinh", DATE, -1),
    (0, "ghi_chu", TEXT, -1),
]


def citizens(replica_identity: str = "d") -> Relation:
    message = parse_message(
        enc.relation(CITIZENS_OID, "public", "citizens", CITIZEN_COLUMNS, replica_identity)
    )
    assert isinstance(message, Relation)
    return message


def single_column(type_oid: int, name: str = "v") -> Relation:
    return Relation(1, "public", "t", "d", (Column(0, name, type_oid, -1),))


def decode_one(type_oid: int, text: str | None) -> object:
    relation = single_column(type_oid)
    message = parse_message(enc.insert(1, [text]))
    return decode_tuple(relation, message.new)["v"]


# ------------------------------------------------------------------ message types


def test_begin_carries_final_lsn_commit_time_and_xid():
    message = parse_message(enc.begin(0x16B3748, TS_US, 4_000_000_000))
    assert message == Begin(final_lsn=0x16B3748, commit_ts_us=TS_US, xid=4_000_000_000)
    assert message.commit_time == datetime(2024, 4, 25, 22, 4, 5, 123456, tzinfo=UTC)
    assert message.commit_ts_ms == int(message.commit_time.timestamp() * 1000)


def test_commit_carries_commit_and_end_lsn():
    message = parse_message(enc.commit(0x16B3748, 0x16B3778, TS_US))
    assert message == Commit(flags=0, commit_lsn=0x16B3748, end_lsn=0x16B3778, commit_ts_us=TS_US)
    assert message.commit_time == pg_timestamp(TS_US)


def test_commit_time_before_2000_is_negative_and_exact():
    message = parse_message(enc.begin(1, -1, 7))
    assert message.commit_time == datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)


def test_origin_names_the_replication_origin():
    assert parse_message(enc.origin(0xFFFF_FFFF_0000_0001, "node_a")) == Origin(
        commit_lsn=0xFFFF_FFFF_0000_0001, name="node_a"
    )


def test_relation_describes_columns_key_flags_and_replica_identity():
    relation = citizens("f")
    assert relation.relation_id == CITIZENS_OID
    assert relation.qualified_name == "public.citizens"
    assert relation.replica_identity == "f"
    assert relation.columns[0] == Column(1, "so_dinh_danh", BPCHAR, 16)
    assert relation.columns[0].is_key and not relation.columns[1].is_key
    assert relation.key_columns == ("so_dinh_danh",)
    assert [c.type_modifier for c in relation.columns] == [16, -1, -1, -1]


def test_relation_in_pg_catalog_has_empty_namespace():
    relation = parse_message(enc.relation(5, "", "pg_thing", [(0, "x", INT4, -1)]))
    assert relation.namespace == "" and relation.qualified_name == "pg_catalog.pg_thing"


def test_relation_with_unicode_column_names():
    relation = parse_message(enc.relation(5, "thuế", "người_nộp", [(1, "mã_số", TEXT, -1)]))
    assert relation.qualified_name == "thuế.người_nộp"
    assert relation.columns[0].name == "mã_số"


def test_type_message_names_a_custom_type():
    message = parse_message(enc.type_(90_001, "public", "gioi_tinh"))
    assert message == Type(type_oid=90_001, namespace="public", name="gioi_tinh")
    cache = RelationCache()
    cache.observe(message)
    assert cache.type_name(90_001) == "public.gioi_tinh"
    assert cache.type_name(NUMERIC) == "numeric"


def test_insert_carries_the_new_tuple():
    message = parse_message(enc.insert(CITIZENS_OID, ["001090012345", "An", "1990-01-02", None]))
    assert message == Insert(CITIZENS_OID, (b"001090012345", b"An", b"1990-01-02", None))


def test_update_with_replica_identity_default_sends_key_only_old_tuple():
    # The key changed: PG sends 'K' with the key columns; the other columns arrive as null.
    message = parse_message(
        enc.update(
            CITIZENS_OID,
            new=["001090099999", "An", "1990-01-02", UNCHANGED],
            old=["001090012345", None, None, None],
            old_kind="K",
        )
    )
    assert isinstance(message, Update) and message.old_kind == "K"
    cache = RelationCache()
    cache.observe(citizens())
    change = cache.decode_change(message)
    assert change.op == "u" and change.before_is_key_only
    assert change.before == {"so_dinh_danh": "001090012345"}
    assert change.after["so_dinh_danh"] == "001090099999"
    assert change.after["ghi_chu"] is UNCHANGED


def test_update_with_replica_identity_full_sends_whole_old_tuple():
    message = parse_message(
        enc.update(
            CITIZENS_OID,
            new=["001090012345", "Nguyễn Văn An", "1990-01-02", "x"],
            old=["001090012345", "Nguyen Van An", "1990-02-01", "x"],
            old_kind="O",
        )
    )
    cache = RelationCache()
    cache.observe(citizens("f"))
    change = cache.decode_change(message)
    assert message.old_kind == "O" and not change.before_is_key_only
    assert change.before == {
        "so_dinh_danh": "001090012345",
        "ho_ten": "Nguyen Van An",
        "ngay_sinh": date(1990, 2, 1),
        "ghi_chu": "x",
    }
    assert change.after["ho_ten"] == "Nguyễn Văn An"


def test_update_of_non_key_columns_has_no_old_tuple():
    message = parse_message(enc.update(CITIZENS_OID, new=["001090012345", "B", None, None]))
    assert message == Update(CITIZENS_OID, None, None, (b"001090012345", b"B", None, None))
    cache = RelationCache()
    cache.observe(citizens())
    change = cache.decode_change(message)
    assert change.before is None and change.after["ngay_sinh"] is None


@pytest.mark.parametrize("old_kind", ["K", "O"])
def test_delete_carries_the_old_tuple(old_kind):
    old = ["001090012345", None, None, None]
    if old_kind == "O":
        old = ["001090012345", "An", "1990-01-02", "ghi chú"]
    message = parse_message(enc.delete(CITIZENS_OID, old, old_kind))
    assert isinstance(message, Delete) and message.old_kind == old_kind
    cache = RelationCache()
    cache.observe(citizens())
    change = cache.decode_change(message)
    assert change.op == "d" and change.after is None
    assert change.before["so_dinh_danh"] == "001090012345"
    assert ("ho_ten" in change.before) == (old_kind == "O")


def test_truncate_lists_relations_and_options():
    message = parse_message(enc.truncate([16_385, 16_390], options=3))
    assert message == Truncate(options=3, relation_ids=(16_385, 16_390))
    assert message.cascade and message.restart_identity
    plain = parse_message(enc.truncate([16_385]))
    assert not plain.cascade and not plain.restart_identity


@pytest.mark.parametrize("transactional", [True, False])
def test_logical_message_carries_prefix_and_binary_content(transactional):
    content = b"\x00heartbeat\xff"
    message = parse_message(enc.message("hub.heartbeat", content, 0x16B3748, transactional))
    assert message == LogicalMessage(int(transactional), 0x16B3748, "hub.heartbeat", content)
    assert message.transactional is transactional


def test_parser_accepts_memoryview_and_bytearray():
    raw = enc.insert(7, ["1"])
    assert parse_message(memoryview(raw)) == parse_message(bytearray(raw)) == Insert(7, (b"1",))


def test_insert_of_a_table_without_columns():
    assert parse_message(enc.insert(9, [])) == Insert(9, ())


# ------------------------------------------------------------------ column values


@pytest.mark.parametrize(
    ("type_oid", "text", "expected"),
    [
        (TEXT, "Nguyễn Văn An", "Nguyễn Văn An"),
        (VARCHAR, "عبد الله", "عبد الله"),
        (BPCHAR, "ab   ", "ab   "),  # blank padding kept as PostgreSQL sends it
        (NAME, "postgres", "postgres"),
        (INT2, "-32768", -32768),
        (INT4, "2147483647", 2147483647),
        (INT8, "-9223372036854775808", -9223372036854775808),
        (OID, "4294967295", 4294967295),
        (NUMERIC, "12345678901234567890.000000001", Decimal("12345678901234567890.000000001")),
        (NUMERIC, "-0.00100", Decimal("-0.00100")),
        (BOOL, "t", True),
        (BOOL, "f", False),
        (DATE, "1990-01-02", date(1990, 1, 2)),
        (DATE, "0001-01-01", date(1, 1, 1)),
        (DATE, "infinity", date.max),
        (DATE, "-infinity", date.min),
        (TIMESTAMP, "2024-01-02 03:04:05", datetime(2024, 1, 2, 3, 4, 5)),
        (TIMESTAMP, "2024-01-02 03:04:05.5", datetime(2024, 1, 2, 3, 4, 5, 500000)),
        (TIMESTAMP, "infinity", datetime.max),
        (
            TIMESTAMPTZ,
            "2024-01-02 03:04:05+07",
            datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=7))),
        ),
        (
            TIMESTAMPTZ,
            "2024-01-02 03:04:05.123+05:30",
            datetime(2024, 1, 2, 3, 4, 5, 123000, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        ),
        (
            TIMESTAMPTZ,
            "1900-01-01 07:06:30+07:06:30",  # Asia/Ho_Chi_Minh LMT, as PG 18 prints it
            datetime(
                1900, 1, 1, 7, 6, 30, tzinfo=timezone(timedelta(hours=7, minutes=6, seconds=30))
            ),
        ),
        (
            TIMESTAMPTZ,
            "2024-06-30 23:59:59.999999-03",
            datetime(2024, 6, 30, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=-3))),
        ),
        (TIMESTAMPTZ, "-infinity", datetime.min.replace(tzinfo=UTC)),
        (
            UUID,
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        ),
        (JSON, '{"a": [1, 2]}', '{"a": [1, 2]}'),
        (JSONB, '{"a": "ả"}', '{"a": "ả"}'),
        (1083, "12:34:56", "12:34:56"),  # time: any other type stays text
        (1007, "{1,2,3}", "{1,2,3}"),  # int4[]
        (90_001, "Nam", "Nam"),  # a custom enum
    ],
)
def test_column_text_converts_by_type_oid(type_oid, text, expected):
    value = decode_one(type_oid, text)
    assert value == expected
    assert type(value) is type(expected)
    if isinstance(expected, datetime):
        assert value.utcoffset() == expected.utcoffset()


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity"])
def test_numeric_specials_become_decimal_specials(text):
    value = decode_one(NUMERIC, text)
    assert isinstance(value, Decimal)
    assert str(value) == text


def test_null_and_unchanged_toast_are_distinct():
    relation = single_column(TEXT)
    assert decode_tuple(relation, parse_message(enc.insert(1, [None])).new) == {"v": None}
    unchanged = decode_tuple(relation, parse_message(enc.insert(1, [UNCHANGED])).new)
    assert unchanged == {"v": UNCHANGED}
    assert repr(UNCHANGED) == "UNCHANGED"


@pytest.mark.parametrize(
    ("type_oid", "text"),
    [
        (DATE, "0044-03-15 BC"),
        (DATE, "15/03/2024"),  # DateStyle not ISO
        (TIMESTAMPTZ, "Tue Jan 02 03:04:05 2024 +07"),
        (TIMESTAMPTZ, "2024-01-02 03:04:05"),  # no offset
        (TIMESTAMP, "2024-01-02 03:04:05+07"),
        (INT4, "abc"),
        (NUMERIC, "1e"),
        (BOOL, "true"),
        (UUID, "not-a-uuid"),
    ],
)
def test_unconvertible_value_is_skippable_and_names_column_not_value(type_oid, text):
    with pytest.raises(PgValueError) as caught:
        decode_one(type_oid, text)
    assert isinstance(caught.value, SkippableError)
    assert caught.value.column == "v"
    assert text not in caught.value.reason


def test_non_utf8_text_is_skippable():
    relation = single_column(TEXT)
    message = parse_message(enc.insert(1, [b"\xff\xfe"]))
    with pytest.raises(PgValueError, match="UTF-8"):
        decode_tuple(relation, message.new)


def test_tuple_with_wrong_column_count_is_rejected():
    with pytest.raises(PgOutputError, match="2 columns"):
        decode_tuple(single_column(TEXT), (b"a", b"b"))


def test_change_before_its_relation_is_rejected():
    with pytest.raises(PgOutputError, match="relation 42"):
        RelationCache().decode_change(parse_message(enc.insert(42, ["x"])))


def test_redescribed_relation_replaces_the_old_shape():
    cache = RelationCache()
    cache.observe(parse_message(enc.relation(3, "public", "t", [(1, "id", INT4, -1)])))
    cache.observe(
        parse_message(enc.relation(3, "public", "t", [(1, "id", INT4, -1), (0, "d", DATE, -1)]))
    )
    assert 3 in cache and len(cache) == 1
    change = cache.decode_change(parse_message(enc.insert(3, ["7", "2024-02-29"])))
    assert change.after == {"id": 7, "d": date(2024, 2, 29)}


# ------------------------------------------------------------------ malformed input

VALID_MESSAGES = {
    "Begin": enc.begin(1, 2, 3),
    "Commit": enc.commit(1, 2, 3),
    "Origin": enc.origin(1, "o"),
    "Relation": enc.relation(1, "public", "t", [(1, "id", INT4, -1), (0, "n", TEXT, -1)]),
    "Type": enc.type_(1, "public", "t"),
    "Insert": enc.insert(1, ["1", None, UNCHANGED]),
    "Update": enc.update(1, ["1", "a"], ["1", "b"], "O"),
    "Delete": enc.delete(1, ["1", None], "K"),
    "Truncate": enc.truncate([1, 2]),
    "Message": enc.message("p", b"abc", 5),
}


@pytest.mark.parametrize("kind", VALID_MESSAGES)
def test_every_truncation_is_reported_with_type_and_offset(kind):
    raw = VALID_MESSAGES[kind]
    for cut in range(1, len(raw)):
        with pytest.raises(PgOutputError, match=rf"malformed {kind} message at offset \d+"):
            parse_message(raw[:cut])


@pytest.mark.parametrize("kind", VALID_MESSAGES)
def test_trailing_bytes_are_reported(kind):
    with pytest.raises(PgOutputError, match=f"{kind} message .* 1 trailing bytes"):
        parse_message(VALID_MESSAGES[kind] + b"\0")


def test_unknown_message_type_is_reported():
    with pytest.raises(PgOutputError, match="'S'"):
        parse_message(b"S\0\0\0\1")  # Stream Start: protocol version 2 only
    with pytest.raises(PgOutputError, match="empty"):
        parse_message(b"")


def test_unknown_tuple_column_kind_is_reported():
    raw = b"I" + (1).to_bytes(4, "big") + b"N" + (1).to_bytes(2, "big") + b"x"
    with pytest.raises(PgOutputError, match="Insert message at offset 8: .*unknown kind"):
        parse_message(raw)


def test_binary_tuple_columns_are_refused():
    raw = b"I" + (1).to_bytes(4, "big") + b"N" + (1).to_bytes(2, "big") + b"b" + bytes(5)
    with pytest.raises(PgOutputError, match="binary"):
        parse_message(raw)


def test_update_without_new_tuple_marker_is_reported():
    raw = enc.update(1, ["1"], ["2"], "K").replace(b"N", b"X", 1)
    with pytest.raises(PgOutputError, match="new tuple marker"):
        parse_message(raw)


def test_parser_errors_belong_to_the_hub_taxonomy():
    assert issubclass(PgOutputError, HubError)
    assert issubclass(PgValueError, SkippableError)


# ------------------------------------------------------------------ LSN


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0/0", 0),
        ("0/16B3748", 0x16B3748),
        ("16/B374D848", 0x16_B374D848),
        ("FFFFFFFF/FFFFFFFF", 2**64 - 1),
    ],
)
def test_lsn_text_and_integer_convert_both_ways(text, value):
    assert lsn_to_int(text) == value
    assert int_to_lsn(value) == text


def test_lsn_parsing_accepts_lower_case():
    assert lsn_to_int("0/16b3748") == 0x16B3748


@pytest.mark.parametrize(
    "text", ["", "16B3748", "0/", "/1", "0/0x1", "1/2/3", "+1/2", "100000000/0", " 0/1"]
)
def test_malformed_lsn_is_rejected(text):
    with pytest.raises(ValueError):
        lsn_to_int(text)


@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_lsn_round_trip(value):
    assert lsn_to_int(int_to_lsn(value)) == value


def test_lsn_out_of_range_is_rejected():
    with pytest.raises(ValueError):
        int_to_lsn(2**64)


# ------------------------------------------------------------------ round trips


def round_trip(type_oid: int, text: str) -> object:
    cache = RelationCache()
    cache.observe(
        parse_message(
            enc.relation(77, "public", "t", [(1, "id", INT4, -1), (0, "v", type_oid, -1)])
        )
    )
    return cache.decode_change(parse_message(enc.insert(77, ["1", text]))).after["v"]


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_int8_round_trip(value):
    assert round_trip(INT8, str(value)) == value


@given(st.decimals(allow_nan=False, allow_infinity=False))
@example(Decimal("12345678901234567890.000000001"))
@example(Decimal("-0.000000000000000000000000001"))
@example(Decimal("1E+30"))
def test_numeric_round_trip_is_exact(value):
    decoded = round_trip(NUMERIC, enc.numeric_text(value))
    assert isinstance(decoded, Decimal)
    assert decoded == value
    assert format(decoded, "f") == enc.numeric_text(value)  # same digits, same scale


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")))
@example("Nguyễn Thị Hương Đặng")
@example("Nguyễn Văn An")  # NFD: combining marks must survive untouched
@example("عبد الله بن محمد آل إبراهيم")
@example("مُحَمَّد ـــ أحمد ١٢٣")
def test_text_round_trip_is_byte_exact(value):
    assert round_trip(TEXT, value) == value
    assert round_trip(VARCHAR, value) == value


@given(st.dates())
def test_date_round_trip(value):
    assert round_trip(DATE, enc.date_text(value)) == value


@given(
    st.datetimes(
        timezones=st.builds(
            timezone,
            st.integers(min_value=-15 * 3600 - 59 * 60, max_value=15 * 3600 + 59 * 60).map(
                lambda s: timedelta(seconds=s)
            ),
        )
    )
)
@example(datetime(2024, 1, 2, 3, 4, 5, 120000, tzinfo=timezone(timedelta(hours=7))))
@example(datetime(1, 1, 1, tzinfo=UTC))
def test_timestamptz_round_trip_keeps_instant_and_offset(value):
    decoded = round_trip(TIMESTAMPTZ, enc.timestamp_text(value))
    assert decoded == value
    assert decoded.utcoffset() == value.utcoffset()


@given(st.datetimes())
def test_timestamp_round_trip_is_naive(value):
    decoded = round_trip(TIMESTAMP, enc.timestamp_text(value))
    assert decoded == value and decoded.tzinfo is None


@given(st.booleans())
def test_bool_round_trip(value):
    assert round_trip(BOOL, enc.bool_text(value)) is value


@given(st.uuids())
def test_uuid_round_trip(value):
    assert round_trip(UUID, enc.uuid_text(value)) == value


@given(
    st.lists(
        st.one_of(st.none(), st.just(UNCHANGED), st.text(max_size=20)),
        max_size=30,
    )
)
def test_tuple_round_trip_keeps_null_unchanged_and_text(values):
    message = parse_message(enc.insert(5, values))
    expected = tuple(v.encode() if isinstance(v, str) else v for v in values)
    assert message.new == expected

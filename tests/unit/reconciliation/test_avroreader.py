"""The compiled ChangeEvent reader decodes exactly what hub.avro's Decoder decodes."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.avro import AvroDecodeError, Decoder, Encoder
from reconciliation.avroreader import compile_reader

READ = compile_reader("hub.ChangeEvent")
REFERENCE = Decoder().decode
ENCODE = Encoder("hub.ChangeEvent").encode

texts = st.one_of(st.none(), st.text(max_size=80))
dates = st.one_of(st.none(), st.dates(min_value=date(1, 1, 1), max_value=date(9999, 12, 31)))
longs = st.integers(-(2**63), 2**63 - 1)
records = st.fixed_dictionaries(
    {
        "citizen_id": texts,
        "legacy_id": texts,
        "full_name": texts,
        "date_of_birth": dates,
        "sex": st.sampled_from([None, "M", "F"]),
        "province_code": texts,
        "address": texts,
        "date_of_death": dates,
        "status": texts,
        "last_activity_date": dates,
        "attributes": st.dictionaries(st.text(max_size=10), st.text(max_size=70), max_size=4),
    }
)
events = st.fixed_dictionaries(
    {
        "op": st.sampled_from("cudr"),
        "before": st.one_of(st.none(), records),
        "after": st.one_of(st.none(), records),
        "record_key": st.text(min_size=1, max_size=300),
        "source": st.fixed_dictionaries(
            {
                "system": st.text(max_size=10),
                "connector": st.text(max_size=10),
                "database": st.text(max_size=10),
                "table": st.text(max_size=10),
                "position": st.text(max_size=20),
                "lsn": st.one_of(st.none(), longs),
                "txid": st.one_of(st.none(), longs),
                "commit_ts_ms": st.one_of(st.none(), longs),
                "snapshot": st.booleans(),
            }
        ),
        "ts_ms": longs,
    }
)


def test_the_change_event_schema_compiles():
    assert READ is not None


@given(events)
def test_compiled_reader_equals_the_reference_decoder(event):
    message = ENCODE(event)
    assert READ(message) == REFERENCE(message)


@given(events, st.data())
def test_truncated_or_extended_messages_are_decode_errors(event, data):
    message = ENCODE(event)
    cut = data.draw(st.integers(11, len(message) - 1)) if len(message) > 11 else None
    if cut is not None:
        with pytest.raises(AvroDecodeError):
            READ(message[:cut])
    with pytest.raises(AvroDecodeError):
        READ(message + b"\x00")


def test_messages_of_other_schemas_go_to_the_reference_decoder():
    event = Encoder("hub.DeadLetter").encode(
        {"stage": "connector", "source": "tax", "reason": "x", "ts_ms": 1}
    )
    assert READ(event) == REFERENCE(event)
    with pytest.raises(AvroDecodeError, match="not an Avro single-object message"):
        READ(b"plain text")


def test_a_corrupt_union_index_is_a_decode_error():
    message = bytearray(
        ENCODE(
            {
                "op": "c",
                "after": None,
                "before": None,
                "record_key": "k",
                "source": {
                    "system": "",
                    "connector": "",
                    "database": "",
                    "table": "",
                    "position": "",
                },
                "ts_ms": 0,
            }
        )
    )
    message[11] = 0x08  # the `before` union index: 4, out of range
    with pytest.raises(AvroDecodeError):
        READ(bytes(message))

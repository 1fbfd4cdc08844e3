"""The compiled ChangeEvent reader decodes exactly what hub.avro's Decoder decodes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.avro.codec import AvroDecodeError, Decoder, Encoder
from hub.avro.reader import compile_reader
from tests.unit.hub.avro.strategies import change_events as events

READ = compile_reader("hub.ChangeEvent")
REFERENCE = Decoder().decode
ENCODE = Encoder("hub.ChangeEvent").encode


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

"""The compiled Avro writer writes exactly the bytes of hub.avro.Encoder."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.avro.codec import AvroEncodeError, Encoder, decode
from hub.avro.writer import compile_encoder
from tests.unit.hub.avro.strategies import change_events as _event
from tests.unit.hub.avro.strategies import longs as _long
from tests.unit.hub.avro.strategies import texts as _text


@given(_event)
def test_change_events_encode_to_the_same_bytes_as_the_hub_encoder(event):
    fast = compile_encoder("hub.ChangeEvent")
    assert fast is not None
    data = fast.encode(event)
    assert data == Encoder("hub.ChangeEvent").encode(event)
    assert decode(data) == ("hub.ChangeEvent", event)


@given(
    st.fixed_dictionaries(
        {
            "stage": st.text(max_size=10),
            "source": st.text(max_size=10),
            "record_key": _text,
            "column": _text,
            "reason": st.text(max_size=60),
            "topic": _text,
            "partition": st.one_of(st.none(), st.integers(-(1 << 31), (1 << 31) - 1)),
            "offset": st.one_of(st.none(), _long),
            "payload": st.one_of(st.none(), st.binary(max_size=50)),
            "ts_ms": _long,
        }
    )
)
def test_dead_letters_encode_to_the_same_bytes_as_the_hub_encoder(letter):
    assert compile_encoder("hub.DeadLetter").encode(letter) == Encoder("hub.DeadLetter").encode(
        letter
    )


def test_optional_fields_left_out_take_their_defaults():
    event = {"op": "d", "record_key": "k", "ts_ms": 1,
             "source": {"system": "s", "connector": "c", "database": "d", "table": "t",
                        "position": "p"}}  # fmt: skip
    assert compile_encoder("hub.ChangeEvent").encode(event) == Encoder("hub.ChangeEvent").encode(
        event
    )


@pytest.mark.parametrize(
    "bad",
    [
        {"op": "x"},  # unknown enum symbol
        {"record_key": None},  # required string
        {"ts_ms": "now"},  # not a long
        {"after": {"full_name": 5, "attributes": {}}},  # not a string
    ],
)
def test_a_record_that_does_not_fit_raises_the_same_error_type(bad):
    event = {"op": "c", "record_key": "k", "ts_ms": 1,
             "source": {"system": "s", "connector": "c", "database": "d", "table": "t",
                        "position": "p"}}  # fmt: skip
    event.update(bad)
    with pytest.raises(AvroEncodeError):
        compile_encoder("hub.ChangeEvent").encode(event)
    with pytest.raises(AvroEncodeError):
        Encoder("hub.ChangeEvent").encode(event)


_optional_text = st.one_of(st.none(), st.text(max_size=30))
_score = st.one_of(
    st.none(), st.floats(allow_nan=False), st.integers(-(1 << 53), 1 << 53), st.just(float("inf"))
)


@given(
    st.fixed_dictionaries(
        {
            "mismatch_id": _long,
            "event": st.sampled_from(["opened", "updated", "resolved", "reopened"]),
            "sector": st.text(max_size=10),
            "record_key": st.text(max_size=20),
            "citizen_id": _optional_text,
            "rule": st.text(max_size=20),
            "field": _optional_text,
            "severity": st.text(max_size=8),
            "status": st.text(max_size=10),
            "resolution": _optional_text,
            "sector_value": _optional_text,
            "registry_value": _optional_text,
            "score": _score,
            "ts_ms": _long,
        }
    )
)
def test_mismatch_events_with_a_double_encode_to_the_same_bytes_as_the_hub_encoder(event):
    fast = compile_encoder("hub.MismatchEvent")
    assert fast is not None
    data = fast.encode(event)
    assert data == Encoder("hub.MismatchEvent").encode(event)
    name, decoded = decode(data)
    assert name == "hub.MismatchEvent"
    assert decoded == {**event, "score": None if event["score"] is None else float(event["score"])}


@pytest.mark.parametrize("score", ["0.5", True, [1.0]])
def test_a_double_that_is_not_a_number_raises(score):
    event = {"mismatch_id": 1, "event": "opened", "sector": "tax", "record_key": "k",
             "rule": "NAME_MISMATCH", "severity": "low", "status": "open", "score": score,
             "ts_ms": 1}  # fmt: skip
    with pytest.raises(AvroEncodeError):
        compile_encoder("hub.MismatchEvent").encode(event)


def test_every_shipped_schema_compiles():
    from hub.avro.codec import shipped

    for name in shipped().names:
        assert compile_encoder(name) is not None, name

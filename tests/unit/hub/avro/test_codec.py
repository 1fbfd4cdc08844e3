"""Avro single-object encoding: header, fingerprints, round trips, schema evolution, errors."""

from __future__ import annotations

import copy
import json
import struct
from datetime import date
from importlib import resources
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.avro import codec as avro
from hub.avro.codec import (
    MAGIC,
    AvroDecodeError,
    AvroEncodeError,
    Decoder,
    Encoder,
    SchemaSet,
    schema_fingerprint,
)
from hub.errors import SkippableError

SCHEMA_DIR = resources.files("schemas.avro")
ALL_NAMES = {
    "hub.CitizenRecord",
    "hub.ChangeEvent",
    "hub.MismatchEvent",
    "hub.CorrectionEvent",
    "hub.DeadLetter",
}


def raw_schema(file: str) -> dict:
    return json.loads((SCHEMA_DIR / file).read_text(encoding="utf-8"))


def rabin_crc64(data: bytes) -> int:
    """The Avro spec's reference CRC-64-AVRO (Rabin) fingerprint, written out independently."""
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    fp = empty
    for byte in data:
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp


CITIZEN = {
    "citizen_id": "001090012345",
    "legacy_id": "012345678",
    "full_name": "Nguyễn Thị Hương",
    "date_of_birth": date(1990, 1, 2),
    "sex": "F",
    "province_code": "001",
    "address": "Số 1 Đường Láng, Hà Nội",
    "date_of_death": None,
    "status": "active",
    "last_activity_date": date(2024, 3, 31),
    "attributes": {"ma_so_thue": "0101234567", "ghi_chu": "عبد الله"},
}

SAMPLES = {
    "hub.CitizenRecord": CITIZEN,
    "hub.ChangeEvent": {
        "op": "u",
        "before": {**CITIZEN, "full_name": "Nguyen Thi Huong", "attributes": {}},
        "after": CITIZEN,
        "record_key": "0101234567",
        "source": {
            "system": "postgresql",
            "connector": "tax",
            "database": "tax",
            "table": "public.nguoi_nop_thue",
            "position": "0/16B3748",
            "lsn": 0x16B3748,
            "txid": 4_000_000_000,
            "commit_ts_ms": 1_714_082_645_123,
            "snapshot": False,
        },
        "ts_ms": 1_714_082_645_200,
    },
    "hub.MismatchEvent": {
        "mismatch_id": 42,
        "event": "opened",
        "sector": "banking",
        "record_key": "acct-7",
        "citizen_id": "00109001234",
        "rule": "NAME_MISMATCH",
        "field": "full_name",
        "severity": "low",
        "status": "open",
        "resolution": None,
        "sector_value": "NGUYEN THI HUONG",
        "registry_value": "Nguyễn Thị Hương",
        "score": 0.93,
        "ts_ms": 1_714_082_645_300,
    },
    "hub.CorrectionEvent": {
        "mismatch_id": 42,
        "sector": "banking",
        "record_key": "acct-7",
        "citizen_id": "012345678",
        "rule": "ID_LEGACY",
        "field": "citizen_id",
        "current_value": "012345678",
        "suggested_value": "001090012345",
        "severity": "low",
        "note": None,
        "ts_ms": 1_714_082_645_400,
        "correction_id": 7,
        "kind": "candidate",
        "reason": "the registry's current ID",
    },
    "hub.DeadLetter": {
        "stage": "connector",
        "source": "tax",
        "record_key": "0101234567",
        "column": "ngay_sinh",
        "reason": "column 'ngay_sinh': text value does not match %d/%m/%Y",
        "topic": None,
        "partition": None,
        "offset": None,
        "payload": b"\x00\xff raw row",
        "ts_ms": 1_714_082_645_500,
    },
}


# ------------------------------------------------------------------ fingerprints


def test_fingerprint_of_int_matches_the_avro_spec_vector():
    # Avro's schema-tests vector: parsingFingerprint64("int") = 8247732601305521295
    # (0x7275D51A3F395C8F), written little-endian: 8f 5c 39 3f 1a d5 75 72.
    assert schema_fingerprint("int") == struct.pack("<Q", 0x7275D51A3F395C8F)
    assert schema_fingerprint("int").hex() == "8f5c393f1ad57572"


def test_fingerprint_of_a_record_matches_a_published_vector():
    # avro-crc64 (npm) README example; doc attributes are not part of the canonical form.
    schema = {
        "type": "record",
        "name": "Example",
        "doc": "Simple example avro schema",
        "fields": [{"name": "foobar", "type": "string", "doc": "foobar is all about barbazz"}],
    }
    assert schema_fingerprint(schema).hex() == "b75d6f7da238cf70"


@pytest.mark.parametrize("name", sorted(ALL_NAMES))
def test_message_header_is_marker_and_little_endian_rabin_fingerprint(name):
    from fastavro.schema import to_parsing_canonical_form

    file = {
        "hub.CitizenRecord": "citizen_record.avsc",
        "hub.ChangeEvent": "change_event.avsc",
        "hub.MismatchEvent": "mismatch_event.avsc",
        "hub.CorrectionEvent": "correction_event.avsc",
        "hub.DeadLetter": "dead_letter.avsc",
    }[name]
    canonical = to_parsing_canonical_form(raw_schema(file)).encode()
    message = avro.encode(name, SAMPLES[name])
    assert message[:2] == MAGIC == b"\xc3\x01"
    assert message[2:10] == struct.pack("<Q", rabin_crc64(canonical))


# ------------------------------------------------------------------ round trips


def test_shipped_schemas_are_loaded_once_by_full_name():
    schemas = avro.load_schemas()
    assert set(schemas) == ALL_NAMES
    assert avro.load_schemas()["hub.ChangeEvent"] is schemas["hub.ChangeEvent"]


@pytest.mark.parametrize("name", sorted(ALL_NAMES))
def test_every_schema_round_trips_a_full_record(name):
    assert avro.decode(avro.encode(name, SAMPLES[name])) == (name, SAMPLES[name])


def test_encoder_and_decoder_objects_match_the_module_functions():
    encoder, decoder = Encoder("hub.ChangeEvent"), Decoder()
    record = SAMPLES["hub.ChangeEvent"]
    assert encoder.encode(record) == avro.encode("hub.ChangeEvent", record)
    assert decoder.decode(encoder.encode(record)) == ("hub.ChangeEvent", record)
    assert encoder.fingerprint == avro.shipped().fingerprint("hub.ChangeEvent")


def test_change_event_for_insert_and_delete_has_null_side():
    base = SAMPLES["hub.ChangeEvent"]
    for op, before, after in (("c", None, CITIZEN), ("d", CITIZEN, None), ("r", None, CITIZEN)):
        record = {**base, "op": op, "before": before, "after": after}
        assert avro.decode(avro.encode("hub.ChangeEvent", record))[1] == record


def test_optional_fields_may_be_left_out_and_decode_as_defaults():
    _, record = avro.decode(avro.encode("hub.CitizenRecord", {"citizen_id": "001090012345"}))
    assert record["citizen_id"] == "001090012345"
    assert record["full_name"] is None and record["date_of_birth"] is None
    assert record["attributes"] == {}


def test_change_event_inlines_the_same_citizen_record_as_citizen_record_avsc():
    inline = raw_schema("change_event.avsc")["fields"][1]["type"][1]
    assert inline == raw_schema("citizen_record.avsc")


def test_released_baseline_holds_every_shipped_schema():
    released = {p.name for p in (SCHEMA_DIR / "released" / "0.1.0").iterdir()}
    current = {p.name for p in SCHEMA_DIR.iterdir() if p.name.endswith(".avsc")}
    assert current <= released


text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
citizens = st.fixed_dictionaries(
    {
        "citizen_id": st.none() | st.from_regex(r"\A[0-9]{12}\Z"),
        "legacy_id": st.none() | st.from_regex(r"\A[0-9]{9}\Z"),
        "full_name": st.none() | text,
        "date_of_birth": st.none() | st.dates(),
        "sex": st.sampled_from([None, "M", "F"]),
        "province_code": st.none() | text,
        "address": st.none() | text,
        "date_of_death": st.none() | st.dates(),
        "status": st.none() | text,
        "last_activity_date": st.none() | st.dates(),
        "attributes": st.dictionaries(text, text, max_size=5),
    }
)


@given(citizens, citizens | st.none(), st.sampled_from("curd"))
def test_change_event_round_trip_for_any_citizen_values(after, before, op):
    record = dict(SAMPLES["hub.ChangeEvent"], op=op, before=before, after=after)
    assert avro.decode(avro.encode("hub.ChangeEvent", record)) == ("hub.ChangeEvent", record)


# ------------------------------------------------------------------ schema evolution


def write_dir(directory: Path, schemas: dict[str, dict]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for file, schema in schemas.items():
        (directory / file).write_text(json.dumps(schema), encoding="utf-8")


def test_message_written_with_an_older_release_decodes_into_the_current_shape(tmp_path):
    old = raw_schema("citizen_record.avsc")
    new = copy.deepcopy(old)
    new["fields"].append({"name": "nationality", "type": "string", "default": "VN"})
    new["fields"] = [f for f in new["fields"] if f["name"] != "legacy_id"]  # dropped field
    write_dir(tmp_path, {"citizen_record.avsc": new})
    write_dir(tmp_path / "released" / "0.1.0", {"citizen_record.avsc": old})
    write_dir(tmp_path / "released" / "0.0.9", {"citizen_record.avsc": old})  # same fingerprint

    written_by_old = SchemaSet([old]).encoder("hub.CitizenRecord").encode(CITIZEN)
    evolved = SchemaSet.from_directory(tmp_path)
    name, record = evolved.decoder().decode(written_by_old)

    assert name == "hub.CitizenRecord"
    assert record["nationality"] == "VN"
    assert "legacy_id" not in record
    assert record["full_name"] == CITIZEN["full_name"]
    assert record["date_of_birth"] == date(1990, 1, 2)
    # The current schema still round-trips its own messages.
    fresh = evolved.encoder("hub.CitizenRecord").encode({**CITIZEN, "nationality": "EG"})
    assert evolved.decoder().decode(fresh)[1]["nationality"] == "EG"


def test_message_of_a_renamed_schema_decodes_under_the_new_name_via_alias(tmp_path):
    old = raw_schema("dead_letter.avsc")
    new = copy.deepcopy(old)
    new["name"], new["aliases"] = "DeadLetterV2", ["DeadLetter"]
    write_dir(tmp_path, {"dead_letter.avsc": new})
    write_dir(tmp_path / "released" / "0.1.0", {"dead_letter.avsc": old})

    message = SchemaSet([old]).encoder("hub.DeadLetter").encode(SAMPLES["hub.DeadLetter"])
    name, record = SchemaSet.from_directory(tmp_path).decoder().decode(message)
    assert name == "hub.DeadLetterV2"
    assert record == SAMPLES["hub.DeadLetter"]


def test_message_of_a_released_schema_without_current_counterpart_decodes_as_written(tmp_path):
    old = raw_schema("correction_event.avsc")
    write_dir(tmp_path, {"citizen_record.avsc": raw_schema("citizen_record.avsc")})
    write_dir(tmp_path / "released" / "0.1.0", {"correction_event.avsc": old})
    message = SchemaSet([old]).encoder("hub.CorrectionEvent").encode(SAMPLES["hub.CorrectionEvent"])
    assert SchemaSet.from_directory(tmp_path).decoder().decode(message) == (
        "hub.CorrectionEvent",
        SAMPLES["hub.CorrectionEvent"],
    )


def test_shipped_decoder_reads_messages_of_the_released_baseline():
    released_dir = SCHEMA_DIR / "released" / "0.1.0"
    baseline = SchemaSet(json.loads(p.read_text()) for p in released_dir.iterdir())
    for name in ALL_NAMES:
        message = baseline.encoder(name).encode(SAMPLES[name])
        assert avro.decode(message)[0] == name


# ------------------------------------------------------------------ errors


def test_bad_magic_is_a_skippable_decode_error():
    message = avro.encode("hub.DeadLetter", SAMPLES["hub.DeadLetter"])
    with pytest.raises(AvroDecodeError, match="expected c301") as caught:
        avro.decode(b"\x00" + message[1:])
    assert isinstance(caught.value, SkippableError)
    with pytest.raises(AvroDecodeError, match="nothing"):
        avro.decode(b"")
    with pytest.raises(AvroDecodeError, match=r"starts with 7b22"):
        avro.decode(b'{"json": true}')


def test_unknown_fingerprint_is_a_decode_error_naming_it():
    message = avro.encode("hub.DeadLetter", SAMPLES["hub.DeadLetter"])
    forged = MAGIC + bytes.fromhex("0102030405060708") + message[10:]
    with pytest.raises(AvroDecodeError, match="unknown Avro schema fingerprint 0102030405060708"):
        avro.decode(forged)


def test_truncated_header_is_a_decode_error():
    message = avro.encode("hub.DeadLetter", SAMPLES["hub.DeadLetter"])
    with pytest.raises(AvroDecodeError, match="truncated Avro header"):
        avro.decode(message[:6])


def test_every_truncated_body_is_a_decode_error():
    message = avro.encode("hub.ChangeEvent", SAMPLES["hub.ChangeEvent"])
    for cut in range(10, len(message)):
        with pytest.raises(AvroDecodeError, match="hub.ChangeEvent"):
            avro.decode(message[:cut])


def test_trailing_bytes_are_a_decode_error():
    message = avro.encode("hub.MismatchEvent", SAMPLES["hub.MismatchEvent"])
    with pytest.raises(AvroDecodeError, match="1 trailing bytes"):
        avro.decode(message + b"\x00")


def test_record_that_does_not_fit_is_a_skippable_encode_error_with_its_key():
    bad = dict(SAMPLES["hub.ChangeEvent"], ts_ms="yesterday")
    with pytest.raises(AvroEncodeError, match="hub.ChangeEvent") as caught:
        avro.encode("hub.ChangeEvent", bad)
    assert caught.value.record_key == "0101234567"
    with pytest.raises(AvroEncodeError):
        avro.encode("hub.ChangeEvent", dict(SAMPLES["hub.ChangeEvent"], op="x"))
    with pytest.raises(AvroEncodeError, match="no value and no default"):
        avro.encode("hub.MismatchEvent", {"mismatch_id": 1})


def test_unknown_schema_name_is_a_programming_error():
    with pytest.raises(KeyError, match="hub.Nope"):
        avro.encode("hub.Nope", {})

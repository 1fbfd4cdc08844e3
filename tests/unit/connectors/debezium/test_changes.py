"""Debezium messages → hub change events (converter, envelope, mapping) without servers:
JSON with and without schemas, Avro in the wire format with an in-memory registry fake."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from connectors.debezium.changes import ChangeMapper, kinds_of
from connectors.debezium.converters import AvroConverter, JsonConverter, SchemaRegistry
from connectors.events import Batch
from connectors.mapping import RecordMapper
from hub.avro.codec import decode
from hub.config import SourceConfig
from hub.errors import RetriableError
from hub.idschemes import get_scheme
from tests.unit.connectors.debezium import records as rec

DOB = date(1990, 1, 2)
DOB_DAYS = (DOB - date(1970, 1, 1)).days
ALICE = rec.row("MST1", "001 090-012345", "Nguyễn Văn An", DOB_DAYS)


class FakeRegistry(SchemaRegistry):
    """The registry's answers from memory (no registry server runs here)."""

    def __init__(self, answers: dict[str, Any] | None = None):
        super().__init__("http://registry.invalid")
        self.answers = rec.registry_answers() if answers is None else answers
        self.calls: list[str] = []

    def get(self, path: str) -> Any:
        self.calls.append(path)
        if path not in self.answers:
            return super().get(path)  # the real client: an unreachable host
        return self.answers[path]


def mapper(**debezium: Any) -> RecordMapper:
    source = SourceConfig.model_validate(rec.source_config(**debezium))
    return RecordMapper("tax", source, get_scheme("vn"))


def changes(codec=None, **debezium: Any) -> ChangeMapper:
    return ChangeMapper(mapper(**debezium), codec or JsonConverter())


def events(batch: Batch) -> list[tuple[bytes, dict]]:
    return [(k, decode(v)[1]) for k, v in batch.events]


def add(cm: ChangeMapper, *values: bytes | None) -> Batch:
    batch = Batch()
    for offset, value in enumerate(values):
        cm.add(batch, rec.TOPIC, 0, offset, value)
    return batch


@pytest.mark.parametrize("schemas", [True, False])
def test_an_insert_is_re_keyed_by_citizen_id_and_mapped_through_columns(schemas):
    cm = changes() if schemas else changes()
    if not schemas:  # raw values: the format names the logical type
        cfg = rec.source_config()
        cfg["columns"] = {**rec.COLUMNS,
                          "date_of_birth": {"column": "ngay_sinh", "format": "io.debezium.time.Date"},
                          "attributes.income": {"column": "thu_nhap",
                                                "format": "org.apache.kafka.connect.data.Decimal:2"},
                          "attributes.updated": {"column": "cap_nhat",
                                                 "format": "io.debezium.time.MicroTimestamp"}}  # fmt: skip
        cm = ChangeMapper(
            RecordMapper("tax", SourceConfig.model_validate(cfg), get_scheme("vn")),
            JsonConverter(),
        )
    batch = add(cm, rec.json_message(rec.envelope("c", None, ALICE), schemas=schemas))
    assert not batch.dead_letters
    [(key, event)] = events(batch)
    assert key == b"001090012345"
    assert event["op"] == "c" and event["record_key"] == "MST1"
    after = event["after"]
    assert after["date_of_birth"] == DOB and after["full_name"] == "Nguyễn Văn An"
    assert after["attributes"]["income"] == "1234.50"
    assert after["attributes"]["updated"] == "2023-11-14T22:13:20.123456"
    src = event["source"]
    assert src["position"].startswith(f"{rec.TOPIC}/0@0 lsn=0/16B3748")
    assert (src["system"], src["database"], src["table"]) == (
        "postgresql",
        "tax",
        "public.taxpayers",
    )
    assert src["lsn"] == 0x16B3748 and src["txid"] == 771
    assert src["commit_ts_ms"] == 1_700_000_000_000 and src["snapshot"] is False
    assert batch.newest_commit_ts == 1_700_000_000.0


def test_a_delete_is_keyed_by_its_before_image_and_a_tombstone_is_passed_over():
    null_payload = json.dumps({"schema": None, "payload": None}).encode()
    delete = rec.json_message(rec.envelope("d", ALICE, None), schemas=True)
    batch = add(changes(), delete, None, b"null", null_payload)
    assert not batch.dead_letters
    [(key, event)] = events(batch)
    assert key == b"001090012345" and event["op"] == "d" and event["after"] is None


def test_schemaless_raw_date_without_a_format_is_a_dead_letter_naming_the_column():
    batch = add(changes(), rec.json_message(rec.envelope("u", None, ALICE), schemas=False))
    [letter] = batch.dead_letters
    assert letter.column == "ngay_sinh" and "not a date" in letter.reason
    assert "0010900" not in letter.reason  # never the value


def test_avro_wire_format_decodes_through_the_registry_schema_once():
    registry = FakeRegistry()
    cm = changes(AvroConverter(registry), converter="avro", schema_registry_url="http://r:8081")
    alice = rec.row("MST1", "001090012345", "An", DOB_DAYS, raw=False)
    bob = rec.row("MST2", "079190000001", "Bình", None, Decimal("-0.05"), raw=False)
    batch = add(cm, rec.avro_message(rec.envelope("r", None, alice, snapshot="true")),
                rec.avro_message(rec.envelope("u", alice, bob)))  # fmt: skip
    assert not batch.dead_letters
    # The update changes the citizen ID: a delete on the old key, a create on the new one.
    (k1, e1), (k_old, e_old), (k2, e2) = events(batch)
    assert (k1, e1["op"], e1["source"]["snapshot"]) == (b"001090012345", "r", True)
    assert e1["after"]["date_of_birth"] == DOB
    assert (k_old, e_old["op"], e_old["after"]) == (b"001090012345", "d", None)
    assert (k2, e2["op"], e2["after"]["attributes"]["income"]) == (b"079190000001", "c", "-0.05")
    assert e2["after"]["date_of_birth"] is None
    assert registry.calls == [f"/schemas/ids/{rec.AVRO_SCHEMA_ID}"]


def test_an_unknown_schema_id_is_a_dead_letter_and_an_unreachable_registry_is_retried():
    cm = changes(AvroConverter(FakeRegistry({})), converter="avro", schema_registry_url="http://r")
    alice = rec.row("MST1", "001090012345", "An", DOB_DAYS, raw=False)
    with pytest.raises(RetriableError):
        add(cm, rec.avro_message(rec.envelope("c", None, alice)))
    answers = {"/schemas/ids/9": {"schema": json.dumps({"type": "nonsense"})}}
    cm = changes(
        AvroConverter(FakeRegistry(answers)), converter="avro", schema_registry_url="http://r"
    )
    batch = add(cm, rec.avro_message(rec.envelope("c", None, alice), schema_id=9), b"\x01abc")
    reasons = [d.reason for d in batch.dead_letters]
    assert "schema id 9 is not an Avro schema" in reasons[0]
    assert "wire format" in reasons[1]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "not a change event"),
        (json.dumps({"before": None, "after": {}}).encode(), "no op"),
        (json.dumps({"op": "x", "after": {}}).encode(), "unknown op"),
        (json.dumps({"op": "c", "after": None}).encode(), "without an after-image"),
        (json.dumps({"op": "d", "before": None}).encode(), "without a before-image"),
        (json.dumps({"op": "u", "after": "text"}).encode(), "after is not an object"),
        (json.dumps({"op": "c", "after": {"tin": "1"}, "ts_ms": "soon"}).encode(), "ts_ms"),
        (
            json.dumps({"op": "t", "source": {"table": "taxpayers"}}).encode(),
            "truncate of taxpayers",
        ),
        (json.dumps({"op": "c", "after": {"tin": "1", "ho_ten": "A"}}).encode(), "missing"),
    ],
)
def test_malformed_envelopes_are_dead_letters_with_the_reason(value, reason):
    batch = add(changes(), value, rec.json_message(rec.envelope("c", None, ALICE), schemas=True))
    [letter] = batch.dead_letters
    assert reason in letter.reason
    assert len(batch.events) == 1  # the rest of the batch goes on
    assert letter.payload is not None and json.loads(letter.payload)["position"].startswith(
        rec.TOPIC
    )


def test_truncate_has_its_own_dead_letter_kind_and_transaction_markers_are_skipped():
    begin = {"status": "BEGIN", "id": "571:53195829", "event_count": None, "ts_ms": 1}
    truncate = {"op": "t", "source": {"table": "taxpayers"}}
    batch = add(changes(), json.dumps(begin).encode(), json.dumps(truncate).encode(),
                json.dumps({"op": "m", "message": {}}).encode())  # fmt: skip
    assert kinds_of(batch) == {"truncate": 1} and not batch.events


def test_an_id_that_fails_the_scheme_is_keyed_by_record_key_not_dead_lettered_twice():
    bad = rec.row("MST9", None, "No ID", DOB_DAYS)
    batch = add(changes(), rec.json_message(rec.envelope("c", None, bad), schemas=True))
    assert [k for k, _ in batch.events] == [b"tax:MST9"]


def test_the_configured_table_names_the_events_table():
    cfg = rec.source_config()
    cfg["table"] = "thue.nguoi_nop"
    cm = ChangeMapper(RecordMapper("tax", SourceConfig.model_validate(cfg), get_scheme("vn")),
                      JsonConverter(), table="thue.nguoi_nop")  # fmt: skip
    [(_, event)] = events(add(cm, rec.json_message(rec.envelope("c", None, ALICE), schemas=True)))
    assert event["source"]["table"] == "thue.nguoi_nop"


def test_registry_credentials_become_basic_auth_and_are_never_shown():
    registry = SchemaRegistry("http://hub:s3cr%40t@127.0.0.1:9/")
    assert registry.url == "http://127.0.0.1:9"
    assert registry._headers["Authorization"] == "Basic aHViOnMzY3JAdA=="  # hub:s3cr@t
    with pytest.raises(RetriableError) as exc:
        registry.get("/subjects")  # nothing listens on port 9
    assert "s3cr" not in str(exc.value) and "127.0.0.1:9" in str(exc.value)

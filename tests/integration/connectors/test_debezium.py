"""``capture: debezium`` against a real Kafka: recorded Debezium messages (JSON with and
without schemas, Avro in the Confluent wire format) produced to a "Debezium" topic are
mapped onto the hub's change topic, re-keyed by citizen ID, with dead letters for what
cannot be mapped, and a restart or a failed delivery loses and repeats nothing acknowledged.

No schema registry server runs here: the Avro case is served by a tiny in-process HTTP
registry fake (``GET /schemas/ids/{id}``) answering the recorded schema.
One hub database and topic prefix for the module; each test its own Debezium topic.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import date
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from connectors import delivery as delivery_module
from connectors import ops
from connectors.debezium.capture import group_id
from connectors.state import hub_engine, load_offset
from hub.config import DatabaseConfig, HubConfig, KafkaConfig, MetricsConfig, SourceConfig
from hub.errors import RetriableError
from hub.kafka import ensure_topics, make_consumer, make_producer
from tests.integration.connectors.conftest import changes, dead_letters, run_once
from tests.unit.connectors.debezium import records as rec

DOB_DAYS = (date(1990, 1, 2) - date(1970, 1, 1)).days
RAW_FORMATS = {
    "date_of_birth": {"column": "ngay_sinh", "format": "io.debezium.time.Date"},
    "attributes.income": {
        "column": "thu_nhap",
        "format": "org.apache.kafka.connect.data.Decimal:2",
    },
    "attributes.updated": {"column": "cap_nhat", "format": "io.debezium.time.MicroTimestamp"},
}
ALICE = rec.row("MST1", "001090012345", "Nguyễn Văn An", DOB_DAYS)
BOB = rec.row("MST2", "079190000001", "Trần Thị Bình", None)


@pytest.fixture(scope="module")
def hub(servers) -> Iterator[tuple[str, KafkaConfig]]:
    from hub.db import engine_for
    from hub.db.migrate import upgrade

    url = servers.create_database("hub")
    upgrade(url)
    yield url, servers.kafka(partitions=3)
    engine_for(url).dispose()
    servers.drop_database(url)


@pytest.fixture(scope="module")
def registry() -> Iterator[str]:
    """A Confluent-compatible registry fake on loopback, answering the recorded schema."""
    answers = rec.registry_answers()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            body = answers.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
            self.end_headers()
            self.wfile.write(json.dumps(body or {"error_code": 40403}).encode())

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def producer(hub):
    """Plays the Debezium connector: writes the recorded messages to its topics."""
    producer = make_producer(hub[1])
    yield producer
    producer.close(5)


@pytest.fixture
def sector(hub, producer) -> Callable[..., tuple[HubConfig, str, Callable]]:
    """``sector(**debezium)`` → (config with one sector, its Debezium topic, produce)."""
    hub_url, kafka = hub

    def build(columns=None, **debezium) -> tuple[HubConfig, str, Callable]:
        topic = f"{kafka.topic_prefix}.dbz{uuid.uuid4().hex[:6]}.public.taxpayers"
        ensure_topics(kafka, [topic], partitions=2)  # Debezium's own count, not the hub's
        src = rec.source_config(**debezium)
        src["debezium"]["topics"] = [topic]
        src["columns"] = {**rec.COLUMNS, **(columns or {})}
        name = f"tax{uuid.uuid4().hex[:6]}"
        config = HubConfig(kafka=KafkaConfig(**kafka.model_dump()),
                           database=DatabaseConfig(url=hub_url),
                           metrics=MetricsConfig(listen="127.0.0.1:0"),
                           sectors={name: SourceConfig.model_validate(src)})  # fmt: skip

        def produce(*values: bytes | None, key: bytes = b'{"tin":"MST1"}') -> None:
            for value in values:
                producer.send(topic, key=key, value=value)
            producer.flush(10)

        return config, topic, produce

    return build


def only(config: HubConfig) -> str:
    [name] = config.sectors
    return name


def test_json_with_and_without_schemas_maps_rekeys_and_dead_letters(sector):
    config, topic, produce = sector(columns=RAW_FORMATS)
    name = only(config)
    alice2 = {**ALICE, "ho_ten": "Nguyễn Văn Ân"}
    produce(
        rec.json_message(rec.envelope("r", None, ALICE, snapshot="true"), schemas=True),
        rec.json_message(rec.envelope("u", ALICE, alice2), schemas=False),
        b"{not json",
        json.dumps({"op": "t", "source": {"table": "taxpayers"}}).encode(),
    )
    produce(rec.json_message(rec.envelope("c", None, BOB), schemas=False),
            rec.json_message(rec.envelope("d", BOB, None), schemas=True), None,
            key=b'{"tin":"MST2"}')  # fmt: skip
    run_once(config, name, timeout=60)

    events = changes(config, name).read()
    by_key = {}
    for m in sorted(events, key=lambda m: (m.partition, m.offset)):
        by_key.setdefault(m.key, []).append(
            (m.op, m.value["after"] and m.value["after"]["full_name"])
        )
    assert by_key == {
        b"001090012345": [("r", "Nguyễn Văn An"), ("u", "Nguyễn Văn Ân")],
        b"079190000001": [("c", "Trần Thị Bình"), ("d", None)],
    }
    snap = next(m for m in events if m.op == "r")
    assert snap.value["after"]["date_of_birth"] == date(1990, 1, 2)
    assert snap.value["after"]["attributes"]["income"] == "1234.50"
    assert snap.value["source"]["position"].startswith(f"{topic}/")
    letters = [m.value for m in dead_letters(config).read() if m.value["source"] == name]
    reasons = sorted(letter["reason"].split(":")[0] for letter in letters)
    assert reasons == ["not JSON", "truncate of taxpayers"]
    # The position: every Debezium partition past its last message, in the hub and the group.
    stored = load_offset(hub_engine(config.database.url), name)
    assert sum(stored.values()) == 7
    consumer = make_consumer(config.kafka, group_id=group_id(name, config.sectors[name].debezium))
    try:
        from kafka import TopicPartition

        committed = {f"{topic}:{p}": consumer.committed(TopicPartition(topic, p)) for p in (0, 1)}
    finally:
        consumer.close()
    committed = {k: getattr(v, "offset", v) for k, v in committed.items() if v is not None}
    assert committed == {k: v for k, v in stored.items() if v}


def test_a_restart_resumes_after_the_acknowledged_position_without_loss_or_repeat(sector):
    config, _topic, produce = sector()
    name = only(config)
    produce(*(rec.json_message(rec.envelope("c", None, ALICE), schemas=True) for _ in range(3)))
    run_once(config, name, timeout=60)
    reader = changes(config, name)
    assert len(reader.read()) == 3
    produce(rec.json_message(rec.envelope("u", ALICE, BOB), schemas=True))
    run_once(config, name, timeout=60)
    # Read once, nothing repeated: the update moved the record to another citizen ID, so it
    # is a delete on the old key and a create on the new one.
    assert [(m.key, m.op) for m in reader.read()] == [
        (b"001090012345", "d"),
        (b"079190000001", "c"),
    ]


def test_a_batch_kafka_did_not_acknowledge_is_read_again_not_skipped(sector, monkeypatch):
    config, _topic, produce = sector()
    name = only(config)
    names = [f"Người {i}" for i in range(4)]
    produce(*(rec.json_message(rec.envelope("c", None, {**ALICE, "ho_ten": n}), schemas=True)
              for n in names))  # fmt: skip
    real = delivery_module.Delivery.finish
    stored_at_failure = []

    def finish_failing_once(self, flight):
        if flight.batch.events and not stored_at_failure:
            stored_at_failure.append(load_offset(hub_engine(config.database.url), name))
            raise RetriableError("kafka did not acknowledge (injected)")
        return real(self, flight)

    monkeypatch.setattr(delivery_module.Delivery, "finish", finish_failing_once)
    run_once(config, name, timeout=60)
    assert stored_at_failure == [None]  # nothing was stored before the acknowledgement
    events = changes(config, name).read()
    # At least once: the unacknowledged batch was read again, so every change arrived.
    assert {m.value["after"]["full_name"] for m in events} == set(names)
    assert sum(load_offset(hub_engine(config.database.url), name).values()) == 4


def test_avro_in_the_confluent_wire_format_through_the_registry(sector, registry):
    config, _topic, produce = sector(converter="avro", schema_registry_url=registry)
    name = only(config)
    alice = rec.row("MST1", "001090012345", "An", DOB_DAYS, raw=False)
    bob = rec.row("MST2", "079190000001", "Bình", None, Decimal("-0.05"), raw=False)
    produce(rec.avro_message(rec.envelope("c", None, alice)),
            rec.avro_message(rec.envelope("u", alice, bob)),
            rec.avro_message(rec.envelope("c", None, alice), schema_id=99), None)  # fmt: skip
    run_once(config, name, timeout=60)
    events = sorted(changes(config, name).read(), key=lambda m: m.op)
    # The update changes the citizen ID: a delete on the old key, a create on the new one.
    # (Keys on different partitions: compared as a set; one key's events keep their order.)
    assert sorted((m.key, m.op) for m in events) == [
        (b"001090012345", "c"), (b"001090012345", "d"), (b"079190000001", "c")
    ]  # fmt: skip
    by_key = {(m.key, m.op): m for m in events}
    assert by_key[b"001090012345", "c"].value["after"]["date_of_birth"] == date(1990, 1, 2)
    assert by_key[b"079190000001", "c"].value["after"]["attributes"]["income"] == "-0.05"
    [letter] = [m.value for m in dead_letters(config).read() if m.value["source"] == name]
    assert "/schemas/ids/99 not found" in letter["reason"]


def test_check_names_topics_partitions_registry_sample_and_lag(sector, registry):
    config, topic, produce = sector(converter="avro", schema_registry_url=registry)
    name = only(config)
    alice = rec.row("MST1", "001090012345", "An", DOB_DAYS, raw=False)
    produce(rec.avro_message(rec.envelope("c", None, alice)), b"\x05junk")
    lines = [r.line() for r in ops.check(config, name)]
    text = "\n".join(lines)
    assert f"{topic}: 2 partitions" in text
    assert "schema registry" in text and "1 subjects" in text
    assert "1 of 2 sampled messages would dead-letter: not in the Confluent Avro wire" in text
    assert "never run" in text
    run_once(config, name, timeout=60)
    text = "\n".join(r.line() for r in ops.check(config, name))
    assert "0 messages behind (stored position)" in text
    missing = config.model_copy(deep=True)
    src = missing.sectors[name]
    gone = src.model_copy(
        update={"debezium": src.debezium.model_copy(update={"topics": ("nope.x",)})}
    )
    missing = missing.model_copy(update={"sectors": {name: gone}})
    fails = [r.line() for r in ops.check(missing, name) if not r.ok]
    assert any("nope.x does not exist" in line for line in fails)

"""Fixtures for connector tests: a source database, a config around it, running a connector
until caught up, and reading a topic back with the shipped schemas."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest
from kafka import TopicPartition

from connectors.runner import ConnectorRunner
from hub.avro.codec import decode
from hub.config import DatabaseConfig, HubConfig, KafkaConfig, MetricsConfig, SourceConfig
from hub.db import psycopg_conninfo
from hub.kafka import Topics, make_consumer


@dataclass
class SourceDb:
    """A throwaway source database. Writes commit with ``synchronous_commit = on`` so a
    change is decodable from the slot as soon as the statement returns."""

    url: str

    def connect(self, **kw: Any) -> psycopg.Connection:
        conn = psycopg.connect(psycopg_conninfo(self.url), **kw)
        conn.execute("SET synchronous_commit = on")
        if not kw.get("autocommit"):
            conn.commit()
        return conn

    def execute(self, query: str, params: Any = None) -> list[tuple]:
        with self.connect(autocommit=True) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    @property
    def name(self) -> str:
        return self.url.rsplit("/", 1)[1]


@pytest.fixture
def source_db(servers) -> Iterator[SourceDb]:
    url = servers.create_database("src")
    yield SourceDb(url)
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(psycopg_conninfo(servers.pg_url), autocommit=True) as conn:
        for (slot,) in conn.execute(
            "SELECT slot_name FROM pg_replication_slots WHERE database = %s", (name,)
        ).fetchall():
            try:
                conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
            except psycopg.Error:
                pass  # still held by a dying connector process: FORCE below ends it
    try:
        servers.drop_database(url)
    except psycopg.Error:
        time.sleep(1)
        with psycopg.connect(psycopg_conninfo(servers.pg_url), autocommit=True) as conn:
            for (slot,) in conn.execute(
                "SELECT slot_name FROM pg_replication_slots WHERE database = %s", (name,)
            ).fetchall():
                conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
        servers.drop_database(url)


@pytest.fixture
def make_config(servers, hub_db) -> Callable[..., HubConfig]:
    """``make_config(tax=SourceConfig…)`` → a HubConfig on the test's hub DB and topic prefix."""
    kafka = servers.kafka(partitions=3)

    def build(id_scheme: str = "vn", **sectors: dict | SourceConfig) -> HubConfig:
        return HubConfig(
            kafka=KafkaConfig(**kafka.model_dump()),
            database=DatabaseConfig(url=hub_db),
            metrics=MetricsConfig(listen="127.0.0.1:0"),
            id_scheme=id_scheme,
            sectors={k: SourceConfig.model_validate(v) if isinstance(v, dict) else v
                     for k, v in sectors.items()},
        )  # fmt: skip

    return build


def in_thread(run: Callable[[], Any], stop: Callable[[], None], timeout: float, what: str) -> list:
    """``run()`` on a thread for up to ``timeout`` seconds; its result in a list (empty if it
    raised). Past the timeout ``stop()`` is called and the test fails saying ``what``."""
    result: list = []
    thread = threading.Thread(target=lambda: result.append(run()), daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        stop()
        thread.join(30)
        raise AssertionError(f"{what} within {timeout:.0f}s")
    return result


def run_once(config: HubConfig, name: str, timeout: float = 120) -> ConnectorRunner:
    """Run connector ``name`` until it has caught up with its source; fail on a fatal error."""
    stopping = threading.Event()
    runner = ConnectorRunner(config, name, stopping=stopping, once=True)
    result = in_thread(runner.run, stopping.set, timeout, f"connector {name} did not catch up")
    assert result == [0], f"connector {name} stopped with a fatal error"
    return runner


def reconcile_until_idle(config: HubConfig, timeout: float = 90):
    """A reconciler (every partition assigned) until 2 s without messages; its totals."""
    from reconciliation.engine import Reconciler

    reconciler = Reconciler(config, assign_all=True, poll_timeout_ms=100, stats_interval_s=3600)
    totals = in_thread(lambda: reconciler.run(until_idle_s=2), reconciler.stop, timeout,
                       "the reconciler did not go idle")  # fmt: skip
    assert totals, "the reconciler stopped without totals"
    return totals[0]


@contextlib.contextmanager
def running(config: HubConfig, name: str, **kw: Any) -> Iterator[ConnectorRunner]:
    """Connector ``name`` run on a thread for the ``with`` block, then stopped cleanly."""
    stopping = threading.Event()
    runner = ConnectorRunner(config, name, stopping=stopping, **kw)
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    try:
        yield runner
    finally:
        stopping.set()
        thread.join(30)


@dataclass
class Message:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    schema: str
    value: dict

    @property
    def op(self) -> str:
        return self.value["op"]

    @property
    def record_key(self) -> str:
        return self.value["record_key"]


@dataclass
class TopicReader:
    """Reads a topic from where it last stopped, every partition, up to the end offsets."""

    kafka: KafkaConfig
    topic: str
    positions: dict[int, int] = field(default_factory=dict)

    def read(self) -> list[Message]:
        # Polls until the partitions stay quiet: tansu reports a partition's end offset as
        # its last batch's base offset + 1, so end offsets only bound the read from below.
        consumer = make_consumer(self.kafka, group_id=None)
        try:
            partitions = consumer.partitions_for_topic(self.topic) or set()
            tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
            if not tps:
                return []
            consumer.assign(tps)
            end = consumer.end_offsets(tps)
            for tp in tps:
                consumer.seek(tp, self.positions.get(tp.partition, 0))
            out: list[Message] = []
            deadline = time.monotonic() + 60
            quiet = 0
            while quiet < 2 or any(consumer.position(tp) < end[tp] for tp in tps):
                assert time.monotonic() < deadline, "topic not readable to its end"
                polled = consumer.poll(timeout_ms=300)
                quiet = 0 if polled else quiet + 1
                for tp, records in polled.items():
                    for r in records:
                        schema, value = decode(r.value)
                        out.append(Message(tp.topic, tp.partition, r.offset, r.key, schema,
                                           value))  # fmt: skip
            for tp in tps:
                self.positions[tp.partition] = consumer.position(tp)
            return out
        finally:
            consumer.close()


def changes(config: HubConfig, name: str) -> TopicReader:
    return TopicReader(config.kafka, Topics(config.kafka.topic_prefix).changes(name))


def dead_letters(config: HubConfig) -> TopicReader:
    return TopicReader(config.kafka, Topics(config.kafka.topic_prefix).dlq)


def by_partition_order(messages: list[Message]) -> list[Message]:
    """Messages in the order a consumer of each partition sees them (partition, offset)."""
    return sorted(messages, key=lambda m: (m.partition, m.offset))

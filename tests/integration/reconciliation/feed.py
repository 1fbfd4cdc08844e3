"""Builds hub configs and ChangeEvents for reconciler tests, and produces them to the topics."""

from __future__ import annotations

import collections
import itertools
import random
import threading
import time
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import psycopg

from hub.avro.codec import Encoder
from hub.config import HubConfig, KafkaConfig, parse_config
from hub.db import psycopg_conninfo
from hub.idschemes import get_scheme
from hub.kafka import Topics, ensure_topics, make_producer
from reconciliation.store.offsets import read_offsets

_ENCODER = Encoder("hub.ChangeEvent")
_SCHEME = get_scheme("vn")


def hub_config(db_url: str, kafka: KafkaConfig, **kwargs: Any) -> HubConfig:
    """A config with a registry and the given sectors (``{name: rules}``); source URLs are
    never used by the reconciler."""
    return parse_config(config_data(db_url, kafka, **kwargs), env={})


def config_data(
    db_url: str,
    kafka: KafkaConfig,
    *,
    sectors: dict[str, dict[str, Any]] | None = None,
    partitions: int = 3,
    max_poll_records: int = 10_000,
) -> dict[str, Any]:
    """The config file's content for :func:`hub_config`."""
    sectors = sectors if sectors is not None else {"tax": {"unique_citizen": True}, "bank": {}}
    source = {
        "url": "postgresql+psycopg://nobody@127.0.0.1:1/unused",
        "table": "public.t",
        "key": "k",
        "columns": {"citizen_id": "cid"},
    }
    return {
        "kafka": {
            "bootstrap_servers": kafka.bootstrap_servers,
            "topic_prefix": kafka.topic_prefix,
            "partitions": partitions,
        },
        "database": {"url": db_url},
        "id_scheme": "vn",
        "reconciler": {
            "group_id": f"rec-{kafka.topic_prefix}",
            "max_poll_records": max_poll_records,
        },
        "registry": source,
        "sectors": {name: {**source, "rules": rules} for name, rules in sectors.items()},
    }


_lsn = itertools.count(1000)


@dataclass
class Feed:
    """Encodes ChangeEvents like a connector would (key = normalized ID or sector:key) and
    sends them; LSNs increase with every event built, so later events are newer."""

    config: HubConfig
    sent: int = 0
    _producer: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        topics = Topics(self.config.kafka.topic_prefix)
        ensure_topics(self.config.kafka, topics.all_for(self.config))
        self.topics = topics

    @property
    def producer(self):
        if self._producer is None:
            self._producer = make_producer(self.config.kafka)
        return self._producer

    def event(
        self,
        source: str,
        op: str,
        record_key: str,
        after: dict[str, Any] | None = None,
        *,
        lsn: int | None = None,
        commit_ts_ms: int | None = None,
    ) -> tuple[str, bytes, bytes]:
        """(topic, key, value) of one change; ``after`` holds canonical fields; the source
        commit time is now unless ``commit_ts_ms`` says otherwise."""
        now = int(time.time() * 1000)
        full = None
        if after is not None:
            full = {"attributes": {}, **after}
        key = self.key(source, record_key, (after or {}).get("citizen_id"))
        value = _ENCODER.encode(
            {
                "op": op,
                "before": None,
                "after": full,
                "record_key": record_key,
                "source": {
                    "system": "postgresql",
                    "connector": source,
                    "database": source,
                    "table": "public.t",
                    "position": "0/0",
                    "lsn": next(_lsn) if lsn is None else lsn,
                    "commit_ts_ms": now if commit_ts_ms is None else commit_ts_ms,
                    "snapshot": op == "r",
                },
                "ts_ms": now,
            }
        )
        return (self.topics.changes(source), key.encode(), value)

    @staticmethod
    def key(source: str, record_key: str, citizen_id: str | None) -> str:
        """The Kafka key a connector gives a change: normalized ID, else source:record_key."""
        cid = _SCHEME.normalize(citizen_id)
        return cid if cid else f"{source}:{record_key}"

    def send(self, *messages: tuple[str, bytes, bytes]) -> None:
        for topic, key, value in messages:
            self.producer.send(topic, key=key, value=value)
        self.producer.flush()
        self.sent += len(messages)

    def put(self, source: str, record_key: str, **after: Any) -> None:
        """Send one insert/update of ``record_key``."""
        self.send(self.event(source, "u", record_key, after))

    def delete(self, source: str, record_key: str, citizen_id: str | None = None) -> None:
        topic, _key, value = self.event(source, "d", record_key, None)
        self.send((topic, self.key(source, record_key, citizen_id).encode(), value))

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close()
            self._producer = None


def person(citizen_id: str, name: str = "Nguyễn Văn An", dob: date = date(1985, 3, 14), **kw):
    """Canonical fields of a registry citizen or a faithful sector copy of one."""
    return {
        "citizen_id": citizen_id,
        "full_name": name,
        "date_of_birth": dob,
        "sex": kw.pop("sex", "M"),
        "province_code": kw.pop("province_code", "079"),
        **kw,
    }


@dataclass(frozen=True)
class Store:
    """A hub database and the consumer group whose stored offsets say what it applied."""

    url: str
    group_id: str


class PacedSender(threading.Thread):
    """Sends ``phases`` of messages (topic, key, value), each ``(messages, per_tick)``: a
    phase's messages in their order per Kafka key, a key's next message only once every
    store holds the previous one (its offset is in ``consumer_offsets``), at most
    ``per_tick`` every ``tick_s``; a phase once every store holds all of the one before.

    Each store then applies one key's changes in separate batches, as they would arrive one
    by one over time, whatever its batch sizes, rebalances or restarts: results that depend
    on what one batch holds (a duplicate group is judged once per batch; registry changes
    take effect before a batch's sector changes) come out the same in every store, and a
    phase can hold what other keys read (the citizens behind legacy numbers). Once
    ``hold_at`` messages are sent it waits for ``release`` before the rest (so the load
    outlasts what a test does meanwhile). An error ends the thread and is kept in ``error``.
    """

    def __init__(
        self,
        feed: Feed,
        phases: list[tuple[list[tuple[str, bytes, bytes]], int]],
        stores: list[Store],
        *,
        tick_s: float = 0.1,
        hold_at: int | None = None,
        timeout_s: float = 120.0,
    ):
        super().__init__(name="paced-sender", daemon=True)
        self.feed, self.phases, self.stores = feed, phases, stores
        self.tick_s, self.timeout_s = tick_s, timeout_s
        self.total = sum(len(messages) for messages, _per_tick in phases)
        self.hold_at = self.total if hold_at is None else hold_at
        self.topics = sorted({m[0] for messages, _ in phases for m in messages})
        self.sent = 0
        self.release = threading.Event()
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self._rng = random.Random(7)

    def run(self) -> None:
        conns = [psycopg.connect(psycopg_conninfo(s.url), autocommit=True) for s in self.stores]
        deadline = time.monotonic() + self.timeout_s
        try:
            for messages, per_tick in self.phases:
                self._send_phase(conns, messages, per_tick, deadline)
        except BaseException as exc:  # noqa: BLE001 - the test reads it from the thread
            self.error = exc
        finally:
            for conn in conns:
                conn.close()

    def _send_phase(self, conns: list, messages: list, per_tick: int, deadline: float) -> None:
        queues: dict[bytes, collections.deque] = {}
        for message in messages:
            queues.setdefault(message[1], collections.deque()).append(message)
        waiting: dict[bytes, tuple[str, int, int]] = {}  # key → its message in flight
        while (queues or waiting) and not self.stop.is_set():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.sent} of {self.total} messages sent in time")
            if waiting:
                stored = [
                    read_offsets(conn, store.group_id, self.topics)
                    for conn, store in zip(conns, self.stores, strict=True)
                ]
                for key, (topic, partition, offset) in list(waiting.items()):
                    if all(s.get((topic, partition), 0) > offset for s in stored):
                        del waiting[key]
            budget = per_tick
            if not self.release.is_set():
                budget = min(budget, self.hold_at - self.sent)
            # The keys with the most left first: the phase ends as soon as its longest chain.
            ready = [k for k in queues if k not in waiting]
            self._rng.shuffle(ready)
            ready.sort(key=lambda k: len(queues[k]), reverse=True)
            futures = []
            for key in ready[: max(0, budget)]:
                topic, _key, value = queues[key].popleft()
                if not queues[key]:
                    del queues[key]
                futures.append((key, self.feed.producer.send(topic, key=key, value=value)))
            if futures:
                self.feed.producer.flush()
            for key, future in futures:
                meta = future.get(10)
                waiting[key] = (meta.topic, meta.partition, meta.offset)
            self.sent += len(futures)
            self.feed.sent += len(futures)
            if budget > 0:
                time.sleep(self.tick_s)
            else:
                self.release.wait(self.tick_s)

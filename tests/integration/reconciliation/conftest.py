"""A reconciler running in a thread against the session's PostgreSQL and broker."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
from kafka import TopicPartition

from hub.avro.codec import decode
from hub.config import HubConfig
from hub.db import psycopg_conninfo
from hub.kafka import make_consumer
from reconciliation.engine import Reconciler
from reconciliation.store.figures import figure_counts, open_mismatch_counts, sector_counts
from tests.integration.reconciliation.feed import Feed, hub_config


@dataclass
class Running:
    """A config, a feed producing to its topics, and a reconciler consuming them."""

    config: HubConfig
    feed: Feed
    reconciler: Reconciler
    thread: threading.Thread

    @property
    def db(self) -> str:
        return psycopg_conninfo(self.config.database.url)

    def settle(self, timeout: float = 60.0) -> None:
        """Wait until the reconciler has stored offsets past every message sent and finished
        the batch (outbox published, metrics counted)."""
        group = self.reconciler.group_id
        deadline = time.monotonic() + timeout
        while True:
            assert self.thread.is_alive(), "the reconciler thread died"
            with psycopg.connect(self.db) as conn:
                done = conn.execute(
                    "SELECT coalesce(sum(next_offset), 0) FROM consumer_offsets WHERE group_id = %s",
                    (group,),
                ).fetchone()[0]
            if done >= self.feed.sent:
                # The offsets commit with the batch's transaction; its outbox and metrics
                # follow on the reconciler's database thread. That thread runs tasks in
                # order, so a no-op queued now returns once the batch is fully done.
                self.reconciler._db_call(lambda: None)
                return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"reconciler applied {done} of {self.feed.sent} messages; it held: "
                    f"{held(self.reconciler)}"
                )
            time.sleep(0.05)

    def query(self, sql: str, *args) -> list[tuple]:
        with psycopg.connect(self.db) as conn:
            return conn.execute(sql, args).fetchall()

    def mismatches(self, sector: str | None = None) -> dict[tuple[str, str, str], tuple]:
        """{(record_key, rule, field): (status, resolution, severity, sector_value, registry_value)}."""
        rows = self.query(
            "SELECT record_key, rule, field, status, resolution, severity, sector_value, "
            "registry_value FROM mismatches WHERE %s::text IS NULL OR sector = %s",
            sector,
            sector,
        )
        return {(r[0], r[1], r[2]): r[3:] for r in rows}

    def history(self, record_key: str, rule: str) -> list[tuple]:
        """(action, from, to, actor, note) of one record's mismatch of ``rule``, in order."""
        return self.query(
            "SELECT h.action, h.from_status, h.to_status, h.actor, h.note FROM mismatch_history h "
            "JOIN mismatches m ON m.id = h.mismatch_id WHERE m.record_key = %s AND m.rule = %s "
            "ORDER BY h.id",
            record_key,
            rule,
        )

    def topic_messages(self, topic: str, expect: int, timeout: float = 20.0) -> list[dict]:
        """At least ``expect`` decoded messages of ``topic`` (all partitions, from the start)."""
        consumer = make_consumer(self.config.kafka)
        parts = [TopicPartition(topic, p) for p in range(self.config.kafka.partitions)]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        out: list[dict] = []
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                for records in consumer.poll(timeout_ms=200).values():
                    for r in records:
                        out.append({"_key": r.key, **decode(r.value)[1]})
                if len(out) >= expect:
                    # Give stragglers (duplicates) a moment to show up too.
                    for records in consumer.poll(timeout_ms=300).values():
                        out += [{"_key": r.key, **decode(r.value)[1]} for r in records]
                    break
        finally:
            consumer.close()
        return out


def _names(partitions) -> str:
    return ", ".join(sorted(f"{tp.topic.rsplit('.', 2)[-2]}[{tp.partition}]" for tp in partitions))


def held(reconciler: Reconciler) -> str:
    """What a reconciler held, for a failure message: the consumer's assignment and paused
    partitions, the partitions it consumes (ready), is yet to seek (pending) or drop
    (revoked), holds past their log end, its known positions and highwaters, the registry
    gate and its group membership (read from another thread: a snapshot, best effort)."""
    consumer = reconciler.consumer
    if consumer is None:
        return "no consumer (not started, or closed)"
    with reconciler._lock:
        pending, revoked = set(reconciler._pending), set(reconciler._revoked)
    for _ in range(3):  # the loop thread may change a set while it is copied
        try:
            ready, positions = set(reconciler._ready), dict(reconciler._positions)
            break
        except RuntimeError:
            time.sleep(0.01)
    else:
        ready, positions = set(), {}
    coordinator = getattr(consumer, "_coordinator", None)
    member = (
        f"state {coordinator.state}, {coordinator._generation}"
        if coordinator is not None
        else "no coordinator"
    )
    marks = {tp: (positions.get(tp), consumer.highwater(tp)) for tp in ready}
    return (
        f"assignment [{_names(consumer.assignment())}]; paused [{_names(consumer.paused())}]; "
        f"ready [{_names(ready)}]; pending [{_names(pending)}]; revoked [{_names(revoked)}]; "
        f"held past the log end [{_names(reconciler.log_ends.held)}]; "
        f"(position, highwater) {{{', '.join(f'{_names([tp])}: {m}' for tp, m in sorted(marks.items(), key=lambda i: _names([i[0]])))}}}; "
        f"registry gate {'closed' if reconciler.gate.closed else 'open'}; "
        f"in flight: {reconciler._inflight is not None}; group member: {member}"
    )


def start(config: HubConfig, feed: Feed | None = None, **kwargs) -> Running:
    """A reconciler thread over ``config``'s topics (``feed``: one that already sent)."""
    feed = feed or Feed(config)  # creates the topics
    reconciler = Reconciler(config, poll_timeout_ms=100, stats_interval_s=3600, **kwargs)
    thread = threading.Thread(target=reconciler.run, name="reconciler", daemon=True)
    thread.start()
    return Running(config, feed, reconciler, thread)


@pytest.fixture(params=[pytest.param(True, id="assigned")])
def running(request, hub_db, kafka_config) -> Iterator[Running]:
    """A reconciler over a registry, ``tax`` (unique citizens) and ``bank`` sectors; it takes
    every partition itself unless the test parametrizes ``running`` with ``False`` (then it
    joins the consumer group, which costs a few seconds of group join)."""
    env = start(hub_config(hub_db, kafka_config), assign_all=request.param)
    try:
        yield env
    finally:
        env.reconciler.stop()
        env.thread.join(30)
        env.feed.close()
    # Whatever the test did, the trigger-kept gauge counts equal full counts.
    with psycopg.connect(env.db, autocommit=True) as conn:
        counts, open_counts = figure_counts(conn)
        assert counts == sector_counts(conn)
        assert sorted(open_counts) == sorted(open_mismatch_counts(conn))

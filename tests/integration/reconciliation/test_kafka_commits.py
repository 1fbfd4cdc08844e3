"""The reconciler commits the offsets it stored in the database to Kafka as well, so the
group's lag in Kafka is the true one: ``ConsumerGroupCommand --describe`` (what
``kafka-consumer-groups.sh`` runs) and lag exporters read it. On Apache Kafka (the tool is
one of its jars), both as a group member and with ``--assign-all`` (commits without
membership: generation -1, which the broker accepts for a group without active members)."""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from collections import Counter

import psycopg
import pytest
from kafka import TopicPartition
from prometheus_client import REGISTRY

from hub.embedded import kafka_libs_dir, kafka_missing
from hub.idschemes.vn import make_id
from hub.kafka import make_consumer
from reconciliation import engine
from reconciliation.engine import Reconciler
from reconciliation.membership import JOIN_STALL_S, JoinStall
from reconciliation.store.offsets import read_offsets
from tests.integration.reconciliation.conftest import Running
from tests.integration.reconciliation.feed import Feed, hub_config, person

TOOL = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"
SOURCES = ("registry", "tax", "bank")


@pytest.fixture(autouse=True)
def _apache_kafka(servers):
    if servers.broker != "kafka" or kafka_missing():
        pytest.skip(
            f"group offsets are checked on Apache Kafka with its ConsumerGroupCommand; the "
            f"session broker is {servers.broker} ({kafka_missing() or 'no tool jars'})"
        )


def citizens(first: int, count: int) -> list[str]:
    return [
        make_id("079", 1980 + i % 30, "MF"[i % 2], 10_000 + i) for i in range(first, first + count)
    ]


def produce(running: Running, ids: list[str]) -> Counter:
    """One change of every ID on every source; returns messages per (topic, partition)."""
    feed = running.feed
    futures = []
    for source in SOURCES:
        for cid in ids:
            topic, key, value = feed.event(source, "u", f"{source}-{cid}", person(cid))
            futures.append(feed.producer.send(topic, key=key, value=value))
    feed.producer.flush()
    feed.sent += len(futures)
    return Counter((m.topic, m.partition) for m in (f.get(10) for f in futures))


def partitions(running: Running) -> list[TopicPartition]:
    topics = [running.feed.topics.changes(s) for s in SOURCES]
    return [TopicPartition(t, p) for t in topics for p in range(running.config.kafka.partitions)]


def stored_offsets(running: Running) -> dict[tuple[str, int], int]:
    topics = [running.feed.topics.changes(s) for s in SOURCES]
    with psycopg.connect(running.db) as conn:
        return read_offsets(conn, running.reconciler.group_id, topics)


def kafka_offsets(running: Running) -> dict[tuple[str, int], int]:
    """The group's offsets committed in Kafka (an OffsetFetch; it joins nothing)."""
    consumer = make_consumer(running.config.kafka, group_id=running.reconciler.group_id)
    try:
        out = {}
        for tp in partitions(running):
            offset = consumer.committed(tp)
            if offset is not None:
                out[(tp.topic, tp.partition)] = offset
        return out
    finally:
        consumer.close(autocommit=False)


def wait_for_kafka_offsets(running: Running, timeout: float = 20.0) -> dict[tuple[str, int], int]:
    """Kafka's committed offsets once they equal the database's (the commit is async)."""
    deadline = time.monotonic() + timeout
    while True:
        stored, committed = stored_offsets(running), kafka_offsets(running)
        if committed == stored or time.monotonic() > deadline:
            return committed
        time.sleep(0.2)


def describe(running: Running) -> dict[tuple[str, int], tuple[int, int]]:
    """``ConsumerGroupCommand --describe``'s rows: {(topic, partition): (current offset, lag)}."""
    out = subprocess.run(
        [
            "java",
            "-Xmx256m",
            "-XX:TieredStopAtLevel=1",
            "-cp",
            str(kafka_libs_dir() / "*"),
            TOOL,
            "--bootstrap-server",
            running.config.kafka.bootstrap_servers,
            "--describe",
            "--group",
            running.reconciler.group_id,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    lines = [line.split() for line in out.splitlines() if line.strip()]
    header = next(row for row in lines if "LAG" in row)
    col = {name: header.index(name) for name in ("TOPIC", "PARTITION", "CURRENT-OFFSET", "LAG")}
    rows = {}
    for row in lines:
        if row is header or len(row) < len(header) - 3 or not row[col["PARTITION"]].isdigit():
            continue
        current, lag = row[col["CURRENT-OFFSET"]], row[col["LAG"]]
        rows[(row[col["TOPIC"]], int(row[col["PARTITION"]]))] = (
            int(current) if current != "-" else None,
            int(lag) if lag != "-" else None,
        )
    return rows


@pytest.mark.parametrize("running", [True, False], indirect=True, ids=["assigned", "group"])
def test_kafka_shows_the_true_lag_of_the_group(running):
    first = produce(running, citizens(0, 12))
    every = {(tp.topic, tp.partition) for tp in partitions(running)}
    assert set(first) == every, "the IDs reach every partition of every topic"
    running.settle()

    # (a) Kafka's committed offsets are the database's, partition by partition.
    stored = stored_offsets(running)
    assert stored == dict(first)
    assert wait_for_kafka_offsets(running) == stored

    # (b) ... so the broker's tool sees every partition caught up.
    assert describe(running) == {tp: (stored[tp], 0) for tp in every}

    # A batch stored just before a stop is in Kafka too (close commits what the broker has
    # not confirmed yet); what is produced while the reconciler is down shows as lag,
    # partition by partition.
    produce(running, citizens(50, 4))
    running.settle()
    running.reconciler.stop()
    running.thread.join(30)
    assert not running.thread.is_alive()
    stored = stored_offsets(running)
    assert sum(stored.values()) == 48
    more = produce(running, citizens(100, 5))
    assert sum(more.values()) == 15
    rows = describe(running)
    assert {tp: cur for tp, (cur, _lag) in rows.items()} == stored
    assert {tp: lag for tp, (_cur, lag) in rows.items()} == {tp: more[tp] for tp in every}


class Member(threading.Thread):
    """Another consumer that holds a membership of the group (polling until stopped)."""

    def __init__(self, running: Running):
        super().__init__(name="group-member", daemon=True)
        self.consumer = make_consumer(running.config.kafka, group_id=running.reconciler.group_id)
        self.consumer.subscribe([running.feed.topics.changes("registry")])
        self.joined = threading.Event()
        self.done = threading.Event()

    def run(self) -> None:
        try:
            while not self.done.is_set():
                self.consumer.poll(timeout_ms=100)
                if self.consumer.assignment():
                    self.joined.set()
        finally:
            self.consumer.close(autocommit=False)  # leaves the group


def test_refused_commits_change_nothing_but_the_lag_kafka_shows(hub_db, kafka_config, caplog):
    """With ``--assign-all`` the reconciler commits as a non-member (generation -1); the broker
    refuses that while the group has active members. The batches are stored all the same,
    one WARNING says so, and the commits go through once the group is empty again."""
    caplog.set_level(logging.INFO, logger="reconciliation.engine")
    feed = Feed(hub_config(hub_db, kafka_config))
    reconciler = Reconciler(
        feed.config, poll_timeout_ms=100, stats_interval_s=3600, assign_all=True
    )
    running = Running(feed.config, feed, reconciler, threading.Thread(target=reconciler.run))
    member = Member(running)
    member.start()
    try:
        assert member.joined.wait(30), "the other consumer joined the group"
        running.thread.start()
        first = produce(running, citizens(0, 12))
        running.settle()
        produce(running, citizens(50, 4))  # a second batch: the loop goes on after a refusal
        running.settle()
        stored = stored_offsets(running)
        assert sum(stored.values()) == feed.sent == 48 and set(stored) == set(first)
        assert kafka_offsets(running) == {}
        # (kafka-python's coordinator logs each refusal too, under kafka.coordinator.)
        refused = [
            r
            for r in caplog.records
            if r.levelno == logging.WARNING and r.name == "reconciliation.engine"
        ]
        assert len(refused) == 1 and "UnknownMemberIdError" in refused[0].getMessage()

        member.done.set()
        member.join(30)
        # The reconciler sends the unconfirmed offsets again every 2 s while commits fail.
        assert wait_for_kafka_offsets(running, timeout=30) == stored
        # The success callback runs on the reconciler's next poll.
        deadline = time.monotonic() + 10
        while reconciler.kafka_commits.failing and time.monotonic() < deadline:
            time.sleep(0.05)
        assert any("work again" in r.getMessage() for r in caplog.records)
        assert running.thread.is_alive()
    finally:
        member.done.set()
        reconciler.stop()
        running.thread.join(30)
        feed.close()


@pytest.mark.parametrize("running", [False], indirect=True, ids=["group"])
def test_a_stalled_join_is_left_for_a_new_consumer_that_loses_and_repeats_nothing(
    running, monkeypatch
):
    """A member stuck "rebalancing" (seen once in CI: over a minute, the broker had dropped it)
    is replaced by a new consumer once the join outlasts the limit; the new member's
    assignment seeks to the stored offsets. Here the first consumer is made to look stuck."""
    first_counts = produce(running, citizens(0, 12))
    running.settle()
    first = running.reconciler.consumer
    rejoins = REGISTRY.get_sample_value("hub_reconciler_group_rejoins_total") or 0.0
    real = engine.rebalancing
    monkeypatch.setattr(engine, "rebalancing", lambda c: c is first or real(c))
    # The first stall is called at once; the new consumer then has the normal limit (its
    # join was itself seen to stall once here: it is then replaced too).
    running.reconciler.join_stall = _FirstAtOnce(limit_s=0.3)
    deadline = time.monotonic() + 20
    while running.reconciler.consumer in (first, None) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert running.reconciler.consumer not in (first, None), "the stuck consumer was replaced"
    assert REGISTRY.get_sample_value("hub_reconciler_group_rejoins_total") == rejoins + 1

    more = produce(running, citizens(50, 4))
    running.settle()
    expected = Counter(first_counts) + Counter(more)
    assert stored_offsets(running) == dict(expected)
    assert running.reconciler.totals.messages == running.feed.sent, "nothing read twice"


class _FirstAtOnce(JoinStall):
    """A stall limit that is short for the first stall only."""

    def stalled(self, rebalancing: bool, now: float) -> bool:
        hit = super().stalled(rebalancing, now)
        if hit:
            self.limit_s = JOIN_STALL_S
        return hit

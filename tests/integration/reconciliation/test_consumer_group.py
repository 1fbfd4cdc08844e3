"""Consumer groups on Apache Kafka: three ``hub reconcile`` processes share 12-partition change
topics under live load while one is SIGKILLed and started again and the group is scaled
1 → 3 → 1; afterwards the mismatch store equals that of one uninterrupted reconciler fed the
same changes, and Kafka shows the group's true lag (none)."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import psycopg
import pytest
import yaml
from kafka import TopicPartition

from hub.avro.codec import decode
from hub.db import psycopg_conninfo
from hub.db.migrate import upgrade
from hub.idschemes.vn import make_id
from hub.kafka import make_admin, make_consumer
from hub.testing import session_broker
from reconciliation.engine import Reconciler
from reconciliation.store.offsets import read_offsets
from tests.integration.reconciliation.conftest import Running, start
from tests.integration.reconciliation.feed import (
    Feed,
    PacedSender,
    Store,
    config_data,
    hub_config,
    person,
)
from tests.integration.reconciliation.test_crash import build_workload, snapshot

ROOT = Path(__file__).resolve().parents[3]
SETTINGS = {"partitions": 12, "max_poll_records": 200}
REFERENCE = "reference"


pytestmark = [
    pytest.mark.skipif(
        session_broker() != "kafka",
        reason="the consumer-group protocol is proven on Apache Kafka (tansu can keep a departed "
        "member as the group's leader)",
    ),
    # Rebalances are timed: run alone, not beside another worker's load (a third member
    # once waited over 150 s for its assignment while two workers ran).
    pytest.mark.serial,
]


class _Recorder(Feed):
    """A Feed that keeps what it is asked to send (for a PacedSender to send later)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.kept: list[tuple[str, bytes, bytes]] = []

    def send(self, *messages: tuple[str, bytes, bytes]) -> None:
        self.kept.extend(messages)


def workload(feed: Feed, seed: int = 20) -> tuple[list, list]:
    """(registry load, live changes): test_crash's workload — every lifecycle path, duplicate
    active IDs, re-deliveries, stale changes — split after its registry load, and registry
    corrections, deaths, deletes and re-inserts of citizens without a legacy number spliced
    into the live part (a legacy number puts the records carrying it on other keys)."""
    recorder = _Recorder(feed.config)
    build_workload(recorder, seed=seed, citizens=500, records=900)
    messages = recorder.kept
    registry = feed.topics.changes("registry")
    split = next(i for i, m in enumerate(messages) if m[0] != registry)
    load, live = messages[:split], messages[split:]
    rng = random.Random(seed)
    snapshots = [(key, decode(value)[1]) for topic, key, value in load]
    plain = [(k, e) for k, e in snapshots if e["op"] == "r" and not e["after"]["legacy_id"]]
    for key, event in rng.sample(plain, 60):
        after, rk = dict(event["after"]), event["record_key"]
        roll = rng.random()
        if roll < 0.4:
            changes = [dict(after, full_name=f"{after['full_name']} Anh")]
        elif roll < 0.7:
            changes = [dict(after, date_of_death=after["date_of_birth"].replace(year=2024))]
        else:
            changes = [None, after] if roll < 0.85 else [None]
        at = rng.randrange(len(live))
        for n, change in enumerate(changes):
            _topic, _key, value = feed.event("registry", "d" if change is None else "u", rk, change)
            live.insert(at + n * rng.randrange(1, 200), (registry, key, value))
    return load, live


# ``python -c WARM --config FILE reconcile …`` is ``python -m reconciliation.cli …`` started
# ahead: its imports are done when the test lets it go (a line on stdin), so a member joins
# the group in a second, not after the many seconds an interpreter takes on a loaded machine.
WARM = (
    "import sys, hub.errors, hub.logs, hub.metrics, reconciliation.cli, reconciliation.engine; "
    "sys.stdin.readline(); "
    "hub.errors.run_cli(reconciliation.cli.main, 'python -m reconciliation.cli')"
)


class Member:
    """One ``reconcile`` subprocess, started ahead (see WARM), its output in a file."""

    def __init__(self, name: str, config: Path, log_dir: Path, *args: str):
        self.name = name
        self.log = log_dir / f"{name}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", WARM, "--config", str(config), "reconcile", "--no-metrics"]
                + list(args),
                cwd=ROOT,
                env=env,
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def go(self) -> Member:
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.close()
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def assignments(self) -> list[int]:
        """The partition count of each assignment it took (it logs one per rebalance)."""
        return [
            int(n) for n in re.findall(r"reconciliation\.engine: assigned (\d+) ", self.output())
        ]

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)

    def terminate(self) -> None:
        """SIGTERM: it finishes its batch, leaves the group and exits 0."""
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(30)
        assert code == 0 and "reconciler stopped" in self.output(), self.output()[-3000:]


def wait_for(what: str, check, timeout: float = 45.0, *, sender: PacedSender) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert sender.error is None, f"{what}: the sender failed: {sender.error!r}"
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.1)


def settled(members: list[Member], before: dict[str, int], partitions: int):
    """True once every member took an assignment since ``before`` (assignments counted per
    member) and their latest ones share every partition."""

    def check() -> bool:
        taken = {m.name: m.assignments() for m in members}
        fresh = all(len(taken[m.name]) > before.get(m.name, 0) for m in members)
        return fresh and sum(taken[m.name][-1] for m in members) == partitions

    return check


def counted(members: list[Member]) -> dict[str, int]:
    return {m.name: len(m.assignments()) for m in members}


def offsets_at_end(feed: Feed) -> dict[tuple[str, int], int]:
    topics = [feed.topics.changes(s) for s in ("registry", *feed.config.sectors)]
    parts = [TopicPartition(t, p) for t in topics for p in range(feed.config.kafka.partitions)]
    consumer = make_consumer(feed.config.kafka)
    try:
        ends = consumer.end_offsets(parts)
    finally:
        consumer.close()
    return {(tp.topic, tp.partition): offset for tp, offset in ends.items() if offset}


def stored(url: str, group_id: str, ends: dict) -> dict[tuple[str, int], int]:
    with psycopg.connect(psycopg_conninfo(url)) as conn:
        return read_offsets(conn, group_id, {topic for topic, _ in ends})


def committed_in_kafka(feed: Feed, group_id: str) -> dict[tuple[str, int], int]:
    admin = make_admin(feed.config.kafka)
    try:
        offsets = admin.list_group_offsets({group_id: None})[group_id]
    finally:
        admin.close()
    return {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items()}


def figures(url: str) -> dict[str, object]:
    """Open mismatches per (sector, rule, field), history rows per action, every mismatch
    (but its suggestions: found among the registry rows stored when it opened), duplicates."""
    with psycopg.connect(psycopg_conninfo(url)) as conn:
        open_ = conn.execute(
            "SELECT sector, rule, field, count(*) FROM mismatches WHERE status = 'open' "
            "GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
        ).fetchall()
        actions = conn.execute(
            "SELECT action, count(*) FROM mismatch_history GROUP BY 1 ORDER BY 1"
        ).fetchall()
        rows = conn.execute(
            "SELECT sector, record_key, rule, field, severity, status, resolution, citizen_id, "
            "province_code, sector_value, registry_value, score, values_hash FROM mismatches "
            "ORDER BY 1, 2, 3, 4"
        ).fetchall()
        twice = conn.execute(
            "SELECT count(*) FROM (SELECT 1 FROM mismatches GROUP BY sector, record_key, rule, "
            "field HAVING count(*) > 1) d"
        ).fetchone()[0]
    return {"open": open_, "history": dict(actions), "rows": rows, "duplicate_rows": twice}


def test_group_scaled_and_killed_under_load_ends_as_one_uninterrupted_reconciler(servers, tmp_path):
    kafka = servers.kafka()
    group_db, reference_db = servers.create_database("hub"), servers.create_database("hub")
    members: list[Member] = []
    sender = reference = None
    try:
        for url in (group_db, reference_db):
            upgrade(url)
        group_config, reference_config = tmp_path / "group.yaml", tmp_path / "reference.yaml"
        for path, url in ((group_config, group_db), (reference_config, reference_db)):
            data = config_data(url, kafka, **SETTINGS)
            path.write_text(yaml.safe_dump(data, allow_unicode=True))
        config = hub_config(group_db, kafka, **SETTINGS)
        group_id = config.reconciler.group_id
        feed = Feed(config)
        load, live = workload(feed)
        total = len(load) + len(live)
        stores = [Store(group_db, group_id), Store(reference_db, REFERENCE)]
        # The registry load first (its citizens are read across partitions through legacy
        # numbers), then the live changes, paced per key (see PacedSender): ~25 s of them.
        sender = PacedSender(
            feed, [(load, 500), (live, 24)], stores, hold_at=len(load) + len(live) * 9 // 10
        )
        reference = Member(
            REFERENCE, reference_config, tmp_path, "--assign-all", "--group-id", REFERENCE
        ).go()
        # 3 to start, 1 to start again after the kill, 2 to scale up.
        members += [Member(f"member-{n}", group_config, tmp_path) for n in range(6)]
        spares = iter(members)

        def member() -> Member:
            return next(spares).go()

        parts = SETTINGS["partitions"] * (1 + len(config.sectors))
        started = time.monotonic()
        steps: list[tuple[str, float, int]] = []  # (step, when, messages sent by then)
        running: list[Member] = []
        done = Counter()  # kills, SIGTERM stops, starts

        def mark(what: str) -> None:
            steps.append((what, round(time.monotonic() - started, 1), sender.sent))

        def change(what: str, *, kill=0, stop=0, start=0, timeout: float = 45.0) -> None:
            """SIGKILL the second member ``kill`` times, SIGTERM the first ``stop`` times,
            start ``start`` more; return once the group has rebalanced."""
            counts = counted(running)
            for _ in range(kill):
                running.pop(1).kill()
            for _ in range(stop):
                running.pop(0).terminate()
            running.extend(member() for _ in range(start))
            done.update(kills=kill, stops=stop, starts=start)
            if running:
                wait_for(what, settled(running, counts, parts), timeout, sender=sender)
            mark(what)

        # Generous: the spares' interpreters start all at once (minutes on a loaded machine).
        change("three members share the partitions", start=3, timeout=150)
        sender.start()
        wait_for("the live changes flow", lambda: sender.sent > len(load) + 100, sender=sender)
        time.sleep(random.uniform(0, 0.25))  # a random moment of the members' batches
        change("the killed one is back", kill=1, start=1)
        change("one member holds every partition", stop=2)  # 3 → 1
        change("three members again", start=2)  # 1 → 3
        change("one member again", stop=2)  # 3 → 1
        sent = [n for _what, _when, n in steps]
        assert sent == sorted(set(sent)) and sent[-1] < total, f"load live at each step: {steps}"
        sender.release.set()
        sender.join(90)
        assert sender.error is None and sender.sent == total, sender.error

        mark("load sent")
        ends = offsets_at_end(feed)
        assert sum(ends.values()) == total
        wait_for(
            "the group caught up", lambda: stored(group_db, group_id, ends) == ends, sender=sender
        )
        wait_for(
            "the reference caught up",
            lambda: stored(reference_db, REFERENCE, ends) == ends,
            sender=sender,
        )
        # Kafka's committed offsets are the stored ones: lag exporters see lag 0.
        wait_for(
            "Kafka shows lag 0",
            lambda: committed_in_kafka(feed, group_id) == ends,
            timeout=20,
            sender=sender,
        )
        assert stored(group_db, group_id, ends) == ends
        mark("caught up, lag 0")
        change("the last one stopped", stop=1)
        reference.terminate()

        grouped, alone = snapshot(group_db), snapshot(reference_db)
        group_figures, alone_figures = figures(group_db), figures(reference_db)
        history, expected = Counter(grouped["history"]), Counter(alone["history"])
        lost, duplicated = expected - history, history - expected
        rebalances = sum(len(m.assignments()) for m in members)
        summary = (
            f"{total} messages, {done['kills']} kill, {done['starts']} starts (3, 1 after the "
            f"kill, 2 scaling up), {done['stops']} SIGTERM stops, "
            f"{rebalances} assignments taken in rebalances, steps {steps}; "
            f"{sum(alone_figures['history'].values())} history rows: "
            f"lost = {sum(lost.values())}, duplicated effects = {sum(duplicated.values())}, "
            f"duplicate rows = {group_figures['duplicate_rows']}"
        )
        print(summary)
        assert (done["kills"], done["starts"], done["stops"]) == (1, 6, 5), summary
        assert rebalances >= 11, summary  # 3 + 3 + 1 + 3 + 1 members taking assignments
        assert (sum(lost.values()), sum(duplicated.values())) == (0, 0), (summary, lost, duplicated)
        assert group_figures["duplicate_rows"] == 0, summary
        for name in ("open", "history", "rows"):
            assert group_figures[name] == alone_figures[name], name
        for table in ("registry", "sector_records"):
            assert grouped[table] == alone[table], table
        assert {"opened", "resolved", "reopened"} <= set(alone_figures["history"]), summary
    finally:
        if sender is not None:
            sender.stop.set()
        for m in [*members, reference]:
            if m is not None and m.proc.poll() is None:  # a failure, or a spare left
                m.proc.kill()
                m.proc.wait(10)
        for url in (group_db, reference_db):
            servers.drop_database(url)


def test_a_new_owner_commits_the_stored_offsets_of_a_quiet_partition(hub_db, kafka_config):
    """A member SIGKILLed between a batch's database commit and its Kafka commit leaves Kafka
    behind the store; the member that takes its partitions commits the stored offsets at
    once, so Kafka shows lag 0 on a partition that gets no new message."""
    feed = Feed(hub_config(hub_db, kafka_config))
    ids = [make_id("079", 1970 + n, "MF"[n % 2], 20_000 + n) for n in range(30)]
    feed.send(
        *(feed.event(s, "u", f"{s}-{cid}", person(cid)) for s in ("registry", "tax") for cid in ids)
    )
    # Stores every change and commits nothing to Kafka: what the killed member left.
    Reconciler(feed.config, commit_to_kafka=False, assign_all=True, stats_interval_s=3600).run(
        until_idle_s=0.5
    )
    group_id = feed.config.reconciler.group_id
    ends = offsets_at_end(feed)
    assert stored(hub_db, group_id, ends) == ends and committed_in_kafka(feed, group_id) == {}

    member = start(feed.config, feed, assign_all=False)
    try:
        deadline = time.monotonic() + 30
        while committed_in_kafka(feed, group_id) != ends:
            assert time.monotonic() < deadline, committed_in_kafka(feed, group_id)
            time.sleep(0.2)
        assert member.reconciler.totals.messages == 0  # nothing new: the commit came with the seek
    finally:
        member.reconciler.stop()
        member.thread.join(30)
        feed.close()


def test_a_member_that_creates_its_topics_gets_their_partitions(hub_db, kafka_config):
    """A topic created a moment before the group join can be missing from the consumer's
    metadata; a leader taking it then assigned none of its partitions and the group consumed
    nothing. The reconciler waits until its metadata lists every topic before it joins."""
    config = hub_config(hub_db, kafka_config)
    reconciler = Reconciler(config, poll_timeout_ms=100, stats_interval_s=3600)
    thread = threading.Thread(target=reconciler.run, name="reconciler", daemon=True)
    thread.start()  # creates the topics, then joins the group
    running = Running(config, Feed(config), reconciler, thread)
    try:
        ids = [make_id("079", 1970 + n, "MF"[n % 2], 30_000 + n) for n in range(12)]
        running.feed.send(*(running.feed.event("registry", "u", c, person(c)) for c in ids))
        running.settle(timeout=45)
        assert len(reconciler.consumer.assignment()) == 3 * config.kafka.partitions
    finally:
        reconciler.stop()
        thread.join(30)
        running.feed.close()

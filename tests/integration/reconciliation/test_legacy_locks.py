"""Two reconcilers applying the two sides of a legacy ID number at the same moment.

A sector record carrying a legacy number is keyed by that number, the registry citizen
holding it by the current ID: with several reconcilers the two changes are applied by two
processes. Here two reconcilers of one group apply one batch each against the real
database, and the first is held inside its transaction, after its reads, while the second
runs: the record must end judged against both changes, as if the batches had run one
after the other. Without the legacy locks the second batch read the first side as it was
before the first committed, and the record kept a judgment made against the citizen's
previous state.
"""

from __future__ import annotations

import threading
import time
from datetime import date
from types import SimpleNamespace

import psycopg
import pytest
from kafka import TopicPartition

from hub.db import psycopg_conninfo
from hub.idschemes.vn import make_id
from hub.kafka import make_producer
from reconciliation.batch import Batch
from reconciliation.engine import Reconciler
from tests.integration.reconciliation.feed import Feed, hub_config, person

A = make_id("079", 1985, "M", 1)
LEGACY = "123456789"


class Applier:
    """Applies one-change batches through a reconciler's database side (the transaction a
    polled batch gets), without its consumer loop, so a test can interleave two of them."""

    def __init__(self, config, feed: Feed, offsets: dict[TopicPartition, int], **kwargs):
        self.feed = feed
        self.reconciler = Reconciler(config, **kwargs)
        self.reconciler._connect()
        self.reconciler.producer = make_producer(config.kafka)
        self.offsets = offsets  # shared: the group's offsets are stored per partition

    def apply(self, source: str, record_key: str, after: dict | None) -> None:
        """One change of ``record_key`` (``after`` None: its delete) as a batch of its own."""
        op = "u" if after is not None else "d"
        topic, key, value = self.feed.event(source, op, record_key, after)
        tp = TopicPartition(topic, 0)
        offset = self.offsets.get(tp, 0)
        self.offsets[tp] = offset + 1
        msg = SimpleNamespace(topic=topic, partition=0, offset=offset, key=key, value=value)
        changes, dead = self.reconciler._decode({tp: [msg]})
        assert not dead
        self.reconciler._apply({tp: [msg]}, changes, dead)

    def close(self) -> None:
        self.reconciler._close()


@pytest.fixture
def env(hub_db, kafka_config):
    config = hub_config(hub_db, kafka_config, sectors={"tax": {}})
    feed = Feed(config)
    appliers: list[Applier] = []
    offsets: dict[TopicPartition, int] = {}

    def applier(**kwargs) -> Applier:
        appliers.append(Applier(config, feed, offsets, **kwargs))
        return appliers[-1]

    yield SimpleNamespace(config=config, applier=applier, db=psycopg_conninfo(hub_db))
    for a in appliers:
        a.close()
    feed.close()


def query(db: str, sql: str) -> list[tuple]:
    with psycopg.connect(db) as conn:
        return conn.execute(sql).fetchall()


def open_rules(db: str) -> set[str]:
    rows = query(db, "SELECT rule FROM mismatches WHERE record_key = 'T1' AND status = 'open'")
    return {r[0] for r in rows}


def interleave(db: str, monkeypatch, held: tuple, other: tuple) -> bool:
    """Run ``held`` = (applier, source, record_key, after) up to the end of its reads and
    hold it there while ``other`` starts; release it once ``other`` has finished or waits
    on a lock. Whether ``other`` waited."""
    reached, release = threading.Event(), threading.Event()
    finish = Batch.finish

    def finish_held(batch):
        if batch.store.conn is held[0].reconciler.conn:
            reached.set()
            assert release.wait(30)
        return finish(batch)

    monkeypatch.setattr(Batch, "finish", finish_held)
    errors: list[BaseException] = []

    def run(applier, *change) -> None:
        try:
            applier.apply(*change)
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)

    t_held = threading.Thread(target=run, args=held, daemon=True)
    t_held.start()
    assert reached.wait(30), "the first batch never reached its writes"
    t_other = threading.Thread(target=run, args=other, daemon=True)
    t_other.start()
    waited = False
    deadline = time.monotonic() + 20
    while t_other.is_alive() and not waited and time.monotonic() < deadline:
        waited = query(
            db,
            "SELECT count(*) > 0 FROM pg_stat_activity "
            "WHERE application_name = 'hub-reconciler' AND wait_event_type = 'Lock'",
        )[0][0]
        time.sleep(0.05)
    release.set()
    t_held.join(30)
    t_other.join(30)
    assert not errors
    assert not t_held.is_alive() and not t_other.is_alive()
    return waited


def setup_citizen_and_record(env, status: str) -> None:
    """The citizen holds the legacy number; the tax record carries it."""
    setup = env.applier(assign_all=True)
    setup.apply("registry", A, person(A, legacy_id=LEGACY))
    setup.apply("tax", "T1", person("123 456 789", status=status))
    assert open_rules(env.db) == {"ID_LEGACY"}
    # Alone, a reconciler has no other process to wait for: it takes no locks.
    assert query(env.db, "SELECT count(*) FROM reconciler_legacy_locks") == [(0,)]


DEATH = person(A, legacy_id=LEGACY, date_of_death=date(2024, 5, 1))


@pytest.mark.parametrize("first", ["registry", "sector"])
def test_a_death_and_a_record_carrying_the_legacy_number_reactivated_at_once(
    env, monkeypatch, first
):
    # Two reconcilers of the group: one gets the citizen's death, the other the inactive
    # record becoming active. Either alone leaves no DECEASED_ACTIVE; together they do.
    setup_citizen_and_record(env, "inactive")
    registry = (env.applier(), "registry", A, DEATH)
    sector = (env.applier(), "tax", "T1", person("123 456 789", status="active"))
    held, other = (registry, sector) if first == "registry" else (sector, registry)

    assert interleave(env.db, monkeypatch, held, other), "the second batch did not wait"

    assert open_rules(env.db) == {"ID_LEGACY", "DECEASED_ACTIVE"}
    assert query(env.db, "SELECT verified FROM sector_records WHERE record_key = 'T1'") == [
        (False,)
    ]
    assert query(env.db, "SELECT legacy_id FROM reconciler_legacy_locks") == [(LEGACY,)]


@pytest.mark.parametrize("first", ["registry", "sector"])
def test_a_death_and_the_delete_of_a_record_carrying_the_legacy_number_at_once(
    env, monkeypatch, first
):
    # A delete carries no ID: its record's number is known only once the record is read,
    # and is locked then. A deleted record keeps no open mismatch, whichever came first.
    setup_citizen_and_record(env, "active")
    registry = (env.applier(), "registry", A, DEATH)
    sector = (env.applier(), "tax", "T1", None)
    held, other = (registry, sector) if first == "registry" else (sector, registry)

    assert interleave(env.db, monkeypatch, held, other), "the second batch did not wait"

    assert open_rules(env.db) == set()
    assert query(env.db, "SELECT count(*) FROM sector_records") == [(0,)]

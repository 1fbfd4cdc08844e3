"""Snapshot capture (full reads; deletes found by comparing key sets) against the real
PostgreSQL and broker."""

from __future__ import annotations

import pytest

from connectors.base import ConnectorContext
from connectors.delivery import Delivery
from connectors.mapping import RecordMapper
from connectors.snapshot import SnapshotCapture
from connectors.state import add_request, hub_engine
from hub.idschemes import get_scheme
from tests.integration.connectors.conftest import changes, run_once

TABLE = """
CREATE TABLE giay_phep (
    so_giay_phep text PRIMARY KEY,
    cccd_chu_dau_tu text,
    ten_chu_dau_tu text,
    ngay_cap date
)"""


def permits_source(db, **snapshot) -> dict:
    return {
        "url": db.url,
        "table": "giay_phep",
        "key": "so_giay_phep",
        "capture": "snapshot",
        "snapshot": {"chunk_size": 7, **snapshot},
        "columns": {
            "citizen_id": "cccd_chu_dau_tu",
            "full_name": "ten_chu_dau_tu",
            "last_activity_date": "ngay_cap",
        },
    }


@pytest.fixture
def permits(source_db):
    source_db.execute(TABLE)
    source_db.execute(
        "INSERT INTO giay_phep SELECT 'GP' || lpad(i::text, 3, '0'),"
        " '0011900' || lpad(i::text, 5, '0'), 'Chủ ' || i, DATE '2023-01-01' + i"
        " FROM generate_series(1, 30) i"
    )
    return source_db


def test_a_full_read_then_only_changed_rows_and_deletes_for_vanished_ones(permits, make_config):
    config = make_config(construction=permits_source(permits))
    topic = changes(config, "construction")
    run_once(config, "construction")
    first = topic.read()
    assert len(first) == 30 and {m.op for m in first} == {"r"}
    assert all(m.value["source"]["snapshot"] for m in first)

    permits.execute("DELETE FROM giay_phep WHERE so_giay_phep IN ('GP003', 'GP020')")
    permits.execute("UPDATE giay_phep SET ten_chu_dau_tu = 'Chủ mới' WHERE so_giay_phep = 'GP005'")
    permits.execute("INSERT INTO giay_phep VALUES ('GP999', '001190099999', 'Mới', '2024-01-01')")
    run_once(config, "construction")  # a new run at each start
    second = topic.read()
    assert sorted((m.op, m.record_key) for m in second) == [
        ("d", "GP003"), ("d", "GP020"), ("r", "GP005"), ("r", "GP999"),
    ]  # fmt: skip
    deleted = {m.record_key: m for m in second if m.op == "d"}
    # Keyed by the citizen ID the row had, so the delete meets the record's partition.
    assert deleted["GP003"].key == b"001190000003"
    assert deleted["GP003"].value["before"]["citizen_id"] == "001190000003"

    run_once(config, "construction")
    assert topic.read() == []  # nothing changed


def test_a_changed_citizen_id_retracts_the_old_key_between_runs(permits, make_config):
    config = make_config(construction=permits_source(permits))
    topic = changes(config, "construction")
    run_once(config, "construction")
    assert len(topic.read()) == 30
    permits.execute(
        "UPDATE giay_phep SET cccd_chu_dau_tu = '001190077777' WHERE so_giay_phep = 'GP007'"
    )
    run_once(config, "construction")
    # A delete on the ID the record had, then a create on the new one: a topic's last event
    # per key (compaction's view) no longer shows GP007 under its old ID.
    got = sorted((m.op, m.key, m.record_key) for m in topic.read())  # two partitions
    assert got == [("c", b"001190077777", "GP007"), ("d", b"001190000007", "GP007")]
    run_once(config, "construction")
    assert topic.read() == []  # the new ID is stored: nothing more to say


def test_an_interrupted_run_continues_after_the_last_acknowledged_chunk(permits, make_config):
    config = make_config(construction=permits_source(permits))
    topic = changes(config, "construction")
    source = config.sectors["construction"]
    mapper = RecordMapper("construction", source, get_scheme("vn"))
    mode = SnapshotCapture(ConnectorContext("construction", source, config, mapper))
    delivery = Delivery("construction", config.kafka)
    mode.open()
    for _ in range(2):  # 14 rows acknowledged
        batch = mode.next_batch()
        delivery.deliver(batch)
        mode.commit(batch)
    delivery.deliver(mode.next_batch())  # sent but never acknowledged: sent again
    mode.close()
    delivery.close()
    run_once(config, "construction")
    keys = [m.record_key for m in topic.read()]
    assert len(keys) == 30 + 7 and set(keys) == {f"GP{i:03d}" for i in range(1, 31)}


def test_a_resnapshot_request_emits_every_row_again(permits, make_config):
    config = make_config(construction=permits_source(permits))
    topic = changes(config, "construction")
    run_once(config, "construction")
    assert len(topic.read()) == 30
    add_request(hub_engine(config.database.url), "construction", "resnapshot", "test")
    run_once(config, "construction")  # an ordinary run (nothing changed), then the request
    assert sorted(m.record_key for m in topic.read()) == sorted(f"GP{i:03d}" for i in range(1, 31))

"""Poll capture (timestamp + incrementing column) against the real PostgreSQL and broker."""

from __future__ import annotations

import pytest

from connectors.base import ConnectorContext
from connectors.delivery import Delivery
from connectors.mapping import RecordMapper
from connectors.poll import PollCapture
from hub.idschemes import get_scheme
from tests.integration.connectors.conftest import changes, dead_letters, run_once

TABLE = """
CREATE TABLE khach_hang (
    id bigserial PRIMARY KEY,
    so_cccd text,
    ho_ten text,
    ngay_sinh date,
    gioi_tinh text,
    updated_at timestamptz NOT NULL DEFAULT now()
)"""


def bank_source(db, **poll) -> dict:
    return {
        "url": db.url,
        "table": "khach_hang",
        "key": "id",
        "capture": "poll",
        "poll": {"timestamp_column": "updated_at", "incrementing_column": "id",
                 "interval_s": 0.2, "margin_s": 5, "batch_size": 100, **poll},
        "columns": {
            "citizen_id": "so_cccd",
            "full_name": "ho_ten",
            "date_of_birth": "ngay_sinh",
            "sex": {"column": "gioi_tinh", "map": {"NAM": "M", "NU": "F"}},
        },
    }  # fmt: skip


@pytest.fixture
def bank(source_db):
    source_db.execute(TABLE)
    return source_db


def insert(db, count: int, ts: str = "now()", prefix: str = "KH") -> None:
    db.execute(
        "INSERT INTO khach_hang (so_cccd, ho_ten, ngay_sinh, gioi_tinh, updated_at)"
        f" SELECT '0791900' || lpad(i::text, 5, '0'), %s || i, DATE '1990-01-01', 'NAM', {ts}"
        " FROM generate_series(1, %s) i",
        (prefix, count),
    )


def test_rows_sharing_one_timestamp_are_all_captured_across_pages(bank, make_config):
    config = make_config(bank=bank_source(bank))
    topic = changes(config, "bank")
    insert(bank, 250, ts="TIMESTAMPTZ '2024-05-01 08:00:00+07'")  # 2.5 pages, one instant
    run_once(config, "bank")
    assert sorted(int(m.record_key) for m in topic.read()) == list(range(1, 251))

    # More rows at that same instant later: still above the watermark's window.
    insert(bank, 30, ts="TIMESTAMPTZ '2024-05-01 08:00:00+07'", prefix="MOI")
    run_once(config, "bank")
    got = topic.read()
    assert {int(m.record_key) for m in got} >= set(range(251, 281))
    assert all(m.op == "u" and m.value["before"] is None for m in got)


def test_a_transaction_committing_late_within_the_margin_is_not_missed(bank, make_config):
    config = make_config(bank=bank_source(bank))
    topic = changes(config, "bank")
    late = bank.connect()
    # The late transaction takes its id and timestamp first (now() = transaction start)...
    late.execute("INSERT INTO khach_hang (so_cccd, ho_ten, ngay_sinh, gioi_tinh)"
                 " VALUES ('079190000999', 'Trễ', DATE '1990-01-01', 'NU')")  # fmt: skip
    # ...a later one commits first and moves the watermark past both.
    insert(bank, 3, prefix="SOM")
    run_once(config, "bank")
    assert {m.value["after"]["full_name"] for m in topic.read()} == {"SOM1", "SOM2", "SOM3"}
    late.commit()
    late.close()
    run_once(config, "bank")
    names = [m.value["after"]["full_name"] for m in topic.read()]
    assert "Trễ" in names


def _open(config):
    source = config.sectors["bank"]
    mode = PollCapture(
        ConnectorContext("bank", source, config, RecordMapper("bank", source, get_scheme("vn")))
    )
    delivery = Delivery("bank", config.kafka)
    mode.open()
    delivery.open()
    return mode, delivery


def _step(mode, delivery):
    batch = mode.next_batch()
    delivery.deliver(batch)
    mode.commit(batch)
    return batch


def test_rows_reread_in_the_margin_are_sent_once_and_updates_again(bank, make_config):
    config = make_config(bank=bank_source(bank, margin_s=3600))
    topic = changes(config, "bank")
    insert(bank, 5)
    mode, delivery = _open(config)
    try:
        assert len(_step(mode, delivery)) == 5
        assert len(_step(mode, delivery)) == 0  # the window is read again, nothing new
        bank.execute("UPDATE khach_hang SET ho_ten = 'Đổi tên', updated_at = now() WHERE id = 2")
        batch = _step(mode, delivery)
        assert len(batch) == 1 and batch.caught_up
    finally:
        mode.close()
        delivery.close()
    got = topic.read()
    assert [m.value["after"]["full_name"] for m in got if m.record_key == "2"] == ["KH2", "Đổi tên"]


def test_the_watermark_survives_a_restart(bank, make_config):
    config = make_config(bank=bank_source(bank, margin_s=0))
    topic = changes(config, "bank")
    insert(bank, 10, ts="TIMESTAMPTZ '2024-01-01 00:00:00Z' + i * interval '1 minute'")
    run_once(config, "bank")
    assert len(topic.read()) == 10
    insert(bank, 2, ts="TIMESTAMPTZ '2024-02-01 00:00:00Z'", prefix="SAU")
    run_once(config, "bank")
    # With margin 0 only rows at the watermark's own timestamp are read again.
    got = topic.read()
    assert {m.value["after"]["full_name"] for m in got} <= {"KH10", "SAU1", "SAU2"}
    assert {"SAU1", "SAU2"} <= {m.value["after"]["full_name"] for m in got}


def test_bad_values_go_to_the_dead_letter_topic_and_polling_goes_on(bank, make_config):
    config = make_config(bank=bank_source(bank))
    bank.execute("INSERT INTO khach_hang (so_cccd, ho_ten, ngay_sinh, gioi_tinh)"
                 " VALUES ('079190000001', 'A', DATE '1990-01-01', 'KHAC')")  # fmt: skip
    insert(bank, 2, prefix="OK")
    run_once(config, "bank")
    assert {m.value["after"]["full_name"] for m in changes(config, "bank").read()} == {"OK1", "OK2"}
    (letter,) = dead_letters(config).read()
    assert letter.value["record_key"] == "1" and letter.value["column"] == "gioi_tinh"
    assert "value map" in letter.value["reason"]


def test_check_names_the_poll_columns_and_warns_that_hard_deletes_are_not_seen(bank, make_config):
    from connectors.ops import check

    results = {r.what: r for r in check(make_config(bank=bank_source(bank)), "bank")}
    assert all(r.ok for r in results.values())
    assert "updated_at" in results["timestamp column"].detail
    assert results["deletes"].status == "warn" and "hard deletes" in results["deletes"].detail
    missing = bank_source(bank, timestamp_column="sua_luc")
    results = {r.what: r for r in check(make_config(bank=missing), "bank")}
    assert not results["timestamp column"].ok


def test_the_first_full_read_is_marked_snapshot_and_later_changes_are_not(bank, make_config):
    config = make_config(bank=bank_source(bank))
    topic = changes(config, "bank")
    insert(bank, 120, ts="TIMESTAMPTZ '2024-05-01 08:00:00+07'")  # more than one page
    run_once(config, "bank")
    first = topic.read()
    assert len(first) == 120
    assert all(m.value["source"]["snapshot"] for m in first)

    insert(bank, 2, prefix="MOI")  # after the watermark: streamed, not a snapshot
    run_once(config, "bank")
    later = topic.read()
    assert {int(m.record_key) for m in later} >= {121, 122}
    assert not any(m.value["source"]["snapshot"] for m in later if int(m.record_key) > 120)

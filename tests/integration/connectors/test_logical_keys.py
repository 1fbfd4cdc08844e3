"""One key per record's history (logical capture): every event of a record is keyed by the
citizen ID it carried, deletes and ID changes included, so a plain consumer taking the last
event per key (compaction's view) finds exactly the source's final state. Replica
identity DEFAULT, where the connector keeps each record's ID in the hub database."""

from __future__ import annotations

import time

from kafka import KafkaConsumer, TopicPartition

from hub.avro.codec import decode
from hub.kafka import Topics
from tests.integration.connectors.conftest import run_once
from tests.integration.connectors.test_logical import cid, insert_rows, tax_source

TABLE = """
CREATE TABLE {name} (
    ma_so_thue text PRIMARY KEY, so_cccd text, ten_nnt text, ngay_sinh text, gioi_tinh text,
    trang_thai text, ngay_nop_cuoi date, ghi_chu text
)"""


def last_event_per_key(bootstrap: str, topic: str) -> dict[bytes, dict]:
    """The topic read to its end with a plain KafkaConsumer: the last event of each key."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             group_id=None)  # fmt: skip
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        last: dict[bytes, dict] = {}
        deadline = time.monotonic() + 60
        while any(consumer.position(tp) < end[tp] for tp in tps):
            assert time.monotonic() < deadline, "topic not readable to its end"
            for records in consumer.poll(timeout_ms=500).values():
                for r in records:
                    last[r.key] = decode(r.value)[1]
        return last
    finally:
        consumer.close()


def live_view(last: dict[bytes, dict]) -> dict[str, str]:
    """Citizen key → record key of every key whose last event is not a delete."""
    return {k.decode(): e["record_key"] for k, e in last.items() if e["op"] != "d"}


def test_the_last_event_per_key_is_the_sources_final_state(source_db, make_config):
    # REPLICA IDENTITY DEFAULT: deletes and updates carry only the key, so the IDs come from
    # what the connector kept (FULL images carry them: tests/unit/connectors/test_event_keys.py
    # and test_logical.py's full-image test).
    db = source_db
    db.execute(TABLE.format(name="nnt"))
    config = make_config(tax=tax_source(db))
    insert_rows(db, 1, 6)
    run_once(config, "tax")  # the snapshot: six records

    with db.connect() as conn:  # changes, some several to one record in one transaction
        conn.execute("UPDATE nnt SET ten_nnt = 'Lê Văn Cường' WHERE ma_so_thue = 'MST1'")
        conn.execute("DELETE FROM nnt WHERE ma_so_thue = 'MST2'")
        conn.execute("UPDATE nnt SET so_cccd = %s WHERE ma_so_thue = 'MST3'", (cid(33),))
        conn.commit()
        conn.execute("UPDATE nnt SET so_cccd = %s WHERE ma_so_thue = 'MST4'", (cid(44),))
        conn.execute("DELETE FROM nnt WHERE ma_so_thue = 'MST4'")
        conn.execute("UPDATE nnt SET ma_so_thue = 'MST5b' WHERE ma_so_thue = 'MST5'")
        conn.commit()
        conn.execute("INSERT INTO nnt (ma_so_thue, so_cccd) VALUES ('MST7', %s)", (cid(7),))
        conn.execute("UPDATE nnt SET so_cccd = %s WHERE ma_so_thue = 'MST7'", (cid(77),))
        conn.commit()
        conn.execute("UPDATE nnt SET so_cccd = %s WHERE ma_so_thue = 'MST6'", (cid(66),))
        conn.commit()
        conn.execute("UPDATE nnt SET so_cccd = %s WHERE ma_so_thue = 'MST3'", (cid(333),))
        conn.commit()
    run_once(config, "tax")  # a new runner: the snapshot's IDs come from the hub database

    topic = Topics(config.kafka.topic_prefix).changes("tax")
    last = last_event_per_key(config.kafka.bootstrap_servers, topic)
    source = {c: k for k, c in db.execute("SELECT ma_so_thue, so_cccd FROM nnt")}
    assert live_view(last) == source
    assert set(source.values()) == {"MST1", "MST3", "MST5b", "MST6", "MST7"}
    # Every old key's last word is a delete of that record: nothing is resurrected.
    for gone, record in [(cid(2), "MST2"), (cid(3), "MST3"), (cid(33), "MST3"),
                         (cid(4), "MST4"), (cid(44), "MST4"), (cid(6), "MST6"),
                         (cid(7), "MST7")]:  # fmt: skip
        assert (last[gone.encode()]["op"], last[gone.encode()]["record_key"]) == ("d", record)
    assert last[cid(5).encode()]["record_key"] == "MST5b"  # a new key, the same citizen
    assert not any(k.startswith(b"tax:") for k in last)

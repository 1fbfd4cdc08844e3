"""Logical capture against the real PostgreSQL (wal_level=logical) and broker."""

from __future__ import annotations

import time
from datetime import date

import pytest
from prometheus_client import REGISTRY

from connectors.base import ConnectorContext
from connectors.delivery import Delivery
from connectors.logical.capture import LogicalCapture
from connectors.mapping import UNCHANGED_ATTRIBUTE, RecordMapper
from hub.idschemes import get_scheme
from tests.integration.connectors.conftest import (
    by_partition_order,
    changes,
    dead_letters,
    run_once,
)

pytestmark = pytest.mark.heavy(100)

TABLE = """
CREATE TABLE nnt (
    ma_so_thue text PRIMARY KEY,
    so_cccd text,
    ten_nnt text,
    ngay_sinh text,
    gioi_tinh text,
    trang_thai text,
    ngay_nop_cuoi date,
    ghi_chu text
)"""


def tax_source(db, **extra) -> dict:
    source = {
        "url": db.url,
        "table": "public.nnt",
        "key": "ma_so_thue",
        "capture": "logical",
        "logical": {"slot": f"hub_{db.name}", "publication": f"pub_{db.name}",
                    "heartbeat_s": 0.5},
        "columns": {
            "citizen_id": "so_cccd",
            "full_name": "ten_nnt",
            "date_of_birth": {"column": "ngay_sinh", "format": "%d/%m/%Y"},
            "sex": {"column": "gioi_tinh", "map": {"Nam": "M", "Nữ": "F"}},
            "status": "trang_thai",
            "last_activity_date": "ngay_nop_cuoi",
            "attributes.ghi_chu": "ghi_chu",
        },
    }  # fmt: skip
    source.update(extra)
    return source


def unacknowledged_changes(db) -> int:
    """Row changes the slot would still hand out: a peek of the publication's inserts,
    updates and deletes past ``confirmed_flush_lsn``. (Measuring the WAL distance instead
    is racy: autovacuum and checkpoints write WAL that no publication carries.)"""
    (count,) = db.execute(
        "SELECT count(*) FROM pg_logical_slot_peek_binary_changes(%s, NULL, NULL,"
        " 'proto_version', '1', 'publication_names', %s)"
        " WHERE get_byte(data, 0) IN (73, 85, 68)",  # 'I', 'U', 'D'
        (f"hub_{db.name}", f"pub_{db.name}"),
    )[0]
    return int(count)


def cid(i: int) -> str:
    return f"0010900{i:05d}"


def insert_rows(db, first: int, count: int) -> None:
    db.execute(
        "INSERT INTO nnt SELECT 'MST' || i, '0010900' || lpad(i::text, 5, '0'),"
        " 'Nguyễn Văn ' || i, lpad((1 + i %% 28)::text, 2, '0') || '/03/1990',"
        " CASE WHEN i %% 2 = 0 THEN 'Nam' ELSE 'Nữ' END, 'active', DATE '2024-01-01' + i %% 300,"
        " NULL FROM generate_series(%s::int, %s::int) i",
        (first, first + count - 1),
    )


def expected_record(row: tuple) -> dict:
    """The canonical record the mapping must produce for a source row of ``nnt``."""
    key, so_cccd, ten, ngay_sinh, gioi_tinh, trang_thai, ngay_nop, ghi_chu = row
    d, m, y = ngay_sinh.split("/")
    return {
        "citizen_id": so_cccd,
        "legacy_id": None,
        "full_name": ten,
        "date_of_birth": date(int(y), int(m), int(d)),
        "sex": {"Nam": "M", "Nữ": "F"}[gioi_tinh],
        "province_code": None,
        "address": None,
        "date_of_death": None,
        "status": trang_thai,
        "last_activity_date": ngay_nop,
        "attributes": {} if ghi_chu is None else {"ghi_chu": ghi_chu},
    }


def source_rows(db) -> dict[str, tuple]:
    return {r[0]: r for r in db.execute("SELECT * FROM nnt ORDER BY ma_so_thue")}


def replay_state(messages) -> dict[str, dict]:
    """The state a consumer ends with: events applied in partition order, and (as the
    reconciler does) a change older by LSN than the state held for its record is stale."""
    state: dict[str, dict | None] = {}
    lsns: dict[str, int] = {}
    for m in by_partition_order(messages):
        lsn, key = m.value["source"]["lsn"], m.record_key
        if lsn is not None and lsns.get(key, -1) > lsn:
            continue
        if lsn is not None:
            lsns[key] = lsn
        state[key] = None if m.op == "d" else m.value["after"]
    return {k: v for k, v in state.items() if v is not None}


@pytest.fixture
def nnt(source_db):
    source_db.execute(TABLE)
    return source_db


@pytest.mark.tansu_smoke
def test_inserts_updates_and_deletes_arrive_with_full_before_images(nnt, make_config):
    nnt.execute("ALTER TABLE nnt REPLICA IDENTITY FULL")
    config = make_config(tax=tax_source(nnt))
    topic = changes(config, "tax")
    run_once(config, "tax")  # creates publication and slot, snapshots an empty table
    assert topic.read() == []

    insert_rows(nnt, 1, 1)
    nnt.execute(
        "UPDATE nnt SET ten_nnt = 'Trần Thị Bình', gioi_tinh = 'Nữ' WHERE ma_so_thue = 'MST1'"
    )
    nnt.execute("DELETE FROM nnt WHERE ma_so_thue = 'MST1'")
    run_once(config, "tax")

    c, u, d = topic.read()
    assert (c.op, u.op, d.op) == ("c", "u", "d")
    assert {c.key, u.key, d.key} == {cid(1).encode()}
    assert c.value["before"] is None and c.value["after"]["full_name"] == "Nguyễn Văn 1"
    assert u.value["before"]["full_name"] == "Nguyễn Văn 1" and u.value["before"]["sex"] == "F"
    assert u.value["after"]["full_name"] == "Trần Thị Bình"
    assert d.value["after"] is None and d.value["before"]["full_name"] == "Trần Thị Bình"
    assert d.value["before"]["date_of_birth"] == date(1990, 3, 2)
    for m in (c, u, d):
        src = m.value["source"]
        assert src["connector"] == "tax" and src["table"] == "public.nnt"
        assert src["lsn"] > 0 and src["txid"] > 0 and src["commit_ts_ms"] > 0
        assert src["snapshot"] is False
    assert c.value["source"]["lsn"] < u.value["source"]["lsn"] < d.value["source"]["lsn"]


def test_replica_identity_default_sends_key_only_before_images(nnt, make_config):
    config = make_config(tax=tax_source(nnt))
    topic = changes(config, "tax")
    insert_rows(nnt, 1, 2)
    run_once(config, "tax")
    assert [m.op for m in topic.read()] == ["r", "r"]

    nnt.execute("UPDATE nnt SET ten_nnt = 'Lê Văn Cường' WHERE ma_so_thue = 'MST1'")
    nnt.execute("DELETE FROM nnt WHERE ma_so_thue = 'MST1'")
    nnt.execute("UPDATE nnt SET ma_so_thue = 'MST2b' WHERE ma_so_thue = 'MST2'")
    run_once(config, "tax")

    u, d, *pk_change = _in_commit_order(topic.read())
    assert u.op == "u" and u.value["before"] is None  # key unchanged: no old tuple
    assert u.value["after"]["full_name"] == "Lê Văn Cường"
    assert d.op == "d" and d.record_key == "MST1"
    assert d.value["before"]["citizen_id"] is None  # only the key travels
    assert d.key == cid(1).encode()  # the citizen ID the connector kept for MST1
    # A primary-key change is the old record's delete and the new record's create.
    assert {(m.op, m.record_key, m.key) for m in pk_change} == {
        ("d", "MST2", cid(2).encode()),
        ("c", "MST2b", cid(2).encode()),
    }


def _in_commit_order(messages):
    return sorted(messages, key=lambda m: (m.value["source"]["lsn"], m.partition, m.offset))


def test_a_multi_row_transaction_arrives_whole_and_a_rolled_back_one_not_at_all(nnt, make_config):
    config = make_config(tax=tax_source(nnt))
    topic = changes(config, "tax")
    run_once(config, "tax")
    with nnt.connect() as conn:
        with conn.transaction():
            conn.execute("INSERT INTO nnt (ma_so_thue, so_cccd, ten_nnt, ngay_sinh, gioi_tinh)"
                         " VALUES ('A', %s, 'An', '01/01/1990', 'Nam')", (cid(1),))  # fmt: skip
            conn.execute("INSERT INTO nnt (ma_so_thue, so_cccd, ten_nnt, ngay_sinh, gioi_tinh)"
                         " VALUES ('B', %s, 'Bình', '02/01/1990', 'Nữ')", (cid(2),))  # fmt: skip
            conn.execute("UPDATE nnt SET ten_nnt = 'An 2' WHERE ma_so_thue = 'A'")
        with pytest.raises(RuntimeError), conn.transaction():
            conn.execute("INSERT INTO nnt (ma_so_thue, so_cccd, ten_nnt, ngay_sinh, gioi_tinh)"
                         " VALUES ('C', %s, 'Chi', '03/01/1990', 'Nữ')", (cid(3),))  # fmt: skip
            conn.execute("DELETE FROM nnt WHERE ma_so_thue = 'A'")
            raise RuntimeError("roll back")
    run_once(config, "tax")
    got = _in_commit_order(topic.read())
    assert [(m.op, m.record_key) for m in got] == [("c", "A"), ("c", "B"), ("u", "A")]
    assert len({m.value["source"]["txid"] for m in got}) == 1
    assert len({m.value["source"]["lsn"] for m in got}) == 1  # one commit


@pytest.mark.parametrize("identity", ["DEFAULT", "FULL"])
def test_unchanged_toast_value_never_overwrites(nnt, make_config, identity):
    nnt.execute(f"ALTER TABLE nnt REPLICA IDENTITY {identity}")
    nnt.execute("ALTER TABLE nnt ALTER COLUMN ghi_chu SET STORAGE EXTERNAL")  # no compression
    config = make_config(tax=tax_source(nnt))
    topic = changes(config, "tax")
    big = "ghi chú " * 2000  # ~16 kB: stored out of line (TOAST)
    insert_rows(nnt, 1, 1)
    nnt.execute("UPDATE nnt SET ghi_chu = %s WHERE ma_so_thue = 'MST1'", (big,))
    run_once(config, "tax")
    topic.read()

    nnt.execute("UPDATE nnt SET trang_thai = 'closed' WHERE ma_so_thue = 'MST1'")
    run_once(config, "tax")
    (update,) = topic.read()
    after = update.value["after"]
    assert after["status"] == "closed"
    if identity == "FULL":  # the old tuple carries the value: the event is complete
        assert after["attributes"] == {"ghi_chu": big}
    else:  # not carried: null, and named so consumers keep what they hold
        assert "ghi_chu" not in after["attributes"]
        assert after["attributes"][UNCHANGED_ATTRIBUTE] == "attributes.ghi_chu"


def test_heartbeats_let_an_idle_slot_advance(nnt, make_config):
    nnt.execute("CREATE TABLE busy (id serial PRIMARY KEY, v text)")
    config = make_config(tax=tax_source(nnt))
    run_once(config, "tax")
    slot = f"hub_{nnt.name}"

    def confirmed() -> int:
        (lsn,) = nnt.execute(
            "SELECT confirmed_flush_lsn - '0/0'::pg_lsn FROM pg_replication_slots"
            " WHERE slot_name = %s",
            (slot,),
        )[0]
        return int(lsn)

    before = confirmed()
    nnt.execute("INSERT INTO busy (v) SELECT md5(i::text) FROM generate_series(1, 5000) i")
    (written,) = nnt.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")[0]
    run_once(config, "tax")  # the published table is idle: only the heartbeat moves it
    assert confirmed() > int(written) > before
    assert changes(config, "tax").read() == []
    assert unacknowledged_changes(nnt) == 0


def test_a_backlog_of_many_peeks_arrives_once_in_commit_order_and_the_slot_follows(
    nnt, make_config
):
    """Several peeks (each read in read-ahead batches, the slot advanced in between): every
    change once, each record's changes in commit order, and the slot's restart point moves
    on (pg_log_standby_snapshot), so later peeks do not decode the whole backlog again."""
    insert_rows(nnt, 1, 200)
    source = tax_source(nnt)
    source["logical"]["batch_size"] = 40  # a peek reads 40 x PEEK_BATCHES rows
    config = make_config(tax=source)
    run_once(config, "tax")
    topic = changes(config, "tax")
    topic.read()
    slot = f"hub_{nnt.name}"
    (restart_before,) = nnt.execute(
        "SELECT restart_lsn - '0/0'::pg_lsn FROM pg_replication_slots WHERE slot_name = %s",
        (slot,),
    )[0]
    for rnd in range(15):  # 15 transactions x 200 updates: 6,000+ rows of pgoutput
        nnt.execute("UPDATE nnt SET ghi_chu = %s", (f"round {rnd}",))
    assert unacknowledged_changes(nnt) == 15 * 200
    run_once(config, "tax")
    streamed = topic.read()
    assert len(streamed) == 15 * 200
    assert len({(m.partition, m.offset) for m in streamed}) == len(streamed)
    rounds: dict[str, list[int]] = {}
    for m in by_partition_order(streamed):
        rounds.setdefault(m.record_key, []).append(
            int(m.value["after"]["attributes"]["ghi_chu"][6:])
        )
    assert len(rounds) == 200 and all(r == list(range(15)) for r in rounds.values())
    (restart_after,) = nnt.execute(
        "SELECT restart_lsn - '0/0'::pg_lsn FROM pg_replication_slots WHERE slot_name = %s",
        (slot,),
    )[0]
    assert restart_after > restart_before
    assert unacknowledged_changes(nnt) == 0  # acknowledged up to the end before it stopped


def test_100k_rows_are_snapshotted_then_streamed_and_match_the_source(nnt, make_config, capsys):
    insert_rows(nnt, 1, 100_000)
    config = make_config(tax=tax_source(nnt))
    topic = changes(config, "tax")
    started = time.perf_counter()
    run_once(config, "tax", timeout=170)
    elapsed = time.perf_counter() - started
    snapshot = topic.read()
    assert len(snapshot) == 100_000 and {m.op for m in snapshot} == {"r"}
    assert all(m.value["source"]["snapshot"] for m in snapshot)

    nnt.execute("UPDATE nnt SET trang_thai = 'closed' WHERE ma_so_thue LIKE 'MST1%'")
    nnt.execute("DELETE FROM nnt WHERE ma_so_thue LIKE 'MST2%'")
    insert_rows(nnt, 100_001, 5_000)
    started2 = time.perf_counter()
    run_once(config, "tax")
    elapsed2 = time.perf_counter() - started2
    streamed = topic.read()
    assert {m.op for m in streamed} == {"u", "d", "c"}

    rows = source_rows(nnt)
    state = replay_state(snapshot + streamed)
    assert state.keys() == rows.keys()
    for key, row in rows.items():
        assert state[key] == expected_record(row), key
    carried: dict[str, bytes] = {}  # record key -> the citizen ID its record carried
    for m in snapshot + streamed:  # keyed by the normalized citizen ID
        if m.op == "d":  # by the one the record carried (key-only before image)
            assert m.key == carried[m.record_key], m.record_key
            continue
        record = m.value["after"]
        assert m.key == (record["citizen_id"].encode() if record["citizen_id"] else
                         f"tax:{m.record_key}".encode())  # fmt: skip
        carried[m.record_key] = m.key
    with capsys.disabled():
        print(f"\n  logical snapshot: {100_000 / elapsed:,.0f} rows/s; "
              f"streaming: {len(streamed) / elapsed2:,.0f} changes/s ({len(streamed)})")  # fmt: skip


def test_an_interrupted_snapshot_resumes_and_changes_meanwhile_are_neither_lost_nor_regressed(
    nnt, make_config
):
    insert_rows(nnt, 1, 1000)
    config = make_config(tax=tax_source(nnt, snapshot={"chunk_size": 100}))
    topic = changes(config, "tax")
    # Three chunks acknowledged, then the process "dies" mid-snapshot.
    mode, delivery = _open_capture(config)
    for _ in range(3):
        batch = mode.next_batch()
        delivery.deliver(batch)
        mode.commit(batch)
    fourth = mode.next_batch()
    delivery.deliver(fourth)  # sent, never acknowledged to the source: re-read on restart
    mode.close()
    delivery.close()

    # While it was down: changes in the part already read, the part not read, and both.
    nnt.execute("UPDATE nnt SET ten_nnt = 'đã đổi' WHERE ma_so_thue IN ('MST1', 'MST500')")
    nnt.execute("DELETE FROM nnt WHERE ma_so_thue IN ('MST10', 'MST900')")
    insert_rows(nnt, 2000, 3)
    run_once(config, "tax")
    nnt.execute(
        "UPDATE nnt SET trang_thai = 'closed' WHERE ma_so_thue IN ('MST1', 'MST900', 'MST2000')"
    )
    run_once(config, "tax")

    messages = topic.read()
    rows = source_rows(nnt)
    state = replay_state(messages)
    assert state.keys() == rows.keys()
    for key, row in rows.items():
        assert state[key] == expected_record(row), key
    # Per record, no older state arrives after a newer one (the stream skips what the
    # resumed snapshot already read).
    names: dict[str, list[str]] = {}
    for m in by_partition_order(messages):
        if m.value["after"]:
            names.setdefault(m.record_key, []).append(m.value["after"]["full_name"])
    assert names["MST500"][-1] == "đã đổi" and names["MST500"].count("đã đổi") >= 1
    first_new = names["MST500"].index("đã đổi")
    assert all(n == "đã đổi" for n in names["MST500"][first_new:])


def _open_capture(config):
    source = config.sectors["tax"]
    mapper = RecordMapper("tax", source, get_scheme("vn"))
    mode = LogicalCapture(ConnectorContext("tax", source, config, mapper))
    delivery = Delivery("tax", config.kafka)
    delivery.open()
    mode.open()
    return mode, delivery


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_unmappable_values_go_to_the_dead_letter_topic_and_capture_goes_on(nnt, make_config):
    config = make_config(tax=tax_source(nnt))
    topic, dlq = changes(config, "tax"), dead_letters(config)
    run_once(config, "tax")
    dead_before = _metric(
        "hub_dead_letters_total", stage="connector", connector="tax", reason="unmappable_value"
    )
    created_before = _metric("hub_connector_events_total", connector="tax", op="c")
    nnt.execute("INSERT INTO nnt (ma_so_thue, so_cccd, ten_nnt, ngay_sinh, gioi_tinh)"
                " VALUES ('X1', %s, 'X', '1990-13-45', 'Nam')", (cid(1),))  # fmt: skip
    nnt.execute("INSERT INTO nnt (ma_so_thue, so_cccd, ten_nnt, ngay_sinh, gioi_tinh)"
                " VALUES ('X2', %s, 'X', '01/01/1990', 'Khác')", (cid(2),))  # fmt: skip
    insert_rows(nnt, 3, 1)
    run_once(config, "tax")
    (good,) = topic.read()
    assert good.record_key == "MST3"
    letters = {m.value["record_key"]: m.value for m in dlq.read()}
    assert letters.keys() == {"X1", "X2"}
    assert letters["X1"]["column"] == "ngay_sinh" and "%d/%m/%Y" in letters["X1"]["reason"]
    assert letters["X2"]["column"] == "gioi_tinh" and "value map" in letters["X2"]["reason"]
    assert letters["X1"]["stage"] == "connector" and letters["X1"]["source"] == "tax"
    assert b"1990-13-45" in letters["X1"]["payload"]  # the original row, for replay
    assert _metric("hub_dead_letters_total", stage="connector", connector="tax",
                   reason="unmappable_value") == dead_before + 2  # fmt: skip
    assert _metric("hub_connector_events_total", connector="tax", op="c") == created_before + 1
    assert _metric("hub_connector_slot_lag_bytes", connector="tax") >= 0
    # Caught up: the last batch sets 0, and no heartbeat ages it while the run closes.
    assert _metric("hub_connector_lag_seconds", connector="tax") == 0


def test_truncate_is_reported_as_a_dead_letter(nnt, make_config):
    config = make_config(tax=tax_source(nnt))
    insert_rows(nnt, 1, 3)
    run_once(config, "tax")
    nnt.execute("TRUNCATE nnt")
    run_once(config, "tax")
    (letter,) = dead_letters(config).read()
    assert "TRUNCATE" in letter.value["reason"] and "resnapshot" in letter.value["reason"]

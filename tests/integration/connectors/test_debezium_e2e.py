"""Real Debezium on a real Kafka Connect worker (``hub.testing.connect_worker``, started once
for the session): its PostgreSQL connector (``deploy/debezium/postgres.properties``, pgoutput,
a slot and publication of its own) on a source database of the session's PostgreSQL, JSON
with and without ``schemas.enable``; the hub's ``capture: debezium`` mode reading what it
wrote; and the MariaDB case, tried with what Maven serves.

One source database for the module; each test its own table, connector and topic prefix.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from types import SimpleNamespace

import psycopg
import pytest
from kafka import KafkaConsumer, TopicPartition

from hub.config import DatabaseConfig, HubConfig, MetricsConfig, SourceConfig
from hub.db import psycopg_conninfo
from hub.embedded.connect import ConnectWorker, postgres_connector
from hub.errors import FatalError
from tests.integration.connectors.conftest import (
    SourceDb,
    changes,
    reconcile_until_idle,
    run_once,
)

pytestmark = pytest.mark.heavy(37)

TAX = """
CREATE TABLE {name} (
    ma_so_thue text PRIMARY KEY,
    so_cccd text,
    ten_nnt text,
    ngay_sinh date,
    gioi_tinh text,
    so_tien numeric(12, 2)
)"""

MARIADB_CONNECTOR = (
    "Maven Central serves no io.debezium:debezium-connector-mariadb:3.6.1.Final (its last "
    "release is 3.5.0.Final)"
)


@pytest.fixture(scope="module")
def src(servers) -> Iterator[SourceDb]:
    db = SourceDb(servers.create_database("dbz"))
    yield db
    with psycopg.connect(psycopg_conninfo(servers.pg_url), autocommit=True) as conn:
        for (slot,) in conn.execute(
            "SELECT slot_name FROM pg_replication_slots WHERE database = %s AND NOT active",
            (db.name,),
        ).fetchall():
            conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
    servers.drop_database(db.url)


def pg_port(servers) -> int:
    return int(servers.pg_url.rsplit(":", 1)[1].split("/", 1)[0])


@pytest.fixture
def table(src) -> str:
    name = f"nnt_{uuid.uuid4().hex[:8]}"
    src.execute(TAX.format(name=name))
    return name


def start_connector(worker: ConnectWorker, config: dict[str, str]) -> str:
    """Create the connector and wait for its task; returns its topic."""
    worker.create(config)
    worker.wait_running(config["name"])
    schema, table = config["table.include.list"].split(".")
    return f"{config['topic.prefix']}.{schema}.{table}"


def wait_streaming(db: SourceDb, table: str, timeout: float = 60) -> None:
    """Until Debezium streams: it sets the table's REPLICA IDENTITY FULL
    (``replica.identity.autoset.values``) as its stream starts, after the snapshot; a change
    before that would carry a before-image of the key alone."""
    deadline = time.monotonic() + timeout
    while db.execute("SELECT relreplident FROM pg_class WHERE oid = %s::regclass", (table,)) != [
        ("f",)
    ]:
        assert time.monotonic() < deadline, f"Debezium did not set REPLICA IDENTITY FULL on {table}"
        time.sleep(0.1)


def read_topic(bootstrap: str, topic: str, count: int, timeout: float = 60) -> list:
    """The first ``count`` records of ``topic`` (one partition), waiting until they are there."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        tp = TopicPartition(topic, 0)
        deadline = time.monotonic() + timeout
        while not consumer.partitions_for_topic(topic):
            assert time.monotonic() < deadline, f"no topic {topic}"
            time.sleep(0.2)
            consumer.topics()  # refresh the metadata
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        out: list = []
        while len(out) < count:
            assert time.monotonic() < deadline, f"{len(out)} of {count} records on {topic}"
            for records in consumer.poll(timeout_ms=300).values():
                out.extend(records)
        return out[:count]
    finally:
        consumer.close()


def envelope(value: bytes | None, schemas: bool) -> dict | None:
    if value is None:
        return None
    doc = json.loads(value)
    if schemas:
        assert set(doc) == {"schema", "payload"}
        return doc["payload"]
    assert "schema" not in doc
    return doc


@pytest.mark.parametrize("schemas", [True, False], ids=["schemas", "no-schemas"])
def test_debeziums_postgres_connector_carries_snapshot_inserts_updates_and_deletes(
    servers, connect_worker, src, table, schemas
):
    src.execute(
        f"INSERT INTO {table} VALUES ('MST1', '001090000001', 'Nguyễn Văn An', '1990-03-04',"
        " 'Nam', 1234.50)"
    )
    name = f"pg-{table}-{'s' if schemas else 'n'}"
    config = postgres_connector(
        name, port=pg_port(servers), database=src.name, table=f"public.{table}",
        topic_prefix=f"dbz{uuid.uuid4().hex[:6]}", schemas=schemas,
    )  # fmt: skip
    topic = start_connector(connect_worker, config)
    try:
        wait_streaming(src, table)
        src.execute(
            f"INSERT INTO {table} VALUES ('MST2', '001090000002', 'Lê Thị Bình', '1985-07-08',"
            " 'Nữ', 0.01)"
        )
        src.execute(f"UPDATE {table} SET ten_nnt = 'Nguyễn Văn Anh' WHERE ma_so_thue = 'MST1'")
        src.execute(f"DELETE FROM {table} WHERE ma_so_thue = 'MST2'")
        records = read_topic(servers.bootstrap, topic, 5)  # r, c, u, d and d's tombstone
    finally:
        connect_worker.delete(name)
    values = [envelope(r.value, schemas) for r in records]
    keys = [envelope(r.key, schemas) for r in records]
    assert [v["op"] if v else None for v in values] == ["r", "c", "u", "d", None]
    assert keys == [{"ma_so_thue": k} for k in ("MST1", "MST2", "MST1", "MST2", "MST2")]
    read, create, update, delete, _ = values
    assert read["before"] is None and read["after"]["ten_nnt"] == "Nguyễn Văn An"
    assert read["source"]["snapshot"] in ("first", "true", "last", "last_in_data_collection")
    # A full before-image (the config sets REPLICA IDENTITY FULL), as the hub's mapping needs.
    assert update["before"]["ten_nnt"] == "Nguyễn Văn An"
    assert update["after"]["ten_nnt"] == "Nguyễn Văn Anh"
    assert delete["after"] is None and delete["before"]["so_cccd"] == "001090000002"
    assert all(v["source"]["lsn"] and v["ts_ms"] for v in (create, update, delete))
    # Debezium's logical types: a date is days since the epoch, a precise decimal the
    # big-endian unscaled bytes (scale 2 in the schema).
    assert create["after"]["ngay_sinh"] == (date(1985, 7, 8) - date(1970, 1, 1)).days
    unscaled = int.from_bytes(base64.b64decode(read["after"]["so_tien"]), "big", signed=True)
    assert Decimal(unscaled).scaleb(-2) == Decimal("1234.50")
    if schemas:
        fields = json.loads(records[0].value)["schema"]["fields"]
        after = next(f for f in fields if f["field"] == "after")["fields"]
        types = {f["field"]: f.get("name") for f in after}
        assert types["ngay_sinh"] == "io.debezium.time.Date"
        assert types["so_tien"] == "org.apache.kafka.connect.data.Decimal"


REGISTRY = """
CREATE TABLE dan_cu (
    so_cccd text PRIMARY KEY,
    ho_ten text,
    ngay_sinh date,
    gioi_tinh text
)"""


def hub_config(servers, hub_db: str, src: SourceDb, topic: str) -> HubConfig:
    """The registry by ``snapshot`` from ``dan_cu``, sector ``tax`` by ``capture: debezium``
    from Debezium's topic of the tax table."""
    sex = {"Nam": "M", "Nữ": "F"}
    registry = {
        "url": src.url, "table": "public.dan_cu", "key": "so_cccd", "capture": "snapshot",
        "columns": {"citizen_id": "so_cccd", "full_name": "ho_ten", "date_of_birth": "ngay_sinh",
                    "sex": {"column": "gioi_tinh", "map": sex}},
    }  # fmt: skip
    tax = {
        "capture": "debezium", "key": "ma_so_thue",
        "debezium": {"topics": [topic], "converter": "json"},
        "columns": {"citizen_id": "so_cccd", "full_name": "ten_nnt",
                    "date_of_birth": {"column": "ngay_sinh", "format": "io.debezium.time.Date"},
                    "sex": {"column": "gioi_tinh", "map": sex}},
    }  # fmt: skip
    return HubConfig(
        kafka=servers.kafka(partitions=3),
        database=DatabaseConfig(url=hub_db),
        metrics=MetricsConfig(listen="127.0.0.1:0"),
        id_scheme="vn",
        registry=SourceConfig.model_validate(registry),
        sectors={"tax": SourceConfig.model_validate(tax)},
    )


def mismatches(hub_db: str) -> dict[tuple[str, str], tuple[str, str | None]]:
    with psycopg.connect(psycopg_conninfo(hub_db)) as conn:
        rows = conn.execute(
            "SELECT record_key, rule, status, resolution FROM mismatches WHERE sector = 'tax'"
        ).fetchall()
    return {(r[0], r[1]): (r[2], r[3]) for r in rows}


def test_source_changes_through_debezium_open_and_close_mismatches_in_the_hub(
    servers, connect_worker, src, hub_db
):
    a, b = "001090000011", "079185000022"
    src.execute(REGISTRY)
    src.execute(
        "INSERT INTO dan_cu VALUES (%s, 'Nguyễn Văn An', '1990-03-04', 'Nam'),"
        " (%s, 'Lê Thị Bình', '1985-07-08', 'Nữ')",
        (a, b),
    )
    table = f"nnt_{uuid.uuid4().hex[:8]}"
    src.execute(TAX.format(name=table))
    # In the snapshot: A's tax record spells the name differently.
    src.execute(f"INSERT INTO {table} VALUES ('MST1', %s, 'Nguyễn Văn Anh', '1990-03-04', 'Nam', 1)",
                (a,))  # fmt: skip
    name = f"pg-{table}"
    config = postgres_connector(
        name, port=pg_port(servers), database=src.name, table=f"public.{table}",
        topic_prefix=f"dbz{uuid.uuid4().hex[:6]}",
    )  # fmt: skip
    topic = start_connector(connect_worker, config)
    try:
        wait_streaming(src, table)
        # Streamed: B's record is inserted with another date of birth.
        src.execute(f"INSERT INTO {table} VALUES ('MST2', %s, 'Lê Thị Bình', '1985-08-07', 'Nữ', 2)",
                    (b,))  # fmt: skip
        read_topic(servers.bootstrap, topic, 2)
        cfg = hub_config(servers, hub_db, src, topic)
        run_once(cfg, "registry")
        run_once(cfg, "tax")
        assert reconcile_until_idle(cfg).messages == 4
        assert mismatches(hub_db) == {
            ("MST1", "NAME_MISMATCH"): ("open", None),
            ("MST2", "DOB_MISMATCH"): ("open", None),
        }
        # A's name is corrected at the source, B's record deleted: both close.
        src.execute(f"UPDATE {table} SET ten_nnt = 'Nguyễn Văn An' WHERE ma_so_thue = 'MST1'")
        src.execute(f"DELETE FROM {table} WHERE ma_so_thue = 'MST2'")
        read_topic(servers.bootstrap, topic, 5)  # r, c, u, d and the tombstone
        run_once(cfg, "tax")
    finally:
        connect_worker.delete(name)
    assert reconcile_until_idle(cfg).messages == 2
    assert mismatches(hub_db) == {
        ("MST1", "NAME_MISMATCH"): ("resolved", "fixed_at_source"),
        ("MST2", "DOB_MISMATCH"): ("resolved", "record_deleted"),
    }
    # The hub's topic carries them keyed by citizen ID, the tombstone left out.
    events = changes(cfg, "tax").read()
    assert sorted((m.key, m.op) for m in events) == sorted(
        [(a.encode(), "r"), (b.encode(), "c"), (a.encode(), "u"), (b.encode(), "d")]
    )


def test_the_bench_baseline_times_debeziums_snapshot_and_its_stream_of_the_same_updates(
    servers, connect_worker, src, tmp_path
):
    # hub bench figure 3's Debezium baseline (hub.bench.debezium), on the session's worker:
    # `hub bench` runs it only with --broker kafka, which the suite's bench tests leave out.
    from hub.bench.debezium import DebeziumPeer

    rows = 400
    table = f"nnt_{uuid.uuid4().hex[:8]}"
    src.execute(TAX.format(name=table))
    src.execute(
        f"INSERT INTO {table} SELECT 'MST' || i, '0010900' || lpad(i::text, 5, '0'),"
        " 'Nguyễn Văn ' || i, DATE '1990-01-01' + i, 'Nam', i FROM generate_series(1, %s) i",
        (rows,),
    )
    run = SimpleNamespace(
        src_url=src.url, tag=table, n=rows, records={"tax": rows},
        config=SimpleNamespace(kafka=SimpleNamespace(topic_prefix=f"b{uuid.uuid4().hex[:6]}")),
        bench=SimpleNamespace(data_dir=tmp_path, echo=print, env=SimpleNamespace(
            bootstrap=servers.bootstrap, admin_url=servers.pg_url)),
    )  # fmt: skip
    peer = DebeziumPeer(run, table=f"public.{table}", worker=connect_worker, timeout=120)
    try:
        snapshot = peer.snapshot(rows)
        # Stopped: the updates wait in its slot, as the hub streams them in the bench.
        for first in range(1, rows + 1, 100):
            src.execute(
                f"UPDATE {table} SET so_tien = so_tien + 1 WHERE ma_so_thue = ANY(%s)",
                ([f"MST{i}" for i in range(first, first + 100)],),
            )
        stream = peer.stream(rows, rows)  # a re-read snapshot instead would raise (ops r)
    finally:
        peer.close()
    for phase in (snapshot, stream):
        assert phase["rows"] == rows
        assert phase["rows_per_s"] > 0 and phase["cpu_s"] > 0 and phase["busy_s"] > 0
    assert connect_worker.request("GET", "/connectors").count(peer.name) == 0
    assert (
        src.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (peer.slot,)) == []
    )


def test_a_config_debezium_refuses_is_an_error_naming_its_reason(servers, connect_worker, src):
    config = postgres_connector(
        "pg-bad", port=pg_port(servers), database="no_such_db", table="public.x",
        topic_prefix="dbzbad",
    )  # fmt: skip
    with pytest.raises(FatalError, match="pg-bad: database.hostname: .*no_such_db"):
        connect_worker.create(config)
    assert "pg-bad" not in connect_worker.request("GET", "/connectors")


def test_mariadb_through_debeziums_mysql_connector(mariadb, connect_worker, tmp_path):
    """Where Maven serves a Debezium connector that reads MariaDB, its change events reach
    the topic; the skip says exactly what did not resolve or run."""
    import pymysql

    from tests.integration.mariadb import ADMIN_USER

    conn = pymysql.connect(
        host="127.0.0.1", port=mariadb.port, user=ADMIN_USER, password=mariadb.admin_password,
        database="hub", autocommit=True, charset="utf8mb4",
    )  # fmt: skip
    table = f"nnt_{uuid.uuid4().hex[:8]}"
    with conn.cursor() as cur:
        cur.execute(f"CREATE TABLE {table} (ma_so_thue VARCHAR(20) PRIMARY KEY, ten_nnt TEXT)")
        cur.execute(f"INSERT INTO {table} VALUES ('MST1', 'Nguyễn Văn An')")
    config = {
        "name": f"maria-{table}",
        "connector.class": "io.debezium.connector.mysql.MySqlConnector",
        "database.hostname": "127.0.0.1",
        "database.port": str(mariadb.port),
        "database.user": ADMIN_USER,
        "database.password": mariadb.admin_password,
        "database.server.id": "5401",
        "topic.prefix": f"dbzm{uuid.uuid4().hex[:6]}",
        "database.include.list": "hub",
        "table.include.list": f"hub.{table}",
        "schema.history.internal": "io.debezium.storage.file.history.FileSchemaHistory",
        "schema.history.internal.file.filename": str(tmp_path / "history.dat"),
        "topic.creation.default.partitions": "1",
        "topic.creation.default.replication.factor": "1",
    }
    errors = connect_worker.validate(config)
    if errors:
        pytest.skip(
            f"{MARIADB_CONNECTOR}; debezium-connector-mysql 3.6.1.Final refuses MariaDB "
            f"{conn.get_server_info()}: " + "; ".join(errors)
        )
    topic = f"{config['topic.prefix']}.hub.{table}"
    connect_worker.create(config)
    try:
        connect_worker.wait_running(config["name"])
        with conn.cursor() as cur:
            cur.execute(f"UPDATE {table} SET ten_nnt = 'Nguyễn Văn Anh' WHERE ma_so_thue = 'MST1'")
            cur.execute(f"DELETE FROM {table} WHERE ma_so_thue = 'MST1'")
        records = read_topic(connect_worker.bootstrap, topic, 4)
    finally:
        connect_worker.delete(config["name"])
        conn.close()
    ops = [json.loads(r.value)["payload"]["op"] if r.value else None for r in records]
    assert ops == ["r", "u", "d", None]

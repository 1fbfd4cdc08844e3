"""The embedded PostgreSQL and broker: logical WAL, Kafka round trip, migrations, clean stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import psycopg
import pytest
from kafka import TopicPartition

from hub.db import psycopg_conninfo
from hub.db.migrate import current_revision, head_revision, upgrade
from hub.embedded import EmbeddedPostgres, EmbeddedStack
from hub.kafka import Topics, ensure_topics, make_consumer, make_producer


def test_postgres_runs_with_logical_wal_and_pgoutput(servers):
    with psycopg.connect(psycopg_conninfo(servers.pg_url)) as conn:
        assert conn.execute("SHOW wal_level").fetchone()[0] == "logical"
        assert int(conn.execute("SHOW max_replication_slots").fetchone()[0]) >= 10
        conn.execute("SELECT pg_create_logical_replication_slot('t_probe', 'pgoutput', true)")


def test_topic_with_12_partitions_carries_10000_messages(servers):
    kafka = servers.kafka()
    topic = Topics(kafka.topic_prefix).registry
    ensure_topics(kafka, [topic], partitions=12)
    ensure_topics(kafka, [topic], partitions=12)  # idempotent

    producer = make_producer(kafka)
    sent = {f"k{i}": f"v{i}" for i in range(10_000)}
    for k, v in sent.items():
        producer.send(topic, key=k.encode(), value=v.encode())
    producer.flush()
    producer.close()

    consumer = make_consumer(kafka)
    parts = [TopicPartition(topic, p) for p in range(12)]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    got: dict[str, str] = {}
    deadline = time.monotonic() + 60
    while len(got) < len(sent) and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            for r in records:
                got[r.key.decode()] = r.value.decode()
    used = {p.partition for p, off in consumer.end_offsets(parts).items() if off > 0}
    consumer.close()
    assert got == sent
    assert len(used) == 12  # keys spread over every partition


def test_topics_with_another_partition_count_are_refused(servers):
    from hub.errors import FatalError

    kafka = servers.kafka()
    ensure_topics(kafka, [f"{kafka.topic_prefix}.x"], partitions=3)
    with pytest.raises(FatalError, match="co-partitioning"):
        ensure_topics(kafka, [f"{kafka.topic_prefix}.x"], partitions=12)


def test_migrations_apply_and_are_safe_to_run_twice(servers):
    url = servers.create_database("hub")
    try:
        assert upgrade(url) == (None, head_revision())
        assert upgrade(url) == (head_revision(), head_revision())
        assert current_revision(url) == head_revision()
        with psycopg.connect(psycopg_conninfo(url)) as conn:
            tables = {
                r[0]
                for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            }
        assert {
            "registry_citizens",
            "sector_records",
            "mismatches",
            "mismatch_history",
            "consumer_offsets",
            "users",
            "api_tokens",
            "audit_log",
            "connector_state",
            "connector_requests",
        } <= tables
    finally:
        servers.drop_database(url)


def test_hub_db_upgrade_command_twice(servers, tmp_path):
    url = servers.create_database("hub")
    cfg = tmp_path / "hub.yaml"
    cfg.write_text(f'database:\n  url: "{url}"\n')
    try:
        env = {k: v for k, v in os.environ.items() if k != "HUB_DATABASE_URL"}
        first = subprocess.run(
            [sys.executable, "-m", "hub", "--config", str(cfg), "db", "upgrade"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        second = subprocess.run(
            [sys.executable, "-m", "hub", "--config", str(cfg), "db", "upgrade"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert first.returncode == 0, first.stderr
        assert f"upgraded from empty to {head_revision()}" in first.stdout
        assert second.returncode == 0, second.stderr
        assert f"already at revision {head_revision()}" in second.stdout
    finally:
        servers.drop_database(url)


def _children_of(pids: list[int]) -> list[psutil.Process]:
    alive = []
    for pid in pids:
        try:
            p = psutil.Process(pid)
            if p.status() != psutil.STATUS_ZOMBIE:
                alive.append(p)
        except psutil.NoSuchProcess:
            pass
    return alive


def test_stack_stops_cleanly_and_leaves_no_process(scratch_dir):
    stack = EmbeddedStack(scratch_dir / "s", durable=False).start()
    pg_pid, broker_pid = stack.postgres.proc.pid, stack.broker.proc.pid
    pg_children = [c.pid for c in psutil.Process(pg_pid).children(recursive=True)]
    stack.stop()
    assert _children_of([pg_pid, broker_pid, *pg_children]) == []


def test_a_server_takes_settings_over_the_defaults(scratch_dir):
    pg = EmbeddedPostgres(scratch_dir / "p", durable=False, settings={"shared_buffers": "40MB"})
    try:
        with psycopg.connect(pg.start().conninfo()) as conn:
            assert conn.execute("SHOW shared_buffers").fetchone() == ("40MB",)
            assert conn.execute("SHOW wal_level").fetchone() == ("logical",)
    finally:
        pg.stop()


def test_second_start_in_the_same_directory_reuses_the_data(scratch_dir):
    with EmbeddedStack(scratch_dir / "s", durable=False) as stack:
        stack.postgres.create_database("kept")
    with EmbeddedStack(scratch_dir / "s", durable=False) as stack:
        with psycopg.connect(stack.postgres.conninfo("kept")) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)


def test_killed_parent_leaves_no_orphan_servers(scratch_dir):
    script = textwrap.dedent(
        f"""
        import sys, time
        from hub.embedded import EmbeddedStack
        s = EmbeddedStack({str(scratch_dir / "s")!r}, durable=False).start()
        print(s.postgres.proc.pid, s.broker.proc.pid, flush=True)
        time.sleep(600)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(x) for x in proc.stdout.readline().split()]
        assert len(pids) == 2
        children = [c.pid for c in psutil.Process(pids[0]).children(recursive=True)]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 30
        while _children_of(pids + children) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _children_of(pids + children) == []
    finally:
        if proc.poll() is None:
            proc.kill()

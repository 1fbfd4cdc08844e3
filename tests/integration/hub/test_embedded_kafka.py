"""The embedded Apache Kafka broker: starts, carries the hub's messages, stops, leaves nothing.

Each test starts its own broker (not the session's); skipped, naming what is missing, where
Java or the jars of ``deploy/kafka/pom.xml`` are not here (``tests/setup_machine.py``).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
from kafka import KafkaAdminClient

from hub.config import KafkaConfig
from hub.embedded import EmbeddedKafka, kafka_missing
from hub.kafka import ensure_topics, make_consumer, make_producer

pytestmark = [
    pytest.mark.skipif(kafka_missing() is not None, reason=str(kafka_missing())),
    pytest.mark.heavy(100),
]


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _topics(bootstrap: str) -> set[str]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        return set(admin.list_topics())
    finally:
        admin.close()


def test_kafka_carries_messages_stops_cleanly_and_a_restart_starts_empty(scratch_dir):
    kafka = EmbeddedKafka(scratch_dir / "k", quick_jit=True).start()
    try:
        config = KafkaConfig(bootstrap_servers=kafka.bootstrap, topic_prefix="e", partitions=3)
        ensure_topics(config, ["e.sector.tax.changes"])
        producer = make_producer(config)
        for i in range(50):
            producer.send("e.sector.tax.changes", key=b"%d" % i, value=b"v%d" % i)
        producer.flush()
        producer.close()
        consumer = make_consumer(config, "e.sector.tax.changes", group_id="g")
        got: set[bytes] = set()
        deadline = time.monotonic() + 60
        while len(got) < 50 and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=1000).values():
                got.update(r.value for r in records)
        consumer.close()
        assert got == {b"v%d" % i for i in range(50)}
        pid = kafka.proc.pid
        assert (scratch_dir / "k" / "logs" / "meta.properties").exists()
    finally:
        kafka.stop()
    assert kafka.proc is None and not _alive(pid)
    # Like tansu's in-memory storage, a restart (new ports) starts without the old topics.
    again = EmbeddedKafka(scratch_dir / "k", quick_jit=True).start()
    try:
        assert "e.sector.tax.changes" not in _topics(again.bootstrap)
    finally:
        again.stop()


def test_keep_data_keeps_topics_across_a_restart(scratch_dir):
    first = EmbeddedKafka(scratch_dir / "k", keep_data=True, quick_jit=True).start()
    try:
        ensure_topics(KafkaConfig(bootstrap_servers=first.bootstrap, topic_prefix="k"), ["kept"])
    finally:
        first.stop()
    second = EmbeddedKafka(scratch_dir / "k", keep_data=True, quick_jit=True).start()
    try:
        assert "kept" in _topics(second.bootstrap)
    finally:
        second.stop()


def test_a_killed_parent_leaves_no_orphan_kafka(scratch_dir):
    script = textwrap.dedent(
        f"""
        import time
        from hub.embedded import EmbeddedStack
        s = EmbeddedStack({str(scratch_dir / "s")!r}, durable=False, broker="kafka").start()
        print(s.postgres.proc.pid, s.broker.proc.pid, flush=True)
        time.sleep(600)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(x) for x in proc.stdout.readline().split()]
        assert len(pids) == 2
        assert "kafka.Kafka" in psutil.Process(pids[1]).cmdline()
        proc.kill()
        proc.wait(10)
        deadline = time.monotonic() + 30
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert [p for p in pids if _alive(p)] == []
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()


def test_hub_demo_runs_on_apache_kafka_and_stops_it(scratch_dir):
    hub = Path(sys.executable).with_name("hub")
    data_dir = scratch_dir / "demo"
    res = subprocess.run(
        [str(hub), "demo", "--broker", "kafka", "--once", "--citizens", "1000",
         "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    assert "against the manifest: precision 1.0000, recall 1.0000" in res.stdout
    assert (data_dir / "kafka" / "logs" / "meta.properties").exists()
    left = [
        p.pid
        for p in psutil.process_iter(["cmdline"])
        if str(data_dir) in " ".join(p.info["cmdline"] or [])
    ]
    assert left == []

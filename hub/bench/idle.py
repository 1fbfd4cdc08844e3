"""``hub bench-idle``: what an idle logical connector costs its source and the hub database,
and how soon a change made after an idle spell arrives in Kafka.

One connector on a one-row table, idle for ``--seconds`` (scaled to a minute): decoding
sessions at the source (the server log's "starting logical decoding for slot" lines of
its slot: every peek and every slot advance is one), CPU seconds of the source backends
serving it (``/proc`` of the ``hub-connector-<name>`` backends), commits on the hub
database (``pg_stat_database.xact_commit``); then ``--samples`` single inserts, each after
an idle gap, and the time until each is read from the change topic (p50, max).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import psycopg
from kafka import TopicPartition

from hub.db import psycopg_conninfo

DECODING_LINE = 'starting logical decoding for slot "{slot}"'


@dataclass
class IdleSetup:
    """Where the measured connector runs: superuser URLs of the source's server and of the
    hub database's (another server, as in a deployment: the hub's own writes would move the
    source's WAL), the broker, and the source server's log when it has one."""

    admin_url: str
    hub_admin_url: str
    bootstrap: str
    server_log: Path | None


class ProcessCpu:
    """CPU of the backends serving a connector, over a window: backends come and go (a
    lag probe reconnects), so each is sampled on a thread and its last reading counts."""

    def __init__(self, conninfo: str, application: str, interval_s: float = 0.5):
        self.conninfo, self.application, self.interval_s = conninfo, application, interval_s
        self._first: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.readable = True

    def _sample(self, conn: psycopg.Connection) -> None:
        tick = os.sysconf("SC_CLK_TCK")
        for (pid,) in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name LIKE %s",
            (self.application + "%",),
        ).fetchall():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                self.readable = False
                continue
            cpu = (int(fields[11]) + int(fields[12])) / tick
            self._first.setdefault(pid, cpu)
            self._last[pid] = cpu

    def _run(self) -> None:
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            self._sample(conn)
            while not self._stop.wait(self.interval_s):
                self._sample(conn)
            self._sample(conn)

    def __enter__(self) -> ProcessCpu:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(10)

    @property
    def seconds(self) -> float | None:
        if not self.readable:
            return None
        return sum(self._last[p] - self._first[p] for p in self._last)


def log_lines(path: Path | None, start: int, needle: str) -> int | None:
    """Lines containing ``needle`` in ``path`` from byte ``start`` on."""
    if path is None or not path.exists():
        return None
    with path.open("rb") as f:
        f.seek(start)
        return f.read().decode(errors="replace").count(needle)


def hub_counts(conn: psycopg.Connection) -> tuple[int, int]:
    """(commits on the hub database, rows written to ``connector_state``) so far; ``conn``
    is on the hub database. Read-only transactions count as commits too (the request check
    each second and the connection pool's pings): the row writes are what costs."""
    conn.execute("SELECT pg_stat_clear_snapshot()")
    return conn.execute(
        "SELECT (SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()),"
        " (SELECT n_tup_upd + n_tup_ins FROM pg_stat_user_tables"
        "  WHERE relname = 'connector_state')"
    ).fetchone()


def measure_idle(
    setup: IdleSetup,
    seconds: float = 20.0,
    samples: int = 5,
    gap_s: tuple[float, float] = (1.0, 3.0),
    configure: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """The idle figure on ``setup`` (see the module doc); ``configure`` runs before the
    connector starts (the bench's comparisons patch the stream's constants there)."""
    from connectors.runner import ConnectorRunner
    from hub.config import DatabaseConfig, HubConfig, KafkaConfig, MetricsConfig, SourceConfig
    from hub.db.migrate import upgrade
    from hub.kafka import Topics, make_consumer

    suffix = uuid.uuid4().hex[:8]
    admin, hub_admin = psycopg_conninfo(setup.admin_url), psycopg_conninfo(setup.hub_admin_url)
    src_db, hub_dbname = f"idle_src_{suffix}", f"idle_hub_{suffix}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{src_db}"')
    with psycopg.connect(hub_admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{hub_dbname}"')
    src_url = setup.admin_url.rsplit("/", 1)[0] + f"/{src_db}"
    hub_url = setup.hub_admin_url.rsplit("/", 1)[0] + f"/{hub_dbname}"
    upgrade(hub_url)
    src = psycopg_conninfo(src_url)
    with psycopg.connect(src, autocommit=True) as conn:
        conn.execute("CREATE TABLE people (id int PRIMARY KEY, cccd text, ten text)")
        conn.execute("INSERT INTO people VALUES (0, '001090000000', 'Nguyen Van A')")
    name, slot = "idle", f"hub_idle_{suffix}"
    kafka = KafkaConfig(bootstrap_servers=setup.bootstrap, topic_prefix=f"idle{suffix}",
                        partitions=1)  # fmt: skip
    config = HubConfig(
        kafka=kafka,
        database=DatabaseConfig(url=hub_url),
        metrics=MetricsConfig(listen="127.0.0.1:0"),
        sectors={
            name: SourceConfig.model_validate({
                "url": src_url, "table": "public.people", "key": "id", "capture": "logical",
                "logical": {"slot": slot},
                "columns": {"citizen_id": "cccd", "full_name": "ten"},
            })
        },
    )  # fmt: skip
    if configure is not None:
        configure()
    stopping = threading.Event()
    runner = ConnectorRunner(config, name, stopping=stopping)
    thread = threading.Thread(target=runner.run, daemon=True)
    consumer = make_consumer(kafka, group_id=None)
    topic = Topics(kafka.topic_prefix).changes(name)
    try:
        thread.start()
        _wait(lambda: _phase(hub_url, name) == "running", 120, "connector streaming")
        tp = TopicPartition(topic, 0)
        _wait(lambda: bool(consumer.partitions_for_topic(topic)), 60, "change topic")
        consumer.assign([tp])
        consumer.seek_to_end(tp)
        consumer.position(tp)
        time.sleep(3.0)  # let the first heartbeats, advances and back-off settle
        log_start = setup.server_log.stat().st_size if setup.server_log else 0
        with psycopg.connect(psycopg_conninfo(hub_url), autocommit=True) as stats:
            commits, writes = hub_counts(stats)
            with ProcessCpu(src, f"hub-connector-{name}") as cpu:
                time.sleep(seconds)
            time.sleep(1.5)  # backends report their statistics at most once a second
            after = hub_counts(stats)
            commits, writes = after[0] - commits, after[1] - writes
        sessions = log_lines(setup.server_log, log_start, DECODING_LINE.format(slot=slot))
        latencies = _latencies(src, consumer, samples, gap_s)
    finally:
        stopping.set()
        thread.join(30)
        consumer.close()
        with psycopg.connect(hub_admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{hub_dbname}" WITH (FORCE)')
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{src_db}" WITH (FORCE)')
    per_min = 60.0 / seconds
    return {
        "measured_s": seconds,
        "decoding_sessions_per_idle_min": None if sessions is None else round(sessions * per_min),
        "source_cpu_s_per_idle_min": None if cpu.seconds is None
        else round(cpu.seconds * per_min, 3),
        "hub_db_commits_per_idle_min": round(commits * per_min),
        "hub_state_writes_per_idle_min": round(writes * per_min),
        "latency_after_idle_p50_s": round(statistics.median(latencies), 3),
        "latency_after_idle_max_s": round(max(latencies), 3),
        "latency_samples": len(latencies),
    }  # fmt: skip


def _latencies(src: str, consumer: Any, samples: int, gap_s: tuple[float, float]) -> list[float]:
    """Seconds from each single insert's commit to its event read from the topic."""
    rng = random.Random(7)
    out: list[float] = []
    with psycopg.connect(src, autocommit=True) as conn:
        for i in range(1, samples + 1):
            time.sleep(rng.uniform(*gap_s))
            conn.execute("INSERT INTO people VALUES (%s, %s, 'Tran Thi B')", (i, f"0010900{i:05d}"))
            t0 = time.monotonic()
            deadline = t0 + 30
            while time.monotonic() < deadline:
                polled = consumer.poll(timeout_ms=20)
                if any(r for records in polled.values() for r in records):
                    out.append(time.monotonic() - t0)
                    break
            else:
                raise click.ClickException(f"insert {i} did not arrive within 30 s")
    return out


def _phase(hub_url: str, name: str) -> str | None:
    from connectors.state import hub_engine, load_state

    state = load_state(hub_engine(hub_url), name)
    return None if state is None else state["state"]


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise click.ClickException(f"timed out waiting for {what}")
        time.sleep(0.1)


@contextmanager
def _variant(gate: bool, idle_s: float, max_s: float):
    """The stream's idle settings patched for one measurement, restored after."""
    from connectors.logical import capture, stream

    saved = (stream.StreamReader.wal_gate, capture.STREAM_IDLE_S, capture.STREAM_IDLE_MAX_S)
    stream.StreamReader.wal_gate = gate
    capture.STREAM_IDLE_S, capture.STREAM_IDLE_MAX_S = idle_s, max_s
    try:
        yield
    finally:
        stream.StreamReader.wal_gate, capture.STREAM_IDLE_S, capture.STREAM_IDLE_MAX_S = saved


VARIANTS = {
    "shipped": None,
    "before": (False, 0.05, 0.05),
    "backoff-1s": (False, 0.05, 1.0),
    "gate-only": (True, 0.05, 0.05),
}
"""``shipped``: the code as it is. The others, to compare: ``before`` the fixed 0.05 s peek
this replaced, ``backoff-1s`` a back-off to 1 s without the WAL gate, ``gate-only`` the
gate without back-off."""


def idle_line(fig: dict[str, Any]) -> str:
    return (
        f"idle cost: {fig['decoding_sessions_per_idle_min']} decoding sessions and "
        f"{fig['source_cpu_s_per_idle_min']} source CPU s per idle minute, "
        f"{fig['hub_db_commits_per_idle_min']} hub-database commits "
        f"({fig['hub_state_writes_per_idle_min']} status-row writes); a change after an idle "
        f"spell arrives in {fig['latency_after_idle_p50_s']} s (p50, max "
        f"{fig['latency_after_idle_max_s']} s)"
    )


@click.command("bench-idle")
@click.option("--seconds", default=20.0, show_default=True,
              help="Idle window measured (figures are scaled to a minute).")  # fmt: skip
@click.option("--samples", default=5, show_default=True, help="Single inserts timed after it.")
@click.option("--variant", "variants", multiple=True, type=click.Choice(list(VARIANTS)),
              default=("shipped",), show_default=True,
              help="What to measure (repeatable): the shipped idle path, or one to compare.")  # fmt: skip
@click.option("--broker", type=click.Choice(["tansu", "kafka"]), default="tansu",
              show_default=True, help="Embedded broker.")  # fmt: skip
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="JSON file of results.")  # fmt: skip
def bench_idle(seconds: float, samples: int, variants: tuple[str, ...], broker: str,
               out: Path | None) -> None:  # fmt: skip
    """Idle cost of a logical connector: decoding sessions, source CPU, hub commits."""
    from hub.embedded import EmbeddedPostgres, EmbeddedStack, install_signal_handlers
    from hub.logs import setup_logging

    setup_logging("WARNING")
    install_signal_handlers()
    data_dir = Path(tempfile.mkdtemp(prefix="hub-bench-idle-"))
    results: dict[str, Any] = {}
    hub_pg = EmbeddedPostgres(data_dir / "postgres-hub", durable=False)
    try:
        with EmbeddedStack(data_dir, durable=False, broker=broker) as stack:
            hub_pg.start()
            setup = IdleSetup(stack.postgres.url, hub_pg.url, stack.broker.bootstrap,
                              stack.postgres.data_dir / "server.log")  # fmt: skip
            for v in variants:
                settings = VARIANTS[v]
                if settings is None:
                    results[v] = measure_idle(setup, seconds, samples)
                else:
                    with _variant(*settings):
                        results[v] = measure_idle(setup, seconds, samples)
                click.echo(f"{v}: {idle_line(results[v])}")
    finally:
        hub_pg.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    if out is not None:
        out.write_text(json.dumps(results, indent=2))

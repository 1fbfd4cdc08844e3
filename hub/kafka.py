"""Kafka plumbing shared by every process: topic names, client factories, topic creation."""

from __future__ import annotations

import logging
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError
from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_exponential

from hub.config import HubConfig, KafkaConfig
from hub.errors import FatalError, RetriableError

log = logging.getLogger(__name__)


class ClosedTransportRace(logging.Filter):
    """Drops kafka-python's traceback for a socket read that lost a race with ``close()``.

    kafka-python 3.0.x (``kafka/net/transport.py``, ``_read_from_sock``) resumes a read
    after ``wait_read`` without checking whether another thread closed the transport in the
    meantime; ``_sock`` is then ``None`` and ``_sock_recv`` logs ``AttributeError: 'NoneType'
    object has no attribute 'recv'`` with a traceback at ERROR. The client was being closed
    on purpose (the hub closes every client after its last batch is acknowledged), so
    nothing is lost; a related close race was fixed upstream in dpkp/kafka-python#3097.
    Every other record of that logger passes unchanged.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, AttributeError) and "'NoneType' object has no attribute" in str(exc):
            log.debug("kafka-python read after close ignored: %s", exc)
            return False
        return True


_TRANSPORT_LOG = logging.getLogger("kafka.net.transport")
if not any(isinstance(f, ClosedTransportRace) for f in _TRANSPORT_LOG.filters):
    _TRANSPORT_LOG.addFilter(ClosedTransportRace())


class Topics:
    """Topic names under the configured prefix (SPEC §2)."""

    def __init__(self, prefix: str):
        self.prefix = prefix

    @property
    def registry(self) -> str:
        return f"{self.prefix}.registry.changes"

    def sector(self, name: str) -> str:
        return f"{self.prefix}.sector.{name}.changes"

    def changes(self, source: str) -> str:
        """The change topic of a connector: ``registry`` or a sector name."""
        return self.registry if source == "registry" else self.sector(source)

    @property
    def mismatches(self) -> str:
        return f"{self.prefix}.mismatches"

    def corrections(self, sector: str) -> str:
        return f"{self.prefix}.corrections.{sector}"

    @property
    def dlq(self) -> str:
        return f"{self.prefix}.dlq"

    def all_for(self, config: HubConfig) -> list[str]:
        """Every topic the config implies, change topics first."""
        names = [self.changes(s) for s in config.sources()]
        names += [self.mismatches, self.dlq]
        names += [self.corrections(s) for s in config.sectors]
        return names


RETENTION_MS = 7 * 24 * 3600 * 1000
"""The advised (minimum) retention of the change and mismatch topics: a week."""
LONG_RETENTION_MS = 30 * 24 * 3600 * 1000
"""The dead-letter and corrections topics are read by people, later: 30 days."""


def retention_ms(topic_prefix: str, name: str) -> int:
    """The advised retention of topic ``name`` (as deploy/k8s/kafka-topics.yaml)."""
    topics = Topics(topic_prefix)
    long = name == topics.dlq or name.startswith(f"{topic_prefix}.corrections.")
    return LONG_RETENTION_MS if long else RETENTION_MS


def topic_settings(kafka: KafkaConfig, name: str) -> dict[str, str]:
    """The topic configs the hub creates topic ``name`` with and ``hub check`` expects.

    ``cleanup.policy=delete`` (one citizen ID keys several records: compaction would drop
    some), :func:`retention_ms`, and ``min.insync.replicas`` one below the replication factor,
    at most 2 (3 replicas → 2, as deploy/k8s/kafka-topics.yaml; 1 replica → 1).
    """
    return {
        "cleanup.policy": "delete",
        "retention.ms": str(retention_ms(kafka.topic_prefix, name)),
        "min.insync.replicas": str(min_insync_replicas(kafka.replication_factor)),
    }


def min_insync_replicas(replication_factor: int) -> int:
    """The advised ``min.insync.replicas`` for a replication factor (≥ 1, ≤ 2, < rf when rf > 1)."""
    return min(2, max(1, replication_factor - 1))


def client_settings(kafka: KafkaConfig) -> dict[str, Any]:
    """Connection and security settings common to producers, consumers and admin clients."""
    settings: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers.split(","),
        "security_protocol": kafka.security_protocol,
    }
    if kafka.security_protocol.startswith("SASL_"):
        settings["sasl_mechanism"] = kafka.sasl_mechanism
        settings["sasl_plain_username"] = kafka.sasl_plain_username
        assert kafka.sasl_plain_password is not None
        settings["sasl_plain_password"] = kafka.sasl_plain_password.get_secret_value()
    if kafka.security_protocol in ("SSL", "SASL_SSL"):
        for key in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            if getattr(kafka, key):
                settings[key] = getattr(kafka, key)
        if kafka.ssl_password is not None:
            settings["ssl_password"] = kafka.ssl_password.get_secret_value()
    return settings


def make_producer(kafka: KafkaConfig, **overrides: Any) -> KafkaProducer:
    """A producer tuned for throughput with every message acknowledged by the broker."""
    settings = client_settings(kafka) | {
        "acks": "all",
        "linger_ms": 5,
        "batch_size": 512 * 1024,
        "max_request_size": 8 * 1024 * 1024,
        "enable_idempotence": True,  # retries keep per-partition order and add no duplicates
        "metrics_enabled": False,
    }
    settings.update(overrides)
    return KafkaProducer(**settings)


def make_consumer(kafka: KafkaConfig, *topics: str, **overrides: Any) -> KafkaConsumer:
    """A consumer with batch settings (~10× the defaults' throughput) and fast group joins."""
    settings = client_settings(kafka) | {
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "max_poll_records": 10_000,
        "max_partition_fetch_bytes": 10 * 1024 * 1024,
        "fetch_max_bytes": 50 * 1024 * 1024,
        "session_timeout_ms": 6000,
        "heartbeat_interval_ms": 1000,
    }
    settings.update(overrides)
    return KafkaConsumer(*topics, **settings)


def make_admin(kafka: KafkaConfig) -> KafkaAdminClient:
    return KafkaAdminClient(**client_settings(kafka), request_timeout_ms=15000)


def new_topics(kafka: KafkaConfig, names: list[str], partitions: int | None = None) -> list:
    """``NewTopic``s with the configured partition count, replication and :func:`topic_settings`."""
    count = partitions or kafka.partitions
    return [
        NewTopic(n, count, kafka.replication_factor, topic_configs=topic_settings(kafka, n))
        for n in names
    ]


@retry(
    retry=retry_if_exception_type(RetriableError),
    wait=wait_exponential(multiplier=0.2, max=5),
    stop=stop_after_delay(60),
    reraise=True,
)
def ensure_topics(kafka: KafkaConfig, names: list[str], partitions: int | None = None) -> None:
    """Create missing topics with the configured partition count and :func:`topic_settings`.

    Idempotent. An existing topic with another partition count breaks co-partitioning: that is fatal.
    """
    partitions = partitions or kafka.partitions
    try:
        admin = make_admin(kafka)
    except KafkaError as exc:
        raise RetriableError(f"kafka {kafka.bootstrap_servers}: {exc}") from exc
    try:
        existing = set(admin.list_topics())
        missing = [n for n in names if n not in existing]
        if missing:
            try:
                admin.create_topics(new_topics(kafka, missing, partitions))
            except TopicAlreadyExistsError:
                pass  # created concurrently by another process
            log.info("created topics %s with %d partitions", ", ".join(missing), partitions)
        present = [n for n in names if n in existing]
        if present:
            for desc in admin.describe_topics(present):
                count = len(desc["partitions"])
                if count != partitions:
                    raise FatalError(
                        f"topic {desc.get('name') or desc.get('topic')} has {count} partitions, config says {partitions}: "
                        "every change topic must have the same count (co-partitioning)"
                    )
    except KafkaError as exc:
        raise RetriableError(f"kafka {kafka.bootstrap_servers}: {exc}") from exc
    finally:
        admin.close()


def check_kafka(kafka: KafkaConfig, timeout_s: float = 5.0) -> str | None:
    """None when the bootstrap servers answer, else the reason."""
    try:
        admin = KafkaAdminClient(
            **client_settings(kafka),
            request_timeout_ms=int(timeout_s * 1000),
            bootstrap_timeout_ms=int(timeout_s * 1000),
        )
    except KafkaError as exc:
        return str(exc)
    try:
        admin.list_topics()
        return None
    except KafkaError as exc:
        return str(exc)
    finally:
        admin.close()

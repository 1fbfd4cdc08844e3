"""Kafka plumbing shared by every process: topic names, client factories, topic creation.

Every client is made here (:func:`make_producer`, :func:`make_consumer`, :func:`make_admin`,
:func:`check_kafka`). With ``security_protocol`` other than PLAINTEXT, a broker that refuses the
SASL credentials or a certificate the CA file cannot verify raises :class:`KafkaSecurityError`
naming the config key at fault (``kafka.sasl_plain_password``, ``kafka.ssl_cafile``), within
:data:`SECURITY_PROBE_MS`, instead of kafka-python's generic bootstrap timeout after 30 s.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka import errors as KafkaErrors
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError
from kafka.net.connection import KafkaConnection
from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_exponential

from hub.config import HubConfig, KafkaConfig
from hub.errors import ConfigError, FatalError, RetriableError
from hub.logs import KAFKA_NOISE, error_summary
from hub.metrics import KAFKA_UP

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


class KafkaReachability:
    """Whether this process's Kafka clients reach the broker: ``hub_kafka_up{role}`` and one
    log line per change of state ("Kafka unreachable …", "Kafka reachable again …").

    Clients report :meth:`failed` (a delivery not acknowledged in time, a probe that timed
    out) and :meth:`ok` (an acknowledgement, an answer); a role is down while any of its
    clients is. kafka-python's own records are at DEBUG meanwhile (``hub.logs.KAFKA_NOISE``),
    whose latest problem the "unreachable" line names. Thread-safe.
    """

    def __init__(self) -> None:
        self._down: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def ok(self, role: str, client: str) -> None:
        with self._lock:
            since = self._down.pop((role, client), None)
            up = not any(r == role for r, _ in self._down)
        if up:
            KAFKA_UP.labels(role).set(1)
        if since is not None:
            log.info(
                "Kafka reachable again from %s %s after %.1f s",
                role,
                client,
                time.monotonic() - since,
            )

    def failed(self, role: str, client: str, error: BaseException | str) -> None:
        with self._lock:
            first = (role, client) not in self._down
            self._down.setdefault((role, client), time.monotonic())
        KAFKA_UP.labels(role).set(0)
        if not first:
            log.debug("Kafka still unreachable from %s %s: %s", role, client, error)
            return
        reason = error_summary(error) if isinstance(error, BaseException) else str(error)
        seen = KAFKA_NOISE.last_problem()
        log.warning(
            "Kafka unreachable from %s %s: %s%s; retrying (client messages at DEBUG)",
            role,
            client,
            reason,
            f" (last client error: {seen})" if seen and seen not in reason else "",
        )

    def is_up(self, role: str) -> bool:
        with self._lock:
            return not any(r == role for r, _ in self._down)


KAFKA = KafkaReachability()
"""The process's one :class:`KafkaReachability`."""

UNREACHABLE = (
    KafkaErrors.KafkaTimeoutError,
    KafkaErrors.KafkaConnectionError,
    KafkaErrors.CoordinatorNotAvailableError,
    KafkaErrors.NodeNotReadyError,
    KafkaErrors.RequestTimedOutError,
)
"""kafka-python errors that mean the broker did not answer (rather than refused)."""


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


RECONNECT_BACKOFF_MAX_MS = 1000
"""The longest wait of a client between two connection attempts to a broker that is down.

kafka-python doubles the wait up to 30 s by default, so a producer or consumer could sit out
half a minute after the broker was back (a change took 46 s to arrive after a restart)."""


def client_settings(kafka: KafkaConfig) -> dict[str, Any]:
    """Connection and security settings common to producers, consumers and admin clients."""
    settings: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers.split(","),
        "security_protocol": kafka.security_protocol,
        "reconnect_backoff_max_ms": RECONNECT_BACKOFF_MAX_MS,
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


class KafkaSecurityError(ConfigError):
    """The broker refused the configured credentials or TLS trust: one line naming the key.

    A :class:`~hub.errors.ConfigError` (the CLI prints it on one line and exits 2); never
    retried. ``key`` is the config key to fix, e.g. ``kafka.sasl_plain_password``.
    """

    def __init__(self, key: str, reason: str):
        self.key = key
        self.problems = [f"{key}: {reason}"]
        self.source = None
        FatalError.__init__(self, self.problems[0])


SECURITY_PROBE_MS = 3000
"""How long a secured client's first bootstrap may take before the hub looks at why it failed.

An authentication or certificate failure shows within milliseconds; a broker that is merely
slow or down gets the rest of the client's own ``bootstrap_timeout_ms`` afterwards."""

_KAFKA_NET_LOGGERS = ("kafka.net.manager", "kafka.net.connection", "kafka.net.transport")
_DEFAULT_BOOTSTRAP_MS = 30_000  # kafka-python's bootstrap_timeout_ms default


def _where(kafka: KafkaConfig) -> str:
    return " ".join(kafka.bootstrap_servers.split())  # one line, whatever the config holds


def security_failure(exc: BaseException, kafka: KafkaConfig) -> KafkaSecurityError | None:
    """The hub's error for a kafka-python connection failure that a config key explains, else None.

    SASL authentication refused → ``kafka.sasl_plain_password`` (kafka-python cannot tell a wrong
    password from an unknown user, so the user is named too); a server certificate that does
    not verify → ``kafka.ssl_cafile`` (or ``kafka.bootstrap_servers`` for a host name that is
    not in the certificate). The password itself never appears in the message.
    """
    where = _where(kafka)
    if isinstance(exc, KafkaErrors.SaslAuthenticationFailedError):
        return KafkaSecurityError(
            "kafka.sasl_plain_password",
            f"the broker at {where} refused {kafka.sasl_mechanism} authentication of user "
            f"{kafka.sasl_plain_username!r}: wrong password or unknown user",
        )
    chain = [exc, exc.__cause__, exc.__context__]
    verify = next((e for e in chain if isinstance(e, ssl.SSLCertVerificationError)), None)
    text = str(exc)
    if verify is None and "CERTIFICATE_VERIFY_FAILED" not in text:
        return None
    detail = (verify.verify_message if verify is not None else "") or text.split("] ", 1)[-1]
    detail = " ".join(str(detail).split())
    if "hostname" in detail.lower() or "ip address mismatch" in detail.lower():
        return KafkaSecurityError(
            "kafka.bootstrap_servers",
            f"the certificate of {where} is not for that host ({detail}): use the host name "
            "the certificate names",
        )
    cafile = kafka.ssl_cafile or "the system's trusted CAs"
    return KafkaSecurityError(
        "kafka.ssl_cafile",
        f"the certificate of {where} does not verify against {cafile} ({detail}): "
        "set the CA that signed the broker's certificate",
    )


class _FailureWatch(logging.Filter):
    """Holds back kafka-python's connection records during a secured client's first bootstrap.

    Records carrying a failure :func:`security_failure` explains are remembered as ``failure``;
    every record is held, then dropped when the hub raises its own one-line error, or passed
    on unchanged by :meth:`release` otherwise (nothing is lost, only delayed).

    kafka-python 3.0.x drops the bytes of a read that also saw the end of the stream
    (``kafka/net/transport.py``, ``_sock_recv``), so the broker's authentication error, sent
    just before it closes the connection, often reaches the client as a bare "socket
    disconnected". A connection lost after its ApiVersions exchange (the broker answered, so
    it is reachable and speaks TLS) while SASL is configured was lost in the SASL exchange:
    :meth:`verdict` counts two such losses, with nothing else failing, as refused credentials.
    """

    def __init__(self, kafka: KafkaConfig):
        super().__init__()
        self.kafka = kafka
        self.failure: KafkaSecurityError | None = None
        self.lost_in_sasl = 0
        self.other_failures = 0
        self.held: list[tuple[logging.Logger, logging.LogRecord]] = []
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        with self._lock:
            errors = [a for a in args if isinstance(a, BaseException)]
            for exc in errors:
                if self.failure is None:
                    self.failure = security_failure(exc, self.kafka)
            conn = next((a for a in args if isinstance(a, KafkaConnection)), None)
            if conn is not None and errors and record.name == "kafka.net.connection":
                sasl = self.kafka.security_protocol.startswith("SASL_")
                if sasl and getattr(conn, "broker_version_data", None) is not None:
                    self.lost_in_sasl += 1
                else:
                    self.other_failures += 1
            self.held.append((logging.getLogger(record.name), record))
        return False

    def verdict(self) -> KafkaSecurityError | None:
        """The config error the failed bootstrap shows, if any (see the class)."""
        if self.failure is not None:
            return self.failure
        if self.lost_in_sasl >= 2 and self.other_failures == 0:
            return KafkaSecurityError(
                "kafka.sasl_plain_password",
                f"the broker at {_where(self.kafka)} closed every connection during "
                f"{self.kafka.sasl_mechanism} authentication of user "
                f"{self.kafka.sasl_plain_username!r}: wrong password or unknown user",
            )
        return None

    def __enter__(self) -> _FailureWatch:
        for name in _KAFKA_NET_LOGGERS:
            logging.getLogger(name).addFilter(self)
        return self

    def __exit__(self, *exc: object) -> None:
        for name in _KAFKA_NET_LOGGERS:
            logging.getLogger(name).removeFilter(self)

    def release(self) -> None:
        """Emit the held records as kafka-python logged them."""
        with self._lock:
            held, self.held = self.held, []
        for logger, record in held:
            logger.handle(record)


Client = TypeVar("Client")


def _secured(
    kafka: KafkaConfig, factory: Callable[..., Client], settings: dict[str, Any]
) -> Client:
    """``factory(**settings)``; secured, a first bootstrap of :data:`SECURITY_PROBE_MS` whose
    authentication or TLS failure raises :class:`KafkaSecurityError` (see the module)."""
    if kafka.security_protocol == "PLAINTEXT":
        return factory(**settings)
    total_ms = settings.get("bootstrap_timeout_ms", _DEFAULT_BOOTSTRAP_MS)
    started = time.monotonic()
    watch = _FailureWatch(kafka)
    try:
        with watch:
            return factory(**settings | {"bootstrap_timeout_ms": min(total_ms, SECURITY_PROBE_MS)})
    except KafkaError:
        failure = watch.verdict()
        if failure is not None:
            watch.held.clear()  # superseded by the hub's one line
            raise failure from None
        left_ms = total_ms - int((time.monotonic() - started) * 1000)
        if left_ms <= 0:
            raise
    finally:
        watch.release()
    return factory(**settings | {"bootstrap_timeout_ms": left_ms})


REQUEST_TIMEOUT_MS = 9_000
"""How long a producer waits for the broker's answer to one request before it retries."""
DELIVERY_TIMEOUT_MS = 12_000
"""How long a producer keeps a message (retries included) before its send fails.

kafka-python's 120 s default hid a stopped broker for two minutes ("Expiring 3 record(s)…").
With 12 s a connector reports the outage within ~15 s and re-sends from its last
acknowledged position with a new producer: at least once, as before. A new producer also
ends the stall of the idempotent sender seen after a long SIGSTOP (a retried batch that no
longer went out); a stalled producer is never waited on for more than this."""


FLUSH_TIMEOUT_S = DELIVERY_TIMEOUT_MS / 1000 + 3.0
"""The longest wait of a ``flush``: every message is acknowledged or expired by then, unless the
producer's sender stalled (then the caller drops it and retries with a new one)."""


STALL_S = 5.0
"""A flush that saw no message acknowledged (or failed) for this long gives up early: its
producer has stalled. Seen twice on Apache Kafka 4.2 with kafka-python 3.0.12: after a broker
SIGSTOP of 30 s and after a broker restart, a producer that had messages in flight through the
fault did not deliver them for over 10 s after the broker answered again, while a new producer
delivered at once; the reconciler's outbox flush held every batch behind it that long."""
FLUSH_SLICE_S = 0.5


def flush_acknowledged(
    producer,
    futures: Iterable[Any],
    *,
    timeout_s: float = FLUSH_TIMEOUT_S,
    stall_s: float = STALL_S,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """``producer.flush()``, waiting at most ``timeout_s``, and less when the producer makes
    no progress: KafkaTimeoutError once none of ``futures`` (the sends being waited for) has
    completed for ``stall_s``. The caller then drops the producer and retries with a new one.
    A slow broker that still acknowledges something every few seconds is waited for."""
    futures = list(futures)
    started = progress_at = clock()
    done = sum(1 for f in futures if f.is_done)
    while True:
        left = timeout_s - (clock() - started)
        try:
            producer.flush(timeout=max(0.0, min(FLUSH_SLICE_S, left)))
            return
        except KafkaErrors.KafkaTimeoutError:
            now = clock()
            now_done = sum(1 for f in futures if f.is_done)
            if now_done > done:
                done, progress_at = now_done, now
            if now - started >= timeout_s:
                raise
            if now - progress_at >= stall_s:
                raise KafkaErrors.KafkaTimeoutError(
                    f"no message acknowledged in {stall_s:.0f} s ({done} of {len(futures)}):"
                    " the producer stalled"
                ) from None


def make_producer(kafka: KafkaConfig, **overrides: Any) -> KafkaProducer:
    """A producer tuned for throughput with every message acknowledged by the broker, whose
    sends fail after :data:`DELIVERY_TIMEOUT_MS` (the caller retries with a new producer)."""
    settings = client_settings(kafka) | {
        "acks": "all",
        "linger_ms": 5,
        "batch_size": 512 * 1024,
        "max_request_size": 8 * 1024 * 1024,
        "enable_idempotence": True,  # retries keep per-partition order and add no duplicates
        "metrics_enabled": False,
        "request_timeout_ms": REQUEST_TIMEOUT_MS,
        "delivery_timeout_ms": DELIVERY_TIMEOUT_MS,
    }
    settings.update(overrides)
    return _secured(kafka, KafkaProducer, settings)


def drop_producer(producer: KafkaProducer | None, timeout: float = 5.0) -> None:
    """Close a producer that failed, without raising: a stalled or broken one may fail to close."""
    if producer is None:
        return
    try:
        producer.close(timeout=timeout)
    except Exception:  # noqa: BLE001 - it is being dropped either way
        log.debug("closing a failed producer", exc_info=True)


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
        # Every fetch names every fetchable partition, and every response reports each
        # one's log end. With incremental fetch sessions (KIP-227) the broker leaves out a
        # partition whose fetch offset and log end have not changed since the session's
        # previous response. kafka-python starts a new assignment's partitions with no log
        # end, so after a rebalance that gave a member back partitions it held (the member
        # was expired while the broker was paused), an idle partition's highwater stayed
        # unknown for good: the reconciler's registry gate never opened and no sector change
        # was consumed (issue #20, broker SIGSTOP 30 s). A full fetch of a few dozen
        # partitions costs a few hundred bytes more per request.
        "enable_incremental_fetch_sessions": False,
    }
    settings.update(overrides)
    return _secured(kafka, lambda **s: KafkaConsumer(*topics, **s), settings)


def topic_partitions(
    consumer: KafkaConsumer,
    topics: Iterable[str],
    stop: threading.Event,
    timeout_s: float = 30.0,
) -> set[TopicPartition]:
    """Every partition of ``topics``, once the consumer's metadata lists them all (or after
    ``timeout_s``, or when ``stop`` is set). A topic created a moment ago can be missing from
    it: taken then, a consumer assigning itself every partition would skip the topic, and a
    group leader assigns none of its partitions (found on Apache Kafka: the group then
    consumed nothing for over a minute)."""
    topics = list(topics)
    deadline = time.monotonic() + timeout_s
    while True:
        consumer.topics()  # a metadata request, not the cache
        found = {t: consumer.partitions_for_topic(t) for t in topics}
        if all(found.values()) or time.monotonic() > deadline or stop.is_set():
            return {TopicPartition(t, p) for t, ps in found.items() for p in ps or ()}
        stop.wait(0.2)


def make_admin(kafka: KafkaConfig) -> KafkaAdminClient:
    """An admin client; raises :class:`KafkaSecurityError` for refused credentials or trust."""
    return _secured(kafka, KafkaAdminClient, client_settings(kafka) | {"request_timeout_ms": 15000})


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


def check_kafka(
    kafka: KafkaConfig, timeout_s: float = 5.0, *, raise_config_errors: bool = False
) -> str | None:
    """None when the bootstrap servers answer, else the reason.

    Refused credentials or TLS trust (:class:`KafkaSecurityError`, a config problem rather
    than an unreachable server) are a reason naming the key too, or raised with
    ``raise_config_errors`` (``hub check``: exit 2).
    """
    try:
        admin = _secured(
            kafka,
            KafkaAdminClient,
            client_settings(kafka)
            | {
                "request_timeout_ms": int(timeout_s * 1000),
                "bootstrap_timeout_ms": int(timeout_s * 1000),
            },
        )
    except KafkaSecurityError as exc:
        if raise_config_errors:
            raise
        return str(exc)
    except KafkaError as exc:
        return str(exc)
    try:
        admin.list_topics()
        return None
    except KafkaError as exc:
        return str(exc)
    finally:
        admin.close()

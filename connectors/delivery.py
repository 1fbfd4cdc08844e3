"""Kafka delivery for connectors: change events and dead letters, acknowledged batch by batch.

A source position may advance only after :meth:`Delivery.deliver` returned for every
message before it (SPEC §4, at least once).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, TypeVar

from kafka.errors import KafkaError
from kafka.partitioner.default import murmur2
from tenacity import (
    RetryCallState,
    retry,
    retry_if_exception_type,
    wait_exponential,
)

from connectors.events import Batch, DeadLetter
from hub.avro.codec import Encoder
from hub.avro.writer import compile_encoder
from hub.config import KafkaConfig
from hub.errors import RetriableError
from hub.kafka import (
    FLUSH_TIMEOUT_S,
    KAFKA,
    Topics,
    drop_producer,
    ensure_topics,
    flush_acknowledged,
    make_producer,
)
from hub.metrics import CONNECTOR_EVENTS, CONNECTOR_LAST_EVENT, DEAD_LETTERS, init_dead_letters
from hub.runtime import die_with_parent, tune_gc

log = logging.getLogger(__name__)
T = TypeVar("T")

KAFKA_ROLE = "connector"
"""The ``role`` of ``hub_kafka_up`` that connectors report."""
START_TIMEOUT_S = 60.0
"""How long a producer process may take to start and open its producer."""
_READY = "ready"
POOL_MIN_EVENTS = 4000
"""Batches at least this large are produced by the producer processes (when there are any)."""
RETRY_MIN_WAIT_S = 0.5
RETRY_MAX_WAIT_S = 2.0
"""The longest wait between two attempts after an outage (broker, source or hub database):
a connector tries again at least this often, so it resumes within seconds of the fault's end
(with 30 s, a change took 21–22 s to arrive after the hub database restarted)."""


def producer_processes() -> int:
    """How many producer processes large batches use: ``HUB_CONNECTOR_PRODUCERS`` if set
    (0 = produce in-process only), else one per CPU up to 4 (none on a single CPU)."""
    env = os.environ.get("HUB_CONNECTOR_PRODUCERS")
    if env is not None and env.strip():
        return max(0, int(env))
    cpus = os.cpu_count() or 1
    return 0 if cpus < 2 else min(cpus, 4)


@dataclass
class _InFlight:
    batch: Batch
    futures: list[Any]
    pooled: bool


class Delivery:
    """Sends one connector's batches to ``<prefix>.…changes`` and ``<prefix>.dlq``.

    :meth:`deliver` sends every event of a batch (key = normalized citizen ID or
    ``<connector>:<record_key>``, set by the batch), then its dead letters, then flushes:
    it returns only when the broker acknowledged all of them (``acks=all``), and raises
    :class:`RetriableError` when any was not — the caller must then re-read the batch from
    the source position it has not advanced (duplicates are the price of at least once).
    After a failure the producer is replaced, so a retry starts clean.
    """

    def __init__(
        self,
        connector: str,
        kafka: KafkaConfig,
        *,
        producer_factory: Callable[[], Any] | None = None,
        processes: int | None = None,
    ):
        self.connector = connector
        init_dead_letters("connector", connector)
        self.kafka = kafka
        self.topics = Topics(kafka.topic_prefix)
        self.topic = self.topics.changes(connector)
        # Every batch ends with flush(), so lingering costs no latency; it lets the producer
        # fill large record batches instead of waking its sender thread per few messages
        # (measured: ~1.5x throughput).
        self._factory = producer_factory or (
            lambda: make_producer(kafka, linger_ms=1000, batch_size=1024 * 1024)
        )
        self._producer: Any = None
        self._processes = producer_processes() if processes is None else processes
        self._pool: _ProducerPool | None = None
        self._dlq_encoder = compile_encoder("hub.DeadLetter") or Encoder("hub.DeadLetter")
        self._waiting_since: float | None = None

    def waiting_s(self) -> float:
        """How long the broker has kept this delivery waiting (0 when nothing waits on it):
        the topic set-up of :meth:`open`, or a batch from :meth:`start` to the end of
        :meth:`finish`. Read from another thread (the connector's Kafka watch)."""
        since = self._waiting_since
        return 0.0 if since is None else time.monotonic() - since

    def open(self) -> None:
        """Create the change and dead-letter topics if missing, and the producer."""
        self._waiting_since = time.monotonic()
        try:
            ensure_topics(self.kafka, [self.topic, self.topics.dlq])
            if self._producer is None:
                try:
                    self._producer = self._factory()
                except KafkaError as exc:
                    raise RetriableError(f"kafka {self.kafka.bootstrap_servers}: {exc}") from exc
        except RetriableError as exc:
            KAFKA.failed(KAFKA_ROLE, self.connector, exc)
            raise
        finally:
            self._waiting_since = None

    def deliver(self, batch: Batch) -> None:
        """Send ``batch`` and wait until Kafka acknowledged every message of it."""
        self.finish(self.start(batch))

    def warm(self) -> None:
        """Start the producer processes now (a snapshot is about to produce large batches)
        instead of at the first large batch, so their start-up overlaps the first read."""
        if self._processes > 1 and self._pool is None:
            self._pool = _ProducerPool(self.kafka, self.topic, self._processes)

    def wait_warm(self, timeout: float = START_TIMEOUT_S) -> None:
        """Wait until the processes :meth:`warm` started have their producers open
        (RetriableError if one failed or did not answer in ``timeout`` seconds)."""
        if self._pool is not None:
            try:
                self._pool.wait_ready(timeout)
            except RetriableError:
                self._reset()
                raise

    def start(self, batch: Batch) -> _InFlight:
        """Hand ``batch`` to the producer(s) without waiting; :meth:`finish` waits.

        The caller may prepare its next batch meanwhile, but must :meth:`finish` this one
        before starting another: that keeps every partition's order across batches.
        """
        flight = _InFlight(batch, [], False)
        if not batch.events and not batch.dead_letters:
            return flight
        if self._producer is None:
            self.open()
        self._waiting_since = time.monotonic()  # a full buffer blocks send() too
        producer = self._producer
        topic = self.topic
        send = producer.send
        events = batch.events
        flight.pooled = self._processes > 1 and len(events) >= POOL_MIN_EVENTS
        try:
            if flight.pooled:
                # Every earlier batch is acknowledged, so handing this one to processes
                # that own disjoint partitions keeps each partition's order.
                if self._pool is None:
                    self._pool = _ProducerPool(self.kafka, topic, self._processes)
                self._pool.send(events)
                events = []
            flight.futures = [send(topic, value=value, key=key) for key, value in events]
            for letter in batch.dead_letters:
                flight.futures.append(self._send_dead_letter(letter))
        except (KafkaError, RetriableError) as exc:
            self._waiting_since = None
            self._fail(exc)
            raise RetriableError(f"kafka: {exc}") from exc
        return flight

    def finish(self, flight: _InFlight) -> None:
        """Wait until Kafka acknowledged every message of a started batch."""
        batch = flight.batch
        if not batch.events and not batch.dead_letters:
            return
        try:
            flush_acknowledged(self._producer, flight.futures)
            if flight.pooled:
                self._pool.wait()
        except (KafkaError, RetriableError) as exc:
            self._fail(exc)
            raise RetriableError(f"kafka: {exc}") from exc
        finally:
            self._waiting_since = None
        failed = next((f for f in flight.futures if not f.is_done or f.failed()), None)
        if failed is not None:
            reason = failed.exception if failed.is_done else "not acknowledged in time"
            error = RetriableError(f"kafka did not acknowledge a message: {reason}")
            self._fail(error)
            raise error
        KAFKA.ok(KAFKA_ROLE, self.connector)
        for op, count in batch.ops.items():
            CONNECTOR_EVENTS.labels(self.connector, op).inc(count)
        for letter in batch.dead_letters:
            DEAD_LETTERS.labels("connector", self.connector, letter.kind).inc()
            log.warning(
                "dead-lettered a change of %s (column %s): %s",
                self.connector,
                letter.column or "-",
                letter.reason,
            )
        if batch.events:
            CONNECTOR_LAST_EVENT.labels(self.connector).set(time.time())

    def _send_dead_letter(self, letter: DeadLetter) -> Any:
        value = self._dlq_encoder.encode(
            {
                "stage": "connector",
                "source": self.connector,
                "record_key": letter.record_key,
                "column": letter.column,
                "reason": letter.reason,
                "topic": self.topic,
                "partition": None,
                "offset": None,
                "payload": letter.payload,
                "ts_ms": int(time.time() * 1000),
            }
        )
        key = f"{self.connector}:{letter.record_key or ''}".encode()
        return self._producer.send(self.topics.dlq, value=value, key=key)

    def send_raw(self, topic: str, key: bytes | None, value: bytes) -> None:
        """Send one message and wait for its acknowledgement (DLQ replay)."""
        if self._producer is None:
            self.open()
        future = self._producer.send(topic, value=value, key=key)
        flush_acknowledged(self._producer, [future])
        if not future.is_done or future.failed():
            raise RetriableError(f"kafka did not acknowledge a message: {future.exception}")

    def _fail(self, exc: BaseException) -> None:
        """A batch was not acknowledged: report Kafka down, drop the producer (a retry
        starts with a new one, whatever state the old one's sender was left in)."""
        KAFKA.failed(KAFKA_ROLE, self.connector, exc)
        self._reset()

    def _reset(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()
        producer, self._producer = self._producer, None
        drop_producer(producer)

    def close(self, timeout: float = 30.0) -> None:
        """Flush what was sent and close the producer (and the producer processes)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.close(timeout=timeout)


class _ProducerPool:
    """Producer processes for large batches: kafka-python spends ~45 µs of pure Python per
    message, so one process caps a connector at ~15-20k messages/s.

    Process *i* owns the partitions *p* with ``p % n == i`` (partition = murmur2 of the key,
    as the Java and kafka-python default partitioners compute it), so each partition's
    messages keep their order. :meth:`send` hands a batch out; :meth:`wait` returns when
    every process has flushed and had every message acknowledged, and raises
    RetriableError otherwise (the pool is then unusable: close it).
    """

    def __init__(self, kafka: KafkaConfig, topic: str, processes: int):
        # Plain subprocesses, not multiprocessing: spawn would re-run the embedding
        # program's __main__ module, fork would copy this process's threads and locks.
        self.partitions = kafka.partitions
        self.pending: list[Connection] = []
        self.starting: list[Connection] = []
        self.conns: list[Connection] = []
        self.procs: list[subprocess.Popen] = []
        for _ in range(processes):
            parent, child = socket.socketpair()
            proc = subprocess.Popen(
                [sys.executable, "-m", "connectors.delivery", str(child.fileno())],
                pass_fds=[child.fileno()], stdin=subprocess.DEVNULL, close_fds=True,
                # Linux: SIGKILL this child when the connector process dies, even mid-flush.
                preexec_fn=lambda: die_with_parent(signal.SIGKILL),
            )  # fmt: skip
            child.close()
            conn = Connection(parent.detach())
            conn.send((kafka, topic))
            self.conns.append(conn)
            self.procs.append(proc)
        self.starting = list(self.conns)

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> None:
        """Wait for each process's first answer, ``("ready", error or None)``: its producer
        is open, or why not. On an error the pool is unusable: close it."""
        starting, self.starting = self.starting, []
        errors = self._replies(starting, timeout, ready=True)
        if errors:
            raise RetriableError("producer process did not start: " + "; ".join(errors))

    def send(self, events: list[tuple[bytes, bytes]]) -> None:
        if self.starting:
            self.wait_ready()
        n = len(self.conns)
        parts: list[list[tuple[int, bytes, bytes]]] = [[] for _ in range(n)]
        partitions = self.partitions
        for key, value in events:
            p = (murmur2(key) & 0x7FFFFFFF) % partitions
            parts[p % n].append((p, key, value))
        self.pending = []
        try:
            for conn, part in zip(self.conns, parts, strict=True):
                if part:
                    conn.send(part)
                    self.pending.append(conn)
        except (OSError, EOFError) as exc:
            raise RetriableError(f"producer process gone: {exc}") from exc

    def wait(self) -> None:
        pending, self.pending = self.pending, []
        errors = self._replies(pending, FLUSH_TIMEOUT_S + 10)
        if errors:
            raise RetriableError("; ".join(errors))

    @staticmethod
    def _replies(conns: list[Connection], timeout: float, ready: bool = False) -> list[str]:
        """One reply from each of ``conns`` (``None`` = success; with ``ready``, the start-up
        answer ``("ready", None)``); the errors reported. A start-up answer is never taken
        for a batch's acknowledgement, nor the other way round."""
        errors = []
        deadline = time.monotonic() + timeout
        for conn in conns:
            try:
                if not conn.poll(max(0.0, deadline - time.monotonic())):
                    errors.append("producer process did not answer")
                    continue
                reply = conn.recv()
            except (OSError, EOFError) as exc:
                errors.append(f"producer process gone: {exc}")
                continue
            if ready:
                if type(reply) is not tuple or reply[:1] != (_READY,):
                    errors.append(f"producer process answered {reply!r} before it was ready")
                elif reply[1] is not None:
                    errors.append(reply[1])
            elif type(reply) is tuple:
                errors.append("producer process answered out of turn (a start-up answer)")
            elif reply is not None:
                errors.append(reply)
        return errors

    def close(self) -> None:
        for conn in self.conns:
            try:
                conn.send(None)
            except (OSError, EOFError):
                pass
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        for conn in self.conns:
            conn.close()


def _producer_process(fd: int) -> None:
    """A producer process: send each list of (partition, key, value), flush, report."""
    # The parent coordinates stopping (it finishes the batch in hand); a dead parent closes
    # the socket, which ends this loop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    tune_gc()
    conn = Connection(fd)
    kafka, topic = conn.recv()
    try:
        producer = make_producer(kafka, linger_ms=1000, batch_size=1024 * 1024)
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which retries
        conn.send((_READY, f"{type(exc).__name__}: {exc}"))
        return
    conn.send((_READY, None))
    send = producer.send
    try:
        while True:
            try:
                part = conn.recv()
            except (EOFError, OSError):
                return
            if part is None:
                return
            try:
                futures = [send(topic, value=v, key=k, partition=p) for p, k, v in part]
                flush_acknowledged(producer, futures)
                bad = next((f for f in futures if not f.is_done or f.failed()), None)
                conn.send(None if bad is None else f"kafka did not acknowledge: {bad.exception}")
            except Exception as exc:  # noqa: BLE001 - reported to the parent, which retries
                conn.send(f"{type(exc).__name__}: {exc}")
    finally:
        producer.close(timeout=5)


def retrying(
    fn: Callable[..., T],
    *,
    stopping: threading.Event | None = None,
    on_retry: Callable[[BaseException, float], None] | None = None,
    max_wait_s: float = RETRY_MAX_WAIT_S,
) -> Callable[..., T]:
    """``fn`` retried with exponential backoff (0.5 s … ``max_wait_s``) on RetriableError.

    Retries for as long as it takes — a connector outlives a broker or database outage —
    until ``stopping`` is set, which re-raises the last error; the waits end early then.
    ``on_retry(error, wait_s)`` runs before each wait. FatalError and anything else
    propagate at once.
    """

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait_s = state.next_action.sleep if state.next_action else 0.0
        if on_retry is not None and exc is not None:
            on_retry(exc, wait_s)
        else:
            log.warning("%s failed, retrying in %.1fs: %s", getattr(fn, "__name__", "call"),
                        wait_s, exc)  # fmt: skip

    return retry(
        retry=retry_if_exception_type(RetriableError),
        wait=wait_exponential(multiplier=RETRY_MIN_WAIT_S, min=RETRY_MIN_WAIT_S, max=max_wait_s),
        stop=lambda state: bool(stopping and stopping.is_set()),
        sleep=stopping.wait if stopping is not None else time.sleep,
        before_sleep=before_sleep,
        reraise=True,
    )(fn)


if __name__ == "__main__":  # a producer process of _ProducerPool
    _producer_process(int(sys.argv[1]))

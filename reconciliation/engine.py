"""The reconciler process: consume registry and sector changes, keep their state, evaluate the
rules and store mismatches — with the exactly-once effect of SPEC §5.

Flow of one poll batch (the unit of work), each step in the module named for it::

    poll → decode + check shape, bad ones → dead letters           (reconciliation.decode)
         → BEGIN; lock the batch's stored offsets             (reconciliation.transaction)
         → registry changes → sector changes, in partition order; evaluate every record
           they touch → mismatch transitions     (reconciliation.batch, rules, lifecycle)
         → write state, mismatches, history, outbox, offsets; COMMIT (reconciliation.store)
         → produce the outbox (reconciliation.outbox), then (optionally) commit offsets
           to Kafka for lag exporters; count the figures (reconciliation.figures).

Everything from BEGIN to the outbox runs on a database thread, one batch at a time and in
order, while the consumer thread polls and decodes the next batch; the consumer thread
takes the outcome (positions, Kafka offsets, or a rewind to the stored offsets that also
drops what it polled meanwhile) before it hands that batch over.

Delivery contract. The truth about what has been applied is ``consumer_offsets`` in the hub
database, written in the batch's transaction (the Kafka consumer documentation's "storing
offsets outside Kafka"); on every assignment the consumer seeks to it. A process killed at
any moment therefore re-reads exactly the messages whose effects were rolled back (the
fencing of a rebalance race: :mod:`reconciliation.transaction`; the outbox produces
mismatch events and dead letters at least once: :mod:`reconciliation.outbox`).

Ordering. Partition *i* of every topic is consumed by one process (range assignment of
co-partitioned topics). Sector partitions wait while the registry partitions have a
backlog, so a registry being loaded is in place before the sector records are judged
against it (:mod:`reconciliation.gate`); the order within a batch: :mod:`reconciliation.batch`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor, wait

import psycopg
from kafka import TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.coordinator.assignors.range import RangePartitionAssignor
from kafka.errors import KafkaError
from kafka.errors import RetriableError as KafkaRetriable
from kafka.structs import OffsetAndMetadata
from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_exponential

from hub.config import HubConfig
from hub.errors import RetriableError
from hub.idschemes import get_scheme
from hub.kafka import (
    Topics,
    drop_producer,
    ensure_topics,
    make_consumer,
    make_producer,
    topic_partitions,
)
from hub.kafkawatch import KafkaWatch
from hub.metrics import GROUP_REJOINS
from hub.runtime import tune_gc
from reconciliation.batch import BatchSettings
from reconciliation.decode import REGISTRY, Change, ChangeDecoder, DeadLetter, IdReader
from reconciliation.figures import Figures
from reconciliation.gate import RegistryGate
from reconciliation.kafkacommits import KafkaCommits
from reconciliation.logends import KAFKA_ROLE, LogEnds
from reconciliation.membership import JoinStall, rebalancing
from reconciliation.outbox import Outbox
from reconciliation.store.offsets import read_offsets
from reconciliation.store.pg import PgStore, connect
from reconciliation.transaction import BatchResult, Fenced, apply_batch

log = logging.getLogger(__name__)

FETCH_MAX_WAIT_MS = 50
TOTALLED = ("messages", "applied", "stale", "skipped", "dead_letters", "transitions", "events")
"""The :class:`BatchResult` counts ``Reconciler.totals`` adds up."""


class _Listener(ConsumerRebalanceListener):
    """Runs on the consumer's IO loop: only records what changed and pauses new partitions
    (no blocking work); the main loop seeks them to the stored offsets."""

    def __init__(self, owner: Reconciler, consumer):
        self.owner = owner
        self.consumer = consumer

    def _current(self) -> bool:
        # A consumer replaced after a stalled join revokes its partitions as it closes:
        # by then they may belong to the new consumer, so its callbacks are ignored.
        return self.owner.consumer is self.consumer

    def on_partitions_revoked(self, revoked):
        if self._current():
            self.owner._on_revoked(set(revoked))

    def on_partitions_assigned(self, assigned):
        if self._current():
            self.owner._on_assigned(set(assigned))


class Reconciler:
    """One reconciler process of the consumer group ``config.reconciler.group_id``.

    With ``assign_all`` it takes every partition itself instead of joining the group (no
    rebalancing, no group join delay): for a single reconciler, e.g. an all-in-one install.
    Offsets are still stored under the group ID, so either mode resumes the other's work.
    Only a group member locks the legacy ID numbers it reads across partitions through:
    alone, nothing else applies the other side.

    ``run()`` blocks until :meth:`stop` is called (the current batch is finished and
    committed first) or, with ``until_idle_s``, until every assigned partition has been
    caught up for that long.
    """

    def __init__(
        self,
        config: HubConfig,
        *,
        group_id: str | None = None,
        commit_to_kafka: bool = True,
        poll_timeout_ms: int = 200,
        stats_interval_s: float = 15.0,
        snapshot_interval_s: float = 300.0,
        registry_gate_lag: int | None = None,
        assign_all: bool = False,
    ):
        self.config = config
        self.scheme = get_scheme(config.id_scheme)
        self.topics = Topics(config.kafka.topic_prefix)
        self.group_id = group_id or config.reconciler.group_id
        self.commit_to_kafka = commit_to_kafka
        self.kafka_commits = KafkaCommits(self.group_id)
        self.assign_all = assign_all
        self.poll_timeout_ms = poll_timeout_ms
        self.stats_interval_s = stats_interval_s
        self.figures = Figures(config, snapshot_interval_s)
        self.log_ends = LogEnds(self.group_id)
        self.kafka_watch = KafkaWatch(config.kafka, KAFKA_ROLE, self.group_id)
        self.join_stall = JoinStall()
        self.source_of: dict[str, str] = {self.topics.registry: REGISTRY}
        self.source_of.update({self.topics.sector(s): s for s in config.sectors})
        self.ids = IdReader(self.scheme)
        # Alone, nothing else applies the other side of a legacy number: no locks.
        self.settings = BatchSettings.from_config(config, self.ids, lock_legacy=not assign_all)
        self.decoder = ChangeDecoder(self.source_of, self.ids, self.topics.dlq)
        self.outbox = Outbox(self.scheme, self.topics.mismatches)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._pending: set[TopicPartition] = set()
        self._revoked: set[TopicPartition] = set()
        self._ready: set[TopicPartition] = set()
        self._positions: dict[TopicPartition, int] = {}
        gate_lag = registry_gate_lag or config.reconciler.max_poll_records
        self.gate = RegistryGate(self.source_of, gate_lag, self._ready, self._position)
        self._db: ThreadPoolExecutor | None = None
        self._inflight: tuple[Future, dict] | None = None
        self.conn: psycopg.Connection | None = None
        self._figures_thread: ThreadPoolExecutor | None = None
        self.consumer = None
        self.producer = None
        self.totals = BatchResult()

    # -- lifecycle ------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask ``run()`` to return after the batch in progress is committed."""
        self._stop.set()

    def run(self, *, until_idle_s: float | None = None) -> BatchResult:
        """Consume until stopped; returns the totals."""
        tune_gc()
        names = [self.topics.registry, *self.topics.all_for(self.config)]
        ensure_topics(self.config.kafka, list(dict.fromkeys(names)))
        retry(
            retry=retry_if_exception_type(RetriableError),
            wait=wait_exponential(multiplier=0.5, max=5),
            stop=stop_after_delay(60),
            reraise=True,
        )(self._connect)()
        self.producer = make_producer(self.config.kafka)
        self._drain_outbox(renew=False)
        self.kafka_watch.start()
        self._open_consumer()
        log.info(
            "reconciler %s consuming %d topics (%s)",
            self.group_id,
            len(self.source_of),
            ", ".join(sorted(self.source_of)),
        )
        idle_since: float | None = None
        next_lag = next_stats = 0.0
        # Every use of the database connection runs on this one thread, in submission
        # order: batch N is applied there while this thread polls and decodes batch N+1.
        self._db = ThreadPoolExecutor(1, thread_name_prefix="hub-reconciler-db")
        # Figures and planner statistics: on their own connection and thread.
        self._figures_thread = ThreadPoolExecutor(1, thread_name_prefix="hub-reconciler-figures")
        figures: Future | None = None
        analyzing: Future | None = None
        try:
            while not self._stop.is_set():
                if self._assignment_changing():
                    self._finish_inflight()  # seeks read the stored offsets
                self._apply_assignment()
                records = self._poll()
                self._rejoin_if_stalled(time.monotonic())
                self.log_ends.saw(records)
                self._drop_revoked()
                records = {tp: recs for tp, recs in records.items() if tp in self._ready and recs}
                decoded = self._decode(records) if records else None
                if not self._finish_inflight():
                    decoded = None  # rewound to the stored offsets: it will be polled again
                if decoded is not None:
                    self._inflight = (self._db.submit(self._apply, records, *decoded), records)
                    idle_since = None
                self._gate()
                now = time.monotonic()
                if now >= next_lag:
                    self._check_ends()
                    self.figures.export_lag(self.consumer, self._ready, self._positions)
                    if analyzing is None or analyzing.done():
                        # On the background connection: an ANALYZE of a big state table
                        # takes a second or more, and on the batch connection every batch
                        # waited for it.
                        analyzing = self._figures_thread.submit(self.figures.refresh_statistics)
                    next_lag = now + 2.0
                    if self.commit_to_kafka and self.kafka_commits.behind():
                        self._commit_to_kafka_again()
                    if self.outbox.retry:
                        self.outbox.retry = False
                        self._db_task(self._drain_outbox)
                if now >= next_stats and (figures is None or figures.done()):
                    # The trigger-kept counts (hub.db.figures) are cheap, but a stats
                    # snapshot is a write: on their own connection, no batch waits.
                    figures = self._figures_thread.submit(self.figures.refresh)
                    next_stats = now + self.stats_interval_s
                if until_idle_s is not None:
                    if records or not self._caught_up():
                        idle_since = None
                    elif idle_since is None:
                        idle_since = now
                    elif now - idle_since >= until_idle_s:
                        break
            self._finish_inflight()
        finally:
            self._db.shutdown(wait=True)
            self._db = None
            self._figures_thread.shutdown(wait=True)
            self._close()
        return self.totals

    def _open_consumer(self) -> None:
        """A consumer that takes every partition (``assign_all``) or joins the group."""
        self.consumer = make_consumer(
            self.config.kafka,
            group_id=self.group_id,
            client_id=f"hub-reconciler-{self.group_id}",
            partition_assignment_strategy=[RangePartitionAssignor],
            max_poll_records=self.config.reconciler.max_poll_records,
            enable_auto_commit=False,
            # A fetch the broker holds open waits at most this long for new records: it
            # bounds the time a change waits between the broker and this process.
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        )
        parts = topic_partitions(self.consumer, self.source_of, self._stop)
        if self.assign_all:
            self.consumer.assign(sorted(parts))
            self._on_assigned(parts)
        else:
            self.consumer.subscribe(sorted(self.source_of), listener=_Listener(self, self.consumer))

    def _rejoin_if_stalled(self, now: float) -> None:
        """A group join unfinished for too long (:mod:`reconciliation.membership`): close
        the consumer and subscribe a new one; the new assignment seeks to the stored offsets."""
        limit_s = self.join_stall.limit_s
        if self.assign_all or not self.join_stall.stalled(rebalancing(self.consumer), now):
            return
        log.warning(
            "reconciler %s: the group join has not finished in %.0f s; rejoining with a new "
            "consumer (next limit %.0f s)",
            self.group_id,
            limit_s,
            self.join_stall.limit_s,
        )
        GROUP_REJOINS.inc()
        self._finish_inflight()
        with self._lock:
            self._revoked |= self._ready | self._pending | self.log_ends.held
            self._pending = set()
        self._drop_revoked()
        old, self.consumer = self.consumer, None
        # A stuck client may not close promptly: never wait for it here.
        threading.Thread(
            target=_close_quietly, args=(old,), name="hub-reconciler-old-consumer", daemon=True
        ).start()
        self._open_consumer()

    def _connect(self) -> None:
        """Open the hub database connection; RetriableError when it does not answer."""
        if self.conn is not None and not self.conn.closed:
            return
        try:
            self.conn = connect(self.config.database.url)
            self.figures.refresh_statistics(self.conn)
        except psycopg.OperationalError as exc:
            self.conn = None
            raise RetriableError(f"hub database: {str(exc).strip()}") from exc

    def _close(self) -> None:
        self.kafka_watch.stop()
        if self.consumer is not None:
            self._flush_kafka_commits()
            try:
                self.consumer.close(autocommit=False)
            except Exception:  # closing on the way out: nothing to save
                log.debug("consumer close failed", exc_info=True)
            self.consumer = None
        if self.producer is not None:
            try:
                self.producer.flush(30)
            except KafkaError:  # what it holds is in the outbox: the next process sends it
                log.debug("outbox producer not flushed on close", exc_info=True)
            self.producer.close(10)
            self.producer = None
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        self.figures.close()

    # -- assignment -----------------------------------------------------------------------

    def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        with self._lock:
            self._pending |= assigned
        if assigned:
            self.consumer.pause(*assigned)

    def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        # The batch in flight may hold revoked partitions: let it commit before they go.
        self._wait_inflight()
        with self._lock:
            self._pending -= revoked
            self._revoked |= revoked

    def _drop_revoked(self) -> None:
        with self._lock:
            revoked, self._revoked = self._revoked, set()
        if revoked:
            self._ready -= revoked
            self.kafka_commits.forget(revoked)
            self.log_ends.forget(revoked)
            for tp in revoked:
                self._positions.pop(tp, None)

    def _apply_assignment(self) -> None:
        """Seek newly assigned partitions to the offsets stored with the state they produced."""
        self._drop_revoked()
        with self._lock:
            pending, self._pending = self._pending, set()
        if not pending:
            return
        self._seek_to_stored(pending)
        pending -= self.log_ends.held  # stay paused: their stored offset is past the log end
        self._ready |= pending
        log.info(
            "assigned %d partitions: %s",
            len(pending),
            ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(pending)),
        )
        registry = [tp for tp in pending if self.source_of[tp.topic] == REGISTRY]
        if registry:
            self.consumer.resume(*registry)
        self.gate.close(self.consumer)

    def _seek_to_stored(self, partitions: Iterable[TopicPartition]) -> None:
        partitions = list(partitions)
        topics = {tp.topic for tp in partitions}
        wanted = {(tp.topic, tp.partition) for tp in partitions}
        stored = self._db_call(lambda: read_offsets(self.conn, self.group_id, topics))
        ends = self.log_ends.known_ends(self.consumer, partitions)
        for tp in partitions:
            offset = stored.get((tp.topic, tp.partition))
            if offset is not None and self.log_ends.is_beyond(tp, offset, ends):
                continue
            if offset is None:
                self.consumer.seek_to_beginning(tp)
                self._positions.pop(tp, None)
            else:
                self.consumer.seek(tp, offset)
                self._positions[tp] = offset
                self.log_ends.stored[tp] = offset
        if self.commit_to_kafka:
            # The partitions' previous owner may have stored its last batch and died before
            # its Kafka commit went out: without this, lag exporters show that batch as lag
            # until the partition gets a new message.
            self._commit_to_kafka({k: o for k, o in stored.items() if k in wanted})

    # -- registry first -------------------------------------------------------------------

    def _position(self, tp: TopicPartition) -> int | None:
        pos = self._positions.get(tp)
        if pos is None:
            try:
                pos = self.consumer.position(tp, timeout_ms=100)
            except KafkaError as exc:
                # A partition without a stored offset is reset to its beginning by a
                # ListOffsets request; while the broker restarts, kafka-python raises that
                # request's KafkaConnectionError here (it only catches timeouts), which
                # ended the process. Unknown for now: asked again on the next loop.
                self.log_ends.unreachable(exc)
                return None
            if pos is not None:
                self._positions[tp] = pos
        return pos

    def _poll(self) -> dict:
        """One poll; a Kafka error that a retry can cure (the broker restarting) is reported
        and waited out here instead of ending the process."""
        try:
            return self.consumer.poll(timeout_ms=self.poll_timeout_ms)
        except KafkaRetriable as exc:
            self.log_ends.unreachable(exc)
            self._stop.wait(self.poll_timeout_ms / 1000)
            return {}

    def _check_ends(self) -> None:
        """Every 2 s: hold partitions whose stored offset is past their log end (as the
        consumer's fetches report it); resume held ones whose offset an operator has reset."""
        held = self.log_ends.held
        ends = self.log_ends.known_ends(self.consumer, self._ready | held)
        beyond = self.log_ends.beyond(ends, self._ready)
        if beyond:
            self._ready -= beyond
            self.consumer.pause(*beyond)
        if held:
            topics = {tp.topic for tp in held}
            stored = self._db_call(lambda: read_offsets(self.conn, self.group_id, topics))
            back = self.log_ends.released(stored, ends)
            with self._lock:
                self._pending |= back

    def _gate(self) -> None:
        """Hold sector partitions while the registry partitions have a backlog."""
        self.gate.update(self.consumer)

    def _caught_up(self) -> bool:
        if self._inflight is not None or self.gate.closed or self._pending or not self._ready:
            return False
        for tp in self._ready:
            high = self.consumer.highwater(tp)
            pos = self._position(tp)
            if high is None or pos is None or pos < high:
                return False
        return True

    # -- batches --------------------------------------------------------------------------

    def _db_task(self, fn, *args) -> None:
        """Run ``fn`` where the database connection is used — on the database thread after
        what was submitted before, while the loop runs; at once outside it — without
        waiting for it. A failure is logged: these are periodic, best-effort tasks."""

        def task() -> None:
            try:
                fn(*args)
            except Exception:  # noqa: BLE001 - the next period tries again
                log.warning("%s failed", getattr(fn, "__name__", "task"), exc_info=True)

        if self._db is None:
            task()
        else:
            self._db.submit(task)

    def _db_call(self, fn, *args):
        """Run ``fn`` on the database thread (after what was submitted before) and wait for
        its result; at once when there is no database thread."""
        if self._db is None:
            return fn(*args)
        return self._db.submit(fn, *args).result()

    def _assignment_changing(self) -> bool:
        with self._lock:
            return bool(self._pending or self._revoked)

    def _wait_inflight(self) -> None:
        """Block until the batch in flight (if any) is committed or has failed."""
        if self._inflight is not None:
            wait([self._inflight[0]])

    def _finish_inflight(self) -> bool:
        """Wait for the batch in flight and take its outcome: positions and Kafka offsets
        after a commit; after a failure, every partition back to its stored offset (what
        was polled meanwhile is dropped too). False when it rewound."""
        if self._inflight is None:
            return True
        future, records = self._inflight
        self._inflight = None
        try:
            result = future.result()
        except Fenced:
            log.warning("another process stored offsets for this batch: re-reading them")
            self._rewind()
            return False
        except (psycopg.OperationalError, RetriableError) as exc:
            log.warning("batch not stored (%s); rewinding", exc)
            self._rewind(reconnect=True)
            return False
        for tp, recs in records.items():
            self._positions[tp] = recs[-1].offset + 1
        self.log_ends.stored.update({TopicPartition(*k): o for k, o in result.offsets.items()})
        if self.commit_to_kafka:
            self._commit_to_kafka(result.offsets)
        return True

    def _rewind(self, *, reconnect: bool = False) -> None:
        """Seek every assigned partition to its stored offset, once the database answers:
        the failed batch's partitions, and those polled since."""

        def connect() -> None:
            if reconnect and self.conn is not None and (self.conn.closed or self.conn.broken):
                self.conn.close()
                self.conn = None
            self._connect()

        delay = 0.5
        while True:
            try:
                self._db_call(connect)
                self._seek_to_stored(self._ready)
                return
            except (psycopg.OperationalError, RetriableError) as exc:
                if self._stop.is_set():
                    return  # nothing of the batch was stored; a restart re-reads it
                log.warning("database unreachable (%s); retrying in %.1fs", exc, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, 2.0)

    def _apply(self, records: dict, changes: list[Change], dead: list[DeadLetter]) -> BatchResult:
        """The database side of a batch: one transaction, then the outbox produced. Touches
        no consumer state, so it can run on the database thread."""
        started = time.monotonic()
        ends = {
            (tp.topic, tp.partition): (recs[0].offset, recs[-1].offset + 1)
            for tp, recs in records.items()
        }
        done = apply_batch(
            PgStore(self.conn),
            self.settings,
            self.group_id,
            ends,
            changes,
            dead,
            self.outbox.event_message,
        )
        if self.outbox.retry or self.producer is None:
            # Earlier messages are still waiting: send everything in outbox order, so no
            # consumer sees a newer transition before an older one.
            self.outbox.retry = False
            self._drain_outbox()
        else:
            self.outbox.publish(self.conn, self.producer, done.queued)
        result = done.result
        result.messages = sum(len(r) for r in records.values())
        self.figures.count(done.batch, done.dead, self.source_of)
        for name in TOTALLED:
            setattr(self.totals, name, getattr(self.totals, name) + getattr(result, name))
        log.debug(
            "batch: %d messages, %d applied, %d stale, %d dead letters, %d transitions in %.3fs",
            result.messages,
            result.applied,
            result.stale,
            result.dead_letters,
            result.transitions,
            time.monotonic() - started,
        )
        return result

    def _commit_to_kafka(self, stored: dict[tuple[str, int], int]) -> None:
        """Commit the offsets a batch stored to Kafka too, asynchronously (see KafkaCommits)."""
        self._send_commits(self.kafka_commits.to_commit(stored))

    def _commit_to_kafka_again(self) -> None:
        """Every 2 s while any offset is unconfirmed: send those again (a last batch's failed
        commit would otherwise stay the group's offset until the next batch)."""
        self._send_commits(self.kafka_commits.unacked(self._ready))

    def _send_commits(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        if not offsets:
            return
        try:
            self.consumer.commit_async(offsets, callback=self.kafka_commits.done)
        except Exception as exc:  # noqa: BLE001 - lag exporters only: the database holds the truth
            self.kafka_commits.failed(exc)

    def _flush_kafka_commits(self) -> None:
        """On close: commit what is not confirmed yet, briefly and synchronously, so the group
        shows the true lag while this process is down."""
        if not self.commit_to_kafka:
            return
        offsets = self.kafka_commits.unacked(self._ready)
        if not offsets:
            return
        try:
            self.consumer.commit(offsets, timeout_ms=2000)
        except Exception as exc:  # noqa: BLE001 - lag exporters only, as above
            self.kafka_commits.failed(exc)

    # -- the steps of a batch done elsewhere ------------------------------------------------

    def _decode(self, records: dict) -> tuple[list[Change], list[DeadLetter]]:
        """Changes in (topic, partition, offset) order, and dead letters."""
        return self.decoder.decode(records)

    def _drain_outbox(self, *, renew: bool = True) -> None:
        """Produce what a previous process committed but did not get to produce; after a
        failed publish (``renew``) with a new producer, as connectors do: kafka-python's
        idempotent sender can stall after a broker pause, and a stalled one never recovers."""
        if renew:
            old, self.producer = self.producer, None
            drop_producer(old, timeout=0)
            try:
                self.producer = make_producer(self.config.kafka)
            except KafkaError as exc:
                self.outbox.retry = True  # the broker is still away: the next period tries
                self.log_ends.unreachable(exc)
                return
        self.outbox.drain(self.conn, self.producer)

    def refresh_figures(self) -> None:
        """Refresh the gauges and ``stats_snapshots`` now (see :meth:`Figures.refresh`)."""
        self.figures.refresh()


def _close_quietly(consumer) -> None:
    try:
        consumer.close(autocommit=False)
    except Exception:  # noqa: BLE001 - it is being replaced either way
        log.debug("closing a stalled consumer failed", exc_info=True)

"""The reconciler process: consume registry and sector changes, keep their state, evaluate the
rules and store mismatches — with the exactly-once effect of SPEC §5.

Flow of one poll batch (the unit of work)::

    poll → decode + check shape (bad ones → dead letters)
         → BEGIN; lock the batch's stored offsets
         → registry changes (replica rows)  →  sector changes, one by one, in partition order
         → evaluate every record a change touched (and every record carrying a changed
           registry ID, and the duplicate groups that changed) → mismatch transitions
         → write state, mismatches, history, outbox (events, dead letters), offsets; COMMIT
         → produce the outbox to Kafka, then (optionally) commit offsets to Kafka for lag
           exporters.

Everything from BEGIN to the outbox runs on a database thread, one batch at a time and in
order, while the consumer thread polls and decodes the next batch; the consumer thread
takes the outcome (positions, Kafka offsets, or a rewind to the stored offsets that also
drops what it polled meanwhile) before it hands that batch over.

Delivery contract. The truth about what has been applied is ``consumer_offsets`` in the hub
database, written in the batch's transaction (the Kafka consumer documentation's "storing
offsets outside Kafka"); on every assignment the consumer seeks to it. A process killed at
any moment therefore re-reads exactly the messages whose effects were rolled back. A
stored offset past a batch's first offset means another process applied those messages
(a rebalance race): they are skipped, or the batch is rolled back. Messages to Kafka
(mismatch events, dead letters) go through an outbox table and are produced at least once.

Ordering. Partition *i* of every topic is consumed by one process (range assignment of
co-partitioned topics). Sector partitions wait while the registry partitions have a
backlog, so a registry being loaded is in place before the sector records are judged
against it. Within a batch, registry changes take effect together, before the sector
changes, which take effect one at a time in offset order: the mismatch history of a
record does not depend on where batch boundaries fall. A change older (by source LSN,
else commit time) than the state already held — a re-delivery after a connector restart,
or a record whose citizen ID moved it to another partition — is ignored.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg
from kafka import TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.coordinator.assignors.range import RangePartitionAssignor
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata
from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_exponential

from hub import metrics
from hub.avro.codec import AvroDecodeError, Decoder, Encoder
from hub.avro.reader import compile_reader
from hub.avro.writer import compile_encoder
from hub.config import HubConfig
from hub.db import psycopg_conninfo
from hub.errors import RetriableError, SkippableError
from hub.idschemes import IdInfo, get_scheme
from hub.kafka import Topics, ensure_topics, make_consumer, make_producer
from hub.runtime import tune_gc
from hub.vocabulary import CANDIDATE_KEYS, SUGGESTING_RULES
from reconciliation import state
from reconciliation.lifecycle import Ledger, MismatchRow, load_mismatches
from reconciliation.names import fold
from reconciliation.rules import RuleSet, evaluate, is_active
from reconciliation.state import RegistryRow, SectorKey, SectorRow, same_state
from reconciliation.suggestions import (
    MAX_SUGGESTIONS,
    Citizen,
    Probe,
    Suggestion,
    find_candidates,
    score,
)

log = logging.getLogger(__name__)

REGISTRY = "registry"
LATENCY_SAMPLES = 500
FETCH_MAX_WAIT_MS = 50
_LENGTHS = (("citizen_id", 64), ("legacy_id", 32), ("province_code", 16), ("status", 64))
_SEXES = frozenset({None, "M", "F"})
_TEXT_FIELDS = ("citizen_id", "legacy_id", "full_name", "province_code", "address", "status")
_NO_ID: tuple[None, None] = (None, None)


class _Fenced(Exception):
    """Another process stored offsets for this batch's partitions first: roll back."""


@dataclass(slots=True)
class Change:
    """One decoded change: the state it leaves (``row``; ``None`` for a delete) and where
    it came from."""

    source: str
    op: str
    record_key: str
    row: RegistryRow | SectorRow | None
    lsn: int | None
    ts: datetime | None
    commit_ms: int | None
    tp: TopicPartition
    offset: int
    snapshot: bool = False
    """A snapshot read (op ``r`` or ``source.snapshot``): its commit time is the row's age,
    not a delay of the pipeline, so it is counted but never observed as latency."""


@dataclass
class BatchResult:
    """What one batch did (for metrics, logs and tests)."""

    messages: int = 0
    applied: int = 0
    stale: int = 0
    skipped: int = 0
    dead_letters: int = 0
    transitions: int = 0
    events: int = 0
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    """The next offsets the batch stored, ``{(topic, partition): offset}`` (not totalled)."""


class KafkaCommits:
    """The group's offsets committed to Kafka after each database commit, so lag exporters
    (kafka_exporter, Burrow, ``kafka-consumer-groups --describe``) see the true lag.

    Monitoring only: nothing reads these offsets back (assignment seeks to the offsets
    stored in the database), so a commit is asynchronous and its failure is logged, never
    raised: one WARNING when commits start failing, one INFO when they succeed again,
    DEBUG for the rest. Offsets never go back: a partition's offset is only committed when
    it is past the last one sent. Not thread-safe: use it on the consumer's thread (which
    is where kafka-python runs commit callbacks).
    """

    def __init__(self, group_id: str):
        self.group_id = group_id
        self.failing = False
        self.sent: dict[TopicPartition, int] = {}
        """The highest offset sent for commit, per partition."""
        self.acked: dict[TopicPartition, int] = {}
        """The highest offset the broker confirmed, per partition."""

    def to_commit(
        self, stored: dict[tuple[str, int], int]
    ) -> dict[TopicPartition, OffsetAndMetadata]:
        """What to commit after a batch stored ``stored``: the partitions that moved past
        the last offset sent; records them as sent."""
        out: dict[TopicPartition, OffsetAndMetadata] = {}
        for (topic, partition), offset in stored.items():
            tp = TopicPartition(topic, partition)
            if offset > self.sent.get(tp, -1):
                self.sent[tp] = offset
                out[tp] = OffsetAndMetadata(offset, "", -1)
        return out

    def unacked(
        self, partitions: Iterable[TopicPartition]
    ) -> dict[TopicPartition, OffsetAndMetadata]:
        """Offsets of ``partitions`` sent but not (yet) confirmed: what a last synchronous
        commit on close still has to deliver."""
        return {
            tp: OffsetAndMetadata(self.sent[tp], "", -1)
            for tp in partitions
            if tp in self.sent and self.acked.get(tp, -1) < self.sent[tp]
        }

    def behind(self) -> bool:
        """Whether an offset sent was not confirmed: a later commit of other partitions can
        succeed (and end the run of failures) while a refused one is still owed."""
        return any(self.acked.get(tp, -1) < offset for tp, offset in self.sent.items())

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        """Partitions this process no longer holds: another one commits them now."""
        for tp in partitions:
            self.sent.pop(tp, None)
            self.acked.pop(tp, None)

    def done(self, offsets: dict[TopicPartition, OffsetAndMetadata], response: object) -> None:
        """kafka-python's commit callback: ``response`` is an exception on failure."""
        if isinstance(response, BaseException):
            self.failed(response)
            return
        for tp, meta in offsets.items():
            if meta.offset > self.acked.get(tp, -1):
                self.acked[tp] = meta.offset
        if self.failing:
            self.failing = False
            log.info("offset commits to Kafka for group %s work again", self.group_id)

    def failed(self, exc: BaseException) -> None:
        """Log a failed commit: WARNING on the first of a run of failures, else DEBUG."""
        reason = f"{type(exc).__name__}: {exc}".rstrip(": ")
        if not self.failing:
            self.failing = True
            log.warning(
                "offset commit to Kafka for group %s failed (%s); lag exporters show stale "
                "lag until a commit succeeds (the stored offsets are unaffected)",
                self.group_id,
                reason,
            )
        else:
            log.debug("offset commit to Kafka failed again: %s", reason)


def is_older(
    lsn: int | None, ts: datetime | None, ref_lsn: int | None, ref_ts: datetime | None
) -> bool:
    """Whether a change at (lsn, ts) is older than state held at (ref_lsn, ref_ts): by LSN
    when both have one, else by commit time when both have one, else not older."""
    if lsn is not None and ref_lsn is not None:
        return lsn < ref_lsn
    if ts is not None and ref_ts is not None:
        return ts < ref_ts
    return False


class _Listener(ConsumerRebalanceListener):
    """Runs on the consumer's IO loop: only records what changed and pauses new partitions
    (no blocking work); the main loop seeks them to the stored offsets."""

    def __init__(self, owner: Reconciler):
        self.owner = owner

    def on_partitions_revoked(self, revoked):
        self.owner._on_revoked(set(revoked))

    def on_partitions_assigned(self, assigned):
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
        self.snapshot_interval_s = snapshot_interval_s
        self.registry_gate_lag = registry_gate_lag or config.reconciler.max_poll_records
        self.source_of: dict[str, str] = {self.topics.registry: REGISTRY}
        self.source_of.update({self.topics.sector(s): s for s in config.sectors})
        strict = config.reconciler.strict_script_names
        self.rules = {
            s: RuleSet.from_config(cfg.rules, strict_script_names=strict)
            for s, cfg in config.sectors.items()
        }
        self.candidate_keys = {s: cfg.rules.candidate_keys for s, cfg in config.sectors.items()}
        self._decode_message = compile_reader("hub.ChangeEvent") or Decoder().decode
        self._event_encoder = compile_encoder("hub.MismatchEvent") or Encoder("hub.MismatchEvent")
        self._dlq_encoder = compile_encoder("hub.DeadLetter") or Encoder("hub.DeadLetter")
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._pending: set[TopicPartition] = set()
        self._revoked: set[TopicPartition] = set()
        self._ready: set[TopicPartition] = set()
        self._positions: dict[TopicPartition, int] = {}
        self._gate_closed = True
        self._id_cache: dict[str, tuple[str | None, IdInfo | None]] = {}
        self._open_labels: set[tuple[str, str, str]] = set()
        self._lag_labels: set[tuple[str, str]] = set()
        self._outbox_retry = False
        self._db: ThreadPoolExecutor | None = None
        self._inflight: tuple[Future, dict] | None = None
        self.conn: psycopg.Connection | None = None
        self._figures_conn: psycopg.Connection | None = None
        self._figures_thread: ThreadPoolExecutor | None = None
        self.consumer = None
        self.producer = None
        self.totals = BatchResult()

    @property
    def lock_legacy(self) -> bool:
        """Whether a batch that reads across partitions through a legacy ID number locks
        that number first (see _Batch.apply_sectors): only when other processes may hold
        the other partitions."""
        return not self.assign_all

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
        self._drain_outbox()
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
        parts = self._partitions()
        if self.assign_all:
            self.consumer.assign(sorted(parts))
            self._on_assigned(parts)
        else:
            self.consumer.subscribe(sorted(self.source_of), listener=_Listener(self))
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
                records = self.consumer.poll(timeout_ms=self.poll_timeout_ms)
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
                    self._export_lag()
                    if analyzing is None or analyzing.done():
                        # On the background connection: an ANALYZE of a big state table
                        # takes a second or more, and on the batch connection every batch
                        # waited for it.
                        analyzing = self._figures_thread.submit(self._refresh_statistics, None)
                    next_lag = now + 2.0
                    if self.commit_to_kafka and self.kafka_commits.behind():
                        self._commit_to_kafka_again()
                    if self._outbox_retry:
                        self._outbox_retry = False
                        self._db_task(self._drain_outbox)
                if now >= next_stats and (figures is None or figures.done()):
                    # The trigger-kept counts (hub.db.figures) are cheap, but a stats
                    # snapshot is a write: on their own connection, no batch waits.
                    figures = self._figures_thread.submit(self.refresh_figures)
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

    def _partitions(self, timeout_s: float = 30.0) -> set[TopicPartition]:
        """Every partition of the consumed topics, once the consumer's metadata lists them all.
        A topic created a moment ago can be missing from it: taken then, ``assign_all`` would
        skip the topic, and a group leader assigns none of its partitions (found on Apache
        Kafka: the group then consumed nothing for over a minute)."""
        deadline = time.monotonic() + timeout_s
        while True:
            self.consumer.topics()  # a metadata request, not the cache
            found = {t: self.consumer.partitions_for_topic(t) for t in self.source_of}
            if all(found.values()) or time.monotonic() > deadline or self._stop.is_set():
                return {TopicPartition(t, p) for t, ps in found.items() for p in ps}
            self._stop.wait(0.2)

    def _connect(self) -> None:
        """Open the hub database connection; RetriableError when it does not answer."""
        if self.conn is not None and not self.conn.closed:
            return
        try:
            self.conn = psycopg.connect(
                psycopg_conninfo(self.config.database.url),
                autocommit=True,
                application_name="hub-reconciler",
                connect_timeout=10,
                # No server-side prepared statements: a batch query joins a staging table
                # whose size varies from one key to ten thousand, and a prepared statement
                # keeps the generic plan made for the sizes of its first runs until the next
                # ANALYZE of a table it reads. Live batches after a 10k-key catch-up then
                # read every mismatch (~200 ms for 50 keys at 1M, instead of ~5 ms).
                prepare_threshold=None,
            )
            state.prepare_session(self.conn)
            self._refresh_statistics(self.conn)
        except psycopg.OperationalError as exc:
            self.conn = None
            raise RetriableError(f"hub database: {str(exc).strip()}") from exc

    def _refresh_statistics(self, conn: psycopg.Connection | None) -> None:
        """Keep the planner's statistics of the state tables current (see
        :func:`state.refresh_statistics`) over ``conn`` (None: the background connection);
        best effort: a failure only slows plans."""
        try:
            analyzed = state.refresh_statistics(conn or self._background_conn())
        except psycopg.Error as exc:
            log.warning("could not refresh planner statistics: %s", str(exc).strip())
            return
        if analyzed:
            log.debug("analyzed %s", ", ".join(analyzed))

    def _close(self) -> None:
        if self.consumer is not None:
            self._flush_kafka_commits()
            try:
                self.consumer.close(autocommit=False)
            except Exception:  # closing on the way out: nothing to save
                log.debug("consumer close failed", exc_info=True)
            self.consumer = None
        if self.producer is not None:
            self.producer.flush(30)
            self.producer.close(10)
            self.producer = None
        for conn in (self.conn, self._figures_conn):
            if conn is not None:
                conn.close()
        self.conn = self._figures_conn = None

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
        self._ready |= pending
        log.info(
            "assigned %d partitions: %s",
            len(pending),
            ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(pending)),
        )
        registry = [tp for tp in pending if self.source_of[tp.topic] == REGISTRY]
        if registry:
            self.consumer.resume(*registry)
        self._close_gate()

    def _seek_to_stored(self, partitions: Iterable[TopicPartition]) -> None:
        partitions = list(partitions)
        topics = {tp.topic for tp in partitions}
        wanted = {(tp.topic, tp.partition) for tp in partitions}
        stored = self._db_call(lambda: state.read_offsets(self.conn, self.group_id, topics))
        for tp in partitions:
            offset = stored.get((tp.topic, tp.partition))
            if offset is None:
                self.consumer.seek_to_beginning(tp)
                self._positions.pop(tp, None)
            else:
                self.consumer.seek(tp, offset)
                self._positions[tp] = offset
        if self.commit_to_kafka:
            # The partitions' previous owner may have stored its last batch and died before
            # its Kafka commit went out: without this, lag exporters show that batch as lag
            # until the partition gets a new message.
            self._commit_to_kafka({k: o for k, o in stored.items() if k in wanted})

    # -- registry first -------------------------------------------------------------------

    def _registry_lag(self) -> int | None:
        """Messages the assigned registry partitions are behind; None while unknown."""
        lag = 0
        for tp in self._ready:
            if self.source_of[tp.topic] != REGISTRY:
                continue
            high = self.consumer.highwater(tp)
            pos = self._position(tp)
            if high is None or pos is None:
                return None
            lag += max(0, high - pos)
        return lag

    def _position(self, tp: TopicPartition) -> int | None:
        pos = self._positions.get(tp)
        if pos is None:
            pos = self.consumer.position(tp, timeout_ms=100)
            if pos is not None:
                self._positions[tp] = pos
        return pos

    def _sector_partitions(self) -> list[TopicPartition]:
        return [tp for tp in self._ready if self.source_of[tp.topic] != REGISTRY]

    def _close_gate(self) -> None:
        sectors = self._sector_partitions()
        if sectors:
            self.consumer.pause(*sectors)
        self._gate_closed = True

    def _gate(self) -> None:
        """Hold sector partitions while the registry partitions have a backlog."""
        lag = self._registry_lag()
        if self._gate_closed:
            if lag == 0:
                sectors = self._sector_partitions()
                if sectors:
                    self.consumer.resume(*sectors)
                self._gate_closed = False
                log.debug("registry caught up: sector partitions resumed")
        elif lag is not None and lag > self.registry_gate_lag:
            log.info("registry backlog of %d messages: sector partitions wait", lag)
            self._close_gate()

    def _caught_up(self) -> bool:
        if self._inflight is not None or self._gate_closed or self._pending or not self._ready:
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
        except _Fenced:
            log.warning("another process stored offsets for this batch: re-reading them")
            self._rewind()
            return False
        except (psycopg.OperationalError, RetriableError) as exc:
            log.warning("batch not stored (%s); rewinding", exc)
            self._rewind(reconnect=True)
            return False
        for tp, recs in records.items():
            self._positions[tp] = recs[-1].offset + 1
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

    def _apply(self, records: dict, changes: list[Change], dead: list[tuple]) -> BatchResult:
        """The database side of a batch: one transaction, then the outbox produced. Touches
        no consumer state, so it can run on the database thread."""
        started = time.monotonic()
        result = BatchResult(messages=sum(len(r) for r in records.values()))
        ends = {
            (tp.topic, tp.partition): (recs[0].offset, recs[-1].offset + 1)
            for tp, recs in records.items()
        }
        conn = self.conn
        with conn.transaction():
            stored = state.lock_offsets(conn, self.group_id, ends)
            fresh = [c for c in changes if c.offset >= stored.get((c.tp.topic, c.tp.partition), -1)]
            dead = [d for d in dead if d[1] >= stored.get(d[0], -1)]
            result.skipped = len(changes) - len(fresh)
            batch = _Batch(self, conn)
            batch.apply_registry([c for c in fresh if c.source == REGISTRY])
            batch.apply_sectors([c for c in fresh if c.source != REGISTRY])
            events = batch.finish()
            outbox = [self._event_message(e) for e in events]
            outbox += [m for _, _, m in dead]
            ids = state.outbox_add(conn, outbox)
            next_offsets = {
                part: end for part, (_first, end) in ends.items() if end > stored.get(part, -1)
            }
            if not state.store_offsets(conn, self.group_id, next_offsets, stored):
                raise _Fenced()
        result.offsets = next_offsets
        if self._outbox_retry:
            # Earlier messages are still waiting: send everything in outbox order, so no
            # consumer sees a newer transition before an older one.
            self._outbox_retry = False
            self._drain_outbox()
        else:
            self._publish(list(zip(ids, outbox, strict=True)))
        result.applied = batch.applied
        result.stale = batch.stale
        result.dead_letters = len(dead)
        result.transitions = batch.transitions
        result.events = len(events)
        self._count(result, batch, dead, started)
        return result

    def _count(self, result: BatchResult, batch: _Batch, dead: list, started: float) -> None:
        for (source, outcome), n in batch.outcomes.items():
            metrics.RECONCILER_EVENTS.labels(sector=source, outcome=outcome).inc(n)
        for (_part, _off, _msg), source in zip(dead, batch.dead_sources(dead), strict=True):
            metrics.RECONCILER_EVENTS.labels(sector=source, outcome="dead_letter").inc()
        for source, n in batch.snapshot_reads.items():
            metrics.RECONCILER_SNAPSHOT_READS.labels(sector=source).inc(n)
        now_ms = time.time() * 1000
        observe = metrics.RECONCILE_LATENCY.observe
        times = batch.commit_times
        # At most LATENCY_SAMPLES observations per batch, evenly spread: the distribution is
        # what matters, and observing each of 10k events costs more than the rest of metrics.
        for commit_ms in times[:: max(1, len(times) // LATENCY_SAMPLES)]:
            observe(max(0.0, (now_ms - commit_ms) / 1000))
        for name in (
            "messages",
            "applied",
            "stale",
            "skipped",
            "dead_letters",
            "transitions",
            "events",
        ):
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

    def _commit_to_kafka(self, stored: dict[tuple[str, int], int]) -> None:
        """Commit the offsets a batch stored to Kafka too, asynchronously (see KafkaCommits)."""
        offsets = self.kafka_commits.to_commit(stored)
        if not offsets:
            return
        try:
            self.consumer.commit_async(offsets, callback=self.kafka_commits.done)
        except Exception as exc:  # noqa: BLE001 - lag exporters only: the database holds the truth
            self.kafka_commits.failed(exc)

    def _commit_to_kafka_again(self) -> None:
        """Every 2 s while any offset is unconfirmed: send those again (a last batch's failed
        commit would otherwise stay the group's offset until the next batch)."""
        offsets = self.kafka_commits.unacked(self._ready)
        if offsets:
            try:
                self.consumer.commit_async(offsets, callback=self.kafka_commits.done)
            except Exception as exc:  # noqa: BLE001 - lag exporters only
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

    # -- decoding -------------------------------------------------------------------------

    def _decode(self, records: dict) -> tuple[list[Change], list[tuple]]:
        """Changes in (topic, partition, offset) order, and dead letters as
        ((topic, partition), offset, outbox message)."""
        changes: list[Change] = []
        dead: list[tuple] = []
        decode = self._decode_message
        for tp in sorted(records):
            source = self.source_of[tp.topic]
            for msg in records[tp]:
                try:
                    if msg.value is None:
                        raise SkippableError("empty message (tombstone)")
                    name, event = decode(msg.value)
                    if name != "hub.ChangeEvent":
                        raise SkippableError(f"a {name} message on a change topic")
                    changes.append(self._change(source, event, tp, msg.offset))
                except SkippableError as exc:
                    dead.append(
                        ((tp.topic, tp.partition), msg.offset, self._dead_letter(tp, msg, exc))
                    )
        return changes, dead

    def _change(self, source: str, event: dict, tp: TopicPartition, offset: int) -> Change:
        op = event["op"]
        key = event["record_key"]
        if not key or len(key) > 256 or "\x00" in key:
            raise SkippableError("record_key is empty, longer than 256 characters or has a NUL")
        src = event["source"]
        commit_ms = src["commit_ts_ms"]
        ts = datetime.fromtimestamp(commit_ms / 1000, UTC) if commit_ms is not None else None
        after = event["after"]
        row: RegistryRow | SectorRow | None = None
        if op != "d":
            if after is None:
                raise SkippableError(f"op {op} without an after image", record_key=key)
            for name, limit in _LENGTHS:
                value = after[name]
                if value is not None and len(value) > limit:
                    raise SkippableError(
                        f"{name} longer than {limit} characters", column=name, record_key=key
                    )
            if after["sex"] not in _SEXES:
                raise SkippableError("sex is not M, F or null", column="sex", record_key=key)
            for name in _TEXT_FIELDS:
                value = after[name]
                if value is not None and "\x00" in value:  # PostgreSQL text cannot hold it
                    raise SkippableError(
                        f"{name} contains a NUL character", column=name, record_key=key
                    )
            if after["attributes"] and any("\x00" in v for v in after["attributes"].values()):
                raise SkippableError("an attribute contains a NUL character", record_key=key)
            if source == REGISTRY:
                row = self._registry_row(key, after, src, ts)
            else:
                row = self._sector_row(source, key, after, src, ts)
        snapshot = op == "r" or bool(src.get("snapshot"))
        return Change(source, op, key, row, src["lsn"], ts, commit_ms, tp, offset, snapshot)

    def _registry_row(self, key: str, after: dict, src: dict, ts: datetime | None) -> RegistryRow:
        cid = self.normalized(after["citizen_id"])[0]
        if cid is None or len(cid) > 32:
            raise SkippableError(
                "registry row without a usable citizen ID", column="citizen_id", record_key=key
            )
        legacy = self.normalized(after["legacy_id"])[0]
        if legacy is not None and len(legacy) > 32:
            legacy = None
        name = after["full_name"]
        return RegistryRow(
            cid,
            key,
            legacy,
            name,
            fold(name) or None,
            after["date_of_birth"],
            after["sex"],
            after["province_code"],
            after["address"],
            after["date_of_death"],
            after["attributes"] or {},
            (src["position"] or "")[:64] or None,
            src["lsn"],
            ts,
        )

    def _sector_row(
        self, sector: str, key: str, after: dict, src: dict, ts: datetime | None
    ) -> SectorRow:
        raw = after["citizen_id"]
        cid, info = self.normalized(raw)
        if info is None or info.kind == "invalid" or len(cid) > 32:
            cid = None
        name = after["full_name"]
        return SectorRow(
            sector,
            key,
            raw,
            cid,
            after["legacy_id"],
            name,
            fold(name) or None,
            after["date_of_birth"],
            after["sex"],
            after["province_code"],
            after["address"],
            after["status"],
            after["last_activity_date"],
            after["attributes"] or {},
            False,
            ts,
            src["lsn"],
        )

    def normalized(self, raw: str | None) -> tuple[str | None, IdInfo | None]:
        """(normalized ID, what the scheme reads from it) of a raw ID; cached, as the scheme
        is pure. ``(None, None)`` when there is no ID."""
        if raw is None:
            return _NO_ID
        found = self._id_cache.get(raw)  # most IDs are seen once: no KeyError per miss
        if found is not None:
            return found
        if len(self._id_cache) > 200_000:
            self._id_cache.clear()
        norm = self.scheme.normalize(raw)
        found = self._id_cache[raw] = (norm, None if norm is None else self.scheme.parse(norm))
        return found

    def id_info(self, raw: str | None) -> IdInfo | None:
        """What the ID scheme reads from a raw ID (None when there is no ID)."""
        return self.normalized(raw)[1]

    def _dead_letter(self, tp: TopicPartition, msg, exc: SkippableError) -> tuple:
        reason = exc.reason
        category = "undecodable" if isinstance(exc, AvroDecodeError) else "bad_shape"
        metrics.DEAD_LETTERS.labels(stage="reconciler", reason=category).inc()
        log.warning("dead letter %s[%d]@%d: %s", tp.topic, tp.partition, msg.offset, reason)
        value = self._dlq_encoder.encode(
            {
                "stage": "reconciler",
                "source": tp.topic,
                "record_key": exc.record_key,
                "column": exc.column,
                "reason": reason,
                "topic": tp.topic,
                "partition": tp.partition,
                "offset": msg.offset,
                "payload": msg.value,
                "ts_ms": int(time.time() * 1000),
            }
        )
        return (self.topics.dlq, msg.key, value)

    def _event_message(self, event: dict) -> tuple[str, bytes, bytes]:
        cid = self.scheme.normalize(event.get("citizen_id"))
        key = cid if cid else f"{event['sector']}:{event['record_key']}"
        return (self.topics.mismatches, key.encode(), self._event_encoder.encode(event))

    # -- outbox ---------------------------------------------------------------------------

    def _publish(self, messages: list[tuple[int, tuple[str, bytes | None, bytes]]]) -> None:
        """Produce committed outbox messages, wait for the acknowledgements, forget them."""
        if not messages:
            return
        try:
            futures = [
                (i, self.producer.send(topic, key=key, value=value))
                for i, (topic, key, value) in messages
            ]
            self.producer.flush()
        except KafkaError as exc:
            # Committed state is safe; the messages stay in the outbox for the next drain.
            self._outbox_retry = True
            log.warning("outbox not produced (%s); kept for a retry", type(exc).__name__)
            return
        done = [i for i, f in futures if f.succeeded()]
        if len(done) < len(futures):
            self._outbox_retry = True
            log.warning(
                "%d outbox messages not acknowledged; kept for a retry", len(futures) - len(done)
            )
        state.outbox_delete(self.conn, done)

    def _drain_outbox(self) -> None:
        """Produce what a previous process committed but did not get to produce."""
        after = 0
        while True:
            rows = state.outbox_pending(self.conn, after)
            if not rows:
                return
            log.info("producing %d messages left in the outbox", len(rows))
            self._publish([(i, (t, k, v)) for i, t, k, v in rows])
            if self._outbox_retry:
                return  # the broker is still failing: keep the order, retry later
            after = rows[-1][0]

    # -- figures --------------------------------------------------------------------------

    def _export_lag(self) -> None:
        seen = set()
        for tp in self._ready:
            high = self.consumer.highwater(tp)
            pos = self._positions.get(tp)
            if high is None or pos is None:
                continue
            labels = (tp.topic, str(tp.partition))
            metrics.CONSUMER_LAG.labels(*labels).set(max(0, high - pos))
            seen.add(labels)
        for labels in self._lag_labels - seen:
            metrics.CONSUMER_LAG.remove(*labels)
        self._lag_labels = seen

    def _background_conn(self) -> psycopg.Connection:
        """The connection of the figures thread (gauges, planner statistics), opened on
        first use: what runs over it never holds a batch up."""
        if self._figures_conn is None or self._figures_conn.closed:
            self._figures_conn = psycopg.connect(
                psycopg_conninfo(self.config.database.url),
                autocommit=True,
                application_name="hub-reconciler-figures",
                connect_timeout=10,
            )
        return self._figures_conn

    def refresh_figures(self) -> None:
        """Set ``hub_mismatches_open`` and ``hub_records_verified_ratio`` from the database and
        add a ``stats_snapshots`` row per sector when the last is older than the interval."""
        try:
            conn = self._background_conn()
            counts, open_counts = state.figure_counts(conn)
            state.write_stats_snapshot(conn, counts, open_counts, self.snapshot_interval_s)
        except psycopg.Error as exc:
            log.warning("figures not refreshed: %s", str(exc).strip())
            if self._figures_conn is not None:
                self._figures_conn.close()
                self._figures_conn = None
            return
        seen = set()
        for sector, rule, severity, n in open_counts:
            metrics.MISMATCHES_OPEN.labels(sector, rule, severity).set(n)
            seen.add((sector, rule, severity))
        for labels in self._open_labels - seen:
            metrics.MISMATCHES_OPEN.labels(*labels).set(0)
        self._open_labels |= seen
        for sector in self.config.sectors:
            total, verified = counts.get(sector, (0, 0))
            metrics.RECORDS_VERIFIED.labels(sector).set(verified / total if total else 0.0)


class _Batch:
    """The working set of one batch inside its transaction (see the module docstring)."""

    def __init__(self, owner: Reconciler, conn: psycopg.Connection):
        self.owner = owner
        self.conn = conn
        self.changed_ids: set[str] = set()
        self.changed_legacy: set[str] = set()  # legacy numbers of the registry rows changed
        self.outcomes: Counter[tuple[str, str]] = Counter()
        self.commit_times: list[int] = []  # of streamed changes only: latency
        self.snapshot_reads: Counter[str] = Counter()
        self.applied = self.stale = self.transitions = 0
        self.ledger = Ledger()
        self.records: dict[SectorKey, SectorRow] = {}
        self.stored: dict[SectorKey, SectorRow] = {}
        self.matches: dict[SectorKey, RegistryRow | None] = {}
        self.judged_at: dict[SectorKey, int] = {}  # the records judged, and at which step
        self.step = 0

    def _outcome(self, change: Change, outcome: str) -> None:
        self.outcomes[(change.source, outcome)] += 1
        if outcome == "applied":
            self.applied += 1
            if change.snapshot:
                self.snapshot_reads[change.source] += 1
            elif change.commit_ms is not None:
                self.commit_times.append(change.commit_ms)
        elif outcome == "stale":
            self.stale += 1

    def dead_sources(self, dead: list) -> list[str]:
        return [self.owner.source_of[part[0]] for part, _off, _msg in dead]

    # -- registry -------------------------------------------------------------------------

    def apply_registry(self, changes: list[Change]) -> None:
        """Apply registry changes to the replica; remember which citizen IDs changed."""
        if not changes:
            return
        keys = list({c.record_key for c in changes})
        original, tombs = state.registry_by_record_keys(self.conn, keys)
        current: dict[str, RegistryRow | None] = dict(original)
        put_tombs: dict[str, tuple] = {}
        drop_tombs: set[str] = set()
        for c in changes:
            old = current.get(c.record_key)
            ref = (old.source_lsn, old.source_ts) if old is not None else tombs.get(c.record_key)
            if ref is not None and is_older(c.lsn, c.ts, *ref):
                self._outcome(c, "stale")
                continue
            self._outcome(c, "applied")
            if c.op == "d":
                current[c.record_key] = None
                tombs[c.record_key] = put_tombs[c.record_key] = (c.lsn, c.ts)
                drop_tombs.discard(c.record_key)
                if old is not None:
                    self._changed(old)
                continue
            new = c.row
            current[c.record_key] = new
            if tombs.pop(c.record_key, None) is not None:
                put_tombs.pop(c.record_key, None)
                drop_tombs.add(c.record_key)
            if not new.same_facts(old):
                self._changed(new)
                if old is not None:
                    self._changed(old)
        cleared = [
            k
            for k, old in original.items()
            if current.get(k) is None or current[k].citizen_id != old.citizen_id
        ]
        # One row per citizen ID (two registry rows claiming one ID: the last one listed wins).
        rows = list(
            {
                r.citizen_id: r
                for k, r in current.items()
                if r is not None and not same_state(r, original.get(k))
            }.values()
        )
        state.replace_registry(self.conn, cleared, rows)
        state.write_tombstones(
            self.conn,
            [(REGISTRY, k, lsn, ts) for k, (lsn, ts) in put_tombs.items()],
            [(REGISTRY, k) for k in drop_tombs],
        )

    def _changed(self, row: RegistryRow) -> None:
        """Every sector record carrying one of ``row``'s IDs is judged again."""
        self.changed_ids.add(row.citizen_id)
        if row.legacy_id:
            self.changed_ids.add(row.legacy_id)
            self.changed_legacy.add(row.legacy_id)

    # -- sectors --------------------------------------------------------------------------

    def apply_sectors(self, changes: list[Change]) -> None:
        """Apply sector changes in order and re-evaluate everything they (and the registry
        changes before them) touch."""
        if not changes and not self.changed_ids:
            return
        owner = self.owner
        # With several reconcilers, the citizen holding a legacy number and the sector
        # records carrying it are on different partitions, possibly in another process
        # applying its batch now: lock the batch's legacy numbers before reading either
        # side, so of two batches the second waits and reads what the first committed.
        locked: set[str] = set()
        if owner.lock_legacy:
            locked = self.changed_legacy | {
                c.row.citizen_id
                for c in changes
                if c.row is not None and c.row.citizen_id and _is_legacy(owner, c.row)
            }
            state.lock_legacy_ids(self.conn, locked)
        keys = {(c.source, c.record_key) for c in changes}
        unique = {s for s, rules in owner.rules.items() if rules.unique_citizen}
        groups = {
            (c.source, c.row.citizen_id)
            for c in changes
            if c.source in unique and c.row is not None and c.row.citizen_id
        }
        records, tombs = state.sector_records_for(self.conn, keys, self.changed_ids, groups, unique)
        self.records = records
        self.stored = dict(records)  # the records as stored before this batch
        current_ids: set[str] = set()
        legacy_ids: set[str] = set()
        for rec in [*records.values(), *(c.row for c in changes if c.row is not None)]:
            if rec.citizen_id:
                (legacy_ids if _is_legacy(owner, rec) else current_ids).add(rec.citizen_id)
        if owner.lock_legacy and not legacy_ids <= locked:
            # A record's stored version carries a number the changes do not (a delete, an
            # ID corrected away from a legacy number). Taken after the first lock: a
            # deadlock with another batch is possible here, and PostgreSQL breaks it by
            # failing one batch, which is re-read from its stored offsets.
            state.lock_legacy_ids(self.conn, legacy_ids - locked)
        self.by_id, self.by_legacy = state.registry_for_ids(self.conn, current_ids, legacy_ids)
        known = [k for k in keys if k in records or k in tombs]
        known += [k for k in records if k not in keys]
        self.ledger = Ledger(load_mismatches(self.conn, known))
        self.groups: dict[tuple[str, str], set[str]] = {}
        for rec in records.values():
            if rec.citizen_id:
                self.groups.setdefault((rec.sector, rec.citizen_id), set()).add(rec.record_key)
        self.dirty: set[SectorKey] = set()  # changed by a change event: the row is rewritten
        self.reverified: set[SectorKey] = set()  # only ``verified`` moved
        self.deleted: set[SectorKey] = set()
        # Duplicate groups of unique sectors: the step at which each group's membership
        # (IDs, active-ness) last changed, and each group's active keys as of that change.
        self.group_changed: dict[tuple[str, str], int] = {}
        self.actives: dict[tuple[str, str], tuple[int, list[str]]] = {}
        put_tombs: dict[SectorKey, tuple] = {}
        drop_tombs: set[SectorKey] = set()

        # Registry changes first: every record carrying a changed ID is judged again.
        if self.changed_ids:
            for key in sorted(k for k, r in records.items() if r.citizen_id in self.changed_ids):
                self.evaluate(key)

        for c in changes:
            key = (c.source, c.record_key)
            old = records.get(key)
            ref = (old.source_lsn, old.source_ts) if old is not None else tombs.get(key)
            if ref is not None and is_older(c.lsn, c.ts, *ref):
                self._outcome(c, "stale")
                continue
            self._outcome(c, "applied")
            if old is not None:
                self._ungroup(old)
            new = None
            if c.op == "d":
                records.pop(key, None)
                self.deleted.add(key)
                tombs[key] = put_tombs[key] = (c.lsn, c.ts)
                drop_tombs.discard(key)
                self.ledger.record_deleted(key)
            else:
                new = c.row
                new.verified = old.verified if old is not None else False
                records[key] = new
                self.deleted.discard(key)
                if not same_state(new, old):  # an identical re-delivery rewrites nothing
                    self.dirty.add(key)
                if tombs.pop(key, None) is not None:
                    put_tombs.pop(key, None)
                    drop_tombs.add(key)
                if new.citizen_id:
                    self.groups.setdefault((new.sector, new.citizen_id), set()).add(c.record_key)
            self.step += 1
            if c.source in unique and _membership_changed(old, new):
                for rec in (old, new):
                    if rec is not None and rec.citizen_id:
                        self.group_changed[(rec.sector, rec.citizen_id)] = self.step
            if new is None:
                continue
            if new.citizen_id and (new.sector, new.citizen_id) in self.group_changed:
                self.judged_at.pop(key, None)  # judged below, with the rest of its group
            else:
                self.evaluate(key)

        # Every record of a duplicate group whose membership changed is judged once, against
        # the group as the batch leaves it — not again at each change, which made a batch
        # loading a large group cost the cube of its size (and a history row per step).
        for group, changed_at in sorted(self.group_changed.items()):
            for other in sorted(self.groups.get(group, ())):
                if self.judged_at.get((group[0], other), -1) < changed_at:
                    self.evaluate((group[0], other))

        self._suggest()
        state.write_sector_records(
            self.conn,
            [records[k] for k in sorted(self.dirty) if k in records],
            sorted(self.deleted),
        )
        # Records re-judged only (registry change, duplicate group): their row may have been
        # changed meanwhile by another reconciler (a legacy ID lives in another partition),
        # so only the flag is written.
        state.write_verified(
            self.conn,
            [
                (k[0], k[1], records[k].verified)
                for k in sorted(self.reverified - self.dirty)
                if k in records
            ],
        )
        state.write_tombstones(
            self.conn,
            [(s, k, lsn, ts) for (s, k), (lsn, ts) in put_tombs.items()],
            sorted(drop_tombs),
        )

    def _ungroup(self, rec: SectorRow) -> None:
        if rec.citizen_id:
            group = self.groups.get((rec.sector, rec.citizen_id))
            if group is not None:
                group.discard(rec.record_key)

    def evaluate(self, key: SectorKey) -> None:
        """Judge one record as it stands now and record the transitions."""
        rec = self.records[key]
        owner = self.owner
        rules = owner.rules.get(rec.sector)
        if rules is None:  # a sector dropped from the config: its records are left alone
            return
        info = owner.id_info(rec.citizen_id_raw)
        match = None
        if info is not None and rec.citizen_id:
            if info.kind == "legacy":
                match = self.by_legacy.get(rec.citizen_id)
            elif info.kind == "current":
                match = self.by_id.get(rec.citizen_id)
        duplicates: list[str] = []
        if rules.unique_citizen and rec.citizen_id:
            actives = self._actives((rec.sector, rec.citizen_id))
            duplicates = [other for other in actives if other != rec.record_key]
        findings = evaluate(rec, match, info, rules, duplicates=duplicates)
        self.ledger.observe(
            key,
            findings,
            citizen_id=rec.citizen_id_raw,
            province_code=rec.province_code or (match.province_code if match else None),
            disabled=rules.disabled,
        )
        self.matches[key] = match
        self.judged_at[key] = self.step
        verified = match is not None and not self.ledger.has_open(key)
        if verified != rec.verified:
            rec.verified = verified
            self.reverified.add(key)

    def _actives(self, group: tuple[str, str]) -> list[str]:
        """The active records of a duplicate group, sorted; computed once per membership
        change of the group (each of its records is judged against the same list)."""
        sector = group[0]
        members = self.groups.get(group, ())
        if len(members) < 2:  # most IDs: a group of one has nothing worth caching
            return [k for k in members if is_active(self.records[(sector, k)].status)]
        version = self.group_changed.get(group, 0)
        cached = self.actives.get(group)
        if cached is None or cached[0] != version:
            keys = sorted(k for k in members if is_active(self.records[(sector, k)].status))
            cached = self.actives[group] = (version, keys)
        return cached[1]

    def _suggest(self) -> None:
        """Registry candidates for open ID_MISSING / ID_NOT_IN_REGISTRY / ID_LEGACY
        mismatches, through the sector's blocking keys (``reconciliation.suggestions``: one
        query per key for the batch, one for the citizens shortlisted), scored with parts.

        Found when the mismatch opens or reopens, and again when what they are found by
        changed: the record's ID, name or birth date, or (through a registry change) the
        citizen holding its ID. A change of other fields (status, address, activity: most
        updates) keeps them; a citizen added to the registry later does not refresh them.
        """
        rows = self.ledger.suggestion_rows(sorted(self.judged_at), SUGGESTING_RULES)
        if not rows:
            return
        waiting: list[tuple[MismatchRow, list[dict]]] = []
        probes: list[Probe] = []
        for row in rows:
            key = (row.sector, row.record_key)
            rec = self.records.get(key)
            if rec is None or (row.suggestions is not None and not self._moved(key, rec)):
                continue
            held = self._held(row, rec)
            if not rec.name_folded:
                self.ledger.set_suggestions(row, held)
                continue
            info = (
                self.owner.id_info(rec.citizen_id_raw) if row.rule == "ID_NOT_IN_REGISTRY" else None
            )
            encoded = info is not None and info.kind == "current"
            probes.append(
                Probe(
                    name_folded=rec.name_folded,
                    date_of_birth=rec.date_of_birth,
                    sex=rec.sex,
                    province_code=rec.province_code,
                    id_birth_year=info.birth_year if encoded else None,
                    id_sex=info.sex if encoded else None,
                    keys=self.owner.candidate_keys.get(row.sector, CANDIDATE_KEYS),
                )
            )
            waiting.append((row, held))
        if not probes:
            return
        found = find_candidates(
            state.PgRegistryIndex(self.conn),
            probes,
            exclude=[[s["citizen_id"] for s in held] for _row, held in waiting],
            limit=MAX_SUGGESTIONS,
        )
        for (row, held), picks in zip(waiting, found, strict=True):
            out = held + [s.as_dict() for s in picks[: MAX_SUGGESTIONS - len(held)]]
            self.ledger.set_suggestions(row, out)

    def _moved(self, key: SectorKey, rec: SectorRow) -> bool:
        """Whether what a record's suggestions are found by changed in this batch."""
        stored = self.stored.get(key)
        return (
            stored is None
            or stored.name_folded != rec.name_folded
            or stored.date_of_birth != rec.date_of_birth
            or stored.citizen_id_raw != rec.citizen_id_raw
            or (rec.citizen_id is not None and rec.citizen_id in self.changed_ids)
        )

    def _held(self, row: MismatchRow, rec: SectorRow) -> list[dict]:
        """For ID_LEGACY, the citizen holding the legacy number comes first."""
        match = self.matches.get((row.sector, row.record_key))
        if row.rule != "ID_LEGACY" or match is None:
            return []
        probe = Probe(rec.name_folded or "", rec.date_of_birth, rec.sex, rec.province_code)
        citizen = Citizen(
            match.citizen_id, match.full_name, match.name_folded, match.date_of_birth,
            match.sex, match.province_code,
        )  # fmt: skip
        probability, parts = score(probe, citizen)
        held = Suggestion(match.citizen_id, match.full_name, probability, parts, ["legacy_id"])
        return [held.as_dict()]

    def finish(self) -> list[dict]:
        """Write the mismatch transitions; return the events to publish."""
        self.transitions = self.ledger.transitions
        events = self.ledger.flush(self.conn)
        if self.transitions:
            log.debug("%d mismatch transitions", self.transitions)
        return events


def _is_legacy(owner: Reconciler, row: SectorRow) -> bool:
    """Whether the record's ID is a legacy number (it finds its citizen by legacy_id)."""
    info = owner.id_info(row.citizen_id_raw)
    return info is not None and info.kind == "legacy"


def _membership_changed(old: SectorRow | None, new: SectorRow | None) -> bool:
    """Whether a change can alter a duplicate group: ID or active-ness moved."""
    old_id = old.citizen_id if old is not None else None
    new_id = new.citizen_id if new is not None else None
    old_active = old is not None and is_active(old.status)
    new_active = new is not None and is_active(new.status)
    return (old_id, old_active) != (new_id, new_active) and bool(old_id or new_id)

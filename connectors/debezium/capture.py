"""``capture: debezium``: reads an existing Debezium connector's change topics with a
consumer of its own and re-publishes each change, mapped, to the hub's change topic."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from kafka import TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from connectors.base import CaptureMode, CheckResult, ConnectorContext, register_mode
from connectors.debezium.changes import ChangeMapper
from connectors.events import Batch
from connectors.state import hub_engine, load_offset, save_offset, set_state
from hub.config import DebeziumConfig, HubConfig, KafkaConfig, SourceConfig
from hub.errors import RetriableError
from hub.kafka import make_consumer, topic_partitions

if TYPE_CHECKING:
    from kafka import KafkaConsumer

    from connectors.mapping import RecordMapper

log = logging.getLogger(__name__)

POLL_TIMEOUT_MS = 500
"""How long one read waits for new Debezium messages: the latency floor is the broker's."""
TOPICS_WAIT_S = 10.0


def debezium_kafka(kafka: KafkaConfig, cfg: DebeziumConfig) -> KafkaConfig:
    """The Kafka the Debezium topics are on: the hub's, or ``debezium.bootstrap_servers``
    with the hub's security settings."""
    if cfg.bootstrap_servers is None:
        return kafka
    return kafka.model_copy(update={"bootstrap_servers": cfg.bootstrap_servers})


def group_id(name: str, cfg: DebeziumConfig) -> str:
    return cfg.group_id or f"hub-debezium-{name}"


def offset_key(tp: TopicPartition) -> str:
    return f"{tp.topic}:{tp.partition}"


def committed_offset(consumer: KafkaConsumer, tp: TopicPartition) -> int | None:
    """The consumer group's committed offset of ``tp`` (None when it has none)."""
    meta = consumer.committed(tp)
    return meta if isinstance(meta, int) or meta is None else meta.offset


def open_consumer(kafka: KafkaConfig, name: str, cfg: DebeziumConfig, **overrides: Any):
    """A consumer of the Debezium topics' cluster (no subscription; offsets committed by
    hand): RetriableError when the brokers do not answer."""
    try:
        return make_consumer(
            debezium_kafka(kafka, cfg),
            group_id=group_id(name, cfg),
            enable_auto_commit=False,
            max_poll_records=cfg.batch_size,
            client_id=f"hub-debezium-{name}",
            **overrides,
        )
    except KafkaError as exc:
        raise RetriableError(f"debezium kafka: {exc}") from exc


@register_mode
class DebeziumCapture(CaptureMode):
    """Reads ``debezium.topics`` partition by partition, in offset order.

    Every message goes through the converter (JSON with or without schemas, or Avro with
    the registry's schema), the envelope (``connectors.debezium.envelope``) and the
    source's ``columns:`` mapping; the event goes to ``<prefix>.changes.<source>`` keyed by
    the normalized citizen ID. A message that cannot be mapped is a dead letter; a
    tombstone or a transaction-metadata event is passed over.

    Resume position: the next offset of every Debezium partition, stored in
    ``connector_offsets`` once the hub's topic acknowledged the batch (and then committed to
    the consumer group ``debezium.group_id``, for Kafka's own lag tools). A restart seeks
    to the stored offsets; a partition without one starts from the group's committed offset,
    else the earliest retained: at least once. The partitions are those the topics have at
    :meth:`open` (a restart picks up added partitions).
    """

    capture = "debezium"
    reads_database = False

    def __init__(self, ctx: ConnectorContext):
        super().__init__(ctx)
        assert ctx.source.debezium is not None
        self.cfg = ctx.source.debezium
        self.engine = hub_engine(ctx.hub_db_url)
        self.consumer: KafkaConsumer | None = None
        self.changes: ChangeMapper | None = None
        self._positions: dict[TopicPartition, int] = {}
        """The committed next offset per partition (the resume position)."""

    # ---------------------------------------------------------------- the contract

    def open(self) -> None:
        self.changes = ChangeMapper.for_source(self.ctx.mapper)
        consumer = open_consumer(self.ctx.config.kafka, self.ctx.name, self.cfg)
        self.consumer = consumer
        try:
            partitions = topic_partitions(consumer, self.cfg.topics, self.ctx.stopping,
                                          TOPICS_WAIT_S)  # fmt: skip
            missing = sorted(set(self.cfg.topics) - {tp.topic for tp in partitions})
            if missing:
                raise RetriableError(
                    f"Debezium topic {', '.join(missing)} does not exist (yet): waiting for it"
                )
            ordered = sorted(partitions)
            consumer.assign(ordered)
            stored = load_offset(self.engine, self.ctx.name) or {}
            self._positions = {}
            for tp in ordered:
                offset = stored.get(offset_key(tp))
                if offset is None:
                    offset = committed_offset(consumer, tp)
                if offset is None:
                    consumer.seek_to_beginning(tp)
                else:
                    consumer.seek(tp, int(offset))
                    self._positions[tp] = int(offset)
            self._warn_if_lost(consumer)
        except KafkaError as exc:
            self.close()
            raise RetriableError(f"debezium kafka: {exc}") from exc
        except BaseException:
            self.close()
            raise

    def _warn_if_lost(self, consumer: KafkaConsumer) -> None:
        """Say so when retention deleted messages after the resume position: the consumer
        goes on from the earliest retained one, and those changes never reach the hub."""
        if not self._positions:
            return
        begins = consumer.beginning_offsets(list(self._positions))
        for tp, offset in self._positions.items():
            if offset < begins[tp]:
                log.error("%s: %s/%d: %d Debezium messages after the stored position were "
                          "deleted by retention before the hub read them; re-read the table "
                          "with a Debezium snapshot", self.ctx.name, tp.topic, tp.partition,
                          begins[tp] - offset)  # fmt: skip

    def next_batch(self) -> Batch:
        assert self.consumer is not None and self.changes is not None
        consumer = self.consumer
        try:
            polled = consumer.poll(timeout_ms=POLL_TIMEOUT_MS, max_records=self.cfg.batch_size)
        except KafkaError as exc:
            raise RetriableError(f"debezium kafka: {exc}") from exc
        batch = Batch()
        advanced = dict(self._positions)
        count = 0
        add = self.changes.add
        for tp, records in polled.items():
            for record in records:
                add(batch, tp.topic, tp.partition, record.offset, record.value)
                advanced[tp] = record.offset + 1
            count += len(records)
        if count:
            batch.commit = advanced
            batch.position = _position(advanced)
        batch.caught_up = count < self.cfg.batch_size and self._at_end(advanced)
        return batch

    def _at_end(self, positions: dict[TopicPartition, int]) -> bool:
        """Every partition read up to its end offset (one ListOffsets request)."""
        assert self.consumer is not None
        try:
            ends = self.consumer.end_offsets(list(self.consumer.assignment()))
        except KafkaError as exc:
            raise RetriableError(f"debezium kafka: {exc}") from exc
        return all(positions.get(tp, self._fetch_position(tp)) >= end for tp, end in ends.items())

    def _fetch_position(self, tp: TopicPartition) -> int:
        assert self.consumer is not None
        return self.consumer.position(tp)

    def commit(self, batch: Batch) -> None:
        positions = batch.commit
        if not positions:
            return
        with self.engine.begin() as conn:
            save_offset(conn, self.ctx.name, {offset_key(tp): n for tp, n in positions.items()})
            if batch.position is not None:
                set_state(conn, self.ctx.name, position=batch.position[:128])
        self._positions = dict(positions)
        self._commit_group(positions)

    def _commit_group(self, positions: dict[TopicPartition, int]) -> None:
        """The group's offsets follow the stored ones (best effort: the hub's are the resume
        position; the group's are for Kafka's tools and a hub database restored empty)."""
        assert self.consumer is not None
        try:
            self.consumer.commit({tp: OffsetAndMetadata(n, "", -1) for tp, n in positions.items()})
        except KafkaError as exc:
            log.debug("%s: group offsets not committed: %s", self.ctx.name, exc)

    def resnapshot(self) -> None:
        """Read the topics again from their earliest retained offsets (a compacted topic
        then holds every row's last change). A re-read of the database itself is Debezium's
        to do: signal an incremental snapshot to its connector."""
        assert self.consumer is not None
        self.consumer.seek_to_beginning()
        self._positions = {}
        with self.engine.begin() as conn:
            save_offset(conn, self.ctx.name, {})

    def idle_interval(self) -> float:
        """Each read already waits up to :data:`POLL_TIMEOUT_MS` for new messages."""
        return 0.05

    def close(self) -> None:
        consumer, self.consumer = self.consumer, None
        if consumer is not None:
            try:
                consumer.close(autocommit=False)
            except Exception:  # noqa: BLE001 - closing after a failure may fail again
                log.debug("closing the Debezium consumer", exc_info=True)

    # ---------------------------------------------------------------- operations

    @classmethod
    def check_source(
        cls, config: HubConfig, name: str, source: SourceConfig, mapper: RecordMapper
    ) -> list[CheckResult]:
        """Topics and partitions, the registry (Avro), a sample mapped, the lag."""
        from connectors.debezium.check import check_debezium

        return check_debezium(config, name, source, mapper)

    @classmethod
    def drop(cls, name: str, source: SourceConfig) -> list[str]:
        """Nothing is held at the source; the consumer group's offsets stay in Kafka."""
        assert source.debezium is not None
        return [
            f"nothing held at the source; consumer group {group_id(name, source.debezium)} "
            "keeps its committed offsets (kafka-consumer-groups.sh --delete --group … removes "
            "them)"
        ]


def _position(positions: dict[TopicPartition, int]) -> str:
    """``topic/partition@next-offset`` of every partition read, for the status."""
    return " ".join(f"{tp.topic}/{tp.partition}@{n}" for tp, n in sorted(positions.items()))


__all__: Sequence[str] = ["DebeziumCapture"]

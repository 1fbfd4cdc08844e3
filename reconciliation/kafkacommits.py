"""The group's offsets committed to Kafka after each database commit, for lag exporters
(:class:`KafkaCommits`); the reconciler's own truth is the offsets in the hub database."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from kafka import TopicPartition
from kafka.structs import OffsetAndMetadata

log = logging.getLogger("reconciliation.engine")  # its records keep the engine's name


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

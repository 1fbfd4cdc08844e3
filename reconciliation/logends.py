"""Which stored offsets lie past a partition's log end (``hub_reconciler_offsets_beyond_end``).

A stored offset past the end means the broker lost the partition's data (a wiped log
directory, a topic deleted and created again): the offsets in the hub database no longer
name positions in the log. The reconciler does not guess what to do: it holds such a
partition paused, says so once, and resumes it when an operator has rewritten its offset
(``hub reconcile --reset-offsets earliest|latest``; docs/operations.md, "The broker lost
its topics").
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection, Iterable

from kafka import TopicPartition
from kafka.errors import BrokerResponseError
from kafka.errors import RetriableError as KafkaRetriable

from hub.kafka import KAFKA, UNREACHABLE
from hub.metrics import OFFSETS_BEYOND_END

log = logging.getLogger(__name__)

KAFKA_ROLE = "reconciler"


class LogEnds:
    """Probes log ends and tracks the partitions whose stored offset is past theirs.

    ``stored`` is the last stored offset known per partition (from the seek on assignment and
    each committed batch); ``held`` the partitions paused because it is past the end. Use it
    on the consumer's thread.
    """

    def __init__(self, group_id: str):
        self.group_id = group_id
        self.stored: dict[TopicPartition, int] = {}
        self.held: set[TopicPartition] = set()
        self.polled: dict[TopicPartition, int] = {}
        """Per partition, the offset after the last record a poll returned: the log reaches
        at least that far (see :meth:`known_ends`)."""

    def saw(self, records: dict) -> None:
        """Remember where the records of a poll (``{tp: [records]}``) end, per partition."""
        for tp, recs in records.items():
            if recs:
                self.polled[tp] = recs[-1].offset + 1

    def known_ends(self, consumer, partitions: Collection[TopicPartition]) -> dict:
        """The log ends of ``partitions`` as the consumer's fetches last reported them (no
        request: kafka-python's ``end_offsets`` could hang past its timeout after a broker
        pause), and at least the offset after the last record polled from each.

        A fetch response's highwater can lag behind the records it carries: the broker
        takes it before reading the log, which may have grown meanwhile (a fetch at offset
        0 reported highwater 1 with records 0-8, Apache Kafka 4.2, kafka-python 3.0.12).
        Taken alone, such a highwater puts a caught-up partition's stored offset "past the
        log end", and the partition is held for good: none of its later changes reach the
        mismatch store (the pattern of issue #20: from a broker restart on, the loss grew
        by a quarter of the changes, one partition of four). A log the broker really lost
        is read again from its start (``auto_offset_reset``): the records polled then end
        below the stored offset, and the partition is still held."""
        ends = {}
        for tp in partitions:
            end = consumer.highwater(tp)
            if end is None:
                continue
            polled = self.polled.get(tp)
            if polled is not None and polled > end:
                log.debug("highwater %d of %s[%d] is behind the records polled (to %d)",
                          end, tp.topic, tp.partition, polled)  # fmt: skip
                end = polled
            ends[tp] = end
        return ends

    def unreachable(self, exc: BaseException) -> None:
        """A Kafka request of the consumer loop failed with ``exc``."""
        answered = isinstance(exc, BrokerResponseError)  # the broker answered: reachable
        if isinstance(exc, UNREACHABLE) or (isinstance(exc, KafkaRetriable) and not answered):
            KAFKA.failed(KAFKA_ROLE, self.group_id, exc)
        else:
            log.debug("Kafka request failed: %s", exc)

    def is_beyond(self, tp: TopicPartition, offset: int, ends: dict | None) -> bool:
        """Whether ``offset``, stored for ``tp``, is past its end; if so ``tp`` is held, and
        reported the first time."""
        end = (ends or {}).get(tp)
        if end is None or offset <= end:
            return False
        if tp not in self.held:
            self.held.add(tp)
            log.error(
                "stored offset %d of %s[%d] (group %s) is past the partition's log end %d: "
                "the broker lost the topic's data (log directory wiped, topic re-created?). "
                "Nothing is consumed from it until `hub reconcile --reset-offsets "
                "earliest|latest --topic %s` rewrites the stored offsets "
                '(docs/operations.md, "The broker lost its topics")',
                offset,
                tp.topic,
                tp.partition,
                self.group_id,
                end,
                tp.topic,
            )
        OFFSETS_BEYOND_END.set(len(self.held))
        return True

    def beyond(
        self, ends: dict | None, partitions: Iterable[TopicPartition]
    ) -> set[TopicPartition]:
        """Of ``partitions`` (being consumed), those whose stored offset is now past the end."""
        return {
            tp
            for tp in partitions
            if tp in self.stored and self.is_beyond(tp, self.stored[tp], ends)
        }

    def released(self, stored: dict[tuple[str, int], int], ends: dict) -> set[TopicPartition]:
        """Held partitions whose offset (re-read from the database) is no longer past the end:
        an operator reset it. They leave ``held``; the caller seeks and resumes them."""
        back = set()
        for tp in self.held:
            offset = stored.get((tp.topic, tp.partition))
            end = ends.get(tp)
            if end is not None and (offset is None or offset <= end):
                back.add(tp)
                log.info(
                    "stored offset of %s[%d] is %s, log end %d: consuming it again",
                    tp.topic,
                    tp.partition,
                    "gone (from the beginning)" if offset is None else offset,
                    end,
                )
        self.forget(back)
        return back

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        """Partitions this process no longer holds (revoked, or released)."""
        for tp in partitions:
            self.stored.pop(tp, None)
            self.polled.pop(tp, None)
            self.held.discard(tp)
        OFFSETS_BEYOND_END.set(len(self.held))


RESET_MEANING = {
    "earliest": "every change still on the topics is applied again from their first offset: "
    "idempotent (records already current stay, no mismatch or history row is duplicated)",
    "latest": "the changes now on the topics are skipped; only changes produced from now on "
    "are applied (re-snapshot the connectors, `hub connector resnapshot NAME`, if the sector "
    "databases changed meanwhile)",
}
"""What ``hub reconcile --reset-offsets`` implies, by target."""


def log_offsets(kafka, topics: list[str], where: str) -> dict[TopicPartition, int]:
    """Each partition's earliest or latest offset (``where``) on the broker, per topic in
    ``topics`` (created first if missing, as a reconciler would at start)."""
    from hub.kafka import ensure_topics, make_consumer, topic_partitions

    ensure_topics(kafka, topics)
    consumer = make_consumer(kafka, client_id="hub-reset-offsets")
    try:
        parts = sorted(topic_partitions(consumer, topics, threading.Event(), timeout_s=10))
        ask = consumer.beginning_offsets if where == "earliest" else consumer.end_offsets
        return ask(parts, timeout_ms=15_000) if parts else {}
    finally:
        consumer.close(autocommit=False)

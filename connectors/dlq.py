"""Reading the dead-letter topic back: list letters, and replay connector letters by mapping
their stored source rows again with the current config."""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from kafka import TopicPartition
from kafka.errors import KafkaError

from connectors.delivery import Delivery
from connectors.events import Batch, EventBuilder
from connectors.mapping import RecordMapper, decode_row
from hub.avro.codec import AvroDecodeError, decode
from hub.config import HubConfig, KafkaConfig
from hub.errors import FatalError
from hub.idschemes import get_scheme
from hub.kafka import Topics, make_consumer

log = logging.getLogger(__name__)


def read_dead_letters(
    kafka: KafkaConfig, *, limit: int | None = None, source: str | None = None
) -> list[tuple[tuple[int, int], dict[str, Any]]]:
    """Dead letters as ``((partition, offset), record)``, newest first.

    With ``limit`` and no ``source`` only the last ``limit`` messages of each partition
    are read; otherwise the whole topic.
    """
    topic = Topics(kafka.topic_prefix).dlq
    try:
        consumer = make_consumer(kafka, enable_auto_commit=False, group_id=None)
    except KafkaError as exc:
        raise FatalError(f"kafka {kafka.bootstrap_servers}: {exc}") from exc
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            return []
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        end = consumer.end_offsets(tps)
        begin = consumer.beginning_offsets(tps)
        for tp in tps:
            start = begin[tp]
            if limit is not None and source is None:
                start = max(start, end[tp] - limit)
            consumer.seek(tp, start)
        # Read until the partitions stay quiet: end offsets are only a lower bound on some
        # brokers (tansu reports the last batch's base offset + 1).
        out: list[tuple[tuple[int, int], dict[str, Any]]] = []
        quiet = 0
        while quiet < 2 or any(consumer.position(tp) < end[tp] for tp in tps):
            polled = consumer.poll(timeout_ms=500)
            if not polled:
                quiet += 1
                if quiet > 20:
                    break
                continue
            quiet = 0
            for tp, messages in polled.items():
                for m in messages:
                    try:
                        _, record = decode(m.value)
                    except AvroDecodeError as exc:
                        record = {"stage": "?", "source": "?", "record_key": None,
                                  "column": None, "reason": f"undecodable dead letter: {exc}",
                                  "ts_ms": m.timestamp, "payload": None}  # fmt: skip
                    if source is None or source in (record.get("source"), record.get("topic")):
                        out.append(((tp.partition, m.offset), record))
        out.sort(key=lambda item: item[1].get("ts_ms") or 0, reverse=True)
        return out[:limit] if limit is not None else out
    finally:
        consumer.close()


@dataclass
class ReplayReport:
    published: int = 0
    still_failing: int = 0
    skipped: int = 0
    reasons: Counter = field(default_factory=Counter)


def replay(config: HubConfig, *, source: str | None = None, dry_run: bool = False) -> ReplayReport:
    """Map the stored rows of connector dead letters again and publish what now maps."""
    sources = config.sources()
    if source is not None and source not in sources:
        raise FatalError(f"no connector named {source!r} in the config")
    letters = read_dead_letters(config.kafka, source=source)
    letters.reverse()  # oldest first: replay in the order they were dead-lettered
    report = ReplayReport()
    scheme = get_scheme(config.id_scheme)
    batches: dict[str, Batch] = {}
    builders: dict[tuple[str, str, str, str], EventBuilder] = {}
    for _, letter in letters:
        name = letter.get("source")
        if letter.get("stage") != "connector" or name not in sources or not letter.get("payload"):
            report.skipped += 1
            continue
        try:
            payload = json.loads(letter["payload"])
        except ValueError:
            report.skipped += 1
            continue
        key = (name, payload.get("system") or "postgresql", payload.get("database") or "",
               payload.get("table") or "")  # fmt: skip
        builder = builders.get(key)
        if builder is None:
            mapper = RecordMapper(name, sources[name], scheme)
            builder = builders[key] = EventBuilder(
                mapper, system=key[1], database=key[2], table=key[3]
            )
        batch = batches.setdefault(name, Batch())
        before_failures = len(batch.dead_letters)
        builder.add(
            batch,
            payload.get("op") or "u",
            decode_row(payload.get("before")),
            decode_row(payload.get("after")),
            position=payload.get("position") or "dlq-replay",
            before_partial=True,
            record_key=letter.get("record_key"),
        )
        if len(batch.dead_letters) > before_failures:
            report.still_failing += 1
            report.reasons[batch.dead_letters[-1].reason] += 1
    for name, batch in batches.items():
        batch.dead_letters.clear()  # still failing: they stay in the topic, not re-sent
        report.published += len(batch.events)
        if dry_run or not batch.events:
            continue
        delivery = Delivery(name, config.kafka)
        try:
            delivery.deliver(batch)
        finally:
            delivery.close()
    return report

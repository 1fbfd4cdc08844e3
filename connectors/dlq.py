"""Reading the dead-letter topic back: list letters, and replay connector letters by mapping
their stored source rows again with the current config.

A replay is idempotent: each letter it published is recorded in the hub database
(``dlq_replays``, by the SHA-256 of the letter's content) once Kafka acknowledged its
events, and a later replay skips it. A crash between the acknowledgement and the record
re-sends that batch on the next replay (consumers are idempotent); ``--dry-run`` records
nothing."""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from kafka import TopicPartition
from kafka.errors import KafkaError
from sqlalchemy import Engine, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import SQLAlchemyError

from connectors.delivery import Delivery
from connectors.events import Batch, EventBuilder
from connectors.mapping import RecordMapper, decode_row
from connectors.state import hub_engine
from hub.avro.codec import AvroDecodeError, decode
from hub.config import HubConfig, KafkaConfig
from hub.db.models import DlqReplay
from hub.errors import FatalError
from hub.idschemes import get_scheme
from hub.kafka import Topics, make_consumer

log = logging.getLogger(__name__)

_replays = DlqReplay.__table__
_CHUNK = 5000


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
    """Change events published (or, dry, that would be)."""
    replayed: int = 0
    """Letters replayed by this run (or, dry, that would be)."""
    already_replayed: int = 0
    """Letters skipped because an earlier replay published them."""
    still_failing: int = 0
    skipped: int = 0
    """Letters that cannot be replayed (not a connector's, no stored row, unknown source)."""
    reasons: Counter = field(default_factory=Counter)


def letter_digest(letter: dict[str, Any]) -> str:
    """The SHA-256 of a dead letter's content: the same letter read again has the same one."""
    text = json.dumps(letter, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def replayed_letters(engine: Engine, digests: list[str]) -> set[str]:
    """Those of ``digests`` an earlier replay recorded."""
    done: set[str] = set()
    try:
        with engine.connect() as conn:
            for i in range(0, len(digests), _CHUNK):
                chunk = digests[i : i + _CHUNK]
                done.update(
                    conn.execute(select(_replays.c.letter).where(_replays.c.letter.in_(chunk)))
                    .scalars()
                    .all()
                )
    except SQLAlchemyError as exc:
        raise FatalError(f"hub database: {type(exc).__name__}: {_first_line(exc)}") from exc
    return done


def mark_replayed(engine: Engine, name: str, letters: list[tuple[str, int, int]]) -> None:
    """Record ``(digest, partition, offset)`` letters of connector ``name`` as replayed."""
    rows = [
        {"letter": d, "connector": name, "kafka_partition": p, "kafka_offset": o}
        for d, p, o in letters
    ]
    try:
        with engine.begin() as conn:
            for i in range(0, len(rows), _CHUNK):
                conn.execute(insert(_replays).on_conflict_do_nothing(), rows[i : i + _CHUNK])
    except SQLAlchemyError as exc:
        raise FatalError(
            f"hub database: {len(rows)} replayed letter(s) of {name} published but not "
            f"recorded ({type(exc).__name__}: {_first_line(exc)}); a next replay sends them again"
        ) from exc


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [""])[0]


def replay(config: HubConfig, *, source: str | None = None, dry_run: bool = False) -> ReplayReport:
    """Map the stored rows of connector dead letters again and publish what now maps."""
    sources = config.sources()
    if source is not None and source not in sources:
        raise FatalError(f"no connector named {source!r} in the config")
    letters = read_dead_letters(config.kafka, source=source)
    letters.reverse()  # oldest first: replay in the order they were dead-lettered
    engine = hub_engine(config.database.url)
    digests = [letter_digest(letter) for _, letter in letters]
    done = replayed_letters(engine, digests)
    report = ReplayReport()
    marks: dict[str, list[tuple[str, int, int]]] = {}
    scheme = get_scheme(config.id_scheme)
    batches: dict[str, Batch] = {}
    builders: dict[tuple[str, str, str, str], EventBuilder] = {}
    for ((partition, offset), letter), digest in zip(letters, digests, strict=True):
        name = letter.get("source")
        if letter.get("stage") != "connector" or name not in sources or not letter.get("payload"):
            report.skipped += 1
            continue
        if digest in done:
            report.already_replayed += 1
            continue
        done.add(digest)  # the same letter twice in the topic is replayed once
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
            done.discard(digest)  # not replayed: a later replay (a fixed config) tries again
        else:
            marks.setdefault(name, []).append((digest, partition, offset))
    for name, batch in batches.items():
        batch.dead_letters.clear()  # still failing: they stay in the topic, not re-sent
        report.published += len(batch.events)
        report.replayed += len(marks.get(name, []))
        if dry_run:
            continue
        if batch.events:
            delivery = Delivery(name, config.kafka)
            try:
                delivery.deliver(batch)
            finally:
                delivery.close()
        if marks.get(name):
            mark_replayed(engine, name, marks[name])
    return report

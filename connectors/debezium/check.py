"""``hub connector check`` for ``capture: debezium``: the Debezium topics and their
partitions, the schema registry (Avro), a sample of the newest messages mapped as the run
maps them, and how far the stored position is behind the topics' ends."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from kafka import TopicPartition
from kafka.errors import KafkaError

from connectors.base import FAIL, OK, WARN, CheckResult
from connectors.debezium.capture import committed_offset, group_id, offset_key, open_consumer
from connectors.debezium.changes import ChangeMapper
from connectors.debezium.converters import SchemaRegistry
from connectors.events import Batch
from connectors.sample import SAMPLE_ROWS
from connectors.state import hub_engine, load_offset
from hub.config import HubConfig, SourceConfig
from hub.errors import HubError
from hub.logs import error_summary, mask_ids

if TYPE_CHECKING:
    from kafka import KafkaConsumer

    from connectors.mapping import RecordMapper

SAMPLE_WAIT_S = 5.0


def check_debezium(
    config: HubConfig, name: str, source: SourceConfig, mapper: RecordMapper
) -> list[CheckResult]:
    """Every line that would stop the connector or dead-letter its messages."""
    cfg = source.debezium
    assert cfg is not None
    results: list[CheckResult] = []
    if cfg.converter == "avro":
        assert cfg.schema_registry_url is not None
        registry = SchemaRegistry(cfg.schema_registry_url, timeout_s=5)
        try:
            subjects = registry.get("/subjects")
        except HubError as exc:
            results.append(CheckResult(FAIL, "schema registry", str(exc)))
        else:
            count = len(subjects) if isinstance(subjects, list) else "?"
            results.append(CheckResult(OK, "schema registry", f"{registry.url}: {count} subjects"))
    try:
        consumer = open_consumer(config.kafka, name, cfg, request_timeout_ms=10_000)
    except HubError as exc:
        return [*results, CheckResult(FAIL, "reachable", error_summary(exc))]
    try:
        partitions: list[TopicPartition] = []
        consumer.topics()
        for topic in cfg.topics:
            found = consumer.partitions_for_topic(topic)
            if not found:
                results.append(CheckResult(FAIL, "topic", f"{topic} does not exist (Debezium "
                                           "creates it with the first change it captures)"))  # fmt: skip
                continue
            partitions += [TopicPartition(topic, p) for p in sorted(found)]
            results.append(CheckResult(OK, "topic", f"{topic}: {len(found)} partitions"))
        if not partitions:
            return results
        results += _lag(config, name, source, consumer, partitions)
        if not any(r.status == FAIL and r.what == "schema registry" for r in results):
            results += _sample(consumer, mapper, partitions)
    except KafkaError as exc:
        results.append(CheckResult(FAIL, "reachable", error_summary(exc)))
    finally:
        consumer.close(autocommit=False)
    return results


def _lag(
    config: HubConfig,
    name: str,
    source: SourceConfig,
    consumer: KafkaConsumer,
    partitions: list[TopicPartition],
) -> list[CheckResult]:
    """Messages between the stored position (else the group's) and the topics' ends."""
    assert source.debezium is not None
    try:
        stored = load_offset(hub_engine(config.database.url), name) or {}
    except HubError:
        stored = {}
    ends = consumer.end_offsets(partitions)
    begins = consumer.beginning_offsets(partitions)
    behind, where = 0, "stored position"
    started = bool(stored)
    offsets: dict[TopicPartition, int | None] = {}
    for tp in partitions:
        offset = stored.get(offset_key(tp))
        if offset is None and not stored:
            offset = committed_offset(consumer, tp)
            if offset is not None:
                started, where = True, f"group {group_id(name, source.debezium)}"
        offsets[tp] = offset
    if not started:
        total = sum(ends[t] - begins[t] for t in partitions)
        return [CheckResult(OK, "position", "never run: starts from the earliest retained "
                            f"offsets ({total} messages)")]  # fmt: skip
    for tp, offset in offsets.items():
        if offset is None:
            offset = begins[tp]  # nothing read from this partition yet: from its start
        if offset < begins[tp]:
            return [CheckResult(FAIL, "position", f"{tp.topic}/{tp.partition}: the position "
                                f"{offset} was deleted by retention (earliest {begins[tp]}): "
                                "changes were lost; re-read with a Debezium snapshot")]  # fmt: skip
        behind += max(0, ends[tp] - offset)
    return [CheckResult(OK, "lag", f"{behind} messages behind ({where})")]


def _sample(
    consumer: KafkaConsumer, mapper: RecordMapper, partitions: list[TopicPartition]
) -> list[CheckResult]:
    """The newest messages (up to :data:`SAMPLE_ROWS`, spread over the partitions) mapped as
    the run maps them: how many would dead-letter, by reason, with one masked example."""
    ends = consumer.end_offsets(partitions)
    begins = consumer.beginning_offsets(partitions)
    share = max(1, SAMPLE_ROWS // len(partitions))
    consumer.assign(partitions)
    wanted = 0
    for tp in partitions:
        start = max(begins[tp], ends[tp] - share)
        consumer.seek(tp, start)
        wanted += ends[tp] - start
    if not wanted:
        return [CheckResult(WARN, "sample", "the topics are empty: no messages to check")]
    changes = ChangeMapper.for_source(mapper)
    batch = Batch()
    seen = 0
    deadline = time.monotonic() + SAMPLE_WAIT_S
    while seen < wanted and time.monotonic() < deadline:
        for tp, records in consumer.poll(timeout_ms=500).items():
            for record in records:
                if record.offset < ends[tp]:
                    changes.add(batch, tp.topic, tp.partition, record.offset, record.value)
                    seen += 1
    if not seen:
        return [CheckResult(WARN, "sample", "no message read within "
                            f"{SAMPLE_WAIT_S:.0f}s")]  # fmt: skip
    reasons: dict[str, int] = {}
    for letter in batch.dead_letters:
        reason = mask_ids(letter.reason)
        reasons[reason] = reasons.get(reason, 0) + 1
    out = [
        CheckResult(
            FAIL, "sample values", f"{n} of {seen} sampled messages would dead-letter: {reason}"
        )  # fmt: skip
        for reason, n in sorted(reasons.items(), key=lambda kv: -kv[1])
    ]
    if not out:
        out.append(CheckResult(OK, "sample values", f"{seen} sampled messages map "
                               f"({len(batch.events)} row changes), none would dead-letter"))  # fmt: skip
    return out


__all__ = ["check_debezium"]

"""Decoding: a poll batch's Kafka messages → :class:`Change` objects in (topic, partition,
offset) order, each checked for the shape the state tables can hold; a message that fails
becomes a dead letter (``hub.DeadLetter``) instead of stopping the partition."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from kafka import TopicPartition

from hub import metrics
from hub.avro.codec import AvroDecodeError, Decoder, Encoder
from hub.avro.reader import compile_reader
from hub.avro.writer import compile_encoder
from hub.errors import SkippableError
from hub.idschemes import IdInfo, IdScheme
from reconciliation.names import fold
from reconciliation.store.rows import RegistryRow, SectorRow

log = logging.getLogger(__name__)

REGISTRY = "registry"
"""The source name of the registry's changes (every other source is a sector)."""
_LENGTHS = (("citizen_id", 64), ("legacy_id", 32), ("province_code", 16), ("status", 64))
_SEXES = frozenset({None, "M", "F"})
_TEXT_FIELDS = ("citizen_id", "legacy_id", "full_name", "province_code", "address", "status")
_NO_ID: tuple[None, None] = (None, None)
DeadLetter = tuple[tuple[str, int], int, tuple[str, bytes | None, bytes]]
"""((topic, partition), offset, outbox message) of a message that could not be applied."""


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
    retracts: str | None = None
    """A delete's citizen ID as its before image carried it (normalized; None when the
    image does not say): the delete takes the record off that ID's key."""


class IdReader:
    """What the ID scheme reads from raw IDs, cached (the scheme is pure): shared by the
    decoding (normalized IDs), the batch (ID kinds) and the outbox (message keys)."""

    def __init__(self, scheme: IdScheme):
        self.scheme = scheme
        self._cache: dict[str, tuple[str | None, IdInfo | None]] = {}

    def normalized(self, raw: str | None) -> tuple[str | None, IdInfo | None]:
        """(normalized ID, what the scheme reads from it) of a raw ID; cached, as the scheme
        is pure. ``(None, None)`` when there is no ID."""
        if raw is None:
            return _NO_ID
        found = self._cache.get(raw)  # most IDs are seen once: no KeyError per miss
        if found is not None:
            return found
        if len(self._cache) > 200_000:
            self._cache.clear()
        norm = self.scheme.normalize(raw)
        found = self._cache[raw] = (norm, None if norm is None else self.scheme.parse(norm))
        return found

    def id_info(self, raw: str | None) -> IdInfo | None:
        """What the ID scheme reads from a raw ID (None when there is no ID)."""
        return self.normalized(raw)[1]

    def is_legacy(self, raw: str | None) -> bool:
        """Whether a raw ID is a legacy number (its record finds its citizen by legacy_id)."""
        info = self.normalized(raw)[1]
        return info is not None and info.kind == "legacy"


class ChangeDecoder:
    """Turns polled messages into changes and dead letters; ``source_of`` names the source
    (``registry`` or a sector) of each change topic, ``dlq_topic`` receives dead letters."""

    def __init__(self, source_of: dict[str, str], ids: IdReader, dlq_topic: str):
        self.source_of = source_of
        for source in set(source_of.values()):
            metrics.init_dead_letters("reconciler", source)
        self.ids = ids
        self.dlq_topic = dlq_topic
        self._decode_message = compile_reader("hub.ChangeEvent") or Decoder().decode
        self._dlq_encoder = compile_encoder("hub.DeadLetter") or Encoder("hub.DeadLetter")

    def decode(self, records: dict) -> tuple[list[Change], list[DeadLetter]]:
        """Changes in (topic, partition, offset) order, and dead letters as
        ((topic, partition), offset, outbox message)."""
        changes: list[Change] = []
        dead: list[DeadLetter] = []
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
                    changes.append(self.change(source, event, tp, msg.offset))
                except SkippableError as exc:
                    dead.append(
                        ((tp.topic, tp.partition), msg.offset, self._dead_letter(tp, msg, exc))
                    )
        return changes, dead

    def change(self, source: str, event: dict, tp: TopicPartition, offset: int) -> Change:
        """One decoded ``hub.ChangeEvent`` of ``source`` as a change; SkippableError when its
        shape is one the state tables cannot hold."""
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
        retracts = None
        if op == "d" and (before := event.get("before")) and before.get("citizen_id"):
            retracts = self.ids.normalized(before["citizen_id"])[0]
        return Change(
            source, op, key, row, src["lsn"], ts, commit_ms, tp, offset, snapshot, retracts
        )

    def _registry_row(self, key: str, after: dict, src: dict, ts: datetime | None) -> RegistryRow:
        cid = self.ids.normalized(after["citizen_id"])[0]
        if cid is None or len(cid) > 32:
            raise SkippableError(
                "registry row without a usable citizen ID", column="citizen_id", record_key=key
            )
        legacy = self.ids.normalized(after["legacy_id"])[0]
        if legacy is not None and len(legacy) > 32:
            legacy = None
        return RegistryRow(
            cid,
            key,
            legacy,
            *_person(after),
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
        cid, info = self.ids.normalized(raw)
        if info is None or info.kind == "invalid" or len(cid) > 32:
            cid = None
        return SectorRow(
            sector,
            key,
            raw,
            cid,
            after["legacy_id"],
            *_person(after),
            after["status"],
            after["last_activity_date"],
            after["attributes"] or {},
            False,
            ts,
            src["lsn"],
        )

    def _dead_letter(self, tp: TopicPartition, msg, exc: SkippableError) -> tuple:
        reason = exc.reason
        category = "undecodable" if isinstance(exc, AvroDecodeError) else "bad_shape"
        metrics.DEAD_LETTERS.labels(
            stage="reconciler", connector=self.source_of[tp.topic], reason=category
        ).inc()
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
        return (self.dlq_topic, msg.key, value)


def _person(after: dict) -> tuple:
    """(full_name, name_folded, date_of_birth, sex, province_code, address) of an after
    image: the fields a registry row and a sector record share, in their column order."""
    name = after["full_name"]
    return (
        name,
        fold(name) or None,
        after["date_of_birth"],
        after["sex"],
        after["province_code"],
        after["address"],
    )

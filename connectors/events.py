"""Change envelopes (``hub.ChangeEvent``) and dead letters built from source rows, encoded
for Kafka: the one place that turns a captured row into the bytes a connector sends."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from connectors.logical.pgoutput.messages import PgValueError
from connectors.mapping import RecordMapper, dump_payload, encode_row
from hub.avro.codec import AvroEncodeError, Encoder
from hub.avro.writer import compile_encoder
from hub.errors import SkippableError


@dataclass(slots=True)
class DeadLetter:
    """A change that could not be mapped or encoded, with the reason (never the value)."""

    record_key: str | None
    column: str | None
    reason: str
    kind: str  # bounded label for hub_dead_letters_total{reason}
    payload: bytes | None


@dataclass(slots=True)
class Batch:
    """What one capture step produced: encoded events in source order, dead letters, and
    the position that becomes safe to acknowledge once all of them are in Kafka.

    ``events`` holds ``(key, value)`` pairs for the connector's change topic. ``commit``
    is opaque to the runner: it hands it back to :meth:`CaptureMode.commit`.
    ``position`` is its human-readable form (LSN, watermark, snapshot progress).
    ``oldest_commit_ts`` is the source commit time (epoch seconds) of the oldest change
    in the batch, when known: the connector's lag is measured from it.
    """

    events: list[tuple[bytes, bytes]] = field(default_factory=list)
    ops: dict[str, int] = field(default_factory=dict)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    commit: Any = None
    position: str | None = None
    oldest_commit_ts: float | None = None
    newest_commit_ts: float | None = None
    caught_up: bool = False
    """True when the source had nothing more to read after this batch."""
    read_ahead: bool = False
    """True when the mode can return its next batch before this one is committed (a
    snapshot in the middle of the table): the runner then overlaps the two."""
    record_ids: dict[str, str | None] = field(default_factory=dict)
    """record key → the Kafka key its record carries after this batch (None: deleted), for
    :class:`RecordIds` to store once the batch is acknowledged."""

    def __len__(self) -> int:
        return len(self.events)


def dead_letter_kind(exc: SkippableError) -> str:
    """A bounded metric label for a skippable error."""
    if isinstance(exc, PgValueError):
        return "undecodable_value"
    if isinstance(exc, AvroEncodeError):
        return "schema_mismatch"
    return "unmappable_value"


class RecordIdStore(Protocol):
    def load(self, record_keys: Iterable[str]) -> dict[str, str]: ...
    def save(self, changed: Mapping[str, str | None]) -> None: ...


class RecordIds:
    """The Kafka key each record last carried, for sources whose deletes and updates do not
    carry it (key-only before images): record key → key, cached here, kept by a store
    (``connector_record_ids``) that is read once per batch (:meth:`prefetch`) and written
    once per acknowledged batch (:meth:`commit`), never per record."""

    def __init__(self, store: RecordIdStore, cache_max: int = 500_000):
        self.store = store
        self.cache_max = cache_max
        self._known: dict[str, str | None] = {}
        self._unsaved: dict[str, str | None] = {}  # noted by batches not committed yet

    def prefetch(self, record_keys: Iterable[str]) -> None:
        """Load the keys of the records not cached yet (one read)."""
        missing = {k for k in record_keys if k not in self._known}
        if not missing:
            return
        if len(self._known) + len(missing) > self.cache_max:
            self._known = dict(self._unsaved)  # the store does not have those yet
        found = self.store.load(missing)
        for k in missing:
            self._known[k] = found.get(k)

    def get(self, record_key: str) -> str | None:
        """The key the record last carried (after :meth:`prefetch`), None when unknown."""
        return self._known.get(record_key)

    def note(self, batch: Batch, record_key: str, key: str | None) -> None:
        """The record carries ``key`` now (None: deleted); stored with the batch when that
        is news (an update keeping its ID writes nothing)."""
        if record_key in self._known and self._known[record_key] == key:
            return
        self._known[record_key] = self._unsaved[record_key] = key
        batch.record_ids[record_key] = key

    def commit(self, batch: Batch) -> None:
        """Store what ``batch`` changed (after Kafka acknowledged it)."""
        self.store.save(batch.record_ids)
        for k, v in batch.record_ids.items():
            if k in self._unsaved and self._unsaved[k] == v:
                del self._unsaved[k]


class EventBuilder:
    """Builds and encodes one connector's change events into a :class:`Batch`.

    ``add`` maps raw source rows with the connector's :class:`RecordMapper`, wraps them in
    the Debezium-style envelope and encodes them; a row that cannot be mapped or encoded
    becomes a :class:`DeadLetter` in the batch instead (the caller never sees the error).
    """

    def __init__(
        self,
        mapper: RecordMapper,
        *,
        system: str,
        database: str,
        table: str,
        record_ids: RecordIds | None = None,
    ):
        self.mapper = mapper
        self.record_ids = record_ids
        """Where a record's last key is kept when before images do not carry it."""
        self.encoder = compile_encoder("hub.ChangeEvent") or Encoder("hub.ChangeEvent")
        self._connector = mapper.connector
        self._system = system
        self._database = database
        self._table = table

    def add(
        self,
        batch: Batch,
        op: str,
        before: Mapping[str, Any] | None,
        after: Mapping[str, Any] | None,
        *,
        position: str,
        lsn: int | None = None,
        txid: int | None = None,
        commit_ts_ms: int | None = None,
        snapshot: bool = False,
        before_partial: bool = False,
        record_key: str | None = None,
    ) -> None:
        """Append the event for one row change (``op`` c/u/d/r) to ``batch``.

        Every event is keyed by the citizen ID its record carried (SPEC §2): a delete by the
        ID before it, from the before image or, when that holds only the key, from
        :attr:`record_ids`. An update that changes the ID becomes a delete keyed by the old
        ID and a create keyed by the new one, so a topic's last event per key (compaction's
        view) is each record's final state."""
        mapper = self.mapper
        try:
            if record_key is None:
                record_key = mapper.record_key(after if after is not None else before)
            after_rec = None if after is None else mapper.map(after)
            before_rec = None if before is None else mapper.map(before, partial=before_partial)
            source = {
                "system": self._system,
                "connector": self._connector,
                "database": self._database,
                "table": self._table,
                "position": position,
                "lsn": lsn,
                "txid": txid,
                "commit_ts_ms": commit_ts_ms,
                "snapshot": snapshot,
            }
            new_key = None if after_rec is None else mapper.kafka_key(after_rec, record_key)
            old_key = self._old_key(op, before_rec, before_partial, record_key)
            ts_ms = int(time.time() * 1000)
            if op == "d":
                key = old_key or mapper.kafka_key(before_rec, record_key)
                values = [(key, self._encode(op, before_rec, None, record_key, source, ts_ms))]
            elif op == "u" and old_key is not None and old_key != new_key:
                # The record's citizen ID changed: retract the old key, create the new one.
                values = [
                    (old_key, self._encode("d", before_rec, None, record_key, source, ts_ms)),
                    (new_key, self._encode("c", None, after_rec, record_key, source, ts_ms)),
                ]
            else:
                values = [(new_key, self._encode(op, before_rec, after_rec, record_key, source,
                                                 ts_ms))]  # fmt: skip
        except SkippableError as exc:
            batch.dead_letters.append(
                self.dead_letter(
                    exc,
                    op=op,
                    before=before,
                    after=after,
                    position=position,
                    record_key=record_key or exc.record_key,
                )
            )
            return
        for key, value in values:
            batch.events.append((key, value))
        if len(values) == 2:
            batch.ops["d"] = batch.ops.get("d", 0) + 1
            op = "c"
        batch.ops[op] = batch.ops.get(op, 0) + 1
        if self.record_ids is not None:
            self.record_ids.note(batch, record_key, None if op == "d" else new_key.decode())

    def _old_key(
        self, op: str, before: Mapping[str, Any] | None, partial: bool, record_key: str
    ) -> bytes | None:
        """The key the record carried before this change, where known: from the before
        image when it holds the citizen ID (or is whole), else from :attr:`record_ids`."""
        if op in ("c", "r"):
            return None
        if before is not None and (not partial or before.get("citizen_id") is not None):
            return self.mapper.kafka_key(before, record_key)
        if self.record_ids is not None:
            known = self.record_ids.get(record_key)
            return None if known is None else known.encode()
        return None

    def _encode(
        self,
        op: str,
        before: dict | None,
        after: dict | None,
        record_key: str,
        source: dict,
        ts_ms: int,
    ) -> bytes:
        return self.encoder.encode({
            "op": op, "before": before, "after": after, "record_key": record_key,
            "source": source, "ts_ms": ts_ms,
        })  # fmt: skip

    def dead_letter(
        self,
        exc: SkippableError,
        *,
        op: str | None,
        before: Mapping[str, Any] | None,
        after: Mapping[str, Any] | None,
        position: str | None,
        record_key: str | None = None,
    ) -> DeadLetter:
        """A dead letter for a change whose rows could not be turned into an event.

        The payload keeps the raw rows (values tagged so a replay reads them back exactly).
        """
        payload = {
            "op": op,
            "connector": self._connector,
            "system": self._system,
            "database": self._database,
            "table": self._table,
            "position": position,
            "before": encode_row(before),
            "after": encode_row(after),
        }
        return DeadLetter(
            record_key=record_key,
            column=exc.column,
            reason=exc.reason,
            kind=dead_letter_kind(exc),
            payload=dump_payload(payload),
        )

"""Change envelopes (``hub.ChangeEvent``) and dead letters built from source rows, encoded
for Kafka: the one place that turns a captured row into the bytes a connector sends."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

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

    def __len__(self) -> int:
        return len(self.events)


def dead_letter_kind(exc: SkippableError) -> str:
    """A bounded metric label for a skippable error."""
    if isinstance(exc, PgValueError):
        return "undecodable_value"
    if isinstance(exc, AvroEncodeError):
        return "schema_mismatch"
    return "unmappable_value"


class EventBuilder:
    """Builds and encodes one connector's change events into a :class:`Batch`.

    ``add`` maps raw source rows with the connector's :class:`RecordMapper`, wraps them in
    the Debezium-style envelope and encodes them; a row that cannot be mapped or encoded
    becomes a :class:`DeadLetter` in the batch instead (the caller never sees the error).
    """

    def __init__(self, mapper: RecordMapper, *, system: str, database: str, table: str):
        self.mapper = mapper
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
        """Append the event for one row change (``op`` c/u/d/r) to ``batch``."""
        mapper = self.mapper
        try:
            if record_key is None:
                record_key = mapper.record_key(after if after is not None else before)
            after_rec = None if after is None else mapper.map(after)
            before_rec = None if before is None else mapper.map(before, partial=before_partial)
            key_rec = after_rec if after_rec is not None else before_rec
            event = {
                "op": op,
                "before": before_rec,
                "after": after_rec,
                "record_key": record_key,
                "source": {
                    "system": self._system,
                    "connector": self._connector,
                    "database": self._database,
                    "table": self._table,
                    "position": position,
                    "lsn": lsn,
                    "txid": txid,
                    "commit_ts_ms": commit_ts_ms,
                    "snapshot": snapshot,
                },
                "ts_ms": int(time.time() * 1000),
            }
            value = self.encoder.encode(event)
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
        batch.events.append((mapper.kafka_key(key_rec, record_key), value))
        batch.ops[op] = batch.ops.get(op, 0) + 1

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

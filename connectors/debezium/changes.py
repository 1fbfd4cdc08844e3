"""Debezium messages → the hub's change events: converter, envelope, the source's
``columns:`` mapping (``connectors.events.EventBuilder``), one message at a time. A message
that cannot be mapped is a dead letter in the batch; nothing here raises but a
:class:`~hub.errors.RetriableError` (a schema registry that does not answer)."""

from __future__ import annotations

from connectors.debezium.converters import AvroConverter, JsonConverter, converter_for
from connectors.debezium.envelope import EnvelopeError, column_formats, parse_envelope
from connectors.events import Batch, DeadLetter, EventBuilder
from connectors.mapping import RecordMapper
from hub.errors import SkippableError


def message_position(topic: str, partition: int, offset: int) -> str:
    """The topic position of one Debezium message, as connector positions are shown."""
    return f"{topic}/{partition}@{offset}"


class ChangeMapper:
    """Turns one connector's Debezium messages into events of its :class:`Batch`es.

    Events are built by an :class:`EventBuilder` per source table (``table:`` of the
    config, else the envelope's ``source.table``), so they are keyed as every other mode's:
    by the normalized citizen ID (a delete by its before-image's).
    """

    def __init__(
        self,
        mapper: RecordMapper,
        converter: JsonConverter | AvroConverter,
        *,
        table: str | None = None,
    ):
        self.mapper = mapper
        self.converter = converter
        self.table = table
        self.columns = mapper.columns
        self.formats = column_formats(mapper.source)
        self._builders: dict[tuple[str, str, str], EventBuilder] = {}

    @classmethod
    def for_source(cls, mapper: RecordMapper) -> ChangeMapper:
        cfg = mapper.source.debezium
        assert cfg is not None
        return cls(mapper, converter_for(cfg), table=mapper.source.table)

    def builder(self, system: str, database: str, table: str) -> EventBuilder:
        key = (system, database, table)
        builder = self._builders.get(key)
        if builder is None:
            builder = self._builders[key] = EventBuilder(
                self.mapper, system=system, database=database, table=table
            )
        return builder

    def add(
        self, batch: Batch, topic: str, partition: int, offset: int, value: bytes | None
    ) -> None:
        """Append the event (or dead letter) of one message to ``batch``; a tombstone
        (null value, after a delete) and a message that is no row change add nothing."""
        if value is None:
            return
        position = message_position(topic, partition, offset)
        try:
            decoded = self.converter.decode(value)
            if decoded.value is None:
                return  # a tombstone written as JSON null (or {"schema":…, "payload": null})
            change = parse_envelope(decoded.value, decoded.types, self.columns, self.formats)
        except SkippableError as exc:
            batch.dead_letters.append(self._envelope_letter(exc, topic, position))
            return
        if change is None:
            return
        where = change.source_position()
        if where:
            position = f"{position} {where}"
        source = change.source
        system = source.get("connector") if isinstance(source.get("connector"), str) else None
        database = source.get("db") if isinstance(source.get("db"), str) else ""
        table = self.table or change.table or topic
        commit_ts_ms = change.commit_ts_ms
        self.builder(system or "debezium", database, table).add(
            batch,
            change.op,
            change.before,
            change.after,
            position=position,
            lsn=change.lsn,
            txid=change.txid,
            commit_ts_ms=commit_ts_ms,
            snapshot=change.snapshot,
            before_partial=True,
        )
        if commit_ts_ms is not None:
            ts_s = commit_ts_ms / 1000
            if batch.oldest_commit_ts is None:
                batch.oldest_commit_ts = ts_s
            batch.newest_commit_ts = ts_s

    def _envelope_letter(self, exc: SkippableError, topic: str, position: str) -> DeadLetter:
        letter = self.builder("debezium", "", self.table or topic).dead_letter(
            exc, op=None, before=None, after=None, position=position
        )
        letter.kind = exc.kind if isinstance(exc, EnvelopeError) else "undecodable_value"
        return letter


def kinds_of(batch: Batch) -> dict[str, int]:
    """Dead letters of ``batch`` counted by kind (for check lines and tests)."""
    out: dict[str, int] = {}
    for letter in batch.dead_letters:
        out[letter.kind] = out.get(letter.kind, 0) + 1
    return out


__all__ = ["ChangeMapper", "kinds_of", "message_position"]

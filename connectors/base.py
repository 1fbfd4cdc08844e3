"""The capture-mode contract: what a mode (logical, poll, snapshot) receives, returns, and
how it resumes after a crash."""

from __future__ import annotations

import abc
import threading
from dataclasses import dataclass, field

from connectors.events import Batch, EventBuilder
from connectors.mapping import RecordMapper
from hub.config import HubConfig, SourceConfig


@dataclass
class ConnectorContext:
    """Everything a capture mode gets: its name, its source, the hub's config (hub database
    URL for its own state), the row mapper and the event builder.

    ``stopping`` is set when the process was asked to stop; a long read may check it to
    return early (the runner always finishes the batch in hand first).
    """

    name: str
    source: SourceConfig
    config: HubConfig
    mapper: RecordMapper
    stopping: threading.Event = field(default_factory=threading.Event)

    @property
    def hub_db_url(self) -> str:
        return self.config.database.url

    def builder(self, *, system: str, database: str, table: str) -> EventBuilder:
        """An :class:`EventBuilder` whose events name this connector and source."""
        return EventBuilder(self.mapper, system=system, database=database, table=table)


@dataclass
class SourceLag:
    """How far the connector is behind its source (``None`` when the mode cannot tell)."""

    bytes: int | None = None
    seconds: float | None = None


class CaptureMode(abc.ABC):
    """One way of capturing a source table's changes. The runner drives it:

    1. :meth:`open` once (and again after :meth:`close` on a restart request or after a
       retriable failure). It prepares the source (publication and slot for ``logical``)
       and loads the resume position from where the mode keeps it: the replication slot,
       or the hub database (``connector_state``, ``connector_offsets``,
       ``connector_snapshot_keys``). It must be idempotent.
    2. :meth:`next_batch` repeatedly. It returns the next changes after the resume position
       as an encoded :class:`~connectors.events.Batch` (events in source order, dead letters
       for rows that cannot be mapped) and **never advances the position itself**. An empty
       batch with ``caught_up`` set means "nothing now": the runner sleeps before asking
       again.
    3. The runner sends the batch to Kafka and waits for every acknowledgement; only then
       does it call :meth:`commit` with that batch, which advances the durable position to
       ``batch.commit`` (slot advance, watermark or snapshot progress stored), before it
       asks for the next batch. ``batch.commit`` may be ``None`` (e.g. a batch that ends
       inside a large source transaction): the position then stays where it was. A batch
       marked ``read_ahead`` (mid-snapshot) lets the runner read the next batch before
       committing this one; the mode must then keep its read position apart from the
       committed one.

    **Resume contract** (at least once): after a crash at any moment, :meth:`open` then
    :meth:`next_batch` deliver every change after the last committed position again — a
    batch delivered but not committed is delivered twice, never lost — and per record in
    source order. Consumers must be idempotent.

    **Failures**: :class:`~hub.errors.RetriableError` (source or hub database unreachable)
    makes the runner :meth:`close`, back off and :meth:`open` again, resuming from the last
    committed position; :class:`~hub.errors.FatalError` (missing privilege, wal_level,
    table gone) stops the connector with the message stored in ``connector_state.error``.
    A row that cannot be mapped is never an error: it is a dead letter in the batch.
    """

    capture: str = ""

    def __init__(self, ctx: ConnectorContext):
        self.ctx = ctx

    @abc.abstractmethod
    def open(self) -> None:
        """Prepare the source and load the resume position."""

    @abc.abstractmethod
    def next_batch(self) -> Batch:
        """The next changes after the resume position, encoded; see the class contract."""

    @abc.abstractmethod
    def commit(self, batch: Batch) -> None:
        """Make ``batch.commit`` the durable resume position (after Kafka acknowledged it)."""

    @abc.abstractmethod
    def resnapshot(self) -> None:
        """Re-read the whole table from the next batch on (operator request). Streaming
        modes keep their stream position and resume it after the new snapshot."""

    def heartbeat(self) -> bool:
        """Called by the runner on a timer; return True when a heartbeat was written."""
        return False

    def lag(self) -> SourceLag:
        """Lag that only the source can tell (bytes of WAL for logical); cheap to call."""
        return SourceLag()

    @property
    def phase(self) -> str:
        """``snapshotting`` or ``streaming`` (``idle`` for a snapshot connector at rest)."""
        return "streaming"

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections and cursors; uncommitted batches are simply dropped."""


def mode_for(ctx: ConnectorContext) -> CaptureMode:
    """The capture mode the source's config names."""
    capture = ctx.source.capture
    if capture == "logical":
        from connectors.logical import LogicalCapture

        return LogicalCapture(ctx)
    if capture == "poll":
        from connectors.poll import PollCapture

        return PollCapture(ctx)
    if capture == "snapshot":
        from connectors.snapshot import SnapshotCapture

        return SnapshotCapture(ctx)
    raise ValueError(f"unknown capture mode {capture!r}")


def split_table(table: str) -> tuple[str | None, str]:
    """``"schema.table"`` → ``("schema", "table")``; ``"table"`` → ``(None, "table")``."""
    schema, dot, name = table.rpartition(".")
    return (schema or None) if dot else None, name

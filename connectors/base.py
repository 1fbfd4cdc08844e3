"""The capture-mode contract (what a mode receives, returns, and how it resumes after a
crash) and the registry of modes by name. It imports no mode: each registers itself."""

from __future__ import annotations

import abc
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from connectors.events import Batch, EventBuilder
from connectors.mapping import RecordMapper
from hub.config import HubConfig, SourceConfig

if TYPE_CHECKING:
    import psycopg

    from connectors.pgtable import TableInfo


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


class LagProbe(abc.ABC):
    """Measures a connector's source-side lag on a connection of its own (see
    :meth:`CaptureMode.lag_probe`); errors are the caller's to swallow."""

    @abc.abstractmethod
    def measure(self) -> SourceLag:
        """The lag now; reconnects after a lost connection."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the connection."""


OK, WARN, FAIL = "ok", "warn", "FAIL"


@dataclass(frozen=True)
class CheckResult:
    """One line of ``hub connector check``: FAIL means the connector would stop."""

    status: str  # ok, warn, FAIL
    what: str
    detail: str

    @property
    def ok(self) -> bool:
        return self.status != FAIL

    def line(self) -> str:
        return f"{self.status:<5}{self.what:<22} {self.detail}"


def byte_size(n: int | None) -> str:
    """``n`` bytes for a person: ``"12 MB"`` (``"?"`` when unknown)."""
    if n is None:
        return "?"
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


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

    **Operations** the mode owns, so the runner and ``hub connector check``/``drop`` never
    branch on its name: :meth:`idle_interval` and :meth:`heartbeat_interval` (the runner's
    timers), :meth:`lag_probe` (the source-side lag the status timer measures),
    :meth:`check_postgres` / :meth:`check_sql` (its own check lines),
    :meth:`drop` (what it holds at the source). A mode registers itself with
    :func:`register_mode` under :attr:`capture`, the name a source's ``capture:`` uses.
    """

    capture: ClassVar[str] = ""
    needs_postgres: ClassVar[bool] = False
    """Checked through PostgreSQL's catalogs whatever the URL says (logical decoding)."""
    reads_database: ClassVar[bool] = True
    """False for a mode that reads no database (Debezium topics): ``hub connector check``
    then runs only its :meth:`check_source`."""
    warm_on_open: ClassVar[bool] = False
    """Start the producer processes at open even when not snapshotting: a backlog of large
    batches may be waiting at the source (a slot)."""

    def __init__(self, ctx: ConnectorContext):
        self.ctx = ctx

    def rows_ahead(self) -> int | None:
        """Rows the mode expects to read before it is caught up (a snapshot's estimate), or
        None when it cannot tell: the runner starts the producer processes at open only
        when this is unknown or at least a pooled batch (a 5-row table needs none)."""
        return None

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
        """Called by the runner every :meth:`heartbeat_interval` seconds; return True when a
        heartbeat was written."""
        return False

    def heartbeat_interval(self) -> float:
        """Seconds between :meth:`heartbeat` calls; 0 (the default): never called."""
        return 0

    def idle_interval(self) -> float:
        """Seconds the runner waits after a caught-up batch before asking again."""
        return 1.0

    @property
    def phase(self) -> str:
        """``snapshotting`` or ``streaming`` (``idle`` for a snapshot connector at rest)."""
        return "streaming"

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections and cursors; uncommitted batches are simply dropped."""

    # ------------------------------------------------------------ operations (no instance)

    @classmethod
    def check_postgres(
        cls, conn: psycopg.Connection, name: str, source: SourceConfig, table: TableInfo
    ) -> list[CheckResult]:
        """The mode's own check lines for a PostgreSQL source (``conn`` autocommit, ``table``
        resolved); the common ones (reachable, table, columns, privilege) are not its job."""
        return []

    @classmethod
    def check_source(
        cls, config: HubConfig, name: str, source: SourceConfig, mapper: RecordMapper
    ) -> list[CheckResult]:
        """The whole check of a mode that reads no database (:attr:`reads_database`)."""
        return []

    @classmethod
    def check_sql(cls, name: str, source: SourceConfig) -> list[CheckResult]:
        """The mode's own check lines for a source reached through SQLAlchemy."""
        return []

    @classmethod
    def lag_probe(cls, name: str, source: SourceConfig) -> LagProbe | None:
        """What measures the lag only the source can tell (WAL a slot retains), or None.

        The runner's status timer calls it on a thread of its own every few seconds,
        whether the mode is open, paused or retrying, so it must hold its own connection."""
        return None

    @classmethod
    def drop(cls, name: str, source: SourceConfig) -> list[str]:
        """Release what the mode holds at the source (a slot, a publication); what was done,
        one line each. The hub-side state is forgotten by the caller."""
        return []


_MODES: dict[str, type[CaptureMode]] = {}


def register_mode(mode: type[CaptureMode]) -> type[CaptureMode]:
    """Make ``mode`` the capture mode called ``mode.capture`` (a class decorator)."""
    name = mode.capture
    if not name:
        raise ValueError(f"{mode.__name__} names no capture mode (set capture)")
    known = _MODES.get(name)
    if known is not None and known is not mode:
        raise ValueError(f"capture mode {name!r} is already {known.__name__}")
    _MODES[name] = mode
    return mode


def registered_mode(name: str) -> type[CaptureMode]:
    """The capture mode registered as ``name``; ValueError naming the known ones."""
    try:
        return _MODES[name]
    except KeyError:
        known = ", ".join(sorted(_MODES)) or "none registered"
        raise ValueError(f"unknown capture mode {name!r} (known: {known})") from None


def registered_names() -> tuple[str, ...]:
    """Every registered capture mode's name, in registration order."""
    return tuple(_MODES)


def split_table(table: str) -> tuple[str | None, str]:
    """``"schema.table"`` → ``("schema", "table")``; ``"table"`` → ``(None, "table")``."""
    schema, dot, name = table.rpartition(".")
    return (schema or None) if dot else None, name

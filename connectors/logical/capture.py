"""The ``logical`` capture mode: a snapshot consistent with a replication slot, then the
slot's stream (see :mod:`connectors.logical`); it also owns its check, drop and timers."""

from __future__ import annotations

import contextlib
import logging

import psycopg
from psycopg import sql

from connectors.base import (
    CaptureMode,
    CheckResult,
    ConnectorContext,
    LagProbe,
    register_mode,
)
from connectors.delivery import POOL_MIN_EVENTS
from connectors.events import Batch, EventBuilder, RecordIds
from connectors.logical import slot as slots
from connectors.logical.check import check_logical
from connectors.logical.connections import SourceConnections
from connectors.logical.slot import LOGICAL_WAL_LEVEL, Slot, slot_names, wal_level
from connectors.logical.snapshot import SnapshotReader
from connectors.logical.stream import StreamReader
from connectors.pgtable import TableInfo, table_info
from connectors.state import RecordIdStore, ensure_state, hub_engine
from hub.config import SourceConfig
from hub.db import psycopg_conninfo
from hub.errors import FatalError, HubError

log = logging.getLogger(__name__)

WAL_BYTES_PER_CHANGE = 100
"""About the least WAL one row's change writes (header, tuple, commit share)."""

STREAM_IDLE_S = 0.05
"""Wait between slot reads once caught up, right after a change: the floor of capture
latency. Idle reads cost the source one ``pg_current_wal_flush_lsn()`` call while its WAL
stands still (:meth:`StreamReader.batch`), a decoding session only when the WAL moved."""
STREAM_IDLE_MAX_S = 0.25
"""The wait grows (doubling) to this after consecutive empty reads and drops back to
:data:`STREAM_IDLE_S` at the first change: what a change arriving after an idle spell may
wait at most (docs/operations.md, "Idle cost at the source")."""


@register_mode
class LogicalCapture(CaptureMode):
    """Snapshot, then stream through ``pg_logical_slot_peek_binary_changes`` and acknowledge
    with ``pg_replication_slot_advance`` after Kafka acknowledged (see the module doc).

    Resume position: the slot's ``confirmed_flush_lsn`` while streaming; while
    snapshotting, ``connector_state.snapshot_progress`` (segments and last key).
    """

    capture = "logical"
    needs_postgres = True
    warm_on_open = True

    def __init__(self, ctx: ConnectorContext):
        super().__init__(ctx)
        src = ctx.source
        slot, publication = slot_names(ctx.name, src)
        self.engine = hub_engine(ctx.hub_db_url)
        self.table: TableInfo | None = None
        self.database = ""
        self._builder: EventBuilder | None = None
        self.link = SourceConnections(ctx.name, src.url, on_broken=self.close)
        self.slot = Slot(self.link, slot, publication)
        self.snapshot = SnapshotReader(
            ctx.name, self.link, self.engine, tuple(ctx.mapper.columns), src.snapshot.chunk_size
        )
        self.stream = StreamReader(ctx, self.link, self.slot, self.snapshot, src.logical.batch_size)
        self._idle_s = STREAM_IDLE_S
        self.record_ids: RecordIds | None = None

    # -------------------------------------------------------------- open

    def open(self) -> None:
        """Check wal_level, create the publication and the slot if missing, load progress."""
        with self.link.errors():
            conn = self.link.control()
            level = wal_level(conn)
            if level != LOGICAL_WAL_LEVEL:
                raise FatalError(
                    f"{self.ctx.name}: wal_level is {level}, logical capture needs "
                    "wal_level=logical (postgresql.conf, then restart the server)"
                )
            self.database = conn.info.dbname
            self.table = table_info(conn, self.ctx.source.table, self.ctx.mapper.key_columns)
            missing = [c for c in self.ctx.mapper.columns if c not in self.table.columns]
            if missing:
                raise FatalError(
                    f"{self.ctx.name}: column {', '.join(missing)} not in {self.table.qualified}"
                )
            self.slot.ensure_publication(conn, self.table)
            self.snapshot.load(ensure_state(self.engine, self.ctx.name, self.capture))
            row = self.slot.row(conn)
            if row is None:
                if self.snapshot.done:
                    log.warning(
                        "%s: replication slot %s is gone; changes since it was dropped are "
                        "unknown, so the table is snapshotted again",
                        self.ctx.name,
                        self.slot.slot,
                    )
                self.snapshot.start(self.slot.create(conn))
            else:
                plugin, database, confirmed = row
                if plugin != "pgoutput" or database != self.database:
                    raise FatalError(
                        f"{self.ctx.name}: replication slot {self.slot.slot} exists for plugin "
                        f"{plugin} on database {database}; choose another logical.slot"
                    )
                if not self.snapshot.started:
                    self.snapshot.start(confirmed)
        self._builder = self.ctx.builder(
            system="postgresql", database=self.database, table=self.table.qualified
        )
        self.record_ids = None
        identity, citizen = self.table.replica_identity, self.ctx.mapper.citizen_id_column
        if identity != "f" and not (identity == "d" and citizen in self.table.primary_key):
            # Before images hold only the key: the connector keeps each record's last
            # citizen ID, to key its delete (or the retraction of a changed ID) by it.
            self.record_ids = RecordIds(RecordIdStore(self.engine, self.ctx.name))
        self._builder.record_ids = self.record_ids
        self.stream.bind(self.table, self.database, self._builder)

    def resnapshot(self) -> None:
        """Read the table again; the stream then resumes at the slot, minus what the new
        snapshot already holds."""
        self.snapshot.close()
        self.stream.close()
        confirmed = None
        with self.link.errors():
            row = self.slot.row(self.link.control())
            confirmed = row[2] if row else None
        self.snapshot.start(confirmed or "0/0")

    @property
    def phase(self) -> str:
        return "streaming" if self.snapshot.done else "snapshotting"

    def rows_ahead(self) -> int | None:
        """While streaming, the WAL the slot has not confirmed over the smallest change's
        WAL (the server's other databases count too: an overestimate); while snapshotting,
        the table's rows counted up to a pooled batch (a bounded count). None if unknown."""
        try:
            with self.link.errors():
                conn = self.link.control()
                if self.snapshot.done:
                    row = conn.execute(
                        "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)"
                        "::bigint FROM pg_replication_slots WHERE slot_name = %s",
                        (self.slot.slot,),
                    ).fetchone()
                    if row is None or row[0] is None:
                        return None
                    return max(0, int(row[0])) // WAL_BYTES_PER_CHANGE
                query = sql.SQL("SELECT count(*) FROM (SELECT 1 FROM {} LIMIT %s) s")
                (n,) = conn.execute(query.format(self.table.ident()), (POOL_MIN_EVENTS,)).fetchone()
                return int(n)
        except HubError:
            return None  # the first batch will say what is wrong

    # -------------------------------------------------------------- batches

    def next_batch(self) -> Batch:
        with self.link.errors():
            if not self.snapshot.done:
                assert self.table is not None and self._builder is not None
                return self.snapshot.batch(self.table, self._builder)
            batch = self.stream.batch()
        if batch.caught_up and not batch.events and not batch.dead_letters:
            self._idle_s = min(STREAM_IDLE_MAX_S, self._idle_s * 2)
        else:
            self._idle_s = STREAM_IDLE_S
        return batch

    def commit(self, batch: Batch) -> None:
        if self.record_ids is not None and batch.record_ids:
            self.record_ids.commit(batch)
        token = batch.commit
        if token is None:
            return
        kind = token[0]
        if kind == "snapshot":
            self.snapshot.commit(token, batch.position)
        elif kind == "lsn":
            self.slot.acknowledge(token[1])
            if not self.stream.peeking or self.slot.advance_due():
                self.slot.advance()

    # -------------------------------------------------------------- heartbeat, lag, close

    def heartbeat(self) -> bool:
        """Write a transactional logical message: decoding it gives the slot a commit to
        advance past even when the published tables are idle."""
        self.slot.heartbeat()
        return True

    def heartbeat_interval(self) -> float:
        return self.ctx.source.logical.heartbeat_s

    def idle_interval(self) -> float:
        """:data:`STREAM_IDLE_S` after a change, growing to :data:`STREAM_IDLE_MAX_S` while
        the slot stays empty."""
        return self._idle_s

    def close(self) -> None:
        self.snapshot.close()
        self.stream.close()
        if self.slot.pending:
            # Acknowledged by Kafka: advancing now saves re-sending it after a restart.
            with contextlib.suppress(HubError, psycopg.Error):
                self.slot.advance()
        self.stream.close_connection()
        self.link.close()

    # -------------------------------------------------------------- operations

    @classmethod
    def check_postgres(
        cls, conn: psycopg.Connection, name: str, source: SourceConfig, table: TableInfo
    ) -> list[CheckResult]:
        return check_logical(conn, name, source, table)

    @classmethod
    def lag_probe(cls, name: str, source: SourceConfig) -> LagProbe:
        """The WAL the slot retains, on a connection of the probe's own."""
        return slots.RetainedWal(name, source.url, slot_names(name, source)[0])

    @classmethod
    def drop(cls, name: str, source: SourceConfig) -> list[str]:
        """Drop the slot and the publication; refuses while the slot is in use."""
        slot, publication = slot_names(name, source)
        with psycopg.connect(psycopg_conninfo(source.url), autocommit=True) as conn:
            return slots.drop(conn, name, slot, publication)

"""A logical connector's initial snapshot: the table read in key order, segment by segment,
each under a snapshot stored before its first row (see :mod:`connectors.logical`)."""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy import Engine

from connectors.events import Batch, EventBuilder
from connectors.logical.connections import SourceConnections
from connectors.logical.overlap import SnapshotFilter
from connectors.logical.pgoutput.messages import int_to_lsn, lsn_to_int
from connectors.mapping import value_text
from connectors.pgtable import TableInfo, key_casts
from connectors.progress import ProgressLog
from connectors.state import set_state

log = logging.getLogger(__name__)


class SnapshotReader:
    """Reads the snapshot and keeps its progress (``connector_state.snapshot_progress``).

    The read position runs ahead of the stored progress: a batch's last key is stored only
    by :meth:`commit`, after Kafka acknowledged it. :attr:`filter` tells the stream which
    transactions the segments read so far already hold.
    """

    def __init__(
        self,
        name: str,
        link: SourceConnections,
        engine: Engine,
        columns: tuple[str, ...],
        chunk_size: int,
    ):
        self.name = name
        self.link = link
        self.engine = engine
        self.mapped_columns = columns
        self.chunk_size = chunk_size
        self.progress: dict[str, Any] = {}
        self.done = False
        self.filter = SnapshotFilter([])
        self._conn: psycopg.Connection | None = None
        self._cursor: psycopg.ServerCursor | None = None
        self._columns: tuple[str, ...] = ()
        self._read_after: list[str] | None = None
        self._read_rows = 0
        self._log: ProgressLog | None = None

    def load(self, state: dict[str, Any]) -> None:
        """Take the progress stored in the connector's state."""
        self.progress = dict(state["snapshot_progress"] or {})
        self.done = bool(state["snapshot_done"])
        self.filter = SnapshotFilter(self.progress.get("segments", []))

    @property
    def started(self) -> bool:
        """A snapshot was started (or finished) against the slot's position."""
        return self.done or "slot_lsn" in self.progress

    def start(self, slot_lsn: str) -> None:
        """Begin a new snapshot whose reads rank after ``slot_lsn`` (where the stream starts)."""
        now = time.time()
        self.progress = {"slot_lsn": slot_lsn, "segments": [], "after": None, "rows": 0,
                         "started_at": now, "at": now}  # fmt: skip
        self.done = False
        self._log = None
        self.filter = SnapshotFilter([])
        set_state(self.engine, self.name, snapshot_done=False, snapshot_progress=self.progress)

    def batch(self, table: TableInfo, builder: EventBuilder) -> Batch:
        """The next chunk of rows, as ``r`` events."""
        if self._cursor is None:
            self._open_segment(table)
        assert self._cursor is not None
        rows = self._cursor.fetchmany(self.chunk_size)
        batch = Batch()
        # A snapshot read carries the LSN where the stream starts: every streamed change
        # ranks after it for consumers that order by LSN, even one the snapshot missed.
        lsn = lsn_to_int(self.progress["slot_lsn"])
        position = int_to_lsn(lsn)
        columns = self._columns
        add = builder.add
        for values in rows:
            row = dict(zip(columns, values, strict=True))
            add(batch, "r", None, row, position=position, lsn=lsn, snapshot=True)
        nkeys = len(table.keys)
        # The read position runs ahead of the stored progress until the batch is committed.
        if rows:
            self._read_after = [value_text(v) for v in rows[-1][:nkeys]]
        self._read_rows += len(rows)
        after, total = self._read_after, self._read_rows
        done = len(rows) < self.chunk_size
        if done:
            self.close()
        batch.commit = ("snapshot", after, total, done)
        batch.read_ahead = not done  # the cursor goes on; progress is only stored on commit
        batch.position = f"snapshot {total} rows" + (" (done)" if done else "")
        return batch

    def commit(self, token: tuple, position: str | None) -> None:
        """Store the progress of an acknowledged snapshot batch."""
        _, after, rows, done = token
        self.progress["after"] = after
        self.progress["rows"] = rows
        self.progress["at"] = time.time()
        self.done = done
        if done:
            self.progress["finished_at"] = self.progress["at"]
            if self._log is not None:
                self._log.finish(rows)
            self._log = None
        elif self._log is not None:
            self._log.update(rows)
        set_state(
            self.engine,
            self.name,
            snapshot_done=done,
            snapshot_progress=self.progress,
            position=position,
        )

    def _open_segment(self, table: TableInfo) -> None:
        conn = self.link.connect(autocommit=False)
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        snapshot, lsn = conn.execute(
            "SELECT pg_current_snapshot()::text, pg_current_wal_insert_lsn()::text"
        ).fetchone()
        after = self.progress.get("after")
        self._read_after, self._read_rows = after, self.progress.get("rows", 0)
        if "estimated" not in self.progress:
            self.progress["estimated"] = _estimate_rows(conn, table)
        self.progress.setdefault("segments", []).append(
            {"after": after, "snapshot": snapshot, "lsn": lsn_to_int(lsn)}
        )
        # Stored before any row of the segment is emitted: the stream filter depends on it.
        set_state(self.engine, self.name, snapshot_progress=self.progress)
        self.filter = SnapshotFilter(self.progress["segments"])
        key_names = [k.name for k in table.keys]
        columns = list(key_names) + [c for c in self.mapped_columns if c not in key_names]
        keys = sql.SQL(", ").join(sql.Identifier(k) for k in key_names)
        query = sql.SQL("SELECT {} FROM {}").format(
            sql.SQL(", ").join(sql.Identifier(c) for c in columns), table.ident()
        )
        params: list[Any] = []
        if after is not None:
            query += sql.SQL(" WHERE ROW({}) > {}").format(keys, key_casts(table.keys))
            params = list(after)
        query += sql.SQL(" ORDER BY {}").format(keys)
        cursor = conn.cursor(name=f"hub_snapshot_{self.name}")
        cursor.itersize = self.chunk_size
        cursor.execute(query, params)
        self._conn, self._cursor, self._columns = conn, cursor, tuple(columns)
        if self._log is None:
            self._log = ProgressLog(self.name, f"{table.qualified} at {lsn}",
                                    self.progress.get("estimated"),
                                    self.progress.get("started_at") or time.time())  # fmt: skip
            self._log.start(self._read_rows)

    def close(self) -> None:
        """Drop the segment being read (its uncommitted rows are read again next time)."""
        cursor, conn = self._cursor, self._conn
        self._cursor = self._conn = None
        if cursor is not None:
            with contextlib.suppress(psycopg.Error):
                cursor.close()
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.rollback()
                conn.close()


def _estimate_rows(conn: psycopg.Connection, table: TableInfo) -> int:
    """The table's row count for progress: the planner's estimate (no scan) when the table
    was analyzed, else ``count(*)`` in the segment's own snapshot."""
    (estimate,) = conn.execute(
        "SELECT reltuples::bigint FROM pg_class WHERE oid = %s", (table.oid,)
    ).fetchone()
    if estimate is not None and estimate > 0:
        return int(estimate)
    return conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table.ident())).fetchone()[0]

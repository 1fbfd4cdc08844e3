"""``logical`` capture: PostgreSQL logical decoding (pgoutput) through a replication slot and a
publication, read with SQL functions, after an initial snapshot consistent with the slot.

How the snapshot and the stream fit together, exactly once per change in effect:

1. The slot is created first; its consistent point S is where the stream starts.
2. The table is read in primary-key order in a ``REPEATABLE READ`` transaction whose
   snapshot (``pg_current_snapshot()``) and WAL insert position L are stored in
   ``connector_state.snapshot_progress`` *before* any row is emitted. Progress (the last
   key acknowledged by Kafka) is stored after every chunk, so a restart continues after
   it — in a new transaction: the table is then read as *segments*, each with its own
   snapshot, key range and L.
3. The stream replays every transaction committed after S. A transaction whose changes a
   segment's snapshot already saw (its xid is visible in that snapshot and its commit
   LSN is below the segment's L) is skipped for the keys of that segment. So each key
   gets its snapshot read, then exactly the changes made after it, in commit order.

Unchanged TOAST values never overwrite: under REPLICA IDENTITY FULL they are taken from
the old tuple; otherwise the field is null and listed in ``attributes["hub.unchanged"]``.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from connectors.base import CaptureMode, ConnectorContext, SourceLag, split_table
from connectors.events import Batch, DeadLetter
from connectors.mapping import dump_payload, value_text
from connectors.pgoutput import (
    UNCHANGED,
    Begin,
    Commit,
    Delete,
    Insert,
    LogicalMessage,
    PgValueError,
    Relation,
    RelationCache,
    Truncate,
    Type,
    Update,
    int_to_lsn,
    lsn_to_int,
    parse_message,
)
from connectors.state import ensure_state, hub_engine, set_state
from hub.db import psycopg_conninfo
from hub.errors import FatalError, HubError, RetriableError

log = logging.getLogger(__name__)

HEARTBEAT_PREFIX = "hub.heartbeat"
PEEK_BATCHES = 20
"""One ``peek`` call reads up to this many batches: every call decodes the WAL again from
the slot's ``restart_lsn``, so a backlog read in 10k-row peeks costs quadratic time."""
ADVANCE_EVERY_S = 1.0
"""While a peek's rows are being read, the slot advances at most this often (and always
before the next peek): each advance decodes from ``restart_lsn`` too."""
LOG_SNAPSHOT_EVERY_S = 0.5
"""How often an advance also logs a running-xacts record (``pg_log_standby_snapshot()``)."""


# ------------------------------------------------------------------ source introspection


@dataclass(frozen=True)
class KeyColumn:
    name: str
    type_sql: str  # format_type(): how to cast a key's text back to the column type
    collation: str | None  # non-default collation of the column, if any


@dataclass(frozen=True)
class TableInfo:
    """A source table as PostgreSQL resolves it."""

    oid: int
    schema: str
    name: str
    columns: dict[str, str]  # column name -> format_type()
    keys: tuple[KeyColumn, ...]
    replica_identity: str  # d, f, i, n
    primary_key: tuple[str, ...]

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    def ident(self) -> sql.Composed:
        return sql.SQL("{}.{}").format(sql.Identifier(self.schema), sql.Identifier(self.name))


def table_info(conn: psycopg.Connection, table: str, key_columns: tuple[str, ...]) -> TableInfo:
    """Resolve ``table`` (``schema.table`` or a name on the search path); FatalError if absent."""
    schema, name = split_table(table)
    regclass = (
        sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(name))
        if schema
        else sql.Identifier(name)
    ).as_string(conn)
    row = conn.execute(
        "SELECT c.oid, n.nspname, c.relname, c.relreplident"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.oid = to_regclass(%s)",
        (regclass,),
    ).fetchone()
    if row is None:
        raise FatalError(f"table {table} does not exist in the source database")
    oid, nspname, relname, replident = row
    cols = conn.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod),"
        " CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation"
        "      THEN co.collname END"
        " FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid"
        " LEFT JOIN pg_collation co ON co.oid = a.attcollation"
        " WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        (oid,),
    ).fetchall()
    columns = {c[0]: c[1] for c in cols}
    collations = {c[0]: c[2] for c in cols}
    missing = [k for k in key_columns if k not in columns]
    if missing:
        raise FatalError(f"table {table}: key column {', '.join(missing)} does not exist")
    pk = conn.execute(
        "SELECT array_agg(a.attname ORDER BY k.ord) FROM pg_index i"
        " CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)"
        " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum"
        " WHERE i.indrelid = %s AND i.indisprimary",
        (oid,),
    ).fetchone()[0]
    return TableInfo(
        oid=oid,
        schema=nspname,
        name=relname,
        columns=columns,
        keys=tuple(KeyColumn(k, columns[k], collations[k]) for k in key_columns),
        replica_identity=replident,
        primary_key=tuple(pk or ()),
    )


def key_casts(keys: tuple[KeyColumn, ...]) -> sql.Composed:
    """``(%s::type COLLATE "c", …)``: a key's text values as a row comparable to the key."""
    parts = []
    for k in keys:
        part = sql.SQL("%s::") + sql.SQL(k.type_sql)
        if k.collation:
            part = part + sql.SQL(" COLLATE ") + sql.Identifier(k.collation)
        parts.append(part)
    return sql.SQL("ROW(") + sql.SQL(", ").join(parts) + sql.SQL(")")


# ------------------------------------------------------------------ snapshot / stream overlap


@dataclass(frozen=True)
class _Snapshot:
    """A ``pg_current_snapshot()`` value: xmin:xmax:xip,… (64-bit xids)."""

    xmin: int
    xmax: int
    xip: frozenset[int]

    @classmethod
    def parse(cls, text: str) -> _Snapshot:
        xmin, xmax, xip = text.split(":")
        return cls(int(xmin), int(xmax), frozenset(int(x) for x in xip.split(",") if x))

    def visible(self, xid32: int) -> bool:
        """Whether a transaction (32-bit xid from a Begin message) committed before it."""
        # Widen the 32-bit xid to the epoch nearest xmax: stream transactions are recent.
        full = (self.xmax & ~0xFFFFFFFF) | xid32
        if full > self.xmax + (1 << 31):
            full -= 1 << 32
        elif full < self.xmax - (1 << 31):
            full += 1 << 32
        return full < self.xmin or (full < self.xmax and full not in self.xip)


@dataclass(frozen=True)
class _Segment:
    after: list[str] | None  # keys strictly greater than this were read under `snapshot`
    snapshot: _Snapshot
    lsn: int  # WAL insert position read inside the snapshot


class SnapshotFilter:
    """Decides which streamed changes a snapshot already contains (see the module doc)."""

    def __init__(self, segments: list[dict[str, Any]]):
        self.segments = [
            _Segment(s["after"], _Snapshot.parse(s["snapshot"]), s["lsn"]) for s in segments
        ]
        self.until = max((s.lsn for s in self.segments), default=0)

    def seen_by(self, xid: int, commit_lsn: int) -> list[bool]:
        """Per segment: whether the transaction's changes are in that segment's read."""
        return [commit_lsn < s.lsn and s.snapshot.visible(xid) for s in self.segments]


# ------------------------------------------------------------------ the capture mode


class LogicalCapture(CaptureMode):
    """Snapshot, then stream through ``pg_logical_slot_peek_binary_changes`` and acknowledge
    with ``pg_replication_slot_advance`` after Kafka acknowledged (see the module doc).

    Resume position: the slot's ``confirmed_flush_lsn`` while streaming; while
    snapshotting, ``connector_state.snapshot_progress`` (segments and last key).
    """

    capture = "logical"

    def __init__(self, ctx: ConnectorContext):
        super().__init__(ctx)
        src = ctx.source
        self.slot = src.logical.slot or f"hub_{ctx.name}"
        self.publication = src.logical.publication or f"hub_{ctx.name}"
        self.batch_size = src.logical.batch_size
        self.chunk_size = src.snapshot.chunk_size
        self.conninfo = psycopg_conninfo(src.url)
        self.engine = hub_engine(ctx.hub_db_url)
        self.table: TableInfo | None = None
        self.database = ""
        self._conn: psycopg.Connection | None = None  # autocommit: slot, heartbeat, lag
        self._snap_conn: psycopg.Connection | None = None
        self._snap_cursor: psycopg.ServerCursor | None = None
        self._snap_columns: tuple[str, ...] = ()
        self._peek_conn: psycopg.Connection | None = None
        self._peek_cursor: psycopg.ServerCursor | None = None
        self._peek_rows = 0
        self._advanced_at = 0.0
        self._snapshot_logged_at = 0.0
        self._unadvanced: int | None = None  # acknowledged LSN the slot has not moved to yet
        self._log_snapshots = True  # pg_log_standby_snapshot(): see _advance()
        self._relations = RelationCache()
        self._txn: Begin | None = None
        self._txn_seen: list[bool] = []
        self._txn_source: dict[str, Any] = {}
        self._progress: dict[str, Any] = {}
        self._snapshot_done = False
        self._filter = SnapshotFilter([])
        self._segment_cache: dict[str, int] = {}
        self._read_after: list[str] | None = None
        self._read_rows = 0
        self._builder = None

    # -------------------------------------------------------------- connections

    def _connect(self, *, autocommit: bool = True) -> psycopg.Connection:
        try:
            return psycopg.connect(
                self.conninfo,
                autocommit=autocommit,
                connect_timeout=10,
                application_name=f"hub-connector-{self.ctx.name}",
            )
        except psycopg.OperationalError as exc:
            raise RetriableError(f"source database of {self.ctx.name}: {_first_line(exc)}") from exc

    @contextlib.contextmanager
    def _source_errors(self):
        """Map psycopg errors onto the taxonomy; a broken connection is retriable."""
        try:
            yield
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            if isinstance(exc, psycopg.errors.ObjectNotInPrerequisiteState):
                raise FatalError(f"{self.ctx.name}: {_first_line(exc)}") from exc
            self.close()
            raise RetriableError(f"source database of {self.ctx.name}: {_first_line(exc)}") from exc
        except psycopg.errors.InsufficientPrivilege as exc:
            raise FatalError(
                f"{self.ctx.name}: {_first_line(exc)} (logical capture needs the REPLICATION "
                "attribute or superuser, and ownership of the table for the publication)"
            ) from exc
        except psycopg.Error as exc:
            self.close()
            raise FatalError(f"{self.ctx.name}: {_first_line(exc)}") from exc

    def _c(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = self._connect()
            # A heartbeat must be flushed to be decodable: do not let it wait for the WAL
            # writer when the server runs with synchronous_commit = off.
            self._conn.execute("SET synchronous_commit = on")
        return self._conn

    # -------------------------------------------------------------- open

    def open(self) -> None:
        """Check wal_level, create the publication and the slot if missing, load progress."""
        with self._source_errors():
            conn = self._c()
            wal_level = conn.execute("SHOW wal_level").fetchone()[0]
            if wal_level != "logical":
                raise FatalError(
                    f"{self.ctx.name}: wal_level is {wal_level}, logical capture needs "
                    "wal_level=logical (postgresql.conf, then restart the server)"
                )
            self.database = conn.info.dbname
            self.table = table_info(conn, self.ctx.source.table, self.ctx.mapper.key_columns)
            missing = [c for c in self.ctx.mapper.columns if c not in self.table.columns]
            if missing:
                raise FatalError(
                    f"{self.ctx.name}: column {', '.join(missing)} not in {self.table.qualified}"
                )
            self._ensure_publication(conn)
            state = ensure_state(self.engine, self.ctx.name, self.capture)
            self._progress = dict(state["snapshot_progress"] or {})
            self._snapshot_done = bool(state["snapshot_done"])
            slot = self._slot_row(conn)
            if slot is None:
                if self._snapshot_done:
                    log.warning(
                        "%s: replication slot %s is gone; changes since it was dropped are "
                        "unknown, so the table is snapshotted again",
                        self.ctx.name,
                        self.slot,
                    )
                (start,) = conn.execute(
                    "SELECT lsn::text FROM pg_create_logical_replication_slot(%s, 'pgoutput')",
                    (self.slot,),
                ).fetchone()
                log.info("%s: created replication slot %s at %s", self.ctx.name, self.slot, start)
                self._start_snapshot(start)
            else:
                plugin, database, confirmed = slot
                if plugin != "pgoutput" or database != self.database:
                    raise FatalError(
                        f"{self.ctx.name}: replication slot {self.slot} exists for plugin "
                        f"{plugin} on database {database}; choose another logical.slot"
                    )
                if not self._snapshot_done and "slot_lsn" not in self._progress:
                    self._start_snapshot(confirmed)
        self._filter = SnapshotFilter(self._progress.get("segments", []))
        self._builder = self.ctx.builder(
            system="postgresql", database=self.database, table=self.table.qualified
        )

    def _slot_row(self, conn: psycopg.Connection) -> tuple[str, str, str] | None:
        return conn.execute(
            "SELECT plugin, database, confirmed_flush_lsn::text FROM pg_replication_slots"
            " WHERE slot_name = %s",
            (self.slot,),
        ).fetchone()

    def _ensure_publication(self, conn: psycopg.Connection) -> None:
        assert self.table is not None
        exists = conn.execute(
            "SELECT puballtables FROM pg_publication WHERE pubname = %s", (self.publication,)
        ).fetchone()
        if exists is None:
            conn.execute(
                sql.SQL("CREATE PUBLICATION {} FOR TABLE {}").format(
                    sql.Identifier(self.publication), self.table.ident()
                )
            )
            log.info("%s: created publication %s", self.ctx.name, self.publication)
            return
        if exists[0]:
            return
        has = conn.execute(
            "SELECT 1 FROM pg_publication_tables"
            " WHERE pubname = %s AND schemaname = %s AND tablename = %s",
            (self.publication, self.table.schema, self.table.name),
        ).fetchone()
        if has is None:
            conn.execute(
                sql.SQL("ALTER PUBLICATION {} ADD TABLE {}").format(
                    sql.Identifier(self.publication), self.table.ident()
                )
            )
            log.info("%s: added %s to publication %s", self.ctx.name, self.table, self.publication)

    def _start_snapshot(self, slot_lsn: str) -> None:
        self._progress = {"slot_lsn": slot_lsn, "segments": [], "after": None, "rows": 0}
        self._snapshot_done = False
        set_state(self.engine, self.ctx.name, snapshot_done=False, snapshot_progress=self._progress)

    def resnapshot(self) -> None:
        """Read the table again; the stream then resumes at the slot, minus what the new
        snapshot already holds."""
        self._close_snapshot()
        self._close_peek()
        confirmed = None
        with self._source_errors():
            row = self._slot_row(self._c())
            confirmed = row[2] if row else None
        self._start_snapshot(confirmed or "0/0")
        self._filter = SnapshotFilter([])

    @property
    def phase(self) -> str:
        return "streaming" if self._snapshot_done else "snapshotting"

    # -------------------------------------------------------------- batches

    def next_batch(self) -> Batch:
        with self._source_errors():
            if not self._snapshot_done:
                return self._snapshot_batch()
            return self._stream_batch()

    def commit(self, batch: Batch) -> None:
        token = batch.commit
        if token is None:
            return
        kind = token[0]
        if kind == "snapshot":
            _, after, rows, done = token
            self._progress["after"] = after
            self._progress["rows"] = rows
            self._snapshot_done = done
            if done:
                self._progress["finished_at"] = time.time()
            set_state(
                self.engine,
                self.ctx.name,
                snapshot_done=done,
                snapshot_progress=self._progress,
                position=batch.position,
            )
        elif kind == "lsn":
            self._unadvanced = token[1]
            now = time.monotonic()
            if self._peek_cursor is None or now - self._advanced_at >= ADVANCE_EVERY_S:
                self._advance()

    def _advance(self) -> None:
        """Move the slot to the last acknowledged commit (before any new peek: a peek
        starts at the slot's confirmed position)."""
        lsn, self._unadvanced = self._unadvanced, None
        if lsn is None:
            return
        with self._source_errors():
            conn = self._c()
            conn.execute(
                "SELECT pg_replication_slot_advance(%s, %s::pg_lsn)", (self.slot, int_to_lsn(lsn))
            )
            now = time.monotonic()
            if self._log_snapshots and now - self._snapshot_logged_at >= LOG_SNAPSHOT_EVERY_S:
                self._snapshot_logged_at = now
                # Decoding restarts at the slot's restart_lsn, which only moves past a
                # running-xacts record (logged every ~15 s): log one now, so the next advance
                # moves it and peeks stop re-decoding the last seconds of WAL every time.
                try:
                    conn.execute("SELECT pg_log_standby_snapshot()")
                except (psycopg.errors.InsufficientPrivilege, psycopg.errors.UndefinedFunction):
                    self._log_snapshots = False
                    log.info(
                        "%s: pg_log_standby_snapshot() is not available to this user;"
                        " the slot's restart point moves every ~15 s instead",
                        self.ctx.name,
                    )
            self._advanced_at = now

    # -------------------------------------------------------------- snapshot

    def _snapshot_batch(self) -> Batch:
        assert self.table is not None and self._builder is not None
        if self._snap_cursor is None:
            self._open_snapshot_segment()
        assert self._snap_cursor is not None
        rows = self._snap_cursor.fetchmany(self.chunk_size)
        batch = Batch()
        # A snapshot read carries the LSN where the stream starts: every streamed change
        # ranks after it for consumers that order by LSN, even one the snapshot missed.
        lsn = lsn_to_int(self._progress["slot_lsn"])
        position = int_to_lsn(lsn)
        columns = self._snap_columns
        add = self._builder.add
        for values in rows:
            row = dict(zip(columns, values, strict=True))
            add(batch, "r", None, row, position=position, lsn=lsn, snapshot=True)
        nkeys = len(self.table.keys)
        # The read position runs ahead of the stored progress until the batch is committed.
        if rows:
            self._read_after = [value_text(v) for v in rows[-1][:nkeys]]
        self._read_rows += len(rows)
        after, total = self._read_after, self._read_rows
        done = len(rows) < self.chunk_size
        if done:
            self._close_snapshot()
        batch.commit = ("snapshot", after, total, done)
        batch.read_ahead = not done  # the cursor goes on; progress is only stored on commit
        batch.position = f"snapshot {total} rows" + (" (done)" if done else "")
        return batch

    def _open_snapshot_segment(self) -> None:
        assert self.table is not None
        conn = self._connect(autocommit=False)
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        snapshot, lsn = conn.execute(
            "SELECT pg_current_snapshot()::text, pg_current_wal_insert_lsn()::text"
        ).fetchone()
        after = self._progress.get("after")
        self._read_after, self._read_rows = after, self._progress.get("rows", 0)
        self._progress.setdefault("segments", []).append(
            {"after": after, "snapshot": snapshot, "lsn": lsn_to_int(lsn)}
        )
        # Stored before any row of the segment is emitted: the stream filter depends on it.
        set_state(self.engine, self.ctx.name, snapshot_progress=self._progress)
        self._filter = SnapshotFilter(self._progress["segments"])
        key_names = [k.name for k in self.table.keys]
        columns = list(key_names) + [c for c in self.ctx.mapper.columns if c not in key_names]
        keys = sql.SQL(", ").join(sql.Identifier(k) for k in key_names)
        query = sql.SQL("SELECT {} FROM {}").format(
            sql.SQL(", ").join(sql.Identifier(c) for c in columns), self.table.ident()
        )
        params: list[Any] = []
        if after is not None:
            query += sql.SQL(" WHERE ROW({}) > {}").format(keys, key_casts(self.table.keys))
            params = list(after)
        query += sql.SQL(" ORDER BY {}").format(keys)
        cursor = conn.cursor(name=f"hub_snapshot_{self.ctx.name}")
        cursor.itersize = self.chunk_size
        cursor.execute(query, params)
        self._snap_conn, self._snap_cursor, self._snap_columns = conn, cursor, tuple(columns)
        log.info(
            "%s: snapshot of %s %s at %s",
            self.ctx.name,
            self.table.qualified,
            "resumed after a stored key" if after else "started",
            lsn,
        )

    def _close_snapshot(self) -> None:
        cursor, conn = self._snap_cursor, self._snap_conn
        self._snap_cursor = self._snap_conn = None
        if cursor is not None:
            with contextlib.suppress(psycopg.Error):
                cursor.close()
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.rollback()
                conn.close()

    # -------------------------------------------------------------- stream

    def _open_peek(self) -> None:
        self._advance()
        conn = self._peek_conn
        if conn is None or conn.closed:
            conn = self._peek_conn = self._connect(autocommit=False)
        cursor = conn.cursor(name=f"hub_peek_{self.ctx.name}")
        cursor.itersize = self.batch_size
        cursor.execute(
            "SELECT data FROM pg_logical_slot_peek_binary_changes(%s, NULL, %s,"
            " 'proto_version', '1', 'publication_names', %s, 'messages', 'true')",
            (self.slot, self.batch_size * PEEK_BATCHES, self.publication),
        )
        self._peek_cursor = cursor
        self._peek_rows = 0
        self._relations = RelationCache()
        self._txn = None

    def _close_peek(self) -> None:
        cursor, self._peek_cursor = self._peek_cursor, None
        if cursor is not None:
            with contextlib.suppress(psycopg.Error):
                cursor.close()
        if self._peek_conn is not None and not self._peek_conn.closed:
            with contextlib.suppress(psycopg.Error):
                self._peek_conn.rollback()

    def _stream_batch(self) -> Batch:
        assert self.table is not None and self._builder is not None
        if self._peek_cursor is None:
            self._open_peek()
        assert self._peek_cursor is not None
        rows = self._peek_cursor.fetchmany(self.batch_size)
        self._peek_rows += len(rows)
        batch = Batch()
        exhausted = len(rows) < self.batch_size
        self._apply(rows, batch)
        if exhausted:
            self._close_peek()
            batch.caught_up = self._peek_rows < self.batch_size * PEEK_BATCHES
        else:
            # The peek's result is materialized on the server: the next batch can be read
            # while Kafka acknowledges this one; the slot advances per acknowledged batch.
            batch.read_ahead = True
        return batch

    def _apply(self, rows: list[tuple[bytes]], batch: Batch) -> None:
        relations = self._relations
        oid = self.table.oid
        add = self._builder.add
        for (data,) in rows:
            msg = parse_message(data)
            kind = type(msg)
            if kind is Insert or kind is Update or kind is Delete:
                if msg.relation_id != oid:
                    continue
                txn = self._txn
                seen = self._txn_seen
                try:
                    change = relations.decode_change(msg)
                except PgValueError as exc:
                    batch.dead_letters.append(self._undecodable(msg, exc, txn))
                    continue
                before, after, op = change.before, change.after, change.op
                if after is not None and before is not None and not change.before_is_key_only:
                    for name, value in after.items():
                        if value is UNCHANGED:
                            after[name] = before.get(name)
                if seen and any(seen) and self._seen_in_snapshot(seen, after or before):
                    continue
                common = self._txn_source
                if op == "u" and before is not None:
                    mapper = self.ctx.mapper
                    try:
                        old_key = mapper.record_key(before)
                        new_key = mapper.record_key(after)
                    except Exception:  # noqa: BLE001 - a bad key becomes a dead letter below
                        old_key = new_key = None
                    if old_key != new_key:
                        # The primary key changed: the old record is gone, a new one appeared.
                        add(batch, "d", before, None, before_partial=change.before_is_key_only,
                            **common)  # fmt: skip
                        add(batch, "c", None, after, **common)
                        continue
                add(batch, op, before, after, before_partial=change.before_is_key_only, **common)
            elif kind is Begin:
                self._txn = msg
                self._txn_source = {
                    "position": int_to_lsn(msg.final_lsn),
                    "lsn": msg.final_lsn,
                    "txid": msg.xid,
                    "commit_ts_ms": msg.commit_ts_ms,
                }
                self._txn_seen = (
                    self._filter.seen_by(msg.xid, msg.final_lsn)
                    if msg.final_lsn < self._filter.until
                    else []
                )
                ts = msg.commit_ts_ms / 1000
                if batch.oldest_commit_ts is None:
                    batch.oldest_commit_ts = ts
                batch.newest_commit_ts = ts
            elif kind is Commit:
                batch.commit = ("lsn", msg.end_lsn)
                batch.position = int_to_lsn(msg.end_lsn)
                self._txn = None
                self._txn_seen = []
            elif kind is Relation or kind is Type:
                relations.observe(msg)
            elif kind is Truncate:
                if oid in msg.relation_ids:
                    batch.dead_letters.append(self._truncated())
            elif kind is LogicalMessage:
                pass  # heartbeats: only their commit matters (it lets the slot advance)

    def _seen_in_snapshot(self, seen: list[bool], row: dict[str, Any] | None) -> bool:
        """Whether the snapshot segment holding ``row``'s key already saw this change."""
        if all(seen):
            return True
        if row is None:
            return False
        return seen[self._segment_of(row)]

    def _segment_of(self, row: dict[str, Any]) -> int:
        """Index of the snapshot segment whose key range holds ``row``'s key (asks the
        source, so the comparison uses the column's own collation)."""
        assert self.table is not None
        keys = self.table.keys
        values = [value_text(row[k.name]) for k in keys]
        cache_key = "\x00".join(values)
        if cache_key in self._segment_cache:
            return self._segment_cache[cache_key]
        bounds = [s.after for s in self._filter.segments[1:]]
        index = 0
        if bounds:
            cast = key_casts(keys)
            query = sql.SQL("SELECT ") + sql.SQL(" + ").join(
                sql.SQL("({} > {})::int").format(cast, cast) for _ in bounds
            )
            params: list[str] = []
            for b in bounds:
                params += values + list(b or [])
            index = self._c().execute(query, params).fetchone()[0]
        if len(self._segment_cache) > 100_000:
            self._segment_cache.clear()
        self._segment_cache[cache_key] = index
        return index

    def _undecodable(self, msg: Insert | Update | Delete, exc: PgValueError, txn: Begin | None):
        raw = getattr(msg, "new", None) or getattr(msg, "old", None) or ()
        relation = self._relations.get(msg.relation_id)
        row = {
            c.name: (None if v is None or v is UNCHANGED else bytes(v).decode("utf-8", "replace"))
            for c, v in zip(relation.columns, raw, strict=False)
        }
        key = None
        with contextlib.suppress(Exception):
            key = self.ctx.mapper.record_key(row)
        payload = {
            "op": {Insert: "c", Update: "u", Delete: "d"}[type(msg)],
            "connector": self.ctx.name,
            "database": self.database,
            "table": self.table.qualified,
            "position": int_to_lsn(txn.final_lsn) if txn else None,
            "before": row if type(msg) is Delete else None,
            "after": None if type(msg) is Delete else row,
            "raw_text": True,
        }
        return DeadLetter(key, exc.column, exc.reason, "undecodable_value", dump_payload(payload))

    def _truncated(self) -> DeadLetter:
        reason = (
            f"TRUNCATE of {self.table.qualified}: rows were deleted without per-row changes; "
            f"request a re-snapshot (hub connector resnapshot {self.ctx.name})"
        )
        log.error("%s: %s", self.ctx.name, reason)
        return DeadLetter(None, None, reason, "truncate", None)

    # -------------------------------------------------------------- heartbeat, lag, close

    def heartbeat(self) -> bool:
        """Write a transactional logical message: decoding it gives the slot a commit to
        advance past even when the published tables are idle."""
        with self._source_errors():
            self._c().execute(
                "SELECT pg_logical_emit_message(true, %s, now()::text)", (HEARTBEAT_PREFIX,)
            )
        return True

    def lag(self) -> SourceLag:
        with self._source_errors():
            row = (
                self._c()
                .execute(
                    "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint"
                    " FROM pg_replication_slots WHERE slot_name = %s",
                    (self.slot,),
                )
                .fetchone()
            )
        return SourceLag(bytes=max(0, row[0]) if row and row[0] is not None else None)

    def close(self) -> None:
        self._close_snapshot()
        self._close_peek()
        if self._unadvanced is not None:
            # Acknowledged by Kafka: advancing now saves re-sending it after a restart.
            with contextlib.suppress(HubError, psycopg.Error):
                self._advance()
        for conn in (self._peek_conn, self._conn):
            if conn is not None:
                with contextlib.suppress(psycopg.Error):
                    conn.close()
        self._peek_conn = self._conn = None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]

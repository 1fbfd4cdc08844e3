"""A logical connector's stream: the slot's changes read with
``pg_logical_slot_peek_binary_changes``, decoded and turned into events, minus what the
snapshot already read (see :mod:`connectors.logical`)."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import psycopg
from psycopg import sql

from connectors.base import ConnectorContext
from connectors.events import Batch, DeadLetter, EventBuilder
from connectors.logical.connections import SourceConnections
from connectors.logical.pgoutput.decode import RelationCache
from connectors.logical.pgoutput.messages import (
    UNCHANGED,
    Begin,
    Commit,
    Delete,
    Insert,
    LogicalMessage,
    PgValueError,
    Relation,
    Truncate,
    Type,
    Update,
    int_to_lsn,
    parse_message,
)
from connectors.logical.slot import Slot
from connectors.logical.snapshot import SnapshotReader
from connectors.mapping import dump_payload, value_text
from connectors.pgtable import TableInfo, key_casts

log = logging.getLogger(__name__)

PEEK_BATCHES = 20
"""One ``peek`` call reads up to this many batches: every call decodes the WAL again from
the slot's ``restart_lsn``, so a backlog read in 10k-row peeks costs quadratic time."""

FLUSHED_LSN_SQL = (
    "SELECT (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()"
    " ELSE pg_current_wal_flush_lsn() END)::text"
)
"""The end of the WAL a peek would decode to (flushed on a primary, replayed on a standby):
a plain function call, no decoding session."""


class StreamReader:
    """Reads the slot from its confirmed position, one peek of up to ``PEEK_BATCHES``
    batches at a time, and never moves it: the slot advances only through :class:`Slot`
    once Kafka acknowledged a batch. A batch's ``commit`` is the end of its last complete
    transaction (``None`` while inside one)."""

    wal_gate = True
    """Skip the peek while the WAL stands still (off only to measure the cost without)."""

    def __init__(
        self,
        ctx: ConnectorContext,
        link: SourceConnections,
        slot: Slot,
        snapshot: SnapshotReader,
        batch_size: int,
    ):
        self.ctx = ctx
        self.link = link
        self.slot = slot
        self.snapshot = snapshot
        self.batch_size = batch_size
        self.table: TableInfo | None = None
        self.database = ""
        self._builder: EventBuilder | None = None
        self._conn: psycopg.Connection | None = None
        self._cursor: psycopg.ServerCursor | None = None
        self._rows = 0
        self._relations = RelationCache()
        self._txn: Begin | None = None
        self._txn_seen: list[bool] = []
        self._txn_source: dict[str, Any] = {}
        self._segment_cache: dict[str, int] = {}
        self._peek_end: str | None = None  # the WAL end read just before the open peek
        self._idle_end: str | None = None  # the WAL end an empty peek decoded through
        self._caught_up = False  # the last peek read the slot to its end
        self.peeks = 0
        """Peeks opened (each a decoding session at the source)."""
        self.skipped = 0
        """Idle reads answered without a peek: the WAL had not moved since an empty one."""

    def bind(self, table: TableInfo, database: str, builder: EventBuilder) -> None:
        """The resolved source table the events are built for (at every open)."""
        self.table, self.database, self._builder = table, database, builder

    @property
    def peeking(self) -> bool:
        """A peek's rows are being read."""
        return self._cursor is not None

    def batch(self) -> Batch:
        """The next ``batch_size`` changes of the slot, as events.

        Idle, a peek is opened only when the source's WAL moved past the end an empty peek
        already decoded through (one ``pg_current_wal_flush_lsn()`` call instead of a
        decoding session from the slot's ``restart_lsn``)."""
        assert self.table is not None and self._builder is not None
        if self._cursor is None:
            end = None
            if self.wal_gate and self._caught_up and not self.slot.pending:
                end = self._wal_end()
                if end is not None and end == self._idle_end:
                    self.skipped += 1
                    return Batch(caught_up=True)
            self._peek_end = end
            self._open_peek()
        assert self._cursor is not None
        rows = self._cursor.fetchmany(self.batch_size)
        self._rows += len(rows)
        batch = Batch()
        exhausted = len(rows) < self.batch_size
        self._apply(rows, batch)
        if exhausted:
            self.close()
            batch.caught_up = self._rows < self.batch_size * PEEK_BATCHES
            # Nothing at all up to the WAL end read before this peek: until the WAL moves
            # past it, another peek would decode the same nothing again.
            self._idle_end = self._peek_end if self._rows == 0 else None
            self._caught_up = batch.caught_up
        else:
            # The peek's result is materialized on the server: the next batch can be read
            # while Kafka acknowledges this one; the slot advances per acknowledged batch.
            batch.read_ahead = True
        return batch

    def _wal_end(self) -> str | None:
        """The source's WAL end (see :data:`FLUSHED_LSN_SQL`)."""
        return self.link.control().execute(FLUSHED_LSN_SQL).fetchone()[0]

    def _open_peek(self) -> None:
        self.slot.advance()
        self.peeks += 1
        conn = self._conn
        if conn is None or conn.closed:
            conn = self._conn = self.link.connect(autocommit=False)
        cursor = conn.cursor(name=f"hub_peek_{self.ctx.name}")
        cursor.itersize = self.batch_size
        cursor.execute(
            "SELECT data FROM pg_logical_slot_peek_binary_changes(%s, NULL, %s,"
            " 'proto_version', '1', 'publication_names', %s, 'messages', 'true')",
            (self.slot.slot, self.batch_size * PEEK_BATCHES, self.slot.publication),
        )
        self._cursor = cursor
        self._rows = 0
        self._idle_end = None
        self._relations = RelationCache()
        self._txn = None

    def close(self) -> None:
        """End the peek being read (its connection stays open for the next one)."""
        cursor, self._cursor = self._cursor, None
        if cursor is not None:
            with contextlib.suppress(psycopg.Error):
                cursor.close()
        if self._conn is not None and not self._conn.closed:
            with contextlib.suppress(psycopg.Error):
                self._conn.rollback()

    def close_connection(self) -> None:
        self._idle_end, self._caught_up = None, False
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()

    # -------------------------------------------------------------- decoding

    def _apply(self, rows: list[tuple[bytes]], batch: Batch) -> None:
        """Decode ``rows`` into ``batch``: the changes are collected first, so the record
        keys their events need (:class:`RecordIds`) are read in one go, then added."""
        record_ids = self._builder.record_ids
        if record_ids is None:  # before images carry the citizen ID: no look-ups
            self._decode(rows, batch, self._builder.add)
            return
        pending: list[tuple[tuple, dict[str, Any]]] = []
        self._decode(rows, batch, lambda *args, **kw: pending.append((args, kw)))
        record_key = self.ctx.mapper.record_key
        wanted = []
        for (_batch, op, before, after), _kw in pending:
            if op != "c":
                with contextlib.suppress(Exception):  # a bad key: a dead letter in add
                    wanted.append(record_key(before if before is not None else after))
        record_ids.prefetch(wanted)
        add = self._builder.add
        for args, kw in pending:
            add(*args, **kw)

    def _decode(self, rows: list[tuple[bytes]], batch: Batch, add) -> None:
        relations = self._relations
        oid = self.table.oid
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
                overlap = self.snapshot.filter
                self._txn_seen = (
                    overlap.seen_by(msg.xid, msg.final_lsn) if msg.final_lsn < overlap.until else []
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
        bounds = [s.after for s in self.snapshot.filter.segments[1:]]
        index = 0
        if bounds:
            cast = key_casts(keys)
            query = sql.SQL("SELECT ") + sql.SQL(" + ").join(
                sql.SQL("({} > {})::int").format(cast, cast) for _ in bounds
            )
            params: list[str] = []
            for b in bounds:
                params += values + list(b or [])
            index = self.link.control().execute(query, params).fetchone()[0]
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

"""``snapshot`` capture: a full read of a table that can only be dumped; rows missing since
the previous read are emitted as deletes."""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert

from connectors.base import CaptureMode, ConnectorContext, register_mode
from connectors.events import Batch
from connectors.mapping import tag_value, untag_value
from connectors.progress import ProgressLog
from connectors.sqlsource import SqlSource, after_condition
from connectors.state import ensure_state, hub_engine, set_state
from hub.db.models import ConnectorSnapshotKey

log = logging.getLogger(__name__)

_keys = ConnectorSnapshotKey.__table__


@register_mode
class SnapshotCapture(CaptureMode):
    """Reads the whole table in primary-key order, ``snapshot.chunk_size`` rows per batch,
    every time the connector starts (and every ``snapshot.interval_s`` if set).

    Each row's key, citizen ID and a hash of its values are kept in
    ``connector_snapshot_keys`` with the number of the run that saw it. A run emits ``r``
    for rows that are new or changed since the previous run (every row on the first run
    and on a re-snapshot request), then ``d`` for every key the run did not see: the row
    was deleted at the source (keyed by the citizen ID it had).

    Resume position: ``connector_state.snapshot_progress`` (run number, phase, last key
    acknowledged); a restarted run continues after that key. Each chunk's keys are stored
    only after Kafka acknowledged the chunk, so a crash re-sends, never skips.
    """

    capture = "snapshot"

    def __init__(self, ctx: ConnectorContext):
        super().__init__(ctx)
        self.cfg = ctx.source.snapshot
        self.engine = hub_engine(ctx.hub_db_url)
        self.source: SqlSource | None = None
        self._progress: dict[str, Any] = {}
        self._builder = None
        self._read_after: list[Any] | None = None
        self._read_rows = 0
        self._log: ProgressLog | None = None

    # -------------------------------------------------------------- lifecycle

    def open(self) -> None:
        mapper = self.ctx.mapper
        self.source = SqlSource(self.ctx.name, self.ctx.source.url, self.ctx.source.table,
                                mapper.columns)  # fmt: skip
        self.source.check_columns()
        self._builder = self.ctx.builder(
            system=self.source.system, database=self.source.database, table=self.source.qualified
        )
        state = ensure_state(self.engine, self.ctx.name, self.capture)
        self._progress = dict(state["snapshot_progress"] or {})
        if not self._progress or self._progress.get("phase") == "done":
            self._start_run(full=not self._progress)
        else:
            self._progress_log().start(self._progress.get("rows", 0))
        self._read_after = self._progress.get("after")
        self._read_rows = self._progress.get("rows", 0)

    def _start_run(self, *, full: bool) -> None:
        run = int(self._progress.get("run", 0)) + 1
        now = time.time()
        self._progress = {"run": run, "phase": "read", "after": None, "rows": 0, "full": full,
                          "started_at": now, "at": now,
                          "estimated": self._estimate_rows()}  # fmt: skip
        self._read_after, self._read_rows = None, 0
        set_state(self.engine, self.ctx.name, snapshot_done=False,
                  snapshot_progress=self._progress)  # fmt: skip
        self._log = None
        self._progress_log().start()

    def _progress_log(self) -> ProgressLog:
        if self._log is None:
            p = self._progress
            full = " (full)" if p.get("full") else ""
            what = f"{self.ctx.source.table} run {p.get('run', 0)}{full}"
            self._log = ProgressLog(self.ctx.name, what, p.get("estimated"),
                                    p.get("started_at") or time.time())  # fmt: skip
        return self._log

    def _estimate_rows(self) -> int | None:
        """The table's row count for progress: PostgreSQL's planner estimate when it has
        one (no scan), MySQL's table statistics, else ``count(*)``; None when the source
        cannot tell."""
        assert self.source is not None
        if self.source.system == "postgresql":
            with self.source.errors(), self.source.engine.connect() as conn:
                estimate = conn.execute(
                    sa.text("SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(:t)"),
                    {"t": self.source.qualified},
                ).scalar()
            if estimate is not None and estimate > 0:
                return int(estimate)
        return self.source.estimate_rows()[0]

    def resnapshot(self) -> None:
        """Start a new run now that emits every row, changed or not."""
        self._start_run(full=True)

    @property
    def phase(self) -> str:
        return "idle" if self._progress.get("phase") == "done" else "snapshotting"

    def rows_ahead(self) -> int | None:
        estimated = self._progress.get("estimated")
        if self.phase != "snapshotting" or estimated is None:
            return None
        return max(0, int(estimated) - int(self._progress.get("rows", 0)))

    def close(self) -> None:
        if self.source is not None:
            self.source.close()
            self.source = None

    # -------------------------------------------------------------- batches

    def next_batch(self) -> Batch:
        phase = self._progress.get("phase")
        if phase == "done":
            interval = self.cfg.interval_s
            if interval and time.time() >= self._progress.get("finished_at", 0) + interval:
                self._start_run(full=False)
            else:
                return Batch(caught_up=True, position=self._position())
        if self._progress["phase"] == "read":
            return self._read_batch()
        return self._delete_batch()

    def _read_batch(self) -> Batch:
        assert self.source is not None and self._builder is not None
        mapper = self.ctx.mapper
        t = self.source.table
        key_cols = [t.c[k] for k in mapper.key_columns]
        columns = self.source.columns
        query = sa.select(*(t.c[c] for c in columns)).order_by(*key_cols).limit(self.cfg.chunk_size)
        after = self._read_after  # ahead of the stored progress until the batch is committed
        if after is not None:
            query = query.where(after_condition(key_cols, [untag_value(v) for v in after]))
        with self.source.errors(), self.source.engine.connect() as conn:
            rows = conn.execute(query).all()
        batch = Batch()
        run = self._progress["run"]
        full = self._progress.get("full", True)
        cid_col = mapper.citizen_id_column
        entries = []
        for values in rows:
            row = dict(zip(columns, values, strict=True))
            try:
                key = mapper.record_key(row)
            except Exception:  # noqa: BLE001 - dead-lettered below
                key = None
            digest = hashlib.blake2b(repr(tuple(values)).encode(), digest_size=16).hexdigest()
            cid = row.get(cid_col)
            entries.append((key, None if cid is None else str(cid)[:64], digest, row))
        previous = {} if full else self._stored_rows([e[0] for e in entries if e[0]])
        position = self._position()
        for key, cid, digest, row in entries:
            stored_hash, stored_cid = previous.get(key, (None, None))
            if not full and stored_hash == digest:
                continue
            if stored_cid is not None and stored_cid != cid:
                # The record's citizen ID changed since the last run: an update whose before
                # image holds the old ID, so the builder retracts the old key (SPEC §2).
                before = {cid_col: stored_cid}
                self._builder.add(batch, "u", before, row, position=position, snapshot=True,
                                  before_partial=True, record_key=key)  # fmt: skip
            else:
                self._builder.add(batch, "r", None, row, position=position, snapshot=True,
                                  record_key=key)  # fmt: skip
        self._read_rows += len(rows)
        rows_total = self._read_rows
        next_after = [tag_value(v) for v in rows[-1][: len(key_cols)]] if rows else after
        self._read_after = next_after
        done_reading = len(rows) < self.cfg.chunk_size
        upserts = [(k, c, d) for k, c, d, _ in entries if k is not None]
        batch.commit = ("read", run, next_after, rows_total, done_reading, upserts)
        batch.read_ahead = not done_reading
        batch.position = f"run {run}: {rows_total} rows read"
        return batch

    def _stored_rows(self, keys: list[str]) -> dict[str, tuple[str | None, str | None]]:
        """Per record key of an earlier run: (hash of its values, the citizen ID it had)."""
        if not keys:
            return {}
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(_keys.c.record_key, _keys.c.row_hash, _keys.c.citizen_id).where(
                    _keys.c.connector == self.ctx.name, _keys.c.record_key.in_(keys)
                )
            ).all()
        return {k: (h, c) for k, h, c in rows}

    def _delete_batch(self) -> Batch:
        """Rows of earlier runs that this run did not see: deleted at the source."""
        run = self._progress["run"]
        with self.engine.connect() as conn:
            gone = conn.execute(
                sa.select(_keys.c.record_key, _keys.c.citizen_id)
                .where(_keys.c.connector == self.ctx.name, _keys.c.run < run)
                .order_by(_keys.c.record_key)
                .limit(self.cfg.chunk_size)
            ).all()
        batch = Batch()
        mapper = self.ctx.mapper
        position = self._position()
        for key, cid in gone:
            before = {mapper.citizen_id_column: cid}
            self._builder.add(batch, "d", before, None, position=position, snapshot=True,
                              before_partial=True, record_key=key)  # fmt: skip
        done = len(gone) < self.cfg.chunk_size
        batch.commit = ("delete", run, [k for k, _ in gone], done)
        batch.position = f"run {run}: {len(gone)} deletes"
        return batch

    def commit(self, batch: Batch) -> None:
        token = batch.commit
        if token is None:
            return
        kind, run = token[0], token[1]
        with self.engine.begin() as conn:
            if kind == "read":
                _, _, after, rows_total, done_reading, upserts = token
                if upserts:
                    stmt = insert(_keys).values(
                        [
                            {
                                "connector": self.ctx.name,
                                "record_key": k,
                                "citizen_id": c,
                                "row_hash": d,
                                "run": run,
                            }  # fmt: skip
                            for k, c, d in upserts
                        ]
                    )
                    conn.execute(
                        stmt.on_conflict_do_update(
                            index_elements=["connector", "record_key"],
                            set_={
                                "citizen_id": stmt.excluded.citizen_id,
                                "row_hash": stmt.excluded.row_hash,
                                "run": stmt.excluded.run,
                            },
                        )
                    )
                self._progress.update(after=after, rows=rows_total, at=time.time())
                self._progress_log().update(rows_total)
                if done_reading:
                    self._progress["phase"] = "delete"
            else:
                _, _, keys, done = token
                if keys:
                    conn.execute(
                        _keys.delete().where(
                            _keys.c.connector == self.ctx.name,
                            _keys.c.record_key.in_(keys),
                            _keys.c.run < run,
                        )
                    )
                self._progress["deleted"] = self._progress.get("deleted", 0) + len(keys)
                if done:
                    self._progress["phase"] = "done"
                    self._progress["finished_at"] = self._progress["at"] = time.time()
                    self._progress_log().finish(
                        self._progress.get("rows", 0), f", {self._progress['deleted']} deleted"
                    )
            set_state(
                conn,
                self.ctx.name,
                snapshot_progress=self._progress,
                snapshot_done=self._progress["phase"] == "done",
                position=self._position(),
            )

    def _position(self) -> str:
        p = self._progress
        return f"run {p.get('run', 0)} {p.get('phase', '-')} {p.get('rows', 0)} rows"

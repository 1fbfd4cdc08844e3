"""``poll`` capture: any SQLAlchemy database, by a timestamp + incrementing column (like Kafka
Connect's JDBC source), correct for shared timestamps and late commits within ``margin_s``.

It cannot see hard deletes: a deleted row simply stops being read. Use ``logical`` (or a
periodic ``snapshot``) for a source whose rows are deleted.

A row whose timestamp is NULL (or MySQL's zero date ``0000-00-00``) is never captured: the
scan asks for ``timestamp IS NOT NULL``, so on databases that sort NULLs first (MySQL,
MariaDB) such rows never fill a page either.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from connectors.base import (
    FAIL,
    OK,
    WARN,
    CaptureMode,
    CheckResult,
    ConnectorContext,
    register_mode,
)
from connectors.events import Batch
from connectors.mapping import tag_value, untag_value, value_text
from connectors.pgtable import DATE_TYPES, NUMERIC_TYPES, TableInfo
from connectors.sqlsource import SqlSource, after_condition, type_kind
from connectors.state import hub_engine, load_offset, save_offset, set_state
from hub.config import SourceConfig
from hub.errors import HubError

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)


@register_mode
class PollCapture(CaptureMode):
    """Reads rows whose timestamp is at or after ``watermark - margin_s``, in
    ``(timestamp, incrementing)`` order, page by page.

    Why it is correct (kafka-connect-jdbc #27, #915, #1015 lose rows here):

    - Rows sharing one timestamp: pages continue after the last ``(timestamp,
      incrementing)`` pair read, so a page boundary inside a timestamp loses nothing; the
      incrementing column must be unique.
    - Transactions that commit out of order: every scan re-reads the trailing
      ``margin_s`` before the watermark, so a row whose transaction committed up to
      ``margin_s`` after its timestamp was set is still found. Rows already delivered are
      recognised by ``(record key, timestamp, incrementing, values)`` and not sent again.
    - An update must move the timestamp (``updated_at = now()``); an update that does not
      is still caught while its timestamp is inside the window, because the values differ.

    Resume position: the watermark (greatest ``(timestamp, incrementing)`` acknowledged) in
    ``connector_offsets``. After a restart the trailing window is delivered once more
    (the in-memory duplicate filter is gone): at least once. Hard deletes are not seen.
    Every row read is an upsert: ``op`` is ``u`` and ``before`` is null; rows of the first
    full read (no watermark yet, or after a re-snapshot) carry ``source.snapshot = true``.
    """

    capture = "poll"

    def __init__(self, ctx: ConnectorContext):
        super().__init__(ctx)
        assert ctx.source.poll is not None
        self.cfg = ctx.source.poll
        self.ts_col = self.cfg.timestamp_column
        self.inc_col = self.cfg.incrementing_column
        self.engine = hub_engine(ctx.hub_db_url)
        self.source: SqlSource | None = None
        self._columns: tuple[str, ...] = ()
        self._hw: tuple[Any, Any] | None = None
        self._scan: dict[str, Any] | None = None
        self._seen: dict[tuple, Any] = {}
        self._builder = None
        self._naive_utc = False
        self._initial = False
        """Reading the table from the start (no watermark): ``source.snapshot`` is set until
        the first caught-up batch is acknowledged, so those rows' old timestamps are not taken
        for pipeline latency downstream."""

    def open(self) -> None:
        columns = (*self.ctx.mapper.columns, self.ts_col, self.inc_col)
        self.source = SqlSource(self.ctx.name, self.ctx.source.url, self.ctx.source.table, columns)
        self.source.check_columns()
        self._columns = self.source.columns
        self._naive_utc = self.source.naive_utc
        offset = load_offset(self.engine, self.ctx.name)
        if offset and "ts" in offset:
            self._hw = (untag_value(offset["ts"]), untag_value(offset["inc"]))
        self._initial = self._hw is None
        self._scan = None
        self._builder = self.ctx.builder(
            system=self.source.system, database=self.source.database, table=self.source.qualified
        )

    def resnapshot(self) -> None:
        """Forget the watermark: the next scan reads the whole table again."""
        self._hw = None
        self._initial = True
        self._scan = None
        self._seen.clear()
        with self.engine.begin() as conn:
            save_offset(conn, self.ctx.name, {})

    def next_batch(self) -> Batch:
        assert self.source is not None and self._builder is not None
        if self._scan is None:
            lower = None if self._hw is None else _minus(self._hw[0], self.cfg.margin_s)
            self._scan = {"lower": lower, "cursor": None}
            self._prune(lower)
        t = self.source.table
        ts, inc = t.c[self.ts_col], t.c[self.inc_col]
        query = sa.select(*(t.c[c] for c in self._columns)).order_by(ts, inc)
        query = query.where(ts.is_not(None)).limit(self.cfg.batch_size)
        if self._scan["lower"] is not None:
            query = query.where(ts >= self._scan["lower"])
        if self._scan["cursor"] is not None:
            query = query.where(after_condition((ts, inc), self._scan["cursor"]))
        with self.source.errors(), self.source.engine.connect() as conn:
            rows = conn.execute(query).all()
        batch = Batch()
        columns = self._columns
        ts_i, inc_i = columns.index(self.ts_col), columns.index(self.inc_col)
        mapper = self.ctx.mapper
        add = self._builder.add
        new: list[tuple] = []
        hw = self._hw
        initial = self._initial
        utc = self._naive_utc
        for values in rows:
            row = dict(zip(columns, values, strict=True))
            row_ts, row_inc = values[ts_i], values[inc_i]
            if row_ts is None or _zero_date(row_ts):
                continue  # a row without a timestamp is never captured (documented)
            try:
                key = mapper.record_key(row)
            except Exception:  # noqa: BLE001 - a bad key is dead-lettered by add() below
                key = None
            fingerprint = (key, row_ts, row_inc, _digest(values))
            if hw is None or (row_ts, row_inc) > hw:
                hw = (row_ts, row_inc)
            if fingerprint in self._seen:
                continue
            new.append(fingerprint)
            add(batch, "u", None, row, position=_position(row_ts, row_inc),
                commit_ts_ms=_epoch_ms(row_ts, utc), snapshot=initial)  # fmt: skip
            ts_s = _epoch_s(row_ts, utc)
            if ts_s is not None:
                if batch.oldest_commit_ts is None:
                    batch.oldest_commit_ts = ts_s
                batch.newest_commit_ts = ts_s
        if rows:
            last = rows[-1]
            self._scan["cursor"] = (last[ts_i], last[inc_i])
        if len(rows) < self.cfg.batch_size:
            self._scan = None
            batch.caught_up = True
        batch.commit = (hw, new)
        if hw is not None:
            batch.position = _position(*hw)
        return batch

    def commit(self, batch: Batch) -> None:
        hw, new = batch.commit
        for fingerprint in new:
            self._seen[fingerprint] = fingerprint[1]
        if hw is not None and hw != self._hw:
            with self.engine.begin() as conn:
                save_offset(conn, self.ctx.name, {"ts": tag_value(hw[0]), "inc": tag_value(hw[1])})
                set_state(conn, self.ctx.name, position=_position(*hw)[:128])
            self._hw = hw
        if batch.caught_up:
            self._initial = False

    def _prune(self, lower: Any) -> None:
        """Forget fingerprints older than the window: those rows are never read again."""
        if lower is None or not self._seen:
            return
        self._seen = {fp: ts for fp, ts in self._seen.items() if not _before(ts, lower)}

    def close(self) -> None:
        if self.source is not None:
            self.source.close()
            self.source = None

    def idle_interval(self) -> float:
        """``poll.interval_s`` between scans once caught up."""
        return self.cfg.interval_s

    @classmethod
    def check_postgres(
        cls, conn: psycopg.Connection, name: str, source: SourceConfig, table: TableInfo
    ) -> list[CheckResult]:
        """The timestamp and incrementing columns' types; hard deletes are not seen."""
        assert source.poll is not None
        results = []
        for role, col in (("timestamp column", source.poll.timestamp_column),
                          ("incrementing column", source.poll.incrementing_column)):  # fmt: skip
            col_type = table.columns.get(col)
            if col_type is None:
                results.append(CheckResult(FAIL, role, f"{col} missing"))
                continue
            base = col_type.split("(")[0].strip()
            good = DATE_TYPES + NUMERIC_TYPES if role.startswith("timestamp") else NUMERIC_TYPES
            results.append(CheckResult(OK if base in good else WARN, role, f"{col} ({col_type})"))
        results.append(
            CheckResult(WARN, "deletes", "poll capture cannot see hard deletes (use logical)")
        )
        return results

    @classmethod
    def check_sql(cls, name: str, source: SourceConfig) -> list[CheckResult]:
        """The poll columns' types, an index that starts with the timestamp column, the
        incrementing column's uniqueness; hard deletes are not seen."""
        assert source.poll is not None
        deletes = CheckResult(WARN, "deletes", "poll capture cannot see hard deletes")
        ts, inc = source.poll.timestamp_column, source.poll.incrementing_column
        src = SqlSource(name, source.url, source.table, (ts, inc))
        try:
            types, indexes = src.column_types(), src.indexes()
        except HubError:
            return [deletes]  # the table line of the check already says why
        finally:
            src.close()
        shown = {c: src.type_name(t) for c, t in types.items()}
        return [*_poll_column_checks(src.qualified, ts, inc, types, shown, indexes), deletes]


def _poll_column_checks(
    table: str, ts: str, inc: str, types: dict[str, Any], shown: dict[str, str],
    indexes: list[tuple[tuple[str, ...], bool]],
) -> list[CheckResult]:  # fmt: skip
    """Check lines of the poll columns on a SQLAlchemy source: ``types`` as SQLAlchemy
    describes them, ``shown`` as the database spells them."""
    results = []
    for role, col, kinds in (("timestamp column", ts, ("date", "number")),
                             ("incrementing column", inc, ("number",))):  # fmt: skip
        if col not in types:
            results.append(CheckResult(FAIL, role, f"{col} missing from {table}"))
            continue
        good = type_kind(types[col]) in kinds
        results.append(CheckResult(OK if good else WARN, role, f"{col} ({shown[col]})"))
    if inc in types and not any(unique and cols == (inc,) for cols, unique in indexes):
        results.append(
            CheckResult(WARN, "incrementing column",
                        f"{inc} is neither the primary key nor unique: two rows with one "
                        f"timestamp and one {inc} can be lost at a page boundary")
        )  # fmt: skip
    if ts in types:
        leading = [cols for cols, _ in indexes if cols[0] == ts]
        if leading:
            results.append(CheckResult(OK, "poll index", f"({', '.join(leading[0])})"))
        else:
            results.append(
                CheckResult(WARN, "poll index",
                            f"no index starts with {ts}: every scan reads the whole table "
                            f"(CREATE INDEX ix_{ts}_{inc} ON {table} ({ts}, {inc}))")
            )  # fmt: skip
    return results


def _digest(values: Sequence[Any]) -> int:
    try:
        return hash(tuple(values))
    except TypeError:  # a JSON or array column
        return hash(repr(tuple(values)))


def _minus(value: Any, seconds: float) -> Any:
    """``value - margin`` for datetime, date and numeric (epoch) timestamp columns."""
    if isinstance(value, datetime):
        return value - timedelta(seconds=seconds)
    if isinstance(value, date):
        return value - timedelta(days=-(-seconds // 86400))
    if isinstance(value, Decimal):
        return value - Decimal(str(seconds))
    if isinstance(value, int | float):
        return value - seconds
    return value  # an unknown type: re-read from the watermark itself, never skip


def _before(ts: Any, lower: Any) -> bool:
    try:
        return ts < lower
    except TypeError:
        return False


def _position(ts: Any, inc: Any) -> str:
    return f"{value_text(ts)}|{value_text(inc)}"


def _zero_date(ts: Any) -> bool:
    """MySQL's zero date, which PyMySQL returns as the text ``0000-00-00 00:00:00``."""
    return isinstance(ts, str) and ts.startswith("0000-00-00")


def _epoch_s(ts: Any, naive_utc: bool = False) -> float | None:
    """Seconds since the epoch of a timestamp value: a naive datetime is UTC when
    ``naive_utc`` (MySQL/MariaDB, whose sessions run in UTC), else the host's local time."""
    if isinstance(ts, datetime):
        if naive_utc and ts.tzinfo is None:
            ts = ts.replace(tzinfo=UTC)
        return ts.timestamp()
    if isinstance(ts, int | float | Decimal) and not isinstance(ts, bool):
        return float(ts)
    return None


def _epoch_ms(ts: Any, naive_utc: bool = False) -> int | None:
    s = _epoch_s(ts, naive_utc)
    return None if s is None else int(s * 1000)


__all__: Sequence[str] = ["PollCapture"]

"""Due dates and age of mismatches: days per severity (``queue.due_days``), overridden per
sector (``queue.sector_due_days``). An open or in-review mismatch first seen longer ago than
its due days is overdue; the test is plain SQL on ``first_seen_at`` so no column is stored."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, case, func, select
from sqlalchemy.sql import ColumnElement

from hub.api.queue.filters import MismatchFilter
from hub.config import QueueConfig
from hub.db.models import Mismatch as M
from hub.vocabulary import OPEN_STATUSES

DueTable = tuple[tuple[str | None, str, int], ...]
"""(sector or None for any other sector, severity, days), as :meth:`QueueConfig.due_table`."""

DEFAULT_TABLE: DueTable = QueueConfig().due_table()


def _interval(days: Any) -> ColumnElement:
    return func.make_interval(0, 0, 0, days)


def overdue_condition(table: DueTable = ()) -> ColumnElement[bool]:
    """Open or in review and first seen more than its due days ago. The CASE picks the days
    of the row's sector and severity; the bound on the shortest due days beside it lets the
    planner use ``ix_mismatches_first_seen_at``."""
    table = table or DEFAULT_TABLE
    defaults = {sev: d for s, sev, d in table if s is None}
    whens = [((M.sector == s) & (M.severity == sev), d) for s, sev, d in table if s is not None]
    whens += [(M.severity == sev, d) for sev, d in defaults.items()]
    days = case(*whens, else_=max(d for _, _, d in table))
    shortest = min(d for _, _, d in table)
    now = func.now()
    return and_(
        M.status.in_(OPEN_STATUSES),
        M.first_seen_at < now - _interval(shortest),
        M.first_seen_at < now - _interval(days),
    )


def days_for(table: DueTable, sector: str, severity: str) -> int:
    table = table or DEFAULT_TABLE
    own = [d for s, sev, d in table if s == sector and sev == severity]
    if own:
        return own[0]
    return next(
        (d for s, sev, d in table if s is None and sev == severity), max(d for _, _, d in table)
    )


def annotate(items: Iterable[dict[str, Any]], table: DueTable, now: datetime | None = None):
    """Add ``age_days`` (whole days since first seen), ``due_at`` and ``overdue`` to items
    of ITEM_FIELDS (in place); returns them."""
    now = now or datetime.now(UTC)
    out = []
    for item in items:
        first = item["first_seen_at"]
        due_at = first + timedelta(days=days_for(table, item["sector"], item["severity"]))
        item["age_days"] = max((now - first).days, 0)
        item["due_at"] = due_at
        item["overdue"] = item["status"] in OPEN_STATUSES and now > due_at
        out.append(item)
    return out


def overdue_by_sector(conn: Connection, table: DueTable) -> dict[str, int]:
    """Per sector, how many mismatches are overdue now (sectors with none left out)."""
    stmt = select(M.sector, func.count()).where(overdue_condition(table)).group_by(M.sector)
    return {s: n for s, n in conn.execute(stmt)}


def with_due(f: MismatchFilter, queue: QueueConfig) -> MismatchFilter:
    """``f`` judging ``overdue`` by the configured due days."""
    return replace(f, due=queue.due_table())

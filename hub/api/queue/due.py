"""Due dates and age of mismatches: days per severity (``queue.due_days``), overridden per
sector (``queue.sector_due_days``). An open or in-review mismatch first seen longer ago than
its due days is overdue; the test is plain SQL on ``first_seen_at`` so no column is stored."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, case, func, literal, select
from sqlalchemy.sql import ColumnElement

from hub.api.queue.filters import MismatchFilter
from hub.config import QueueConfig
from hub.db.models import FigureCount
from hub.db.models import Mismatch as M
from hub.vocabulary import OPEN_STATUSES

DueTable = tuple[tuple[str | None, str, int], ...]
"""(sector or None for any other sector, severity, days), as :meth:`QueueConfig.due_table`."""

DEFAULT_TABLE: DueTable = QueueConfig().due_table()


def _interval(days: Any) -> ColumnElement:
    return func.make_interval(0, 0, 0, days)


def _due_days(table: DueTable) -> ColumnElement:
    """Each row's due days: its sector and severity's, else its severity's, else the longest."""
    defaults = {sev: d for s, sev, d in table if s is None}
    whens = [((M.sector == s) & (M.severity == sev), d) for s, sev, d in table if s is not None]
    whens += [(M.severity == sev, d) for sev, d in defaults.items()]
    return case(*whens, else_=max(d for _, _, d in table))


def overdue_condition(table: DueTable = ()) -> ColumnElement[bool]:
    """Open or in review and first seen more than its due days ago. The CASE picks the days
    of the row's sector and severity; the bound on the shortest due days beside it lets the
    planner use ``ix_mismatches_first_seen_at``."""
    table = table or DEFAULT_TABLE
    shortest = min(d for _, _, d in table)
    now = func.now()
    return and_(
        M.status.in_(OPEN_STATUSES),
        M.first_seen_at < now - _interval(shortest),
        M.first_seen_at < now - _interval(_due_days(table)),
    )


def not_yet_due_condition(table: DueTable = ()) -> ColumnElement[bool]:
    """Open or in review and not overdue: first seen within its due days (the complement of
    :func:`overdue_condition` among the open and in-review ones). The bound on the longest
    due days keeps it a short range of ``ix_mismatches_active_first_seen_at``."""
    table = table or DEFAULT_TABLE
    longest = max(d for _, _, d in table)
    now = func.now()
    return and_(
        M.status.in_(OPEN_STATUSES),
        M.first_seen_at >= now - _interval(longest),
        M.first_seen_at >= now - _interval(_due_days(table)),
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
    """Per sector, how many mismatches are overdue now (sectors with none left out).

    Counted the cheaper way round. A store with a backlog has most of its open mismatches
    overdue (580k of 1M on the bench store: a parallel scan of the table, 350 ms), so there
    they are the open and in-review ones of the trigger-kept figures less those not yet due,
    which are first seen within the longest due days (a short index range). When the planner
    expects the not-yet-due ones to be the larger part (a store loaded this month), the
    overdue ones are counted directly. Either way one statement, so one snapshot."""
    table = table or DEFAULT_TABLE
    from hub.api.queue.pages import estimate  # pages does not import this module's users

    open_total = conn.execute(
        select(func.coalesce(func.sum(FigureCount.open_mismatches), 0)).where(
            FigureCount.rule != ""
        )
    ).scalar_one()
    recent = estimate(conn, select(literal(1)).select_from(M).where(not_yet_due_condition(table)))
    if recent * 2 > open_total:
        stmt = select(M.sector, func.count()).where(overdue_condition(table)).group_by(M.sector)
        return {s: n for s, n in conn.execute(stmt) if n}
    opened = (
        select(FigureCount.sector, func.sum(FigureCount.open_mismatches).label("n"))
        .where(FigureCount.rule != "")
        .group_by(FigureCount.sector)
        .cte("opened")
    )
    not_due = (
        select(M.sector, func.count().label("n"))
        .where(not_yet_due_condition(table))
        .group_by(M.sector)
        .cte("not_due")
    )
    stmt = select(opened.c.sector, opened.c.n - func.coalesce(not_due.c.n, 0)).outerjoin(
        not_due, not_due.c.sector == opened.c.sector
    )
    return {s: int(n) for s, n in conn.execute(stmt) if n}


def with_due(f: MismatchFilter, queue: QueueConfig) -> MismatchFilter:
    """``f`` judging ``overdue`` by the configured due days."""
    return replace(f, due=queue.due_table())

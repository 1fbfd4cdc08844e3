"""Pages of the queue: keyset cursors over the whitelisted sorts, capped counts and the
per-rule counts. Bounded at millions of rows: a count never scans past COUNT_CAP."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Integer,
    and_,
    func,
    literal,
    literal_column,
    select,
    text,
    true,
    tuple_,
    union_all,
)
from sqlalchemy.sql import ColumnElement, Select

from hub.api.errors import NotFound, Unprocessable
from hub.api.queue import names
from hub.api.queue.filters import ITEM_COLUMNS, ITEM_FIELDS, M, MismatchFilter, as_item
from hub.db.models import SEVERITY_RANK_SQL
from hub.vocabulary import OPEN_STATUSES, RULE_CODES

COUNT_CAP = 10_000
MAX_LIMIT = 500
MAX_OFFSET = 10_000

# Spelled with literal constants so it matches the expression index (hub.db.models).
_severity_rank = literal_column(
    SEVERITY_RANK_SQL.replace("CASE severity", "CASE mismatches.severity"), Integer
)
# Whitelisted sorts: each pages through an index (last_seen_at is left out on purpose: the
# reconciler moves it on every re-evaluation, and an index on it would cost every update).
SORTS: dict[str, ColumnElement] = {
    "id": M.id,
    "first_seen_at": M.first_seen_at,
    "severity": _severity_rank,
    "record_key": M.record_key,
}


class UnknownCursor(NotFound):
    """An ``after`` that is not a next_cursor of this sort and order: there is no such page
    (404, not 400: any string may be a cursor as far as the API's schema can say)."""


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    total: int
    total_exact: bool
    next_cursor: str | None


def encode_cursor(sort: str, order: str, value: Any, last_id: int) -> str:
    if isinstance(value, datetime):
        value = value.isoformat()
    raw = json.dumps([sort, order, value, last_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, sort: str, order: str) -> tuple[Any, int]:
    """(sort value, id) of the row a page ends on; UnknownCursor if the cursor is not one of
    ours or was made for another sort order."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        c_sort, c_order, value, last_id = json.loads(raw)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise UnknownCursor("bad cursor: pass back the next_cursor of a previous page") from None
    if (c_sort, c_order) != (sort, order):
        raise UnknownCursor(f"cursor was made for sort={c_sort} order={c_order}")
    if not isinstance(last_id, int) or isinstance(last_id, bool) or not 0 <= last_id < 2**63:
        raise UnknownCursor("bad cursor: pass back the next_cursor of a previous page")
    try:
        if sort == "first_seen_at":
            value = datetime.fromisoformat(value)
            if value.tzinfo is None:
                value = value.replace(tzinfo=UTC)
        elif sort in ("id", "severity"):
            if not isinstance(value, int) or isinstance(value, bool) or abs(value) >= 2**63:
                raise ValueError
        elif not isinstance(value, str) or "\x00" in value:
            raise ValueError
    except (ValueError, TypeError):
        raise UnknownCursor("bad cursor: pass back the next_cursor of a previous page") from None
    return value, last_id


def list_page(
    conn: Connection,
    f: MismatchFilter,
    *,
    sort: str = "id",
    order: str = "desc",
    limit: int = 50,
    after: str | None = None,
    offset: int = 0,
) -> Page:
    """One page of mismatches. Keyset paging with ``after`` (the previous page's
    ``next_cursor``); ``offset`` skips that many more rows (after the cursor, if one is
    given), for jumping a few pages, and is bounded by MAX_OFFSET."""
    if sort not in SORTS:
        raise Unprocessable(f"cannot sort by {sort!r} (allowed: {', '.join(SORTS)})")
    if order not in ("asc", "desc"):
        raise Unprocessable("order must be asc or desc")
    if not 1 <= limit <= MAX_LIMIT:
        raise Unprocessable(f"limit must be between 1 and {MAX_LIMIT}")
    if not 0 <= offset <= MAX_OFFSET:
        raise Unprocessable(f"offset must be between 0 and {MAX_OFFSET} (use after= to go on)")
    key = SORTS[sort]
    f, share = plan_name(conn, f)
    cond = f.conditions()
    from_figures = figure_rule_counts(conn, f)
    if from_figures is not None:
        # Exact from the trigger-kept figures; "exact" below picks the plan (few rows).
        total = sum(n for r, n in from_figures.items() if not f.rule or r in f.rule)
        exact, total_exact = total <= COUNT_CAP, True
    elif share is not None and (guess := _broad_name_guess(conn, f, share)) > COUNT_CAP:
        # A broad name search (a surname) over many mismatches: estimated, and the sort
        # index walked, each mismatch's record probed for the name until the page is full,
        # instead of counting (and then sorting) matches read from the name index first.
        total, exact, total_exact = guess, False, False
    elif (f.min_age_days is not None or f.max_age_days is not None) and (
        guess := estimate(conn, select(literal(1)).select_from(M).where(and_(true(), *cond)))
    ) > COUNT_CAP:
        # A wide age range: the planner's estimate instead of counting COUNT_CAP matches
        # first (a bitmap scan of the range on every page), and the walk of the sort index
        # (matches are many). A narrow one is counted and takes the fetch-then-sort plan,
        # through ix_mismatches_first_seen_at, not a walk to a range at the index's far end.
        total, exact, total_exact = guess, False, False
    else:
        if not after and (
            estimate(conn, select(literal(1)).select_from(M).where(and_(true(), *cond)))
            <= COUNT_CAP
        ):
            page = _counted_page(conn, cond, sort, order, limit, offset)
            if page is not None:
                return page
        total, exact = count(conn, cond)
        total_exact = exact
    stmt = select(*ITEM_COLUMNS, key.label("_sortkey")).where(and_(true(), *cond))
    if after:
        value, last_id = decode_cursor(after, sort, order)
        pair, bound = tuple_(key, M.id), tuple_(literal(value), literal(last_id))
        stmt = stmt.where(pair < bound if order == "desc" else pair > bound)
    if exact:
        # At most COUNT_CAP rows match: fetch them all through the filter's own indexes and
        # sort those, rather than let the planner walk the sort index hoping to meet
        # matches early (slow when they cluster at the far end, e.g. a record-key prefix).
        # OFFSET 0 keeps the subquery from being merged into the outer query.
        sub = stmt.offset(0).subquery()
        skey, sid = sub.c._sortkey, sub.c.id
        ordered = (skey.desc(), sid.desc()) if order == "desc" else (skey.asc(), sid.asc())
        stmt = select(*(sub.c[f] for f in ITEM_FIELDS), skey).order_by(*ordered)
    elif order == "desc":
        stmt = stmt.order_by(key.desc(), M.id.desc())
    else:
        stmt = stmt.order_by(key.asc(), M.id.asc())
    rows = conn.execute(stmt.offset(offset or None).limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    items = [as_item(r[:-1]) for r in rows]
    next_cursor = encode_cursor(sort, order, rows[-1][-1], rows[-1][0]) if more else None
    return Page(items, total, total_exact, next_cursor)


def _counted_page(
    conn: Connection,
    cond: Sequence[ColumnElement[bool]],
    sort: str,
    order: str,
    limit: int,
    offset: int,
) -> Page | None:
    """The first page of a filter estimated to match few, counted in the same scan: at
    most COUNT_CAP + 1 matches fetched through the filter's own indexes, counted (a window
    count), sorted, and the page taken; rather than one scan to count and a second to fetch
    them (each reading the same heap pages: 8,275 for a province and severity on the 1M
    store). None when more than COUNT_CAP match after all, or the offset is past the end."""
    key = SORTS[sort]
    sub = (
        select(*ITEM_COLUMNS, key.label("_sortkey"))
        .where(and_(true(), *cond))
        .limit(COUNT_CAP + 1)
        .subquery()
    )
    skey, sid = sub.c._sortkey, sub.c.id
    ordered = (skey.desc(), sid.desc()) if order == "desc" else (skey.asc(), sid.asc())
    stmt = (
        select(*(sub.c[f] for f in ITEM_FIELDS), skey, func.count().over().label("_n"))
        .order_by(*ordered)
        .offset(offset or None)
        .limit(limit + 1)
    )
    rows = conn.execute(stmt).all()
    if not rows:
        return None if offset else Page([], 0, True, None)
    total = rows[0][-1]
    if total > COUNT_CAP:
        return None
    more = len(rows) > limit
    rows = rows[:limit]
    items = [as_item(r[:-2]) for r in rows]
    next_cursor = encode_cursor(sort, order, rows[-1][-2], rows[-1][0]) if more else None
    return Page(items, total, True, next_cursor)


def plan_name(conn: Connection, f: MismatchFilter) -> tuple[MismatchFilter, float | None]:
    """``f`` searching its name by probing each mismatch's record (``name_broad``) when the
    name is estimated to match more than COUNT_CAP sector records, and the share of records
    it matches; (``f``, None) when there is no name or it matches few (the name index
    first, asked only for the name's uncommon words: :func:`names.index_words`). A capped
    count or a page then stops after its rows instead of reading every match (a million
    for a surname) before the first."""
    if not f.name:
        return f, None
    rows, share = names.matching_records(conn, f.name)
    if rows <= COUNT_CAP:
        return replace(f, name_index_words=names.index_words(conn, f.name)), None
    return replace(f, name_broad=True), share


def _broad_name_guess(conn: Connection, f: MismatchFilter, share: float) -> int:
    """The estimated matches of ``f`` with a broad name: those of its other filters times the
    share of records the name matches (the planner cannot estimate the probe)."""
    others = replace(f, name=None, name_broad=False).conditions()
    return int(
        estimate(conn, select(literal(1)).select_from(M).where(and_(true(), *others))) * share
    )


def count(conn: Connection, cond: Sequence[ColumnElement[bool]]) -> tuple[int, bool]:
    """(number of mismatches matching ``cond``, exact?): exact up to COUNT_CAP, beyond it the
    planner's estimate (never below the cap), so a count never scans a million rows."""
    inner = select(literal(1)).select_from(M).where(and_(true(), *cond))
    n = conn.scalar(select(func.count()).select_from(inner.limit(COUNT_CAP + 1).subquery()))
    if n <= COUNT_CAP:
        return n, True
    return max(estimate(conn, inner), COUNT_CAP + 1), False


def estimate(conn: Connection, stmt: Select) -> int:
    compiled = stmt.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    plan = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + str(compiled), compiled.params)
    doc = plan.scalar()
    if isinstance(doc, str):
        doc = json.loads(doc)
    return int(doc[0]["Plan"]["Plan Rows"])


def rule_counts(conn: Connection, f: MismatchFilter) -> dict[str, tuple[int, bool]]:
    """Per rule, (count, exact?) of mismatches matching every filter but the rule one: from
    the trigger-kept figures when they can say (:func:`figure_rule_counts`), else counted."""
    from_figures = figure_rule_counts(conn, f)
    if from_figures is not None:
        return {r: (from_figures.get(r, 0), True) for r in RULE_CODES}
    f, share = plan_name(conn, f)
    cond = f.conditions(without_rule=True)
    guessed: dict[str, tuple[int, bool]] = {}
    if share is not None:
        # A broad name: the rules estimated over the cap are not counted at all.
        others = replace(f, name=None, name_broad=False).conditions(without_rule=True)
        for rule in RULE_CODES:
            inner = select(literal(1)).select_from(M).where(M.rule == rule, *others)
            if (guess := int(estimate(conn, inner) * share)) > COUNT_CAP:
                guessed[rule] = (guess, False)
    parts = []
    for rule in (r for r in RULE_CODES if r not in guessed):
        inner = select(literal(1)).where(M.rule == rule, *cond).limit(COUNT_CAP + 1).subquery()
        parts.append(
            select(literal(rule).label("rule"), func.count().label("n")).select_from(inner)
        )
    counts = {r: (n, True) for r, n in conn.execute(union_all(*parts))} if parts else {}
    for rule, (n, _) in counts.items():
        if n > COUNT_CAP:
            inner = select(literal(1)).select_from(M).where(M.rule == rule, *cond)
            counts[rule] = (max(estimate(conn, inner), COUNT_CAP + 1), False)
    return counts | guessed


# ------------------------------------------------------------- counts from the figures
# ``figure_counts`` (migration 0005) holds, per (sector, rule, severity), the open and
# in-review mismatches and, apart, the in-review ones (migration 0018), exact at every
# snapshot: the queue's usual views (open and in review, open alone or in review alone, by
# sector, rule and severity) are counted from its few rows instead of the big table.
_FIGURES_BY_RULE = text(
    """
    SELECT rule, sum(CASE CAST(:status AS text)
                     WHEN 'open' THEN open_mismatches - in_review_mismatches
                     WHEN 'in_review' THEN in_review_mismatches
                     ELSE open_mismatches END)::bigint
    FROM figure_counts
    WHERE rule <> '' AND (CAST(:sectors AS text[]) IS NULL OR sector = ANY(:sectors))
      AND (CAST(:severities AS text[]) IS NULL OR severity = ANY(:severities))
    GROUP BY rule
    """
)
_FIGURE_FIELDS = {"sector", "rule", "severity", "status"}
"""The filter fields the figures are kept by (besides open and in review)."""


def figure_rule_counts(conn: Connection, f: MismatchFilter) -> dict[str, int] | None:
    """Per rule, the mismatches matching ``f`` but its rule filter, from the figures; None
    when the figures cannot say: a status filter other than open and in review, open alone or
    in review alone, or any filter beside sector, rule and severity (province, age, search,
    name, assignee, overdue, dismissal code: whatever a filter may gain later, too)."""
    if len(f.status) == 1 and f.status[0] in OPEN_STATUSES:
        status = f.status[0]
    elif set(f.status) == set(OPEN_STATUSES) and len(f.status) == len(OPEN_STATUSES):
        status = "both"
    else:
        return None
    if set(f.params()) - _FIGURE_FIELDS:
        return None
    params = {
        "sectors": list(f.sector) or None,
        "severities": list(f.severity) or None,
        "status": status,
    }
    counts = dict(conn.execute(_FIGURES_BY_RULE, params).all())
    return {rule: n for rule, n in counts.items() if n}

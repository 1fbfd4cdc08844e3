"""The mismatch queue as stewards work it: filter, page, count, detail, transitions, export.
Bounded at millions of rows: keyset pages, capped counts, exports streamed from COPY."""

from __future__ import annotations

import base64
import binascii
import json
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, BinaryIO

from sqlalchemy import (
    Connection,
    Engine,
    Integer,
    and_,
    case,
    func,
    literal,
    literal_column,
    or_,
    select,
    true,
    tuple_,
    union_all,
    update,
)
from sqlalchemy.sql import ColumnElement, Select

from hub.api import audit
from hub.api.auth import ASSIGNABLE_ROLES
from hub.api.errors import Conflict, NotFound, Unprocessable
from hub.api.models import SEVERITY_RANK_SQL
from hub.api.users import active_user_role
from hub.config import CANONICAL_FIELDS, RULE_CODES, SEVERITIES
from hub.db.models import (
    MISMATCH_STATUSES,
    Mismatch,
    MismatchHistory,
    RegistryCitizen,
    SectorRecord,
)

M = Mismatch
ACTIVE_STATUSES = ("open", "in_review")
COUNT_CAP = 10_000
MAX_LIMIT = 500
MAX_OFFSET = 10_000
MAX_BULK = 10_000
MAX_BULK_IDS = 1_000

# Columns of a list item / CSV row, in order (SPEC §6 plus what a steward needs to triage).
ITEM_FIELDS = (
    "id",
    "sector",
    "record_key",
    "citizen_id",
    "rule",
    "field",
    "severity",
    "status",
    "resolution",
    "sector_value",
    "registry_value",
    "score",
    "province_code",
    "assignee",
    "first_seen_at",
    "last_seen_at",
    "resolved_at",
    "updated_at",
)
_ITEM_COLUMNS = [getattr(M, f) for f in ITEM_FIELDS]

# Spelled with literal constants so it matches the expression index (hub.api.models).
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


@dataclass(frozen=True)
class MismatchFilter:
    """Which mismatches a list, count, bulk action or export covers. Empty means any.

    ``q`` is a prefix of the record key or of the citizen ID as the sector holds it;
    ages count whole days since the mismatch was first seen.
    """

    sector: tuple[str, ...] = ()
    rule: tuple[str, ...] = ()
    severity: tuple[str, ...] = ()
    status: tuple[str, ...] = ()
    province: str | None = None
    min_age_days: int | None = None
    max_age_days: int | None = None
    q: str | None = None
    assignee: str | None = None

    def conditions(self, *, without_rule: bool = False) -> list[ColumnElement[bool]]:
        cond: list[ColumnElement[bool]] = []
        if self.status:
            cond.append(_in(M.status, self.status))
        if self.sector:
            cond.append(_in(M.sector, self.sector))
        if self.rule and not without_rule:
            cond.append(_in(M.rule, self.rule))
        if self.severity:
            cond.append(_in(M.severity, self.severity))
        if self.province:
            cond.append(M.province_code == self.province)
        if self.assignee:
            cond.append(M.assignee == self.assignee)
        if self.min_age_days is not None:
            cond.append(M.first_seen_at <= func.now() - _days(self.min_age_days))
        if self.max_age_days is not None:
            cond.append(M.first_seen_at > func.now() - _days(self.max_age_days + 1))
        if self.q:
            # Prefix match served by the varchar_pattern_ops indexes (migration 0004).
            pattern = _like_escape(self.q) + "%"
            cond.append(
                or_(
                    M.record_key.like(pattern, escape="\\"),
                    M.citizen_id.like(pattern, escape="\\"),
                )
            )
        return cond

    def params(self) -> dict[str, Any]:
        """The filter as query parameters (for links and the audit log); empty ones dropped."""
        out: dict[str, Any] = {}
        for k, v in self.__dict__.items():
            if v in (None, (), ""):
                continue
            out[k] = list(v) if isinstance(v, tuple) else v
        return out

    def is_empty(self) -> bool:
        return not self.params()


def _in(col: ColumnElement, values: Sequence[str]) -> ColumnElement[bool]:
    return col == values[0] if len(values) == 1 else col.in_(values)


def _days(n: int) -> ColumnElement:
    return func.make_interval(0, 0, 0, n)


def _like_escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def check_filter(conn: Connection, f: MismatchFilter, known_sectors: Sequence[str]) -> None:
    """Refuse values no mismatch can have (Unprocessable), so a typo is not an empty page.
    An age range with min_age_days above max_age_days is allowed: it matches nothing."""
    for name, values, known in (
        ("rule", f.rule, RULE_CODES),
        ("severity", f.severity, SEVERITIES),
        ("status", f.status, MISMATCH_STATUSES),
    ):
        bad = [v for v in values if v not in known]
        if bad:
            raise Unprocessable(f"unknown {name} {', '.join(bad)} (known: {', '.join(known)})")
    for s in f.sector:
        if s in known_sectors:
            continue
        # A sector dropped from the config may still have mismatches (unique index lookup).
        if conn.scalar(select(literal(1)).where(M.sector == s).limit(1)) is None:
            raise Unprocessable(
                f"unknown sector {s!r} (configured: {', '.join(known_sectors) or 'none'})"
            )


# ---------------------------------------------------------------------------------- paging


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


def _item(row: Any) -> dict[str, Any]:
    return dict(zip(ITEM_FIELDS, row, strict=True))


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
    cond = f.conditions()
    total, exact = count(conn, cond)
    stmt = select(*_ITEM_COLUMNS, key.label("_sortkey")).where(and_(true(), *cond))
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
    items = [_item(r[:-1]) for r in rows]
    next_cursor = encode_cursor(sort, order, rows[-1][-1], rows[-1][0]) if more else None
    return Page(items, total, exact, next_cursor)


def count(conn: Connection, cond: Sequence[ColumnElement[bool]]) -> tuple[int, bool]:
    """(number of mismatches matching ``cond``, exact?): exact up to COUNT_CAP, beyond it the
    planner's estimate (never below the cap), so a count never scans a million rows."""
    inner = select(literal(1)).select_from(M).where(and_(true(), *cond))
    n = conn.scalar(select(func.count()).select_from(inner.limit(COUNT_CAP + 1).subquery()))
    if n <= COUNT_CAP:
        return n, True
    return max(_estimate(conn, inner), COUNT_CAP + 1), False


def _estimate(conn: Connection, stmt: Select) -> int:
    compiled = stmt.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    plan = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + str(compiled), compiled.params)
    doc = plan.scalar()
    if isinstance(doc, str):
        doc = json.loads(doc)
    return int(doc[0]["Plan"]["Plan Rows"])


def rule_counts(conn: Connection, f: MismatchFilter) -> dict[str, tuple[int, bool]]:
    """Per rule, (count, exact?) of mismatches matching every filter but the rule one."""
    cond = f.conditions(without_rule=True)
    parts = []
    for rule in RULE_CODES:
        inner = select(literal(1)).where(M.rule == rule, *cond).limit(COUNT_CAP + 1).subquery()
        parts.append(
            select(literal(rule).label("rule"), func.count().label("n")).select_from(inner)
        )
    counts = {r: (n, True) for r, n in conn.execute(union_all(*parts))}
    for rule, (n, _) in counts.items():
        if n > COUNT_CAP:
            inner = select(literal(1)).select_from(M).where(M.rule == rule, *cond)
            counts[rule] = (max(_estimate(conn, inner), COUNT_CAP + 1), False)
    return counts


# ---------------------------------------------------------------------------------- detail

# Canonical fields shown side by side; a sector record lacks date_of_death, the registry
# lacks status and last_activity_date.
RECORD_FIELDS = CANONICAL_FIELDS
_SECTOR_ONLY = {"status", "last_activity_date"}
_REGISTRY_ONLY = {"date_of_death"}


def _value(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, date | datetime):
        return v.isoformat()
    return str(v)


def _sector_record(conn: Connection, sector: str, record_key: str) -> dict[str, Any] | None:
    s = SectorRecord
    row = conn.execute(
        select(
            s.citizen_id_raw,
            s.citizen_id,
            s.legacy_id,
            s.full_name,
            s.date_of_birth,
            s.sex,
            s.province_code,
            s.address,
            s.status,
            s.last_activity_date,
            s.attributes,
            s.verified,
            s.source_ts,
            s.updated_at,
        ).where(s.sector == sector, s.record_key == record_key)
    ).one_or_none()
    return dict(row._mapping) if row else None


def _registry_record(conn: Connection, sec: dict[str, Any] | None, m: Any) -> dict | None:
    r = RegistryCitizen
    cols = (
        r.citizen_id,
        r.legacy_id,
        r.full_name,
        r.date_of_birth,
        r.sex,
        r.province_code,
        r.address,
        r.date_of_death,
        r.attributes,
        r.updated_at,
    )
    keys = []
    if sec and sec.get("citizen_id"):
        keys.append(r.citizen_id == sec["citizen_id"])
    elif m.citizen_id:
        keys.append(r.citizen_id == m.citizen_id)
    if sec and sec.get("legacy_id"):
        keys.append(r.legacy_id == sec["legacy_id"])
    for cond in keys:
        row = conn.execute(select(*cols).where(cond).limit(1)).one_or_none()
        if row:
            return dict(row._mapping)
    return None


def detail(conn: Connection, mismatch_id: int) -> dict[str, Any]:
    """The mismatch, both records with a per-field comparison, the record's other
    mismatches, suggestions and history. NotFound if there is no such mismatch.

    A field ``differs`` when both sides hold a value and the values are not equal as
    stored; it is ``flagged`` when an open or in-review mismatch of this record names it.
    """
    row = conn.execute(select(*_ITEM_COLUMNS, M.suggestions).where(M.id == mismatch_id)).first()
    if row is None:
        raise NotFound(f"no mismatch {mismatch_id}")
    item = _item(row[:-1])
    m = row
    sec = _sector_record(conn, m.sector, m.record_key)
    reg = _registry_record(conn, sec, m)
    related = [
        dict(r._mapping)
        for r in conn.execute(
            select(M.id, M.rule, M.field, M.severity, M.status)
            .where(M.sector == m.sector, M.record_key == m.record_key)
            .order_by(M.id)
            .limit(50)
        )
    ]
    flagged = {r["field"] for r in related if r["status"] in ACTIVE_STATUSES and r["field"]}
    if item["status"] in ACTIVE_STATUSES and item["field"]:
        flagged.add(item["field"])
    fields = []
    for name in RECORD_FIELDS:
        if sec is None and reg is None:
            break
        if name == "citizen_id":
            sv = sec.get("citizen_id_raw") if sec else None
        else:
            sv = None if (sec is None or name in _REGISTRY_ONLY) else sec.get(name)
        rv = None if (reg is None or name in _SECTOR_ONLY) else reg.get(name)
        sv, rv = _value(sv), _value(rv)
        fields.append(
            {
                "field": name,
                "sector_value": sv,
                "registry_value": rv,
                "differs": sv is not None and rv is not None and sv != rv,
                "flagged": name in flagged,
            }
        )
    history = [
        dict(h._mapping)
        for h in conn.execute(
            select(
                MismatchHistory.id,
                MismatchHistory.at,
                MismatchHistory.actor,
                MismatchHistory.action,
                MismatchHistory.from_status,
                MismatchHistory.to_status,
                MismatchHistory.note,
            )
            .where(MismatchHistory.mismatch_id == mismatch_id)
            .order_by(MismatchHistory.id)
        )
    ]
    return {
        "mismatch": item,
        "sector_record": _jsonable_record(sec),
        "registry_record": _jsonable_record(reg),
        "fields": fields,
        "suggestions": _suggestions(m.suggestions),
        "related": [r for r in related if r["id"] != mismatch_id],
        "history": history,
    }


def _jsonable_record(rec: dict[str, Any] | None) -> dict[str, Any] | None:
    if rec is None:
        return None
    return {
        k: (v if isinstance(v, dict | bool) or v is None else _value(v)) for k, v in rec.items()
    }


def _suggestions(raw: Any) -> list[dict[str, Any]]:
    """The reconciler's candidates as a list of objects, whatever shape it stored."""
    if not raw:
        return []
    if isinstance(raw, dict):
        raw = [raw]
    out = []
    for s in raw if isinstance(raw, list) else []:
        out.append(s if isinstance(s, dict) else {"value": s})
    return out


# ------------------------------------------------------------------------------ transitions


@dataclass(frozen=True)
class Transition:
    """What an action needs and does: the statuses it applies to and the status it leaves."""

    name: str
    from_statuses: tuple[str, ...]
    to_status: str | None  # None: no status change (comment)
    resolution: str | None = None
    note_required: bool = False


TRANSITIONS = {
    t.name: t
    for t in (
        Transition("assign", ACTIVE_STATUSES, "in_review"),
        Transition("resolve", ACTIVE_STATUSES, "resolved", resolution="manual"),
        Transition("dismiss", ACTIVE_STATUSES, "dismissed", "false_positive", note_required=True),
        Transition("reopen", ("resolved", "dismissed"), "open"),
        Transition("comment", MISMATCH_STATUSES, None, note_required=True),
    )
}


@dataclass
class BulkResult:
    changed: list[int] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    more: bool = False


def _check_action(
    conn: Connection, action: str, actor: str, note: str | None, assignee: str | None
) -> tuple[Transition, str | None, str | None]:
    t = TRANSITIONS.get(action)
    if t is None:
        raise Unprocessable(f"unknown action {action!r} (known: {', '.join(TRANSITIONS)})")
    note = (note or "").strip() or None
    if t.note_required and note is None:
        what = "a reason" if action == "dismiss" else "a note"
        raise Unprocessable(f"{action} needs {what}")
    if action == "assign":
        assignee = (assignee or "").strip() or actor
        role = active_user_role(conn, assignee)
        if role is None:
            raise NotFound(f"cannot assign to {assignee!r}: no such active user")
        if role not in ASSIGNABLE_ROLES:
            raise Conflict(f"cannot assign to {assignee!r}: a {role} does not work mismatches")
    else:
        assignee = None
    return t, note, assignee


def _apply(
    conn: Connection,
    t: Transition,
    target: Select,
    actor: str,
    note: str | None,
    assignee: str | None,
) -> list[Any]:
    """Lock the targeted rows, change them, write history and audit rows; return them."""
    locked = target.with_for_update(of=M).subquery()
    values: dict[str, Any] = {"updated_at": func.now()}
    if t.to_status is not None:
        values["status"] = t.to_status
    if t.name == "assign":
        values["assignee"] = assignee
    elif t.to_status in ("resolved", "dismissed"):
        values["resolution"] = t.resolution
        values["resolved_at"] = func.now()
    elif t.name == "reopen":
        values["resolution"] = None
        values["resolved_at"] = None
    stmt = (
        update(M)
        .where(M.id == locked.c.id)
        .values(**values)
        .returning(M.id, locked.c.status, M.status, M.sector, M.record_key, M.citizen_id)
    )
    rows = conn.execute(stmt).all()
    if not rows:
        return rows
    hist_note = note
    if t.name == "assign":
        hist_note = f"assigned to {assignee}" + (f": {note}" if note else "")
    conn.execute(
        MismatchHistory.__table__.insert(),
        [
            {
                "mismatch_id": r[0],
                "actor": actor,
                "action": t.name,
                "from_status": r[1],
                "to_status": r[2],
                "note": hist_note,
            }
            for r in rows
        ],
    )
    audit.record_many(
        conn,
        [
            audit.Entry(
                actor,
                t.name,
                audit.MISMATCH,
                r[0],
                {
                    "sector": r[3],
                    "record_key": r[4],
                    "citizen_id": r[5],
                    "from_status": r[1],
                    "to_status": r[2],
                    "note": note,
                    "assignee": assignee,
                },
            )
            for r in rows
        ],
    )
    return rows


def act(
    conn: Connection,
    mismatch_id: int,
    action: str,
    actor: str,
    *,
    note: str | None = None,
    assignee: str | None = None,
) -> dict[str, Any]:
    """Apply ``action`` to one mismatch in the caller's transaction; returns the updated item.

    NotFound if there is no such mismatch or the assignee is no active user, Conflict if
    its status does not allow the action or the assignee's role does not work mismatches,
    Unprocessable if a required reason/note is missing.
    """
    t, note, assignee = _check_action(conn, action, actor, note, assignee)
    current = conn.scalar(select(M.status).where(M.id == mismatch_id).with_for_update())
    if current is None:
        raise NotFound(f"no mismatch {mismatch_id}")
    if current not in t.from_statuses:
        raise Conflict(f"cannot {action} a mismatch that is {current}")
    _apply(conn, t, select(M.id, M.status).where(M.id == mismatch_id), actor, note, assignee)
    row = conn.execute(select(*_ITEM_COLUMNS).where(M.id == mismatch_id)).one()
    return _item(row)


def act_bulk(
    conn: Connection,
    action: str,
    actor: str,
    *,
    ids: Sequence[int] | None = None,
    where: MismatchFilter | None = None,
    note: str | None = None,
    assignee: str | None = None,
    limit: int = MAX_BULK,
) -> BulkResult:
    """Apply ``action`` to a list of ids or to up to ``limit`` mismatches matching a filter,
    in one transaction. Ids that do not exist or whose status does not allow the action are
    reported in ``skipped``. With a filter, only mismatches in an allowed status (and, to
    assign, not yet assigned to the assignee) are touched and ``more`` says whether others
    still match — run it again; a comment goes to all matching or, beyond ``limit``, none."""
    t, note, assignee = _check_action(conn, action, actor, note, assignee)
    if (ids is None) == (where is None):
        raise Unprocessable("give either ids or a filter")
    if ids is not None:
        ids = list(dict.fromkeys(ids))
        if not ids:
            raise Unprocessable("ids is empty")
        if len(ids) > MAX_BULK_IDS:
            raise Unprocessable(f"at most {MAX_BULK_IDS} ids at once (use a filter for more)")
        target = select(M.id, M.status).where(M.id.in_(ids), M.status.in_(t.from_statuses))
        rows = _apply(conn, t, target, actor, note, assignee)
        changed = {r[0] for r in rows}
        result = BulkResult(changed=sorted(changed))
        rest = [i for i in ids if i not in changed]
        if rest:
            found = dict(conn.execute(select(M.id, M.status).where(M.id.in_(rest))).all())
            for i in rest:
                reason = (
                    f"cannot {action} a mismatch that is {found[i]}"
                    if i in found
                    else "no such mismatch"
                )
                result.skipped.append({"id": i, "reason": reason})
        return result
    assert where is not None
    if not 1 <= limit <= MAX_BULK:
        raise Unprocessable(f"limit must be between 1 and {MAX_BULK}")
    cond = [*where.conditions(), M.status.in_(t.from_statuses)]
    if t.name == "assign":
        # Rows already assigned to them are done: a second round moves on.
        cond.append(M.assignee.is_distinct_from(assignee))
    if t.to_status is None:
        # A comment leaves its rows matching, so rounds would repeat: all at once or none.
        n = conn.scalar(
            select(func.count()).select_from(select(M.id).where(*cond).limit(limit + 1).subquery())
        )
        if n > limit:
            raise Conflict(f"{action}: the filter matches more than {limit} mismatches; narrow it")
    target = select(M.id, M.status).where(*cond).order_by(M.id).limit(limit)
    rows = _apply(conn, t, target, actor, note, assignee)
    more = False
    if len(rows) == limit and t.to_status is not None:
        more = conn.scalar(select(literal(1)).where(*cond).limit(1)) is not None
    return BulkResult(changed=sorted(r[0] for r in rows), more=more)


# ---------------------------------------------------------------------------------- export
#
# Both formats open right in a spreadsheet (issue #18, item 9):
#
# * CSV starts with a UTF-8 byte-order mark: Excel reads a CSV without one in the machine's
#   ANSI code page, which garbles Vietnamese and Arabic. Python readers decode it with
#   ``encoding="utf-8-sig"`` and see the same column names as before.
# * ID cells (record_key, citizen_id, and sector/registry values of the citizen_id and
#   legacy_id fields) are written as ``="…"``, Excel's string-literal formula: Excel,
#   LibreOffice and Google Sheets show the text as is, so ``000123`` keeps its zeros, a
#   12-digit ID is not rounded to ``1.23E+11`` and ``2024-01-02`` stays text. A cell Excel
#   cannot parse as a number or date is never affected by its format guessing, but any
#   digit-only or date-like ID is, and column types cannot be declared in a CSV file, so
#   this is the one technique that works on a double-click open. Embedded quotes are doubled
#   inside the literal, so the cell is inert text, never a live formula; values longer than
#   the 255 characters Excel allows in a literal fall back to the plain, defused form.
#   ``unwrap_excel_text`` turns such a cell back into the value.
# * XLSX (``export_xlsx``) has real text cells instead, formatted ``@`` (Text).


EXPORT_FORMATS = ("csv", "xlsx")
EXPORT_MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
UTF8_BOM = b"\xef\xbb\xbf"
EXCEL_LITERAL_MAX = 255  # characters in a string literal of an Excel formula
EXCEL_MAX_ROWS = 1_048_576  # per worksheet, the header row included
EXCEL_CELL_MAX = 32_767  # characters in a cell

_TIMESTAMPS = {"first_seen_at", "last_seen_at", "resolved_at", "updated_at"}
# Columns that always hold an identifier; the value columns hold one for these fields.
_ID_COLUMNS = {"record_key", "citizen_id"}
_ID_FIELDS = ("citizen_id", "legacy_id")
_VALUE_COLUMNS = {"sector_value", "registry_value"}

# Values that come from the sources: a leading = + - @ (or tab/CR) would make a spreadsheet
# evaluate the cell, so the export prefixes such values with ' (OWASP "CSV injection").
_SOURCE_TEXT = {"record_key", "citizen_id", "sector_value", "registry_value", "province_code"}


def _defused(col: ColumnElement) -> ColumnElement:
    return case((col.op("~")(r"^[=+\-@\t\r]"), literal("'") + col), else_=col)


def _excel_text(col: ColumnElement) -> ColumnElement:
    """``="value"`` (quotes doubled), or the defused value when too long for a literal."""
    quoted = func.replace(col, '"', '""')
    return case(
        (func.char_length(quoted) <= EXCEL_LITERAL_MAX, literal('="') + quoted + literal('"')),
        else_=_defused(col),
    )


def unwrap_excel_text(cell: str) -> str:
    """The value of a CSV export cell written as ``="…"`` (any other cell unchanged)."""
    if len(cell) >= 3 and cell.startswith('="') and cell.endswith('"'):
        return cell[2:-1].replace('""', '"')
    return cell


def _export_column(name: str) -> ColumnElement:
    col = getattr(M, name)
    if name in _TIMESTAMPS:  # ISO 8601 in UTC, like the JSON answers
        col = func.to_char(func.timezone("UTC", col), 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
    elif name in _ID_COLUMNS:
        col = _excel_text(col)
    elif name in _VALUE_COLUMNS:
        col = case((M.field.in_(_ID_FIELDS), _excel_text(col)), else_=_defused(col))
    elif name in _SOURCE_TEXT:
        col = _defused(col)
    return col.label(name)


def export_filename(f: MismatchFilter, fmt: str, today: date | None = None) -> str:
    """``mismatches_<sector>_<rule>_<YYYY-MM-DD>.<fmt>``: each part is the filter's value,
    several joined with ``+``, or ``all`` when the filter leaves it open; only letters,
    digits, ``_``, ``-`` and ``+`` remain, so it is safe in a Content-Disposition header."""

    def part(values: tuple[str, ...]) -> str:
        text = "+".join(values)[:60] if values else "all"
        return re.sub(r"[^A-Za-z0-9_+-]", "-", text)

    day = (today or datetime.now(UTC).date()).isoformat()
    return f"mismatches_{part(f.sector)}_{part(f.rule)}_{day}.{fmt}"


def export_csv(
    engine: Engine,
    f: MismatchFilter,
    *,
    chunk_bytes: int = 256 * 1024,
    on_rows: Callable[[int], None] | None = None,
) -> Iterator[bytes]:
    """CSV (UTF-8 with a byte-order mark, header row, ITEM_FIELDS in order, NULL as an empty
    field, times ISO 8601 UTC, ID cells as ``="…"``, see above) of every mismatch matching
    ``f``, ordered by id. PostgreSQL writes the CSV itself (``COPY … TO STDOUT``) and it is
    passed on in ``chunk_bytes`` pieces: memory stays flat however many rows match. The
    connection is held until the generator ends or is closed; ``on_rows`` hears the number
    of rows at the end."""
    stmt = (
        select(*(_export_column(n) for n in ITEM_FIELDS))
        .where(and_(true(), *f.conditions()))
        .order_by(M.id)
    )
    with engine.connect() as conn:
        compiled = stmt.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
        raw = conn.connection.driver_connection
        with raw.cursor() as cur:
            # COPY takes no server-side parameters: psycopg binds these client-side.
            sql = f"COPY ({compiled}) TO STDOUT WITH (FORMAT csv, HEADER true)"
            buf = bytearray(UTF8_BOM)
            with cur.copy(sql, compiled.params) as copy:
                for data in copy:
                    buf += data
                    if len(buf) >= chunk_bytes:
                        yield bytes(buf)
                        buf.clear()
            if buf:
                yield bytes(buf)
            if on_rows is not None:
                on_rows(cur.rowcount)


_XLSX_TEXT_FORMAT = "@"
_XLSX_TIME_FORMAT = "yyyy-mm-dd hh:mm:ss"


def write_xlsx(
    rows: Iterable[Sequence[Any]],
    out: BinaryIO,
    *,
    header: Sequence[str] = ITEM_FIELDS,
    rows_per_sheet: int = EXCEL_MAX_ROWS - 1,
) -> int:
    """Write ``rows`` (values in ``header`` order, as ``list_page`` items hold them) to
    ``out`` as an XLSX workbook; return the number of rows.

    openpyxl's write-only mode streams each row to a temporary file, so memory stays flat
    however many rows there are. Strings are text cells (never formulas, control characters
    Excel refuses become U+FFFD); record_key and citizen_id cells, and the value cells of
    ID fields, are formatted as Text (``@``) so an edit keeps their leading zeros; times are
    UTC without a zone, as Excel has none. Beyond Excel's row limit the rows go on in
    another sheet (``mismatches 2`` …), each with the header."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    wb = Workbook(write_only=True)
    text_cols = {i for i, h in enumerate(header) if h in _ID_COLUMNS}
    value_cols = {i for i, h in enumerate(header) if h in _VALUE_COLUMNS}
    field_col = header.index("field") if "field" in header else None
    ws = None
    in_sheet = sheets = n = 0

    def cell(value: Any, as_text: bool) -> Any:
        if isinstance(value, datetime):
            if value.tzinfo is not None:
                value = value.astimezone(UTC).replace(tzinfo=None)
            c = WriteOnlyCell(ws, value)
            c.number_format = _XLSX_TIME_FORMAT
            return c
        if not isinstance(value, str):
            return value
        value = ILLEGAL_CHARACTERS_RE.sub("\ufffd", value)[:EXCEL_CELL_MAX]
        c = WriteOnlyCell(ws, value)
        c.data_type = "s"  # a value starting with = stays text, not a formula
        if as_text:
            c.number_format = _XLSX_TEXT_FORMAT
        return c

    for row in rows:
        if ws is None or in_sheet >= rows_per_sheet:
            sheets += 1
            ws = wb.create_sheet("mismatches" if sheets == 1 else f"mismatches {sheets}")
            ws.freeze_panes = "A2"
            ws.append(list(header))
            in_sheet = 0
        id_field = field_col is not None and row[field_col] in _ID_FIELDS
        ws.append(
            [cell(v, i in text_cols or (id_field and i in value_cols)) for i, v in enumerate(row)]
        )
        in_sheet += 1
        n += 1
    if ws is None:
        ws = wb.create_sheet("mismatches")
        ws.append(list(header))
    wb.save(out)
    return n


def export_xlsx(
    engine: Engine,
    f: MismatchFilter,
    *,
    chunk_bytes: int = 256 * 1024,
    on_rows: Callable[[int], None] | None = None,
) -> Iterator[bytes]:
    """Every mismatch matching ``f`` (ordered by id) as an XLSX workbook (``write_xlsx``),
    in ``chunk_bytes`` pieces. Rows come through a server-side cursor and the workbook is
    built in a temporary file, so memory stays flat; the first piece comes once the
    workbook is complete (a ZIP archive cannot be streamed before its end)."""
    stmt = select(*_ITEM_COLUMNS).where(and_(true(), *f.conditions())).order_by(M.id)
    with tempfile.TemporaryFile(prefix="hub-export-", suffix=".xlsx") as tmp:
        with engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=2000).execute(stmt)
            n = write_xlsx((tuple(r) for r in result), tmp)
        tmp.seek(0)
        while chunk := tmp.read(chunk_bytes):
            yield chunk
    if on_rows is not None:
        on_rows(n)


EXPORTERS: dict[str, Callable[..., Iterator[bytes]]] = {"csv": export_csv, "xlsx": export_xlsx}

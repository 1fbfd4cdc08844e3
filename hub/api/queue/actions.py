"""A steward's actions on one mismatch or in bulk: the transitions of
``reconciliation.lifecycle`` applied under row locks, with history and audit rows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, String, Text, cast, func, insert, literal, select, update
from sqlalchemy.sql import ColumnElement, Select

from hub.api import audit
from hub.api.auth import ASSIGNABLE_ROLES
from hub.api.errors import Conflict, NotFound, Unprocessable
from hub.api.queue.filters import ITEM_COLUMNS, M, MismatchFilter, as_item
from hub.api.users import active_user_role
from hub.config import DEFAULT_DISMISSAL_REASONS, DismissalReason
from hub.db.models import AuditLog, MismatchHistory
from reconciliation.lifecycle import STEWARD_ACTIONS, Transition, steward_note

MAX_BULK = 10_000
MAX_BULK_IDS = 1_000


@dataclass
class BulkResult:
    """What a bulk action changed, what it skipped and why, and whether more still match."""

    changed: list[int] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    more: bool = False


def _check_action(
    conn: Connection,
    action: str,
    actor: str,
    note: str | None,
    assignee: str | None,
    reason_code: str | None = None,
    reasons: Sequence[DismissalReason] = DEFAULT_DISMISSAL_REASONS,
) -> tuple[Transition, str | None, str | None, str | None]:
    t = STEWARD_ACTIONS.get(action)
    if t is None:
        raise Unprocessable(f"unknown action {action!r} (known: {', '.join(STEWARD_ACTIONS)})")
    note = (note or "").strip() or None
    if t.note_required and note is None:
        raise Unprocessable(f"{action} needs a note")
    code = check_dismissal(action, reason_code, note, reasons)
    if action == "assign":
        assignee = (assignee or "").strip() or actor
        role = active_user_role(conn, assignee)
        if role is None:
            raise NotFound(f"cannot assign to {assignee!r}: no such active user")
        if role not in ASSIGNABLE_ROLES:
            raise Conflict(f"cannot assign to {assignee!r}: a {role} does not work mismatches")
    else:
        assignee = None
    return t, note, assignee, code


def check_dismissal(
    action: str, reason_code: str | None, note: str | None, reasons: Sequence[DismissalReason]
) -> str | None:
    """The reason code of ``action``: required to dismiss and one of ``reasons`` (with the
    free text when that reason requires it), refused with any other action."""
    code = (reason_code or "").strip() or None
    allowed = ", ".join(r.code for r in reasons)
    if action != "dismiss":
        if code is not None:
            raise Unprocessable(f"a reason code goes with dismiss only, not {action}")
        return None
    if code is None:
        raise Unprocessable(f"dismiss needs a reason code (allowed: {allowed})")
    reason = next((r for r in reasons if r.code == code), None)
    if reason is None:
        raise Unprocessable(f"unknown reason code {code[:64]!r} (allowed: {allowed})")
    if reason.note_required and note is None:
        raise Unprocessable(f"dismiss with reason code {code!r} needs a reason in words")
    return code


def _apply(
    conn: Connection,
    t: Transition,
    target: Select,
    actor: str,
    note: str | None,
    assignee: str | None,
    code: str | None = None,
) -> list[Any]:
    """Lock the targeted rows, change them, write history and audit rows, all in one
    statement; return the changed rows (id, from and to status, sector, record key,
    citizen ID) by id."""
    locked = target.with_for_update(of=M).subquery()
    values: dict[str, Any] = {"updated_at": func.now(), **t.changes()}
    if "resolved_at" in values:
        values["resolved_at"] = func.now() if values["resolved_at"] == "set" else None
    if t.name == "assign":
        values["assignee"] = assignee
    if t.to_status is not None:
        values["dismissal_code"] = code  # held while dismissed, dropped by any other move
    changed = (
        update(M)
        .where(M.id == locked.c.id)
        .values(**values)
        .returning(
            M.id,
            locked.c.status.label("from_status"),
            M.status.label("to_status"),
            M.sector,
            M.record_key,
            M.citizen_id,
        )
        .cte("changed")
    )
    # The history and audit rows of every changed row in the same statement (one round
    # trip, set-wise: 10k rows of a bulk action no longer go one by one).
    hist_note = steward_note(t, note, assignee)
    history = (
        insert(MismatchHistory)
        .from_select(
            [
                "mismatch_id",
                "actor",
                "action",
                "from_status",
                "to_status",
                "note",
                "dismissal_code",
            ],
            select(
                changed.c.id,
                _text(actor),
                _text(t.action),
                changed.c.from_status,
                changed.c.to_status,
                _text(hist_note),
                _text(code),
            ).order_by(changed.c.id),
        )
        .cte("history")
    )
    detail = {
        "sector": changed.c.sector,
        "record_key": changed.c.record_key,
        "citizen_id": changed.c.citizen_id,
        "from_status": changed.c.from_status,
        "to_status": changed.c.to_status,
        "note": _text(note),
        "assignee": _text(assignee),
        "dismissal_code": _text(code),
    }
    audited = (
        insert(AuditLog)
        .from_select(
            ["actor", "action", "target_type", "target_id", "detail"],
            select(
                _text(actor),
                _text(t.name),
                _text(audit.MISMATCH),
                cast(changed.c.id, String),
                # None values are left out of the detail, as audit.record_many does.
                func.jsonb_strip_nulls(
                    func.jsonb_build_object(*(x for k, v in detail.items() for x in (_text(k), v)))
                ),
            ).order_by(changed.c.id),
        )
        .cte("audited")
    )
    stmt = select(*changed.c).add_cte(history, audited).order_by(changed.c.id)
    return conn.execute(stmt).all()


def _text(value: str | None) -> ColumnElement:
    return cast(literal(value), Text)


def act(
    conn: Connection,
    mismatch_id: int,
    action: str,
    actor: str,
    *,
    note: str | None = None,
    assignee: str | None = None,
    reason_code: str | None = None,
    reasons: Sequence[DismissalReason] = DEFAULT_DISMISSAL_REASONS,
) -> dict[str, Any]:
    """Apply ``action`` to one mismatch in the caller's transaction; returns the updated item.

    NotFound if there is no such mismatch or the assignee is no active user, Conflict if
    its status does not allow the action or the assignee's role does not work mismatches,
    Unprocessable if a required reason code or note is missing or the code is not one of
    ``reasons``.
    """
    t, note, assignee, code = _check_action(
        conn, action, actor, note, assignee, reason_code, reasons
    )
    current = conn.scalar(select(M.status).where(M.id == mismatch_id).with_for_update())
    if current is None:
        raise NotFound(f"no mismatch {mismatch_id}")
    if not t.allows(current):
        raise Conflict(f"cannot {action} a mismatch that is {current}")
    _apply(conn, t, select(M.id, M.status).where(M.id == mismatch_id), actor, note, assignee, code)
    row = conn.execute(select(*ITEM_COLUMNS).where(M.id == mismatch_id)).one()
    return as_item(row)


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
    reason_code: str | None = None,
    reasons: Sequence[DismissalReason] = DEFAULT_DISMISSAL_REASONS,
) -> BulkResult:
    """Apply ``action`` to a list of ids or to up to ``limit`` mismatches matching a filter,
    in one transaction. Ids that do not exist or whose status does not allow the action are
    reported in ``skipped``. With a filter, only mismatches in an allowed status (and, to
    assign, not yet assigned to the assignee) are touched and ``more`` says whether others
    still match — run it again; a comment goes to all matching or, beyond ``limit``, none."""
    t, note, assignee, code = _check_action(
        conn, action, actor, note, assignee, reason_code, reasons
    )
    if (ids is None) == (where is None):
        raise Unprocessable("give either ids or a filter")
    if ids is not None:
        ids = list(dict.fromkeys(ids))
        if not ids:
            raise Unprocessable("ids is empty")
        if len(ids) > MAX_BULK_IDS:
            raise Unprocessable(f"at most {MAX_BULK_IDS} ids at once (use a filter for more)")
        target = select(M.id, M.status).where(M.id.in_(ids), M.status.in_(t.from_statuses))
        rows = _apply(conn, t, target, actor, note, assignee, code)
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
    rows = _apply(conn, t, target, actor, note, assignee, code)
    more = False
    if len(rows) == limit and t.to_status is not None:
        more = conn.scalar(select(literal(1)).where(*cond).limit(1)) is not None
    return BulkResult(changed=sorted(r[0] for r in rows), more=more)

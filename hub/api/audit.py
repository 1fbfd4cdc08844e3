"""The audit log: who did what to which mismatch, and who viewed which citizen's record."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, insert, literal, select

from hub.db.models import AuditLog

MISMATCH = "mismatch"


def record(
    conn: Connection,
    actor: str,
    action: str,
    *,
    target_type: str | None = None,
    target_id: str | int | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Add one audit row in the caller's transaction (it commits or rolls back with the act)."""
    conn.execute(
        insert(AuditLog).values(
            actor=actor,
            action=action,
            target_type=target_type,
            target_id=None if target_id is None else str(target_id),
            detail=detail,
        )
    )


@dataclass(frozen=True)
class Entry:
    actor: str
    action: str
    target_type: str | None
    target_id: str | int | None
    detail: dict[str, Any] | None


def record_many(conn: Connection, entries: list[Entry]) -> None:
    """Add many audit rows in one round trip, in the caller's transaction; ``None`` values
    are dropped from each detail."""
    if not entries:
        return
    conn.execute(
        insert(AuditLog),
        [
            {
                "actor": e.actor,
                "action": e.action,
                "target_type": e.target_type,
                "target_id": None if e.target_id is None else str(e.target_id),
                "detail": {k: v for k, v in (e.detail or {}).items() if v is not None},
            }
            for e in entries
        ],
    )


def record_mismatch(
    conn: Connection, actor: str, action: str, item: Mapping[str, Any], **extra: Any
) -> None:
    """Audit an act on (or a view of) a mismatch (a list item): its id, sector, record key
    and the citizen ID the sector holds, so "who saw this citizen's record" is answered."""
    detail = {k: item[k] for k in ("sector", "record_key", "citizen_id")}
    detail.update({k: v for k, v in extra.items() if v is not None})
    record(conn, actor, action, target_type=MISMATCH, target_id=item["id"], detail=detail)


@dataclass(frozen=True)
class AuditQuery:
    """Filters of an audit log query; ``after`` is the last id of the previous page."""

    actor: str | None = None
    action: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    citizen_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 100
    after: int | None = None


def query(conn: Connection, q: AuditQuery) -> tuple[list[dict[str, Any]], int | None]:
    """Newest first; returns (rows, id to pass as ``after`` for the next page or None)."""
    a = AuditLog
    cond = []
    if q.actor:
        cond.append(a.actor == q.actor)
    if q.action:
        cond.append(a.action == q.action)
    if q.target_type:
        cond.append(a.target_type == q.target_type)
    if q.target_id:
        cond.append(a.target_id == q.target_id)
    if q.citizen_id:
        cond.append(a.detail["citizen_id"].astext == q.citizen_id)
    if q.since:
        cond.append(a.at >= q.since)
    if q.until:
        cond.append(a.at < q.until)
    if q.after is not None:
        cond.append(a.id < q.after)
    stmt = (
        select(a.id, a.at, a.actor, a.action, a.target_type, a.target_id, a.detail)
        .where(and_(literal(True), *cond))
        .order_by(a.id.desc())
        .limit(q.limit + 1)
    )
    rows = [dict(r._mapping) for r in conn.execute(stmt)]
    more = len(rows) > q.limit
    rows = rows[: q.limit]
    return rows, (rows[-1]["id"] if more and rows else None)

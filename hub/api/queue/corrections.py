"""A steward's corrections: propose one from a mismatch, approve, send, withdraw, record the
agency's answer — the transitions of :data:`reconciliation.corrections.CORRECTION_TRANSITIONS`
applied under row locks, each with its history and audit rows."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from hub.api import audit
from hub.api.errors import Conflict, Forbidden, NotFound, Unprocessable
from hub.config import HubConfig
from hub.db.models import Correction, CorrectionHistory, Mismatch
from reconciliation.corrections import (
    CANDIDATE,
    CORRECTION_TRANSITIONS,
    LIVE_STATUSES,
    VALUE_RULES,
    proposal_problem,
    send_from,
)

C = Correction
CORRECTION = "correction"
MAX_SEND_IDS = 1_000
ITEM_COLUMNS = (
    C.id, C.mismatch_id, C.sector, C.record_key, C.kind, C.field, C.current_value,
    C.proposed_value, C.reason, C.status, C.proposed_by, C.approved_by, C.agency_reason,
    C.created_at, C.sent_at, C.closed_at, C.updated_at,
)  # fmt: skip
Item = dict[str, Any]
Produce = Callable[[Connection, list[Item]], None]
"""Publishes sent corrections (Kafka) before the transaction commits; raises to refuse."""


def approval_needed(config: HubConfig, sector: str) -> bool:
    src = config.sectors.get(sector)
    return src is not None and src.corrections.approval


def _item(row: Any) -> Item:
    return dict(row._mapping)


def get(conn: Connection, correction_id: int, *, lock: bool = False) -> Item:
    stmt = select(*ITEM_COLUMNS, Mismatch.citizen_id, Mismatch.rule).join(
        Mismatch, Mismatch.id == C.mismatch_id
    )
    stmt = stmt.where(C.id == correction_id)
    if lock:
        stmt = stmt.with_for_update(of=C)
    row = conn.execute(stmt).one_or_none()
    if row is None:
        raise NotFound(f"no correction {correction_id}")
    return _item(row)


def history(conn: Connection, correction_ids: Sequence[int]) -> dict[int, list[Item]]:
    """Each correction's steps, oldest first."""
    h = CorrectionHistory
    out: dict[int, list[Item]] = {i: [] for i in correction_ids}
    rows = conn.execute(
        select(h.correction_id, h.at, h.actor, h.action, h.from_status, h.to_status, h.note)
        .where(h.correction_id.in_(list(correction_ids)))
        .order_by(h.id)
    )
    for r in rows:
        out[r.correction_id].append({k: v for k, v in r._mapping.items() if k != "correction_id"})
    return out


def with_history(conn: Connection, item: Item) -> Item:
    return {**item, "history": history(conn, [item["id"]])[item["id"]]}


@dataclass(frozen=True)
class CorrectionFilter:
    sector: tuple[str, ...] = ()
    status: tuple[str, ...] = ()
    mismatch_id: int | None = None
    limit: int = 100
    after: int | None = None


def query(conn: Connection, f: CorrectionFilter) -> tuple[list[Item], int | None]:
    """Newest first; returns (items, the id to pass as ``after`` for the next page)."""
    cond = []
    if f.sector:
        cond.append(C.sector.in_(f.sector))
    if f.status:
        cond.append(C.status.in_(f.status))
    if f.mismatch_id is not None:
        cond.append(C.mismatch_id == f.mismatch_id)
    if f.after is not None:
        cond.append(C.id < f.after)
    rows = conn.execute(
        select(*ITEM_COLUMNS).where(*cond).order_by(C.id.desc()).limit(f.limit + 1)
    ).all()
    items = [_item(r) for r in rows[: f.limit]]
    return items, (items[-1]["id"] if len(rows) > f.limit else None)


def _record(
    conn: Connection,
    actor: str,
    action: str,
    items: Sequence[Item],
    before: dict[int, str | None],
    note: str | None,
) -> None:
    """History and audit rows of one step taken on ``items``."""
    if not items:
        return
    conn.execute(
        insert(CorrectionHistory),
        [
            {
                "correction_id": i["id"],
                "actor": actor,
                "action": action,
                "from_status": before.get(i["id"]),
                "to_status": i["status"],
                "note": note,
            }
            for i in items
        ],
    )
    audit.record_many(
        conn,
        [
            audit.Entry(
                actor,
                f"correction_{action}",
                CORRECTION,
                i["id"],
                {
                    "mismatch_id": i["mismatch_id"],
                    "sector": i["sector"],
                    "record_key": i["record_key"],
                    "citizen_id": i.get("citizen_id"),
                    "from_status": before.get(i["id"]),
                    "to_status": i["status"],
                    "note": note,
                },
            )
            for i in items
        ],
    )


def propose(
    conn: Connection,
    mismatch_id: int,
    actor: str,
    *,
    kind: str,
    proposed_value: str,
    reason: str | None,
) -> Item:
    """A new ``proposed`` correction of an open mismatch. A value correction's field is the
    rule's; its current value is the sector's. NotFound, Conflict (the mismatch is closed,
    already has a live correction, or its rule is not fixed by such a value)."""
    m = conn.execute(
        select(Mismatch.__table__).where(Mismatch.id == mismatch_id).with_for_update()
    ).one_or_none()
    if m is None:
        raise NotFound(f"no mismatch {mismatch_id}")
    if m.status not in ("open", "in_review"):
        raise Conflict(f"cannot propose a correction for a mismatch that is {m.status}")
    problem = proposal_problem(m.rule, kind, proposed_value)
    if problem:  # the value does not fit this mismatch's rule: the target refuses it
        raise Conflict(problem)
    live = conn.scalar(
        select(C.id).where(C.mismatch_id == mismatch_id, C.status.in_(LIVE_STATUSES))
    )
    if live is not None:
        raise Conflict(f"mismatch {mismatch_id} already has correction {live} under way")
    field = "citizen_id" if kind == CANDIDATE else VALUE_RULES[m.rule]
    current = m.citizen_id if kind == CANDIDATE else m.sector_value
    new_id = conn.scalar(
        insert(C)
        .values(
            mismatch_id=mismatch_id,
            sector=m.sector,
            record_key=m.record_key,
            kind=kind,
            field=field,
            current_value=current,
            proposed_value=proposed_value.strip(),
            reason=(reason or "").strip() or None,
            proposed_by=actor,
        )
        .returning(C.id)
    )
    item = get(conn, new_id)
    _record(conn, actor, "propose", [item], {}, item["reason"])
    return item


def act(
    conn: Connection,
    config: HubConfig,
    correction_id: int,
    action: str,
    actor: str,
    *,
    note: str | None = None,
    produce: Produce | None = None,
) -> Item:
    """Take ``action`` (approve, send, withdraw, reject, acknowledge) on one correction."""
    result = act_many(conn, config, [correction_id], action, actor, note=note, produce=produce)
    if result.skipped:
        skipped = result.skipped[0]
        raise skipped["error"](skipped["reason"])
    return result.changed[0]


@dataclass
class ManyResult:
    changed: list[Item]
    skipped: list[dict[str, Any]]


def act_many(
    conn: Connection,
    config: HubConfig,
    ids: Sequence[int],
    action: str,
    actor: str,
    *,
    note: str | None = None,
    produce: Produce | None = None,
) -> ManyResult:
    """Take ``action`` on each correction that allows it, in the caller's transaction; the
    others are skipped with their reason. ``send`` calls ``produce`` with the sent ones
    before returning (a failure there rolls the whole step back)."""
    t = CORRECTION_TRANSITIONS.get(action)
    if t is None or action in ("propose", "confirm"):
        raise Unprocessable(f"unknown correction action {action!r}")
    note = (note or "").strip() or None
    if t.reason_required and note is None:
        raise Unprocessable(f"{action} needs the agency's reason")
    ids = list(dict.fromkeys(ids))
    if not ids:
        raise Unprocessable("ids is empty")
    if len(ids) > MAX_SEND_IDS:
        raise Unprocessable(f"at most {MAX_SEND_IDS} corrections at once")
    rows = conn.execute(
        select(*ITEM_COLUMNS, Mismatch.citizen_id)
        .join(Mismatch, Mismatch.id == C.mismatch_id)
        .where(C.id.in_(ids))
        .order_by(C.id)
        .with_for_update(of=C)
    ).all()
    found = {r.id: _item(r) for r in rows}
    skipped: list[dict[str, Any]] = []
    todo: list[Item] = []
    for i in ids:
        item = found.get(i)
        reason, error = _refusal(config, t.name, item, actor, i)
        if reason:
            skipped.append({"id": i, "reason": reason, "error": error})
        else:
            todo.append(item)
    before = {i["id"]: i["status"] for i in todo}
    values: dict[str, Any] = {"status": t.to_status, "updated_at": func.now()}
    if t.name == "approve":
        values["approved_by"] = actor
    elif t.name == "send":
        values["sent_at"] = func.now()
    elif t.name in ("reject", "acknowledge"):
        values["agency_reason"] = note
    if t.to_status not in LIVE_STATUSES:
        values["closed_at"] = func.now()
    changed: list[Item] = []
    if todo:
        conn.execute(update(C).where(C.id.in_([i["id"] for i in todo])).values(**values))
        changed = [{**get(conn, i["id"]), "citizen_id": i["citizen_id"]} for i in todo]
        _record(conn, actor, t.name, changed, before, note)
        if t.name == "send" and produce is not None:
            produce(conn, changed)
    return ManyResult(changed, skipped)


def _refusal(
    config: HubConfig, action: str, item: Item | None, actor: str, cid: int
) -> tuple[str | None, type]:
    """Why ``actor`` may not take ``action`` on ``item`` now (None: they may)."""
    if item is None:
        return f"no correction {cid}", NotFound
    t = CORRECTION_TRANSITIONS[action]
    status = item["status"]
    approval = approval_needed(config, item["sector"])
    if action == "send" and status == "proposed" and approval:
        return f"correction {cid} needs approval before it is sent ({item['sector']})", Conflict
    if action == "approve" and item["proposed_by"] == actor:
        return f"you cannot approve your own correction ({cid})", Forbidden
    allowed = send_from(approval) if action == "send" else t.from_statuses
    if status not in allowed:
        return f"cannot {action} correction {cid}: it is {status}", Conflict
    return None, Conflict

"""REST endpoints of corrections under /api/v1: propose from a mismatch, list, get, approve,
send (one or many, produced to ``<prefix>.corrections.<sector>``), withdraw, the agency's
reject / acknowledge, the sector's work list and its returned file."""

from __future__ import annotations

import time
from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Path, Query, Request, UploadFile
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import Connection, select
from starlette.concurrency import run_in_threadpool

from hub.api import audit
from hub.api.auth import Permission, Principal
from hub.api.deps import AppState, get_state, require
from hub.api.errors import ApiError, Unprocessable
from hub.api.queue import corrections as service
from hub.api.queue import worklist
from hub.api.queue.export import EXPORT_MEDIA_TYPES
from hub.api.rest import ERROR_RESPONSES, known_query_only
from hub.api.schemas import MAX_JSON_INT, NONBLANK_TEXT, JsonInt, Note, RequiredNote
from hub.db.models import Correction as C
from hub.db.models import Mismatch
from hub.errors import RetriableError
from reconciliation.corrections import CORRECTION_STATUSES, KINDS, SentFeed, sent_event

CorrectionStatus = Literal[CORRECTION_STATUSES]  # type: ignore[valid-type]
Kind = Literal[KINDS]  # type: ignore[valid-type]
Proposed = Annotated[str, StringConstraints(min_length=1, max_length=400, pattern=NONBLANK_TEXT)]
CorrectionId = Annotated[int, Path(ge=1, lt=2**63, description="A correction id.")]
MismatchId = Annotated[int, Path(ge=1, lt=2**63, description="A mismatch id.")]
Sector = Annotated[str, StringConstraints(max_length=40)]

State = Annotated[AppState, Depends(get_state)]
Reader = Annotated[Principal, Depends(require(Permission.READ))]
Steward = Annotated[Principal, Depends(require(Permission.ACT))]
Approver = Annotated[Principal, Depends(require(Permission.APPROVE))]


class ProposeBody(BaseModel):
    """``candidate``: the record should carry citizen ID ``proposed_value`` (ID_MISSING,
    ID_NOT_IN_REGISTRY, ID_LEGACY); ``value``: the rule's field should hold
    ``proposed_value`` (NAME_MISMATCH, DOB_MISMATCH as YYYY-MM-DD, SEX_MISMATCH,
    PROVINCE_MISMATCH)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    kind: Kind
    proposed_value: Proposed
    reason: Note | None = None


class ReasonBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    reason: Note | None = None


class RejectBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    reason: RequiredNote = Field(description="The agency's reason; not blank.")


class SendBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    ids: Annotated[
        list[Annotated[int, Field(ge=1, le=MAX_JSON_INT), JsonInt]],
        Field(min_length=1, max_length=service.MAX_SEND_IDS),
    ]


class HistoryOut(BaseModel):
    at: datetime
    actor: str
    action: str
    from_status: str | None
    to_status: str | None
    note: str | None


class CorrectionOut(BaseModel):
    id: int
    mismatch_id: int
    sector: str
    record_key: str
    kind: str
    field: str
    current_value: str | None
    proposed_value: str
    reason: str | None
    status: str
    proposed_by: str
    approved_by: str | None
    agency_reason: str | None
    created_at: datetime
    sent_at: datetime | None
    closed_at: datetime | None
    updated_at: datetime


class CorrectionDetail(CorrectionOut):
    history: list[HistoryOut]


class CorrectionPage(BaseModel):
    items: list[CorrectionOut]
    next_after: int | None = Field(description="Pass as `after` for the next page.")


class Skipped(BaseModel):
    id: int
    reason: str


class SendResult(BaseModel):
    sent: list[CorrectionOut]
    skipped: list[Skipped]


class RowResult(BaseModel):
    row: int = Field(description="The row number as a spreadsheet shows it (header: 1).")
    correction_id: int | None
    result: str = Field(description="rejected, acknowledged or error.")
    reason: str | None


class ReturnedResult(BaseModel):
    applied: int
    errors: int
    rows: list[RowResult]


router = APIRouter(
    prefix="/api/v1",
    tags=["corrections"],
    responses={**ERROR_RESPONSES, 503: ERROR_RESPONSES[503]},
    dependencies=[Depends(known_query_only)],
)


def _feed(request: Request, state: State) -> SentFeed:
    feed = getattr(request.app.state, "corrections_feed", None)
    if feed is None:
        feed = request.app.state.corrections_feed = SentFeed(state.config)
    return feed


Feed = Annotated[SentFeed, Depends(_feed)]


def _producer(feed: SentFeed):
    """What the service calls with the sent corrections, before the commit."""

    def produce(conn: Connection, items: list[dict[str, Any]]) -> None:
        ids = [i["mismatch_id"] for i in items]
        found = {
            r.id: r._mapping
            for r in conn.execute(
                select(Mismatch.id, Mismatch.rule, Mismatch.severity, Mismatch.citizen_id).where(
                    Mismatch.id.in_(ids)
                )
            )
        }
        ts_ms = int(time.time() * 1000)
        try:
            feed.publish([sent_event(i, found[i["mismatch_id"]], ts_ms) for i in items])
        except RetriableError as exc:
            raise ApiError(f"not sent: {exc}; try again shortly", 503) from exc

    return produce


def _sector(state: AppState, sector: str):
    src = state.config.sectors.get(sector)
    if src is None:
        known = ", ".join(state.sectors) or "none configured"
        raise Unprocessable(f"unknown sector {sector!r} (known: {known})")
    return src


@router.post(
    "/mismatches/{mismatch_id:int}/corrections",
    response_model=CorrectionOut,
    status_code=201,
)
def propose(*, mismatch_id: MismatchId, body: ProposeBody, state: State, principal: Steward):
    """Propose a correction of an open mismatch (one under way per mismatch)."""
    with state.engine.begin() as conn:
        return service.propose(
            conn,
            mismatch_id,
            principal.name,
            kind=body.kind,
            proposed_value=body.proposed_value,
            reason=body.reason,
        )


@router.get("/corrections", response_model=CorrectionPage)
def list_corrections(
    *,
    sector: Annotated[list[Sector], Query()] = [],  # noqa: B006
    status: Annotated[list[CorrectionStatus], Query()] = [],  # noqa: B006
    mismatch_id: Annotated[int | None, Query(ge=1, lt=2**63)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    after: Annotated[int | None, Query(ge=1, lt=2**63)] = None,
    state: State,
    _: Reader,
) -> dict:
    """Corrections, newest first, by sector, status or mismatch."""
    f = service.CorrectionFilter(tuple(sector), tuple(status), mismatch_id, limit, after)
    with state.engine.connect() as conn:
        for s in f.sector:  # a typo is an error, not an empty page (as for the queue)
            if (
                s not in state.sectors
                and conn.scalar(select(C.id).where(C.sector == s).limit(1)) is None
            ):
                raise Unprocessable(
                    f"unknown sector {s!r} (configured: {', '.join(state.sectors) or 'none'})"
                )
        items, next_after = service.query(conn, f)
    return {"items": items, "next_after": next_after}


@router.get("/corrections/{correction_id:int}", response_model=CorrectionDetail)
def get_correction(*, correction_id: CorrectionId, state: State, principal: Reader) -> dict:
    """One correction with its history (who, when, why). The view is audited."""
    with state.engine.begin() as conn:
        item = service.with_history(conn, service.get(conn, correction_id))
        audit.record(
            conn,
            principal.name,
            "correction_view",
            target_type=service.CORRECTION,
            target_id=correction_id,
            detail={"sector": item["sector"], "record_key": item["record_key"],
                    "citizen_id": item["citizen_id"]},
        )  # fmt: skip
    return item


def _act(state: AppState, cid: int, action: str, principal: Principal, **kw) -> dict:
    with state.engine.begin() as conn:
        item = service.act(conn, state.config, cid, action, principal.name, **kw)
    state.stats.invalidate()
    return item


@router.post("/corrections/{correction_id:int}/approve", response_model=CorrectionOut)
def approve(
    *,
    correction_id: CorrectionId,
    body: ReasonBody | None = None,
    state: State,
    principal: Approver,
):
    """Approve a proposed correction: a second person (not its proposer)."""
    return _act(state, correction_id, "approve", principal, note=(body or ReasonBody()).reason)


@router.post("/corrections/{correction_id:int}/send", response_model=CorrectionOut)
def send_one(*, correction_id: CorrectionId, state: State, principal: Steward, feed: Feed):
    """Send one correction to its sector (produced to its corrections topic)."""
    return _act(state, correction_id, "send", principal, produce=_producer(feed))


@router.post("/corrections/send", response_model=SendResult)
def send_many(*, body: SendBody, state: State, principal: Steward, feed: Feed) -> dict:
    """Send several corrections; those that cannot be sent now are skipped with a reason."""
    with state.engine.begin() as conn:
        result = service.act_many(
            conn, state.config, body.ids, "send", principal.name, produce=_producer(feed)
        )
    state.stats.invalidate()
    return {
        "sent": result.changed,
        "skipped": [{"id": s["id"], "reason": s["reason"]} for s in result.skipped],
    }


@router.post("/corrections/{correction_id:int}/withdraw", response_model=CorrectionOut)
def withdraw(
    *,
    correction_id: CorrectionId,
    body: ReasonBody | None = None,
    state: State,
    principal: Steward,
):
    """Withdraw a correction that is still proposed."""
    return _act(state, correction_id, "withdraw", principal, note=(body or ReasonBody()).reason)


@router.post("/corrections/{correction_id:int}/reject", response_model=CorrectionOut)
def reject(*, correction_id: CorrectionId, body: RejectBody, state: State, principal: Steward):
    """Record the agency's rejection of a sent correction, with their reason."""
    return _act(state, correction_id, "reject", principal, note=body.reason)


@router.post("/corrections/{correction_id:int}/acknowledge", response_model=CorrectionOut)
def acknowledge(
    *,
    correction_id: CorrectionId,
    body: ReasonBody | None = None,
    state: State,
    principal: Steward,
):
    """Record that the agency acknowledged a sent correction (it confirms when the source
    carries the value)."""
    return _act(state, correction_id, "acknowledge", principal, note=(body or ReasonBody()).reason)


_FILE_RESPONSES = {
    200: {
        "content": {t: {"schema": {"type": "string", "format": "binary"}} for t in
                    EXPORT_MEDIA_TYPES.values()},
        "description": "The work list.",
    }
}  # fmt: skip


@router.get(
    "/corrections/worklist",
    response_class=Response,
    responses=_FILE_RESPONSES,
)
def worklist_download(
    *,
    sector: Annotated[Sector, Query(description="The sector whose work list to download.")],
    format: Annotated[Literal["csv", "xlsx"], Query()] = "csv",  # noqa: A002
    state: State,
    principal: Steward,
) -> Response:
    """The sector's sent corrections in its own column names: correction ID, record key,
    field, current value, proposed value (the returned file adds ``status`` and ``reason``)."""
    return worklist_response(state, principal, sector, format)


def worklist_response(state: AppState, principal: Principal, sector: str, fmt: str) -> Response:
    """The sector's work list as a download, audited (the UI's too)."""
    src = _sector(state, sector)
    with state.engine.begin() as conn:
        body = worklist.rows(conn, sector, src)
        audit.record(
            conn,
            principal.name,
            "correction_worklist",
            target_type="sector",
            target_id=sector,
            detail={"rows": len(body), "format": fmt},
        )
    head = worklist.header(src)
    data = worklist.to_xlsx(head, body) if fmt == "xlsx" else worklist.to_csv(head, body)
    name = f"corrections-{sector}-{date.today().isoformat()}.{fmt}"
    return Response(
        data,
        media_type=EXPORT_MEDIA_TYPES[fmt],
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.post("/corrections/returned", response_model=ReturnedResult)
async def returned_upload(
    *,
    sector: Annotated[Sector, Query(description="The sector whose answers the file holds.")],
    file: Annotated[UploadFile, File(description="The returned work list, CSV or XLSX.")],
    state: State,
    principal: Steward,
) -> dict:
    """An agency's returned work list: rows with ``status`` rejected (with a ``reason``) or
    acknowledged mark those corrections; every other row is named with why it was skipped."""
    src = _sector(state, sector)
    data = await file.read(worklist.MAX_UPLOAD_BYTES + 1)
    name = (file.filename or "upload")[:80]
    parsed = worklist.read_returned(data, name, src)
    return await run_in_threadpool(apply_returned, state, principal, sector, parsed)


def apply_returned(
    state: AppState, principal: Principal, sector: str, parsed: worklist.Returned
) -> dict:
    """Apply the answers of a parsed returned file in one transaction (the UI's too)."""
    rows: list[dict[str, Any]] = [
        {"row": e["row"], "correction_id": None, "result": "error", "reason": e["reason"]}
        for e in parsed.errors
    ]
    applied = 0
    with state.engine.begin() as conn:
        for a in parsed.answers:
            problem = _answer_problem(conn, sector, a)
            if problem is None:
                action = "reject" if a.status == "rejected" else "acknowledge"
                result = service.act_many(
                    conn, state.config, [a.correction_id], action, principal.name, note=a.reason
                )
                problem = result.skipped[0]["reason"] if result.skipped else None
            if problem is None:
                applied += 1
                rows.append({"row": a.row, "correction_id": a.correction_id,
                             "result": a.status, "reason": a.reason})  # fmt: skip
            else:
                rows.append({"row": a.row, "correction_id": a.correction_id,
                             "result": "error", "reason": problem})  # fmt: skip
        audit.record(
            conn,
            principal.name,
            "correction_returned",
            target_type="sector",
            target_id=sector,
            detail={"applied": applied, "errors": len(rows) - applied},
        )
    state.stats.invalidate()
    rows.sort(key=lambda r: r["row"])
    return {"applied": applied, "errors": len(rows) - applied, "rows": rows}


def _answer_problem(conn: Connection, sector: str, a: worklist.Answer) -> str | None:
    row = conn.execute(select(C.sector, C.record_key).where(C.id == a.correction_id)).one_or_none()
    if row is None or row.sector != sector:
        return f"no correction {a.correction_id} in sector {sector}"
    if a.record_key and a.record_key != row.record_key:
        return f"correction {a.correction_id} is not about record {a.record_key[:40]!r}"
    return None

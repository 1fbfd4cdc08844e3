"""The steward UI of corrections: propose from a mismatch's page, act on one, and a sector's
corrections page (filter, approve, send selected, work list, returned file)."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from hub.api.auth import Permission, Principal
from hub.api.corrections import Feed, _producer, apply_returned, worklist_response
from hub.api.deps import AppState, get_state, ui_require
from hub.api.errors import ApiError, NotFound, Unprocessable
from hub.api.queue import corrections as service
from hub.api.queue import worklist
from hub.api.queue.export import EXPORT_FORMATS
from hub.api.ui import Csrf, Form, _safe_next, flash, redirect, render, templates
from hub.api.ui_locale import request_locale
from hub.web import labels
from hub.web.i18n import gettext
from reconciliation.corrections import (
    CANDIDATE_RULES,
    CORRECTION_STATUSES,
    CORRECTION_TRANSITIONS,
    LIVE_STATUSES,
    VALUE_RULES,
)

router = APIRouter(include_in_schema=False, dependencies=[Depends(request_locale)])
State = Annotated[AppState, Depends(get_state)]
Viewer = Annotated[Principal, Depends(ui_require(Permission.READ))]
Steward = Annotated[Principal, Depends(ui_require(Permission.ACT))]
templates.env.globals.update(
    correction_value_rules=VALUE_RULES,
    correction_candidate_rules=CANDIDATE_RULES,
    correction_live=LIVE_STATUSES,
)
_ACTIONS = tuple(a for a in CORRECTION_TRANSITIONS if a not in ("propose", "confirm"))


def for_mismatch(state: AppState, mismatch_id: int) -> list[dict[str, Any]]:
    """The corrections of one mismatch with their history, newest first (the detail page)."""
    with state.engine.connect() as conn:
        items, _ = service.query(conn, service.CorrectionFilter(mismatch_id=mismatch_id))
        steps = service.history(conn, [i["id"] for i in items])
    return [{**i, "history": steps[i["id"]]} for i in items]


@router.post("/mismatches/{mismatch_id}/corrections/propose", dependencies=[Csrf])
def propose(
    request: Request, mismatch_id: int, state: State, principal: Steward, form: Form
) -> Response:
    back = _safe_next(str(form.get("back") or "/queue"))
    here = f"/mismatches/{mismatch_id}?" + urlencode({"back": back})
    try:
        value = str(form.get("proposed_value") or "")
        if len(value) > 400 or "\x00" in value:
            raise Unprocessable("the proposed value: at most 400 characters")
        with state.engine.begin() as conn:
            item = service.propose(
                conn,
                mismatch_id,
                principal.name,
                kind=str(form.get("kind") or ""),
                proposed_value=value,
                reason=str(form.get("reason") or "")[:4000],
            )
        flash(request, gettext("correction %(id)s proposed", id=item["id"]))
    except ApiError as exc:
        flash(request, exc.reason, "error")
    return redirect(here)


@router.post("/corrections/{correction_id}/{action}", dependencies=[Csrf])
def act(
    request: Request,
    correction_id: int,
    action: str,
    state: State,
    principal: Steward,
    form: Form,
    feed: Feed,
) -> Response:
    back = _safe_next(str(form.get("back") or "/corrections"))
    try:
        if action not in _ACTIONS:
            raise NotFound(f"unknown correction action {action!r}")
        if action == "approve" and not principal.can(Permission.APPROVE):
            raise ApiError(f"your role ({principal.role}) may not approve corrections", 403)
        with state.engine.begin() as conn:
            service.act(
                conn,
                state.config,
                correction_id,
                action,
                principal.name,
                note=str(form.get("reason") or "")[:4000],
                produce=_producer(feed),
            )
        state.stats.invalidate()
        flash(
            request,
            gettext(
                "correction %(id)s: %(action)s done", id=correction_id, action=labels.action(action)
            ),
        )
    except ApiError as exc:
        flash(request, exc.reason, "error")
    return redirect(back)


@router.get("/corrections")
def corrections_page(request: Request, state: State, principal: Viewer) -> HTMLResponse:
    p = request.query_params
    sectors = list(state.sectors)
    sector = p.get("sector") or (sectors[0] if sectors else "")
    status = p.get("status") or ""
    if sector not in sectors:
        raise Unprocessable(f"unknown sector {sector[:40]!r} (known: {', '.join(sectors)})")
    if status and status not in CORRECTION_STATUSES:
        raise Unprocessable(f"unknown status {status[:20]!r}")
    f = service.CorrectionFilter((sector,), (status,) if status else (), limit=500)
    with state.engine.connect() as conn:
        items, _ = service.query(conn, f)
    return render(
        request,
        "corrections.html",
        principal,
        items=items,
        sector=sector,
        sectors=sectors,
        chosen_status=status,
        statuses=CORRECTION_STATUSES,
        approval=service.approval_needed(state.config, sector),
        back=request.url.path + (f"?{request.url.query}" if request.url.query else ""),
    )


@router.post("/corrections/send", dependencies=[Csrf])
def send_selected(
    request: Request, state: State, principal: Steward, form: Form, feed: Feed
) -> Response:
    back = _safe_next(str(form.get("back") or "/corrections"))
    ids = [int(v) for v in form.getlist("ids") if str(v).isdigit() and len(str(v)) < 19]
    try:
        if not ids:
            raise Unprocessable("select at least one correction")
        with state.engine.begin() as conn:
            result = service.act_many(
                conn, state.config, ids, "send", principal.name, produce=_producer(feed)
            )
        state.stats.invalidate()
        msg = gettext("send: %(n)s sent", n=len(result.changed))
        if result.skipped:
            msg += gettext(
                ", %(n)s skipped (%(why)s…)", n=len(result.skipped), why=result.skipped[0]["reason"]
            )
        flash(request, msg)
    except ApiError as exc:
        flash(request, exc.reason, "error")
    return redirect(back)


@router.get("/corrections/worklist.{fmt}")
def worklist_download(request: Request, fmt: str, state: State, principal: Steward) -> Response:
    if fmt not in EXPORT_FORMATS:
        raise NotFound(f"no work list as {fmt!r} (offered: {', '.join(EXPORT_FORMATS)})")
    return worklist_response(state, principal, request.query_params.get("sector") or "", fmt)


@router.post("/corrections/returned", dependencies=[Csrf])
async def returned_upload(
    request: Request, state: State, principal: Steward, form: Form
) -> Response:
    sector = str(form.get("sector") or "")
    back = "/corrections?" + urlencode({"sector": sector})
    upload = form.get("file")
    try:
        src = state.config.sectors.get(sector)
        if src is None:
            raise Unprocessable(f"unknown sector {sector[:40]!r}")
        if upload is None or isinstance(upload, str):
            raise Unprocessable("choose the returned file to upload")
        data = await upload.read(worklist.MAX_UPLOAD_BYTES + 1)
        parsed = worklist.read_returned(data, (upload.filename or "upload")[:80], src)
        out = await run_in_threadpool(apply_returned, state, principal, sector, parsed)
        bad = [r for r in out["rows"] if r["result"] == "error"]
        msg = gettext(
            "returned file: %(applied)s applied, %(errors)s rows skipped",
            applied=out["applied"],
            errors=out["errors"],
        )
        if bad:
            msg += (
                " ("
                + "; ".join(
                    gettext("row %(row)s: %(why)s", row=r["row"], why=r["reason"]) for r in bad[:5]
                )
                + ")"
            )
        flash(request, msg, "error" if bad else "ok")
    except ApiError as exc:
        flash(request, exc.reason, "error")
    return redirect(back)

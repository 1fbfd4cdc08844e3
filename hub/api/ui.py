"""The steward web UI: server-rendered pages over the same services as the REST API."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from importlib.resources import files
from typing import Annotated, Any
from urllib.parse import urlencode

from anyio.to_thread import run_sync
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from sqlalchemy import Connection
from starlette.datastructures import FormData

from hub.api import audit, citizens, connectors, sessions, stats, users
from hub.api.auth import ROLE_PERMISSIONS, Permission, Principal
from hub.api.deps import (
    AppState,
    csrf_token,
    get_state,
    ui_principal,
    ui_require,
    verify_csrf,
)
from hub.api.errors import ApiError, Conflict, NotFound, Unprocessable
from hub.api.queue import actions, detail, due, nav, pages, saved
from hub.api.queue.export import EXPORT_FORMATS
from hub.api.queue.filters import MismatchFilter, check_filter
from hub.api.queue.pages import MAX_LIMIT, SORTS
from hub.api.rest import ergo_filter, export_response
from hub.api.ui_locale import request_locale
from hub.config import UNSPECIFIED_DISMISSAL
from hub.db.models import ROLES
from hub.idschemes import get_scheme
from hub.metrics import LOGINS
from hub.vocabulary import MISMATCH_STATUSES, OPEN_STATUSES, RULE_CODES, SEVERITIES
from hub.web import i18n, labels
from hub.web.charts import Bar, Series, bar_list, line_chart, percent
from hub.web.i18n import gettext, ngettext
from reconciliation.lifecycle import STEWARD_ACTIONS

log = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False, dependencies=[Depends(request_locale)])
templates = Jinja2Templates(directory=str(files("hub.web") / "templates"))
i18n.install(templates.env)
labels.install(templates.env)
templates.env.globals.update(
    rules=RULE_CODES,
    severities=SEVERITIES,
    statuses=MISMATCH_STATUSES,
    roles=ROLES,
    sorts=tuple(SORTS),
    percent=percent,
)

State = Annotated[AppState, Depends(get_state)]
Viewer = Annotated[Principal, Depends(ui_require(Permission.READ))]
Steward = Annotated[Principal, Depends(ui_require(Permission.ACT))]
Operator = Annotated[Principal, Depends(ui_require(Permission.OPERATE))]
Admin = Annotated[Principal, Depends(ui_require(Permission.ADMIN))]
Csrf = Depends(verify_csrf)


async def _form(request: Request) -> FormData:
    """The posted form, parsed on the event loop so handlers can stay plain functions
    (they run in the thread pool and may block on the database and on argon2)."""
    return await request.form()


Form = Annotated[FormData, Depends(_form)]


def render(
    request: Request, template: str, principal: Principal | None, status: int = 200, **ctx: Any
) -> HTMLResponse:
    """A page with the base context: user, their permissions, CSRF token, flashed messages."""
    ctx.update(
        user=principal,
        can={p.value: principal.can(p) for p in Permission} if principal else {},
        csrf=csrf_token(request),
        flashes=request.session.pop("flash", []),
    )
    return templates.TemplateResponse(request, template, ctx, status_code=status)


def flash(request: Request, message: str, kind: str = "ok") -> None:
    request.session.setdefault("flash", []).append([kind, message])
    request.session["flash"] = request.session["flash"][-5:]


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def _safe_next(url: str | None) -> str:
    """Only a path on this site: an open redirect would make the login form a phishing aid."""
    if not url or not url.startswith("/") or url.startswith("//") or "\\" in url:
        return "/queue"
    return url


def render_error(request: Request, exc: ApiError) -> HTMLResponse:
    """The HTML answer to an error on a UI route."""
    principal = getattr(request.state, "principal", None)
    return render(
        request, "error.html", principal, status=exc.status, reason=exc.reason, code=exc.status
    )


# ---------------------------------------------------------------------------------- login


@router.get("/login")
def login_form(request: Request, next: str = "/queue") -> HTMLResponse:
    return render(request, "login.html", None, next=_safe_next(next))


@router.post("/login", dependencies=[Csrf])
async def login(request: Request, state: State, form: Form) -> Response:
    """Sign in. Refused before any hash when the user name or the address failed too often
    in the last minute (429); every failure is audited (never the password); at most
    ``api.login_concurrency`` hashes run at once (503 when none frees up in time)."""
    name, password = str(form.get("name") or ""), str(form.get("password") or "")
    target = _safe_next(str(form.get("next") or ""))
    address = _client_address(request)

    def refuse(status: int, error: str, outcome: str) -> HTMLResponse:
        LOGINS.labels(outcome).inc()
        page = render(
            request, "login.html", None, status=status, next=target, error=error, name=name
        )
        if status in (429, 503):
            page.headers["Retry-After"] = str(int(sessions.WINDOW.total_seconds()))
        return page

    refused = await run_sync(_login_refusal, state, name[:128], address)
    if refused:
        log.warning("login refused before hashing: %s (address %s)", refused, address)
        return refuse(
            429, gettext("Login refused: %(why)s. Try again in a minute.", why=refused), "throttled"
        )
    principal = None
    if name and password and "\x00" not in name + password:
        try:
            principal = await state.hash_slots.run(
                users.authenticate_password, state.engine, name, password
            )
        except sessions.Busy:
            return refuse(503, gettext("The server is busy signing others in; try again."), "busy")
    if principal is None:
        await run_sync(_login_failed, state, name[:128], address)
        return refuse(
            401, gettext("Wrong user name or password, or the account is disabled."), "wrong"
        )
    token = await run_sync(_login_ok, state, principal, address)
    LOGINS.labels("ok").inc()
    request.session.clear()  # a fresh session (and CSRF token) for the signed-in user
    request.session[sessions.SESSION_KEY] = token
    return redirect(target)


def _login_refusal(state: AppState, name: str, address: str) -> str | None:
    with state.engine.begin() as conn:
        return sessions.refusal(conn, name, address, state.config.api)


def _login_failed(state: AppState, name: str, address: str) -> None:
    with state.engine.begin() as conn:
        sessions.record_failure(conn, name, address)
        audit.record(
            conn,
            name or "(empty)",
            "login_failed",
            target_type="user",
            target_id=name or None,
            detail={"address": address},
        )


def _login_ok(state: AppState, principal: Principal, address: str) -> str:
    with state.engine.begin() as conn:
        token = sessions.open_session(
            conn, principal.user_id, sessions.SessionPolicy.of(state.config.api)
        )
        sessions.clear_failures(conn, principal.name)
        audit.record(
            conn,
            principal.name,
            "login",
            target_type="user",
            target_id=principal.name,
            detail={"address": address},
        )
    return token


def _client_address(request: Request) -> str:
    """The client's address (the proxy's ``X-Forwarded-For`` when uvicorn trusts it)."""
    return (request.client.host if request.client else None) or "unknown"


@router.post("/logout", dependencies=[Csrf])
def logout(request: Request, state: State) -> Response:
    """Sign out: the server-side session ends, so a copy of the cookie no longer works."""
    token = request.session.get(sessions.SESSION_KEY)
    if isinstance(token, str) and token:
        sessions.end_session(state.engine, token)
    request.session.clear()
    return redirect("/login")


@router.get("/")
def home(_: Annotated[Principal, Depends(ui_principal)]) -> Response:
    return redirect("/queue")


# ---------------------------------------------------------------------------------- queue


def _int_param(raw: str | None, name: str, lo: int, hi: int) -> int | None:
    if raw is None or raw.strip() == "":
        return None
    try:
        v = int(raw)
    except ValueError:
        raise Unprocessable(f"{name} must be a whole number") from None
    if not lo <= v <= hi:
        raise Unprocessable(f"{name} must be between {lo} and {hi}")
    return v


def queue_filter(params: dict[str, str]) -> MismatchFilter:
    """The queue's filter from query/form fields; an empty field means any. ``status``
    empty means the working queue (open and in review); ``all`` means every status."""
    status = params.get("status", "")
    statuses: tuple[str, ...] = (
        OPEN_STATUSES if status == "" else () if status == "all" else (status,)
    )
    q = (params.get("q") or "").strip() or None
    if q is not None and (len(q) > 64 or "\x00" in q):
        raise Unprocessable("search text: at most 64 characters")
    province = (params.get("province") or "").strip() or None
    if province is not None and not (province.isascii() and province.isalnum()):
        raise Unprocessable("province: letters and digits only")
    return MismatchFilter(
        sector=(params["sector"],) if params.get("sector") else (),
        rule=(params["rule"],) if params.get("rule") else (),
        severity=(params["severity"],) if params.get("severity") else (),
        status=statuses,
        province=province[:16] if province else None,
        min_age_days=_int_param(params.get("min_age_days"), "min age", 0, 36500),
        max_age_days=_int_param(params.get("max_age_days"), "max age", 0, 36500),
        q=q,
        assignee=(params.get("assignee") or "").strip() or None,
        **_ergo_params(params),
        dismissal_code=_dismissal_code_param(params.get("dismissal_code")),
    )


def _ergo_params(params: dict[str, str]) -> dict[str, Any]:
    """The queue's ``overdue`` and ``name`` fields (issue #24 item 1)."""
    overdue = (params.get("overdue") or "").strip().lower()
    if overdue not in ("", "true", "false"):
        raise Unprocessable("overdue: true or false")
    name = (params.get("name") or "").strip() or None
    if name is not None and (len(name) > 64 or "\x00" in name):
        raise Unprocessable("name: at most 64 characters")
    return {"overdue": {"": None, "true": True, "false": False}[overdue], "name": name}


def _dismissal_code_param(raw: str | None) -> tuple[str, ...]:
    code = (raw or "").strip()
    if len(code) > 64 or "\x00" in code:
        raise Unprocessable("dismissal code: at most 64 characters")
    return (code,) if code else ()


_FILTER_KEYS = (
    "sector",
    "rule",
    "severity",
    "status",
    "province",
    "min_age_days",
    "max_age_days",
    "q",
    "assignee",
    "overdue",
    "name",
    "dismissal_code",
)


@router.get("/queue")
def queue(request: Request, state: State, principal: Viewer) -> HTMLResponse:
    params = {k: v for k, v in request.query_params.items()}
    form = {k: params.get(k, "") for k in (*_FILTER_KEYS, "sort", "order", "limit")}
    sort = params.get("sort") or "id"
    order = params.get("order") or "desc"
    error = None
    page = None
    try:
        f = ergo_filter(queue_filter(params), state, principal)
        limit = _int_param(params.get("limit"), "page size", 1, MAX_LIMIT) or 50
        with state.engine.connect() as conn:
            check_filter(conn, f, state.sectors, state.dismissal_codes)
            page = pages.list_page(
                conn, f, sort=sort, order=order, limit=limit, after=params.get("after") or None
            )
            ergo = queue_ergonomics(conn, f, page, principal)
    except ApiError as exc:
        error = exc.reason
        f = MismatchFilter()
        ergo = {}
    base = {k: v for k, v in params.items() if k in form and v}
    return render(
        request,
        "queue.html",
        principal,
        status=200 if error is None else 422,
        form=form,
        page=page,
        error=error,
        sectors=sorted(set(state.sectors) | set(f.sector)),
        query=urlencode(base),
        rule_link=lambda r: (
            "/queue?" + urlencode({**base, "rule": r} if r else _drop(base, "rule"))
        ),
        next_link=(
            "/queue?" + urlencode({**base, "after": page.next_cursor})
            if page and page.next_cursor
            else None
        ),
        first_link="/queue?" + urlencode(base) if params.get("after") else None,
        actions=list(STEWARD_ACTIONS),
        reasons=state.config.queue.dismissal_reasons,
        reason_label=lambda code: labels.dismissal(state.config.queue.dismissal_label(code)),
        filter_params=f.params(),
        citizen_offer=citizen_offer(state, f.q),
        ergo=ergo,
        base=base,
    )


def queue_ergonomics(
    conn: Connection, f: MismatchFilter, page: pages.Page, principal: Principal
) -> dict[str, Any]:
    """What the queue page adds for item 1 of issue #24: each item's age and due date,
    whether it shows the filter's overdue count (fetched after the page, from
    ``/queue/overdue-count``: a count over the filter, capped like the total, that a page
    does not wait for) and the user's saved filters."""
    due.annotate(page.items, f.due)
    return {"overdue": f.overdue is not False, "saved": saved.list_saved(conn, principal.user_id)}


@router.get("/queue/overdue-count")
def queue_overdue_count(request: Request, state: State, principal: Viewer) -> JSONResponse:
    """How many mismatches of the queue's filter are overdue (capped, then estimated):
    fetched by the page after it is shown, like the per-rule counts."""

    def overdue(conn: Connection, f: MismatchFilter) -> dict[str, Any]:
        f, _ = pages.plan_name(conn, f)  # a broad name: each row probed, the count capped
        n, exact = pages.count(conn, [*f.conditions(), due.overdue_condition(f.due)])
        return {"n": n, "exact": exact}

    return _queue_counts(request, state, principal, overdue)


@router.get("/queue/rule-counts")
def queue_rule_counts(request: Request, state: State, principal: Viewer) -> JSONResponse:
    """Per rule, the count of the queue's filter without its rule: fetched by the page after
    it is shown, so a page never waits for eleven counts (each capped, then estimated)."""

    def by_rule(conn: Connection, f: MismatchFilter) -> dict[str, Any]:
        return {r: {"n": n, "exact": e} for r, (n, e) in pages.rule_counts(conn, f).items()}

    return _queue_counts(request, state, principal, by_rule)


def _queue_counts(
    request: Request,
    state: AppState,
    principal: Principal,
    counts: Callable[[Connection, MismatchFilter], dict[str, Any]],
) -> JSONResponse:
    """``counts`` of the queue page's filter (its query string), as JSON for the page's
    script; a filter the queue refuses is the same 4xx with its reason."""
    try:
        f = ergo_filter(queue_filter(dict(request.query_params)), state, principal)
        with state.engine.connect() as conn:
            check_filter(conn, f, state.sectors, state.dismissal_codes)
            return JSONResponse(counts(conn, f))
    except ApiError as exc:
        return JSONResponse({"detail": exc.reason}, status_code=exc.status)


def citizen_offer(state: AppState, q: str | None) -> str | None:
    """The citizen page a queue search offers: the search text read as one whole citizen
    ID (current or legacy) of the configured scheme, normalized; ``None`` otherwise."""
    if not q:
        return None
    scheme = get_scheme(state.config.id_scheme)
    normalized = scheme.normalize(q)
    if normalized is None or scheme.parse(normalized).kind == "invalid":
        return None
    return normalized


def _drop(d: dict[str, str], key: str) -> dict[str, str]:
    return {k: v for k, v in d.items() if k != key}


@router.get("/queue/export.{fmt}")
def queue_export(request: Request, fmt: str, state: State, principal: Viewer) -> Response:
    """The queue's filter as a CSV or XLSX download (the API's export, audited alike)."""
    if fmt not in EXPORT_FORMATS:
        raise NotFound(f"no export as {fmt!r} (offered: {', '.join(EXPORT_FORMATS)})")
    f = ergo_filter(queue_filter(dict(request.query_params)), state, principal)
    with state.engine.begin() as conn:
        check_filter(conn, f, state.sectors, state.dismissal_codes)
        audit.record(conn, principal.name, "export", target_type="mismatches", detail=f.params())
    return export_response(state, f, fmt)


@router.post("/queue/bulk", dependencies=[Csrf])
def queue_bulk(request: Request, state: State, principal: Steward, form: Form) -> Response:
    action = str(form.get("action") or "")
    back = _safe_next(str(form.get("back") or "/queue"))
    note = str(form.get("note") or "")
    try:
        if form.get("scope") == "filter":
            f = queue_filter({k: str(form.get("f_" + k) or "") for k in _FILTER_KEYS})
            f = ergo_filter(f, state, principal)
            ids = None
        else:
            f = None
            ids = [int(v) for v in form.getlist("ids") if str(v).isdigit()]
            if not ids:
                raise Unprocessable("select at least one mismatch")
        with state.engine.begin() as conn:
            if f is not None:
                check_filter(conn, f, state.sectors, state.dismissal_codes)
            result = actions.act_bulk(
                conn,
                action,
                principal.name,
                ids=ids,
                where=f,
                note=note,
                assignee=str(form.get("assign_to") or "") or None,
                reason_code=str(form.get("reason_code") or "") if action == "dismiss" else None,
                reasons=state.config.queue.dismissal_reasons,
            )
        state.stats.invalidate()
        msg = ngettext(
            "%(action)s: %(num)s changed",
            "%(action)s: %(num)s changed",
            len(result.changed),
            action=labels.action(action),
        )
        if result.skipped:
            msg += gettext(
                ", %(n)s skipped (%(why)s…)", n=len(result.skipped), why=result.skipped[0]["reason"]
            )
        if result.more:
            msg += gettext("; more match the filter — run it again")
        flash(request, msg)
    except (ApiError, ValueError) as exc:
        flash(request, getattr(exc, "reason", str(exc)), "error")
    return redirect(back)


@router.post("/queue/saved-filters", dependencies=[Csrf])
def saved_filter_create(request: Request, state: State, principal: Viewer, form: Form) -> Response:
    """Save the queue's filter under a name; back to the queue it was saved from."""
    query = str(form.get("query") or "")
    try:
        with state.engine.begin() as conn:
            sf = saved.create(
                conn, principal.user_id, str(form.get("name") or ""), query, state.sectors
            )
        flash(request, gettext("filter saved as %(name)s", name=sf["name"]))
        query = sf["query"]
    except ApiError as exc:
        flash(request, exc.reason, "error")
    return redirect(_safe_next("/queue?" + query))


@router.post("/queue/saved-filters/{filter_id}/delete", dependencies=[Csrf])
def saved_filter_delete(
    request: Request, filter_id: int, state: State, principal: Viewer, form: Form
) -> Response:
    try:
        if not 1 <= filter_id < 2**63:
            raise NotFound(f"no saved filter {filter_id} of yours")
        with state.engine.begin() as conn:
            saved.remove(conn, principal.user_id, filter_id)
        flash(request, gettext("saved filter deleted"))
    except ApiError as exc:
        flash(request, exc.reason, "error")
    return redirect(_safe_next(str(form.get("back") or "/queue")))


# --------------------------------------------------------------------------------- detail


@router.get("/mismatches/{mismatch_id}")
def mismatch_page(
    request: Request, mismatch_id: int, state: State, principal: Viewer
) -> HTMLResponse:
    if not 1 <= mismatch_id < 2**63:
        raise Unprocessable("bad mismatch id")
    back = _safe_next(request.query_params.get("back") or "/queue")
    with state.engine.begin() as conn:
        d = detail.detail(conn, mismatch_id, get_scheme(state.config.id_scheme))
        audit.record_mismatch(conn, principal.name, "view", d["mismatch"])
        around = queue_neighbours(conn, state, principal, back, mismatch_id)
    due.annotate([d["mismatch"]], state.config.queue.due_table())
    status = d["mismatch"]["status"]
    allowed = [name for name, t in STEWARD_ACTIONS.items() if t.allows(status)]
    stewards = [
        u.name
        for u in users.list_users(state.engine)
        if not u.disabled and Permission.ACT in ROLE_PERMISSIONS[u.role]
    ]
    from hub.api.ui_corrections import for_mismatch  # it builds on this module

    return render(
        request,
        "detail.html",
        principal,
        d=d,
        m=d["mismatch"],
        allowed=allowed,
        stewards=stewards,
        corrections=for_mismatch(state, mismatch_id),
        back=back,
        around=around,
        detail_link=nav.detail_link,
        reasons=state.config.queue.dismissal_reasons,
        reason_label=lambda code: labels.dismissal(state.config.queue.dismissal_label(code)),
    )


def queue_neighbours(
    conn: Connection, state: AppState, principal: Principal, back: str, mismatch_id: int
) -> nav.Neighbours | None:
    """Previous and next of the queue list ``back`` links to; None when ``back`` is no queue
    page or its filter is not one the queue takes."""
    params = nav.queue_params(back)
    if params is None:
        return None
    try:
        f = ergo_filter(queue_filter(params), state, principal)
    except ApiError:
        return None
    sort, order = params.get("sort") or "id", params.get("order") or "desc"
    return nav.neighbours(conn, f, mismatch_id, sort, order)


@router.post("/mismatches/{mismatch_id}/{action}", dependencies=[Csrf])
def mismatch_action(
    request: Request, mismatch_id: int, action: str, state: State, principal: Steward, form: Form
) -> Response:
    back = _safe_next(str(form.get("back") or "/queue"))
    here = f"/mismatches/{mismatch_id}?" + urlencode({"back": back})
    try:
        if action not in STEWARD_ACTIONS:
            raise Unprocessable(f"unknown action {action!r}")
        with state.engine.begin() as conn:
            actions.act(
                conn,
                mismatch_id,
                action,
                principal.name,
                note=str(form.get("note") or ""),
                assignee=str(form.get("assignee") or "") or None,
                reason_code=str(form.get("reason_code") or "") if action == "dismiss" else None,
                reasons=state.config.queue.dismissal_reasons,
            )
            around = queue_neighbours(conn, state, principal, back, mismatch_id)
        state.stats.invalidate()
    except (Unprocessable, Conflict) as exc:
        flash(request, exc.reason, "error")
        return redirect(here)
    flash(
        request,
        gettext("mismatch %(id)s: %(action)s done", id=mismatch_id, action=labels.action(action)),
    )
    if around is not None:
        # From a queue list: on to its next item, or back to the list when none is left.
        return redirect(nav.detail_link(around.next, back) if around.next else back)
    return redirect(here if action in ("comment", "assign", "reopen") else back)


# ------------------------------------------------------------------------------- citizens


@router.get("/citizens/{citizen_id}")
def citizen_page(
    request: Request, citizen_id: str, state: State, principal: Viewer
) -> HTMLResponse:
    """One citizen's registry record, sector records and open mismatches (audited)."""
    with state.engine.begin() as conn:
        c = citizens.citizen(conn, get_scheme(state.config.id_scheme), citizen_id)
        citizens.record_view(conn, principal.name, c)
    return render(
        request,
        "citizen.html",
        principal,
        c=c,
        back=_safe_next(request.query_params.get("back") or "/queue"),
    )


# ------------------------------------------------------------------------------ dashboard


@router.get("/dashboard")
def dashboard(request: Request, state: State, principal: Viewer, days: int = 30) -> HTMLResponse:
    days = min(max(days, 1), 3660)
    now = state.stats.get()
    hist = state.stats.series(
        [s.sector for s in now], days, 120, state.config.api.stats_retention_days
    )
    with state.engine.connect() as conn:
        corrections = stats.correction_figures(conn)
    cards = []
    at = datetime.now(UTC)
    for s in now:
        pts = hist.get(s.sector, [])
        live = stats.Point(at, s.records_seen, s.records_verified, s.open_by_rule)
        pts = [*pts, live]
        in_queue = "/queue?" + urlencode({"sector": s.sector})
        share = Series(
            gettext("verified share"),
            [(p.at, p.verified_ratio) for p in pts if p.verified_ratio is not None],
            in_queue,
        )
        rules = sorted({r for p in pts for r in p.open_by_rule})
        by_rule = [
            Series(
                labels.rule(r),
                [(p.at, p.open_by_rule.get(r, 0)) for p in pts],
                "/queue?" + urlencode({"sector": s.sector, "rule": r}),
            )
            for r in rules
        ]
        cards.append(
            {
                "s": s,
                "corrections": corrections.get(s.sector, stats.CorrectionFigures()),
                "share_chart": line_chart(
                    [share],
                    title=gettext("%(sector)s: verified share", sector=s.sector),
                    y_max=1.0,
                    y_format=i18n.format_percent,
                    href=in_queue,
                    link_text=gettext("Open the %(sector)s queue", sector=s.sector),
                ),
                "rule_chart": line_chart(
                    by_rule,
                    title=gettext("%(sector)s: open mismatches by rule", sector=s.sector),
                    href=in_queue,
                    link_text=gettext("Open the %(sector)s queue", sector=s.sector),
                )
                if by_rule
                else Markup('<p class="muted">%s</p>') % gettext("No open mismatches."),
                "dismissals": dismissal_bars(
                    state,
                    s.dismissed_by_code,
                    gettext("%(sector)s: dismissed by reason", sector=s.sector),
                    s.sector,
                ),
            }
        )
    return render(
        request,
        "dashboard.html",
        principal,
        cards=cards,
        days=days,
        dismissals=dismissal_bars(
            state,
            stats.dismissed_total(now),
            gettext("Dismissed mismatches by reason, every sector"),
        ),
    )


def dismissal_bars(
    state: AppState, counts: dict[str, int], title: str, sector: str | None = None
) -> Markup:
    """Dismissed mismatches by reason code as bars, in the configured order (then codes no
    longer configured, then unspecified), each linking to the queue of those dismissals."""
    queue = state.config.queue
    order = {r.code: i for i, r in enumerate(queue.dismissal_reasons)}
    codes = sorted(
        counts,
        key=lambda c: (c == UNSPECIFIED_DISMISSAL, order.get(c, len(order)), c),
    )
    bars = []
    for code in codes:
        params = {"sector": sector} if sector else {}
        params |= {"status": "dismissed", "dismissal_code": code}
        label = labels.dismissal(
            queue.dismissal_label(None if code == UNSPECIFIED_DISMISSAL else code)
        )
        bars.append(Bar(label, counts[code], "/queue?" + urlencode(params), key=code))
    return bar_list(
        bars, title=title, label_header=gettext("Reason"), empty=gettext("No dismissals yet.")
    )


# ----------------------------------------------------------------------------- connectors


@router.get("/connectors")
def connectors_page(request: Request, state: State, principal: Viewer) -> HTMLResponse:
    with state.engine.connect() as conn:
        rows = connectors.status(conn, state.config)
    return render(
        request, "connectors.html", principal, connectors=rows, actions=connectors.ACTIONS
    )


@router.post("/connectors/{name}/{action}", dependencies=[Csrf])
def connector_action(
    request: Request, name: str, action: str, state: State, principal: Operator
) -> Response:
    try:
        with state.engine.begin() as conn:
            connectors.request(conn, state.config, name, action, principal.name)
        flash(
            request,
            gettext("%(action)s requested for %(name)s", action=labels.action(action), name=name),
        )
    except ApiError as exc:
        flash(request, exc.reason, "error")
    return redirect("/connectors")


# ---------------------------------------------------------------------------------- admin


def _users_page(
    request: Request, state: AppState, principal: Principal, new_token: list[str] | None = None
) -> HTMLResponse:
    return render(
        request,
        "users.html",
        principal,
        users=users.list_users(state.engine),
        new_token=new_token,
    )


@router.get("/admin/users")
def users_page(request: Request, state: State, principal: Admin) -> HTMLResponse:
    return _users_page(request, state, principal)


@router.post("/admin/users", dependencies=[Csrf])
def users_create(request: Request, state: State, principal: Admin, form: Form) -> Response:
    name, role = str(form.get("name") or "").strip(), str(form.get("role") or "")
    password = str(form.get("password") or "") or None
    try:
        _, token = users.create_user_recorded(state.engine, principal.name, name, role, password)
    except ApiError as exc:
        flash(request, exc.reason, "error")
        return redirect("/admin/users")
    # The token is shown in this answer only: never stored, never in a cookie or a URL.
    flash(request, gettext("user %(name)s created", name=name))
    return _users_page(request, state, principal, [name, token])


@router.post("/admin/users/{name}/{action}", dependencies=[Csrf])
def users_action(
    request: Request, name: str, action: str, state: State, principal: Admin
) -> Response:
    token = None
    try:
        if action in ("disable", "enable"):
            if action == "disable" and name == principal.name:
                raise Conflict("you cannot disable yourself")
            users.set_disabled(state.engine, name, action == "disable")
        elif action == "token":
            token = users.new_token_for(state.engine, name)
        else:
            raise Unprocessable(f"unknown action {action!r}")
        audit_action = {"disable": "user_disable", "enable": "user_enable", "token": "token_create"}
        with state.engine.begin() as conn:
            audit.record(
                conn, principal.name, audit_action[action], target_type="user", target_id=name
            )
        flash(
            request, gettext("%(name)s: %(action)s done", name=name, action=labels.action(action))
        )
    except ApiError as exc:
        flash(request, exc.reason, "error")
    if token is not None:
        return _users_page(request, state, principal, [name, token])
    return redirect("/admin/users")


@router.get("/admin/audit")
def audit_page(request: Request, state: State, principal: Admin) -> HTMLResponse:
    p = request.query_params
    after = _int_param(p.get("after"), "after", 1, 2**63 - 1)
    q = audit.AuditQuery(
        actor=p.get("actor") or None,
        action=p.get("action") or None,
        target_id=p.get("target_id") or None,
        citizen_id=p.get("citizen_id") or None,
        limit=100,
        after=after,
    )
    for v in (q.actor, q.action, q.target_id, q.citizen_id):
        if v and (len(v) > 256 or "\x00" in v):
            raise Unprocessable("filter values: at most 256 characters")
    with state.engine.connect() as conn:
        rows, next_after = audit.query(conn, q)
    base = {k: v for k, v in p.items() if k != "after" and v}
    return render(
        request,
        "audit.html",
        principal,
        rows=rows,
        form=base,
        next_link="/admin/audit?" + urlencode({**base, "after": next_after})
        if next_after
        else None,
    )

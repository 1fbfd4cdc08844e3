"""The REST API under /api/v1 (SPEC §6): mismatches, stats, connectors, audit log, users."""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from types import UnionType
from typing import Annotated, Literal, Union, get_args, get_origin
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import StreamingResponse
from fastapi.routing import APIRoute
from pydantic import BeforeValidator, StringConstraints

from hub.api import audit, citizens, connectors, stats, users
from hub.api.auth import ROLE_PERMISSIONS, Permission, Principal
from hub.api.citizen_schemas import CitizenOut
from hub.api.deps import AppState, api_principal, get_state, require
from hub.api.errors import Conflict, Unprocessable
from hub.api.queue import actions, detail, due, export, pages, saved
from hub.api.queue.export import EXPORT_FORMATS, EXPORT_MEDIA_TYPES
from hub.api.queue.filters import MismatchFilter, check_filter
from hub.api.queue.pages import MAX_LIMIT, MAX_OFFSET, SORTS
from hub.api.schemas import (
    NONBLANK_TEXT,
    SAFE_TEXT,
    AssignBody,
    AuditPage,
    BulkBody,
    BulkResultOut,
    ConnectorAction,
    ConnectorOut,
    ConnectorRequestOut,
    DismissBody,
    Error,
    Me,
    MismatchDetail,
    MismatchItem,
    MismatchPage,
    NoteBody,
    ReasonCode,
    RequiredNoteBody,
    Rule,
    RuleCount,
    RuleCounts,
    SavedFilterIn,
    SavedFilterOut,
    Severity,
    StatsOut,
    Status,
    TokenOut,
    UserCreate,
    UserCreated,
    UserName,
    UserOut,
)
from hub.config import UNSPECIFIED_DISMISSAL, DismissalReason
from hub.idschemes import get_scheme

_ERRORS = {code: {"model": Error} for code in (400, 401, 403, 404, 409, 422)}
_ERRORS[503] = {
    "model": Error,
    "description": "The hub database is unreachable; try again after `Retry-After` seconds.",
    "headers": {"Retry-After": {"schema": {"type": "integer"}}},
}


def known_query_only(request: Request) -> None:
    """Refuse (422) a query parameter the operation does not take — a misspelt filter
    (``sectr=tax``) would otherwise widen the answer to every mismatch — and a single-valued
    one given more than once (FastAPI would silently take the last)."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    known = _query_params(route)
    unknown = sorted({k for k in request.query_params if k not in known})
    if unknown:
        allowed = ", ".join(sorted(known)) or "none"
        names = ", ".join(repr(k[:40]) for k in unknown[:3])
        raise Unprocessable(f"unknown query parameter {names} (allowed: {allowed})")
    for name, repeatable in known.items():
        if not repeatable and len(request.query_params.getlist(name)) > 1:
            raise Unprocessable(f"query parameter {name!r} takes one value, not several")


def _query_params(route: APIRoute) -> dict[str, bool]:
    """The query parameters ``route`` and its dependencies take, each with whether it may be
    repeated (a list); computed once per route."""
    cached = getattr(route, "_hub_query_params", None)
    if cached is None:
        cached = {}
        todo = [route.dependant]
        while todo:
            dependant = todo.pop()
            for p in dependant.query_params:
                cached[p.alias] = _is_list(p.field_info.annotation)
            todo.extend(dependant.dependencies)
        route._hub_query_params = cached  # type: ignore[attr-defined]
    return cached


def _is_list(annotation: object) -> bool:
    origin = get_origin(annotation)
    if origin in (list, tuple, set, frozenset):
        return True
    return origin in (Union, UnionType, Annotated) and any(
        _is_list(a) for a in get_args(annotation)
    )


ERROR_RESPONSES = _ERRORS
"""The error answers every /api/v1 operation documents (the corrections router's too)."""
router = APIRouter(prefix="/api/v1", responses=_ERRORS, dependencies=[Depends(known_query_only)])


def publish_sectors(doc: dict, sectors: list[str]) -> dict:
    """``doc`` (an OpenAPI document of this router) with the configured sectors as the enum
    of every ``sector`` filter, so the schema says which names the API accepts (a sector
    dropped from the configuration that still has mismatches is accepted too)."""
    if not sectors:
        return doc
    for item in doc.get("paths", {}).values():
        for op in item.values():
            for param in op.get("parameters", []) if isinstance(op, dict) else []:
                if param.get("name") == "sector" and param.get("in") == "query":
                    schema = param["schema"]
                    if schema.get("type") == "string":  # one sector (the work list's)
                        schema["enum"] = list(sectors)
                    else:
                        schema["items"] = {"type": "string", "enum": list(sectors)}
    body = doc.get("components", {}).get("schemas", {}).get("FilterBody")
    if body:
        body["properties"]["sector"]["items"] = {"type": "string", "enum": list(sectors)}
    saved_query = doc.get("components", {}).get("schemas", {}).get("SavedQuery")
    if saved_query:
        saved_query["properties"]["sector"]["anyOf"] = [
            {"type": "string", "enum": list(sectors)},
            {"type": "null"},
        ]
    return doc


def publish_dismissal_codes(doc: dict, reasons: Sequence[DismissalReason]) -> dict:
    """``doc`` with the configured dismissal reason codes as the enum of every reason code
    a body takes and of the ``dismissal_code`` filters (plus ``unspecified``), and the
    codes that need the reason in words marked so (a code dropped from the configuration
    that dismissed mismatches still carry is accepted as a filter too)."""
    doc = copy.deepcopy(doc)  # the app caches its document; the allOf below adds to it
    codes = [r.code for r in reasons]
    wordy = [r.code for r in reasons if r.note_required]
    filter_enum = {"type": "string", "enum": [*codes, UNSPECIFIED_DISMISSAL]}
    for item in doc.get("paths", {}).values():
        for op in item.values():
            for param in op.get("parameters", []) if isinstance(op, dict) else []:
                if param.get("name") == "dismissal_code" and param.get("in") == "query":
                    param["schema"]["items"] = filter_enum
    schemas = doc.get("components", {}).get("schemas", {})
    words = {"required": ["reason"], "properties": {"reason": _NONBLANK}}
    if "FilterBody" in schemas:
        schemas["FilterBody"]["properties"]["dismissal_code"]["items"] = filter_enum
    if "SavedQuery" in schemas:  # a saved filter's one code
        schemas["SavedQuery"]["properties"]["dismissal_code"]["anyOf"][0] |= filter_enum
    if "DismissBody" in schemas:
        body = schemas["DismissBody"]
        body["properties"]["reason_code"] |= {"enum": codes}
        if wordy:
            body["allOf"] = [{"if": _code_in(wordy), "then": words}]
    if "BulkBody" in schemas:
        body = schemas["BulkBody"]
        body["properties"]["reason_code"]["anyOf"][0] |= {"enum": codes}
        dismiss = {"properties": {"action": {"const": "dismiss"}}, "required": ["action"]}
        body.setdefault("allOf", []).append(
            {"if": {"not": dismiss}, "then": {"properties": {"reason_code": {"type": "null"}}}}
        )
        if wordy:
            body["allOf"].append({"if": {"allOf": [dismiss, _code_in(wordy)]}, "then": words})
    return doc


_NONBLANK = {"type": "string", "pattern": NONBLANK_TEXT}


def _code_in(codes: list[str]) -> dict:
    return {"properties": {"reason_code": {"enum": codes}}, "required": ["reason_code"]}


# Timestamps as the schema's format date-time says (RFC 3339; a missing offset means UTC),
# not the unix seconds pydantic would also take.
_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,6})?([Zz]|[+-]\d{2}:\d{2})?$"
)


def _rfc3339(value: object) -> object:
    if isinstance(value, str) and not _RFC3339.match(value):
        raise ValueError("expected an RFC 3339 date-time, e.g. 2026-12-01T08:00:00Z")
    return value


Timestamp = Annotated[datetime, BeforeValidator(_rfc3339)]
State = Annotated[AppState, Depends(get_state)]

MismatchId = Annotated[int, Path(ge=1, lt=2**63, description="A mismatch id.")]
Sector = Annotated[str, StringConstraints(max_length=40)]
SortField = Literal[tuple(SORTS)]  # type: ignore[valid-type]


def mismatch_filter(
    state: State,
    principal: Annotated[Principal, Depends(api_principal)],
    sector: Annotated[list[Sector], Query(description="Sector name(s).")] = [],  # noqa: B006
    rule: Annotated[list[Rule], Query()] = [],  # noqa: B006
    severity: Annotated[list[Severity], Query()] = [],  # noqa: B006
    status: Annotated[list[Status], Query()] = [],  # noqa: B006
    province: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9]{1,16}$")] = None,
    min_age_days: Annotated[
        int | None, Query(ge=0, le=36500, description="First seen at least this many days ago.")
    ] = None,
    max_age_days: Annotated[
        int | None, Query(ge=0, le=36500, description="First seen at most this many days ago.")
    ] = None,
    q: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=64,
            pattern=SAFE_TEXT,
            description="Prefix of the record key or of the citizen ID.",
        ),
    ] = None,
    assignee: Annotated[
        UserName | None, Query(description="A user name; `me` is the caller.")
    ] = None,
    overdue: Annotated[
        bool | None,
        Query(description="Open or in review past the due days of its sector and severity."),
    ] = None,
    name: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=64,
            pattern=SAFE_TEXT,
            description="Words each starting a word of the sector record's name, compared "
            "folded (case, diacritics, Arabic letter variants ignored).",
        ),
    ] = None,
    dismissal_code: Annotated[
        list[ReasonCode],
        Query(description="Dismissed with these reason codes (`unspecified`: without one)."),
    ] = [],  # noqa: B006
) -> MismatchFilter:
    return ergo_filter(
        MismatchFilter(
            sector=tuple(sector),
            rule=tuple(rule),
            severity=tuple(severity),
            status=tuple(status),
            province=province,
            min_age_days=min_age_days,
            max_age_days=max_age_days,
            q=q,
            assignee=assignee,
            overdue=overdue,
            name=name,
            dismissal_code=tuple(dismissal_code),
        ),
        state,
        principal,
    )


def ergo_filter(f: MismatchFilter, state: AppState, principal: Principal) -> MismatchFilter:
    """``f`` with ``assignee=me`` read as the caller and overdue judged by the config."""
    f = due.with_due(f, state.config.queue)
    return replace(f, assignee=principal.name) if f.assignee == "me" else f


def _filter_from_body(body: BulkBody) -> MismatchFilter | None:
    return None if body.filter is None else MismatchFilter.of(**body.filter.model_dump())


Filter = Annotated[MismatchFilter, Depends(mismatch_filter)]
Reader = Annotated[Principal, Depends(require(Permission.READ))]
Steward = Annotated[Principal, Depends(require(Permission.ACT))]
Operator = Annotated[Principal, Depends(require(Permission.OPERATE))]
Admin = Annotated[Principal, Depends(require(Permission.ADMIN))]


# ------------------------------------------------------------------------------ mismatches


@router.get("/mismatches", response_model=MismatchPage, tags=["mismatches"])
def list_mismatches(
    *,
    f: Filter,
    sort: SortField = "id",
    order: Literal["asc", "desc"] = "desc",
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
    after: Annotated[
        str | None,
        Query(max_length=512, pattern=r"^[A-Za-z0-9_-]+$", description="A next_cursor."),
    ] = None,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    state: State,
    _: Reader,
) -> dict:
    """A page of mismatches matching every given filter (repeat a list filter for OR)."""
    with state.engine.connect() as conn:
        check_filter(conn, f, state.sectors, state.dismissal_codes)
        page = pages.list_page(
            conn, f, sort=sort, order=order, limit=limit, after=after, offset=offset
        )
    return {
        "items": due.annotate(page.items, f.due),
        "total": page.total,
        "total_exact": page.total_exact,
        "next_cursor": page.next_cursor,
    }


@router.get("/mismatches/counts", response_model=RuleCounts, tags=["mismatches"])
def count_mismatches(
    *,
    f: Filter,
    state: State,
    _: Reader,
) -> dict:
    """Per rule, how many mismatches match every other filter (exact up to 10000)."""
    with state.engine.connect() as conn:
        check_filter(conn, f, state.sectors, state.dismissal_codes)
        counts = pages.rule_counts(conn, f)
    return {"counts": [RuleCount(rule=r, count=n, exact=e) for r, (n, e) in counts.items()]}


ExportFormat = Literal[tuple(EXPORT_FORMATS)]  # type: ignore[valid-type]
_BINARY = {"schema": {"type": "string", "format": "binary"}}


@router.get(
    "/mismatches/export",
    tags=["mismatches"],
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The file, as an attachment named "
            "`mismatches_<sector>_<rule>_<YYYY-MM-DD>.<format>` (`all` where not filtered).",
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                EXPORT_MEDIA_TYPES["xlsx"]: _BINARY,
            },
            "headers": {"Content-Disposition": {"schema": {"type": "string"}}},
        }
    },
)
def export_mismatches(
    *,
    f: Filter,
    format: Annotated[
        ExportFormat,
        Query(
            description='`csv`: UTF-8 with a byte-order mark, ID cells written as `="…"` so '
            "a spreadsheet keeps leading zeros; `xlsx`: a workbook with ID cells as text."
        ),
    ] = "csv",
    state: State,
    principal: Reader,
) -> StreamingResponse:
    """Every mismatch matching the filters as CSV or XLSX, streamed (ordered by id)."""
    with state.engine.begin() as conn:
        check_filter(conn, f, state.sectors, state.dismissal_codes)
        audit.record(conn, principal.name, "export", target_type="mismatches", detail=f.params())
    return export_response(state, f, format)


def export_response(state: AppState, f: MismatchFilter, fmt: str) -> StreamingResponse:
    """The export of ``f`` in ``fmt`` as a download (shared by the API and the UI)."""
    name = export.export_filename(f, fmt)
    return StreamingResponse(
        export.EXPORTERS[fmt](state.engine, f),
        media_type=EXPORT_MEDIA_TYPES[fmt],
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.post("/mismatches/bulk", response_model=BulkResultOut, tags=["mismatches"])
def bulk_action(*, body: BulkBody, state: State, principal: Steward) -> dict:
    """Apply one action to a list of ids or to the mismatches matching a filter."""
    where = _filter_from_body(body)
    if where is not None:
        where = ergo_filter(where, state, principal)
    note = body.reason if body.action == "dismiss" else body.note
    with state.engine.begin() as conn:
        if where is not None:
            check_filter(conn, where, state.sectors, state.dismissal_codes)
        result = actions.act_bulk(
            conn,
            body.action,
            principal.name,
            ids=body.ids,
            where=where,
            note=note,
            assignee=body.assignee,
            limit=body.limit,
            reason_code=body.reason_code,
            reasons=state.config.queue.dismissal_reasons,
        )
    state.stats.invalidate()
    return {"changed": result.changed, "skipped": result.skipped, "more": result.more}


@router.get("/mismatches/{mismatch_id:int}", response_model=MismatchDetail, tags=["mismatches"])
def get_mismatch(*, mismatch_id: MismatchId, state: State, principal: Reader) -> dict:
    """Both records side by side with differing fields marked, suggestions and history.
    Every call is written to the audit log (who viewed which citizen's record)."""
    with state.engine.begin() as conn:
        d = detail.detail(conn, mismatch_id, get_scheme(state.config.id_scheme))
        audit.record_mismatch(conn, principal.name, "view", d["mismatch"])
    due.annotate([d["mismatch"]], state.config.queue.due_table())
    return d


def _act(state: AppState, mismatch_id: int, action: str, principal: Principal, **kw) -> dict:
    with state.engine.begin() as conn:
        item = actions.act(conn, mismatch_id, action, principal.name, **kw)
    state.stats.invalidate()
    return item


@router.post(
    "/mismatches/{mismatch_id:int}/assign", response_model=MismatchItem, tags=["mismatches"]
)
def assign(
    *,
    mismatch_id: MismatchId,
    body: AssignBody | None = None,
    state: State,
    principal: Steward,
) -> dict:
    """Put the mismatch in review, assigned to ``assignee`` (default: yourself)."""
    body = body or AssignBody()
    return _act(state, mismatch_id, "assign", principal, note=body.note, assignee=body.assignee)


@router.post(
    "/mismatches/{mismatch_id:int}/resolve", response_model=MismatchItem, tags=["mismatches"]
)
def resolve(
    *,
    mismatch_id: MismatchId,
    body: NoteBody | None = None,
    state: State,
    principal: Steward,
) -> dict:
    """Mark the mismatch resolved (resolution ``manual``), with an optional note."""
    return _act(state, mismatch_id, "resolve", principal, note=(body or NoteBody()).note)


@router.post(
    "/mismatches/{mismatch_id:int}/dismiss", response_model=MismatchItem, tags=["mismatches"]
)
def dismiss(
    *,
    mismatch_id: MismatchId,
    body: DismissBody,
    state: State,
    principal: Steward,
) -> dict:
    """Dismiss as a false positive, naming a configured reason code (and the reason in words
    where the code asks for it). It holds until the values change."""
    return _act(
        state,
        mismatch_id,
        "dismiss",
        principal,
        note=body.reason,
        reason_code=body.reason_code,
        reasons=state.config.queue.dismissal_reasons,
    )


@router.post(
    "/mismatches/{mismatch_id:int}/reopen", response_model=MismatchItem, tags=["mismatches"]
)
def reopen(
    *,
    mismatch_id: MismatchId,
    body: NoteBody | None = None,
    state: State,
    principal: Steward,
) -> dict:
    """Reopen a resolved or dismissed mismatch."""
    return _act(state, mismatch_id, "reopen", principal, note=(body or NoteBody()).note)


@router.post(
    "/mismatches/{mismatch_id:int}/comment", response_model=MismatchItem, tags=["mismatches"]
)
def comment(
    *,
    mismatch_id: MismatchId,
    body: RequiredNoteBody,
    state: State,
    principal: Steward,
) -> dict:
    """Add a note to the mismatch's history without changing its status."""
    return _act(state, mismatch_id, "comment", principal, note=body.note)


# -------------------------------------------------------------------------------- citizens

CitizenId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=64,
        pattern=SAFE_TEXT,
        description="A citizen ID in any spelling the ID scheme normalizes (spaces, dashes, "
        "Arabic-Indic digits); a legacy number opens its holder's page.",
    ),
]


@router.get(
    "/citizens/{citizen_id}",
    response_model=CitizenOut,
    tags=["citizens"],
    responses={404: {"model": Error, "description": "Invalid or unknown citizen ID."}},
)
def get_citizen(*, citizen_id: CitizenId, state: State, principal: Reader) -> dict:
    """One citizen: the registry record and every sector record that carries the ID (or
    the citizen's legacy number, or was suggested for the citizen as a candidate), with
    their open mismatches and corrections. Every call is written to the audit log."""
    with state.engine.begin() as conn:
        page = citizens.citizen(conn, get_scheme(state.config.id_scheme), citizen_id)
        citizens.record_view(conn, principal.name, page)
    return page


# ----------------------------------------------------------------------------------- stats


@router.get("/stats", response_model=StatsOut, tags=["stats"])
def get_stats(
    *,
    days: Annotated[int, Query(ge=1, le=3660, description="History window.")] = 30,
    points: Annotated[int, Query(ge=2, le=1000, description="At most this many points.")] = 200,
    state: State,
    _: Reader,
) -> dict:
    """Per sector: records seen and verified, verified ratio, open mismatches by rule and
    dismissed ones by reason code (live, cached for a few seconds), and their history from
    periodic snapshots; the configured dismissal reason codes."""
    now = state.stats.get()
    series = state.stats.series(
        [s.sector for s in now], days, points, state.config.api.stats_retention_days
    )
    return with_overdue_counts(
        state,
        {
            "computed_at": datetime.now(UTC),
            "sectors": [
                {
                    "sector": s.sector,
                    "records_seen": s.records_seen,
                    "records_verified": s.records_verified,
                    "verified_ratio": s.verified_ratio,
                    "open_total": s.open_total,
                    "open_by_rule": s.open_by_rule,
                    "dismissed_by_code": s.dismissed_by_code,
                    "series": [
                        {
                            "at": p.at,
                            "records_seen": p.records_seen,
                            "records_verified": p.records_verified,
                            "verified_ratio": p.verified_ratio,
                            "open_by_rule": p.open_by_rule,
                        }
                        for p in series.get(s.sector, [])
                    ],
                }
                for s in now
            ],
            "dismissed_by_code": stats.dismissed_total(now),
            "dismissal_reasons": [r.model_dump() for r in state.config.queue.dismissal_reasons],
        },
    )


def with_overdue_counts(state: AppState, out: dict) -> dict:
    """The stats answer with each sector's count of overdue mismatches (``overdue``)."""
    table = state.config.queue.due_table()
    counts = state.stats.figure(("overdue", table), lambda c: due.overdue_by_sector(c, table))
    for sector in out["sectors"]:
        sector["overdue"] = counts.get(sector["sector"], 0)
    return out


# ---------------------------------------------------------------------------- saved filters


SavedFilterId = Annotated[int, Path(ge=1, lt=2**63, description="A saved filter's id.")]


@router.get("/saved-filters", response_model=list[SavedFilterOut], tags=["users"])
def list_saved_filters(*, state: State, principal: Reader) -> list[dict]:
    """The caller's saved queue filters, by name."""
    with state.engine.connect() as conn:
        return saved.list_saved(conn, principal.user_id)


@router.post("/saved-filters", response_model=SavedFilterOut, status_code=201, tags=["users"])
def create_saved_filter(*, body: SavedFilterIn, state: State, principal: Reader) -> dict:
    """Keep a queue filter under a name (unique per user: 409 on a second of that name),
    as the queue page's query string; checked as the queue checks it (422)."""
    values = body.filter.model_dump(exclude_none=True)
    query = urlencode({k: str(v).lower() if isinstance(v, bool) else v for k, v in values.items()})
    with state.engine.begin() as conn:
        return saved.create(conn, principal.user_id, body.name, query, state.sectors)


@router.delete("/saved-filters/{filter_id}", status_code=204, tags=["users"])
def delete_saved_filter(*, filter_id: SavedFilterId, state: State, principal: Reader) -> None:
    """Delete one of the caller's saved filters (404 for anyone else's)."""
    with state.engine.begin() as conn:
        saved.remove(conn, principal.user_id, filter_id)


# ------------------------------------------------------------------------------ connectors


@router.get("/connectors", response_model=list[ConnectorOut], tags=["connectors"])
def list_connectors(*, state: State, _: Reader) -> list[dict]:
    """Every connector's last reported state, lag and pending control requests."""
    with state.engine.connect() as conn:
        return connectors.status(conn, state.config)


@router.post(
    "/connectors/{name}/{action}",
    response_model=ConnectorRequestOut,
    status_code=202,
    tags=["connectors"],
)
def control_connector(
    *,
    name: Annotated[str, Path(max_length=64, pattern=r"^[a-z][a-z0-9_]*$")],
    action: ConnectorAction,
    state: State,
    principal: Operator,
) -> dict:
    """Ask a connector to pause, resume, restart or re-snapshot; it acts on its next poll."""
    with state.engine.begin() as conn:
        return connectors.request(conn, state.config, name, action, principal.name)


# ----------------------------------------------------------------------------- audit, users


@router.get("/audit", response_model=AuditPage, tags=["admin"])
def audit_log(
    *,
    actor: Annotated[UserName | None, Query()] = None,
    action: Annotated[str | None, Query(max_length=64, pattern=r"^[a-z_]+$")] = None,
    target_type: Annotated[str | None, Query(max_length=32, pattern=r"^[a-z_]+$")] = None,
    target_id: Annotated[str | None, Query(max_length=256, pattern=SAFE_TEXT)] = None,
    citizen_id: Annotated[
        str | None, Query(max_length=64, pattern=SAFE_TEXT, description="Who viewed/acted on it.")
    ] = None,
    since: Annotated[Timestamp | None, Query(description="RFC 3339; UTC if no offset.")] = None,
    until: Annotated[Timestamp | None, Query(description="RFC 3339; UTC if no offset.")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
    after: Annotated[int | None, Query(ge=1, lt=2**63)] = None,
    state: State,
    _: Admin,
) -> dict:
    """The audit log, newest first."""
    q = audit.AuditQuery(
        actor=actor,
        action=action,
        target_type=target_type,
        target_id=target_id,
        citizen_id=citizen_id,
        since=_aware(since),
        until=_aware(until),
        limit=limit,
        after=after,
    )
    with state.engine.connect() as conn:
        rows, next_after = audit.query(conn, q)
    return {"items": rows, "next_after": next_after}


def _aware(t: datetime | None) -> datetime | None:
    return t.replace(tzinfo=UTC) if t is not None and t.tzinfo is None else t


@router.get("/users", response_model=list[UserOut], tags=["admin"])
def list_users(*, state: State, _: Admin) -> list:
    return users.list_users(state.engine)


@router.post("/users", response_model=UserCreated, status_code=201, tags=["admin"])
def create_user(*, body: UserCreate, state: State, principal: Admin) -> dict:
    """Create a user; the answer holds their first API token, shown this once."""
    info, token = users.create_user_recorded(
        state.engine, principal.name, body.name, body.role, body.password
    )
    return {"user": info, "token": token}


def _set_disabled(state: AppState, principal: Principal, name: str, disabled: bool):
    if disabled and name == principal.name:
        raise Conflict("you cannot disable yourself")
    info = users.set_disabled(state.engine, name, disabled)
    with state.engine.begin() as conn:
        audit.record(
            conn,
            principal.name,
            "user_disable" if disabled else "user_enable",
            target_type="user",
            target_id=name,
        )
    return info


@router.post("/users/{name}/disable", response_model=UserOut, tags=["admin"])
def disable_user(
    *,
    name: Annotated[str, Path(max_length=128)],
    state: State,
    principal: Admin,
):
    """Disable a user: their sessions and tokens stop working at once."""
    return _set_disabled(state, principal, name, True)


@router.post("/users/{name}/enable", response_model=UserOut, tags=["admin"])
def enable_user(
    *,
    name: Annotated[str, Path(max_length=128)],
    state: State,
    principal: Admin,
):
    return _set_disabled(state, principal, name, False)


@router.post("/users/{name}/tokens", response_model=TokenOut, status_code=201, tags=["admin"])
def new_token(
    *,
    name: Annotated[str, Path(max_length=128)],
    state: State,
    principal: Admin,
) -> dict:
    """Issue another API token for a user, shown this once."""
    token = users.new_token_for(state.engine, name)
    with state.engine.begin() as conn:
        audit.record(conn, principal.name, "token_create", target_type="user", target_id=name)
    return {"token": token}


@router.get("/me", response_model=Me, tags=["users"])
def me(principal: Annotated[Principal, Depends(api_principal)]) -> dict:
    """Who the token belongs to and what their role may do."""
    return {
        "name": principal.name,
        "role": principal.role,
        "permissions": sorted(p.value for p in ROLE_PERMISSIONS[principal.role]),
    }

"""A steward's saved queue filters: a name and the queue page's query string, checked as
the queue checks it (an unknown field or a bad value is refused, 422)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode

from sqlalchemy import Connection, delete, insert, select
from sqlalchemy.exc import IntegrityError

from hub.api.errors import Conflict, NotFound, Unprocessable
from hub.api.queue.filters import check_filter
from hub.api.queue.pages import MAX_LIMIT, SORTS
from hub.db.models import SavedFilter as F

MAX_QUERY = 1000
MAX_NAME = 80
MAX_PER_USER = 100
VIEW_KEYS = ("sort", "order", "limit")


def normalized_query(conn: Connection, query: str, sectors: Sequence[str]) -> str:
    """``query`` (with or without a leading ``?`` or ``/queue?``) as the queue page reads it:
    only known fields, empty ones dropped; Unprocessable when the queue would refuse it."""
    from hub.api.ui import _FILTER_KEYS, queue_filter  # the queue page's own reading

    query = query.strip().removeprefix("/queue").removeprefix("?")
    if len(query) > MAX_QUERY or "\x00" in query:
        raise Unprocessable(f"query: at most {MAX_QUERY} characters")
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise Unprocessable("query: not a query string (field=value&…)") from None
    known = (*_FILTER_KEYS, *VIEW_KEYS)
    params: dict[str, str] = {}
    for k, v in pairs:
        if k not in known:
            raise Unprocessable(f"query: unknown field {k[:40]!r} (known: {', '.join(known)})")
        if k in params:
            raise Unprocessable(f"query: field {k!r} given more than once")
        params[k] = v
    f = queue_filter(params)
    check_filter(conn, f, sectors)
    if params.get("sort") and params["sort"] not in SORTS:
        raise Unprocessable(f"query: cannot sort by {params['sort'][:40]!r}")
    if params.get("order") and params["order"] not in ("asc", "desc"):
        raise Unprocessable("query: order must be asc or desc")
    if params.get("limit"):
        if not params["limit"].isdigit() or not 1 <= int(params["limit"]) <= MAX_LIMIT:
            raise Unprocessable(f"query: limit must be between 1 and {MAX_LIMIT}")
    return urlencode([(k, v) for k, v in params.items() if v.strip()])


def _row(r: Any) -> dict[str, Any]:
    return {"id": r.id, "name": r.name, "query": r.query, "created_at": r.created_at}


def list_saved(conn: Connection, user_id: int) -> list[dict[str, Any]]:
    """The user's saved filters, by name."""
    rows = conn.execute(
        select(F.id, F.name, F.query, F.created_at)
        .where(F.user_id == user_id)
        .order_by(F.name, F.id)
        .limit(MAX_PER_USER)
    )
    return [_row(r) for r in rows]


def create(
    conn: Connection, user_id: int, name: str, query: str, sectors: Sequence[str]
) -> dict[str, Any]:
    """Save ``query`` as ``name`` for the user; Conflict if they have a filter of that name."""
    name = " ".join(name.split()) or name
    if not name or len(name) > MAX_NAME or "\x00" in name:
        raise Unprocessable(f"name: 1 to {MAX_NAME} characters")
    query = normalized_query(conn, query, sectors)
    n = len(list_saved(conn, user_id))
    if n >= MAX_PER_USER:
        raise Conflict(f"at most {MAX_PER_USER} saved filters per user; delete one first")
    try:
        with conn.begin_nested():
            row = conn.execute(
                insert(F)
                .values(user_id=user_id, name=name, query=query)
                .returning(F.id, F.name, F.query, F.created_at)
            ).one()
    except IntegrityError:
        raise Conflict(f"you already have a saved filter named {name!r}") from None
    return _row(row)


def remove(conn: Connection, user_id: int, filter_id: int) -> None:
    """Delete one of the user's saved filters; NotFound if it is not theirs (or none)."""
    gone = conn.execute(
        delete(F).where(F.id == filter_id, F.user_id == user_id).returning(F.id)
    ).first()
    if gone is None:
        raise NotFound(f"no saved filter {filter_id} of yours")

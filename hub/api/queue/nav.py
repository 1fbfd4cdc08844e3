"""Previous and next on the detail page: the neighbours of a mismatch in the queue list it
was opened from (its filter, sort and order), found by keyset in one query."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit

from sqlalchemy import Connection, literal, select, true, tuple_, union_all

from hub.api.queue.filters import M, MismatchFilter
from hub.api.queue.pages import SORTS


@dataclass(frozen=True)
class Neighbours:
    previous: int | None = None
    next: int | None = None


def queue_params(back: str) -> dict[str, str] | None:
    """The queue page's query fields of a ``back`` link, or None when it is no queue list.
    A queue list's rows link with ``back=/queue?<its query>`` (the ``?`` even when the
    query is empty); a bare ``/queue`` is the default of a page opened from elsewhere."""
    parts = urlsplit(back)
    if parts.path != "/queue" or not back.startswith("/queue?"):
        return None
    return {k: v for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "after"}


def neighbours(
    conn: Connection, f: MismatchFilter, mismatch_id: int, sort: str = "id", order: str = "desc"
) -> Neighbours:
    """The ids before and after ``mismatch_id`` in the list of ``f`` in this sort and order
    (whether or not the mismatch itself still matches ``f``: after an action it may not)."""
    if sort not in SORTS or order not in ("asc", "desc"):
        return Neighbours()
    key = SORTS[sort]
    cur = select(key.label("k"), M.id.label("id")).where(M.id == mismatch_id).cte("cur")
    pair, bound = tuple_(key, M.id), tuple_(cur.c.k, cur.c.id)
    cond = f.conditions()

    def side(label: str, below: bool):
        ordered = (key.desc(), M.id.desc()) if below else (key.asc(), M.id.asc())
        stmt = (
            select(literal(label).label("side"), M.id.label("id"))
            .where(pair < bound if below else pair > bound, true(), *cond)
            .order_by(*ordered)
            .limit(1)
            .subquery()
        )
        return select(stmt.c.side, stmt.c.id)

    desc = order == "desc"
    found = dict(conn.execute(union_all(side("next", desc), side("previous", not desc))).all())
    return Neighbours(previous=found.get("previous"), next=found.get("next"))


def detail_link(mismatch_id: int, back: str) -> str:
    return f"/mismatches/{mismatch_id}?" + urlencode({"back": back})

"""Walking a queue list page by page through its cursors, as a client does."""

from __future__ import annotations

from hub.api.queue import pages


def walk(conn, f, *, sort: str, limit: int):
    """Every id of the list ``f`` sorted by ``sort``, ``limit`` at a time, and the last page."""
    seen, after = [], None
    while True:
        page = pages.list_page(conn, f, sort=sort, limit=limit, after=after)
        seen += [i["id"] for i in page.items]
        after = page.next_cursor
        if after is None:
            return seen, page

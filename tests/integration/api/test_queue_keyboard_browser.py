"""The keyboard walk through ten queue items in a real headless Chromium (issue #24 item 1):
next, previous, assign, resolve, dismiss and the citizen's page, without the mouse."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import insert, select

from hub.db.models import Mismatch, SectorRecord
from tests.integration.api.seed import PASSWORD
from tests.integration.api.test_ui_browser import browser, page, site  # noqa: F401

playwright_sync = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.requires("chromium")
CITIZEN = "001090001234"  # in the seeded registry


def _ten(api) -> list[int]:
    """Ten open labour mismatches; their ids in the queue's order (newest first)."""
    ids = []
    with api.engine.begin() as conn:
        for i in range(10):
            key = f"KB-{i:02d}"
            conn.execute(
                insert(SectorRecord).values(
                    sector="labour", record_key=key, citizen_id_raw=CITIZEN, citizen_id=CITIZEN
                )
            )
            ids.append(
                conn.scalar(
                    insert(Mismatch)
                    .values(
                        sector="labour",
                        record_key=key,
                        rule="ID_ATTRIBUTES_INCONSISTENT",
                        field="date_of_birth",
                        severity="medium",
                        citizen_id=CITIZEN,
                    )
                    .returning(Mismatch.id)
                )
            )
    return ids[::-1]


def _state(api, mid: int) -> tuple[str, str | None]:
    with api.engine.connect() as conn:
        row = conn.execute(
            select(Mismatch.status, Mismatch.assignee).where(Mismatch.id == mid)
        ).one()
    return row.status, row.assignee


def _dismissal_code(api, mid: int) -> str | None:
    with api.engine.connect() as conn:
        return conn.scalar(select(Mismatch.dismissal_code).where(Mismatch.id == mid))


def test_keyboard_walk_through_ten_items(page, site, api):  # noqa: F811
    ids = _ten(api)
    kb = page.keyboard
    page.goto(site + "/queue?sector=labour")
    page.fill('input[name="name"]', "steward")  # the login form
    page.fill('input[name="password"]', PASSWORD)
    kb.press("Enter")
    page.wait_for_url(re.compile(r"/queue\?sector=labour$"))
    assert page.locator("table.queue tbody tr").count() == 10
    # The overdue count is filled in after the page is shown (none is overdue yet).
    # (a locator's wait: a string predicate is polled through eval, which the CSP refuses
    # whenever the count is not there at the first look)
    playwright_sync.expect(page.locator("#overdue-count b")).to_have_text("0")

    def at(mid: int) -> None:
        page.wait_for_url(re.compile(rf"/mismatches/{mid}\?"))
        assert page.locator("h1").inner_text().startswith(f"Mismatch {mid}:")

    def press(key: str, then: int) -> None:
        with page.expect_navigation():
            kb.press(key)
        at(then)

    # "?" shows the list of shortcuts as a modal dialog, "?" again hides it
    kb.press("?")
    dialog = page.locator("dialog#shortcuts")
    assert dialog.is_visible() and page.evaluate("document.querySelector('#shortcuts').open")
    assert "Assign to me" in dialog.inner_text()
    kb.press("?")
    assert not dialog.is_visible()

    # j/k choose a row, Enter opens it
    kb.press("j")
    kb.press("j")
    kb.press("k")
    assert page.locator("tr.kb-current").get_attribute("data-id") == str(ids[0])
    with page.expect_navigation():
        kb.press("Enter")
    at(ids[0])
    press("j", ids[1])
    press("k", ids[0])
    press("n", ids[1])

    def dismiss(mid: int, then: int) -> None:
        kb.press("d")  # focuses the dismiss form's first field: its reason code
        focused = page.evaluate(
            "[document.activeElement.name, document.activeElement.form?.action || '']"
        )
        assert focused[0] == "reason_code" and focused[1].endswith(f"/{mid}/dismiss"), focused
        kb.type("Test")  # a select takes the typed start of a label: "Test record"
        assert page.evaluate("document.activeElement.value") == "test_record"
        kb.press("Tab")
        assert page.evaluate("document.activeElement.name") == "note"
        kb.type("test record, jk ardc")  # shortcut letters typed into a field stay text
        with page.expect_navigation():
            kb.press("Enter")
        at(then)

    for first in (1, 4):
        a, r, d, after = ids[first : first + 4]
        press("a", r)  # assigned to me, on to the next
        assert _state(api, a) == ("in_review", "steward")
        press("r", d)
        assert _state(api, r)[0] == "resolved"
        dismiss(d, after)
        assert _state(api, d)[0] == "dismissed"
        assert _dismissal_code(api, d) == "test_record"
    at(ids[7])
    # resolved and dismissed ones have left the filter: previous of 7 is 4 (in review)
    press("p", ids[4])
    press("j", ids[7])
    # c opens the citizen's page
    with page.expect_navigation():
        kb.press("c")
    assert re.search(rf"/citizens/{CITIZEN}\b", page.url)
    page.go_back()
    at(ids[7])
    press("j", ids[8])
    press("j", ids[9])
    # the last one resolved: none is left after it, so back to the list
    with page.expect_navigation():
        kb.press("r")
    page.wait_for_url(re.compile(r"/queue\?sector=labour$"))
    assert _state(api, ids[9])[0] == "resolved"
    left = page.locator("table.queue tbody tr").evaluate_all(
        "rows => rows.map(r => Number(r.dataset.id))"
    )
    assert left == [ids[0], ids[1], ids[4], ids[7], ids[8]]
    # / focuses the search field
    kb.press("/")
    assert page.evaluate("document.activeElement.name") == "q"

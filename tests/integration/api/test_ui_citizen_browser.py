"""The compare views and the citizen page in a real headless Chromium: a DUPLICATE_ID
detail with its group side by side, then the citizen page it links to (screenshots saved
as test artifacts)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from hub.api.server import make_server, start_in_thread
from hub.embedded import free_port
from tests.integration.api.citizen_cases import AN, cases  # noqa: F401
from tests.integration.api.test_ui_browser import ARTIFACTS, browser, log_in  # noqa: F401

pytestmark = pytest.mark.requires("chromium")


@pytest.fixture(scope="module")
def site(cases) -> Iterator[tuple[str, dict[str, int]]]:  # noqa: F811
    api, ids = cases
    port = free_port()
    server = make_server(api.config, f"127.0.0.1:{port}")
    thread = start_in_thread(server)
    yield f"http://127.0.0.1:{port}", ids
    server.should_exit = True
    thread.join(10)


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000


def test_duplicate_id_detail_then_the_citizen_page(browser, site):  # noqa: F811
    base, ids = site
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="en-US")
    page = context.new_page()
    page.set_default_timeout(10_000)
    try:
        log_in(page, base, "viewer", f"/mismatches/{ids['duplicate']}")
        group = page.locator("table.compare.group")
        headers = group.locator("thead th").all_inner_texts()
        assert headers[1].endswith("tax · MST0001") and "this record" in headers[1]
        assert any("MST0006" in h for h in headers) and any("ACC-0003" in h for h in headers)
        name_row = group.locator('tr[data-field="full_name"]')
        assert name_row.locator("td.differs").count() == 2  # MST0006 and ACC-0003's names
        other = name_row.locator("td.differs").first
        assert "Nguyễn Văn Ân" in other.inner_text() and "≠" in other.inner_text()
        assert "≠" not in name_row.locator("td.this").inner_text()
        # Not by colour only: a screen reader hears the difference.
        assert other.locator(".visually-hidden").inner_text().strip() == (
            "differs from this record"
        )
        dob = group.locator('tr[data-field="date_of_birth"] td.differs').first
        assert "month · day" in dob.inner_text()
        assert "Legend:" in page.locator("aside.legend").first.inner_text()
        shot(page, "duplicate_id_detail.png")

        page.click("a.citizen-link")
        page.wait_for_url(re.compile(rf"/citizens/{AN}"))
        assert page.locator("h1").inner_text() == f"Citizen {AN}"
        assert "Nguyễn Văn An" in page.locator("dl.registry").inner_text()
        rows = page.locator("table.citizen-records tbody tr")
        assert rows.count() == 4
        legacy = page.locator('tr[data-record="labour/LAB-01"]')
        assert legacy.get_attribute("data-relation") == "legacy"
        mst = page.locator('tr[data-record="tax/MST0001"]')
        assert "≠" in mst.locator('td[data-field="full_name"]').inner_text()
        assert "NAME_MISMATCH" in mst.inner_text() and "DUPLICATE_ID" in mst.inner_text()
        assert "digits 1–3" in page.locator("table.id-parts").inner_text()
        shot(page, "citizen_page.png")

        mst.locator("a", has_text="NAME_MISMATCH").click()
        page.wait_for_url(re.compile(rf"/mismatches/{ids['name']}"))
        page.click("text=« Back")
        page.wait_for_url(re.compile(rf"/citizens/{AN}"))
    finally:
        context.close()

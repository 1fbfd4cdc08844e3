"""The steward UI in a real headless Chromium (Debian's), served by uvicorn on a free port."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.api.server import make_server, start_in_thread
from hub.embedded import free_port
from tests.integration.api.seed import PASSWORD

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[3] / "artifacts"

playwright_sync = pytest.importorskip("playwright.sync_api")
pytestmark = [pytest.mark.requires("chromium"), pytest.mark.heavy(60)]


@pytest.fixture(scope="module")
def browser() -> Iterator:
    with playwright_sync.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def site(api) -> Iterator[str]:
    """The app for this test's database on http://127.0.0.1:<free port>."""
    port = free_port()
    server = make_server(api.config, f"127.0.0.1:{port}")
    thread = start_in_thread(server)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="en-US")
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


def log_in(page, site: str, name: str, target: str = "/queue") -> None:
    page.goto(site + target)
    assert "/login" in page.url
    page.fill('input[name="name"]', name)
    page.fill('input[name="password"]', PASSWORD)
    page.click('form[action="/login"] button[type="submit"]')  # "Sign in", in any language
    page.wait_for_url(re.compile(re.escape(target) + r"($|\?)"))


def test_steward_filters_opens_resolves_and_the_mismatch_leaves_the_open_queue(page, site, api):
    log_in(page, site, "steward")
    assert page.locator("table.queue tbody tr").count() == 6  # open + in review

    page.select_option('select[name="sector"]', "tax")
    page.select_option('select[name="rule"]', "NAME_MISMATCH")
    page.click('form.filters button:has-text("Apply")')
    page.wait_for_url(re.compile(r"rule=NAME_MISMATCH"))
    rows = page.locator("table.queue tbody tr")
    assert rows.count() == 1
    assert "Nguyễn Văn Anh" in rows.first.inner_text()
    # The per-rule counts arrive after the page (fetched by hub.js).
    playwright_sync.expect(page.locator('.chip[data-rule="NAME_MISMATCH"] b')).to_have_text("1")

    page.click(f'a[href^="/mismatches/{api.ids["name"]}"]')
    page.wait_for_url(re.compile(rf"/mismatches/{api.ids['name']}"))
    name_row = page.locator('table.compare tr[data-field="full_name"]')
    assert "differs" in name_row.get_attribute("class")
    assert "flagged" in name_row.get_attribute("class")
    assert name_row.locator("td").nth(0).inner_text() == "Nguyễn Văn Anh"
    assert name_row.locator("td").nth(1).inner_text() == "Nguyễn Văn An"
    assert "reconciler" in page.locator("ol.history").inner_text()

    page.fill('form[action$="/resolve"] input[name="note"]', "đã sửa tên tại nguồn")
    page.click('form[action$="/resolve"] button')
    page.wait_for_url(re.compile(r"/queue\?"))
    assert "resolve done" in page.locator(".flash").inner_text()
    assert page.locator("table.queue tbody tr").inner_text().startswith("No mismatch")
    page.goto(site + "/queue")
    assert page.locator("table.queue tbody tr").count() == 5
    assert "Nguyễn Văn Anh" not in page.locator("table.queue").inner_text()

    page.goto(site + f"/mismatches/{api.ids['name']}")
    assert page.locator("#status").inner_text() == "resolved"
    assert "đã sửa tên tại nguồn" in page.locator("ol.history").inner_text()


def test_audit_log_page_shows_the_detail_view_and_the_resolution_by_name(browser, site, api):
    steward = browser.new_context(locale="en-US")
    p = steward.new_page()
    log_in(p, site, "steward", f"/mismatches/{api.ids['dob']}")
    p.fill('form[action$="/resolve"] input[name="note"]', "ngày sinh đã sửa")
    p.click('form[action$="/resolve"] button')
    p.wait_for_url(re.compile(r"/queue"))
    steward.close()

    admin = browser.new_context(locale="en-US")
    p = admin.new_page()
    log_in(p, site, "admin", "/admin/audit")
    p.fill('input[name="target_id"]', str(api.ids["dob"]))
    p.click('form.filters button:has-text("Apply")')
    p.wait_for_url(re.compile(r"target_id="))
    rows = p.locator("table.audit tbody tr")
    texts = [rows.nth(i).inner_text() for i in range(rows.count())]
    assert [t.split("\t")[1:3] for t in texts] == [["steward", "resolve"], ["steward", "view"]]
    assert "MST0002" in texts[0] and "ngày sinh đã sửa" in texts[0]
    admin.close()


def test_steward_cannot_reach_the_user_admin_page(page, site):
    log_in(page, site, "steward")
    assert page.locator('nav a[href="/admin/users"]').count() == 0
    response = page.goto(site + "/admin/users")
    assert response.status == 403
    assert "Not allowed" in page.locator("h1").inner_text()
    assert page.goto(site + "/admin/audit").status == 403


def test_bulk_dismiss_of_selected_rows_with_a_reason(page, site, api):
    log_in(page, site, "steward", "/queue?sector=banking")
    page.check(f'input[name="ids"][value="{api.ids["arabic"]}"]')
    page.check(f'input[name="ids"][value="{api.ids["unknown_id"]}"]')
    page.select_option('fieldset.bulk select[name="action"]', "dismiss")
    page.select_option('fieldset.bulk select[name="reason_code"]', "test_record")
    page.fill('fieldset.bulk input[name="note"]', "hồ sơ thử nghiệm")
    page.on("dialog", lambda d: d.accept())
    page.click('fieldset.bulk button:has-text("Apply")')
    page.wait_for_load_state()
    assert "dismiss: 2 changed" in page.locator(".flash").inner_text()
    assert page.locator("table.queue tbody tr").inner_text().startswith("No mismatch")


def test_arabic_values_render_right_to_left_and_vietnamese_intact(page, site, api):
    log_in(page, site, "viewer", f"/mismatches/{api.ids['arabic']}")
    cells = page.locator('table.compare tr[data-field="full_name"] td')
    direction = cells.nth(0).evaluate("el => getComputedStyle(el).direction")
    assert direction == "rtl"
    assert cells.nth(0).inner_text() == "أحمد علي"
    assert cells.nth(1).inner_text() == "محمد عبد الله"
    page.goto(site + f"/mismatches/{api.ids['dob']}")
    cell = page.locator('table.compare tr[data-field="full_name"] td').nth(0)
    assert cell.evaluate("el => getComputedStyle(el).direction") == "ltr"
    assert cell.inner_text() == "Trần Thị Bích Ngọc"
    assert page.locator('form[action$="/resolve"]').count() == 0  # a viewer only reads


def test_admin_creates_a_user_and_sees_the_token_once(page, site):
    log_in(page, site, "admin", "/admin/users")
    page.fill('form.create-user input[name="name"]', "thu.le")
    page.select_option('form.create-user select[name="role"]', "steward")
    page.click('form.create-user button:has-text("Create")')
    page.wait_for_load_state()
    token = page.locator("#new-token").inner_text()
    assert len(token) == 43
    page.goto(site + "/admin/users")
    assert page.locator("#new-token").count() == 0
    assert "thu.le" in page.locator("table.users").inner_text()


def test_dashboard_draws_charts_per_sector_and_is_saved_as_an_artifact(page, site):
    log_in(page, site, "viewer", "/dashboard")
    cards = page.locator("section.card")
    assert cards.count() == 3
    tax = page.locator('section.card[data-sector="tax"]')
    assert "20%" in tax.locator(".figures").inner_text()
    assert tax.locator("svg.chart").count() == 2
    assert tax.locator("svg.chart polyline").count() >= 3  # share + one line per rule
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000


# --------------------------------------------- dashboard: legends, links (issue #24 items 2, 5)


def _snapshots_with_every_rule(api) -> None:
    """Two snapshots of tax with an open count for every rule, so its legend lists all."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import insert

    from hub.db.models import StatsSnapshot
    from hub.vocabulary import RULE_CODES

    now = datetime.now(UTC)
    with api.engine.begin() as conn:
        conn.execute(
            insert(StatsSnapshot),
            [
                dict(
                    at=now - timedelta(hours=h),
                    sector="tax",
                    records_seen=10,
                    records_verified=2,
                    open_by_rule={r: i + h for i, r in enumerate(RULE_CODES)},
                )
                for h in (24, 12)
            ],
        )


# Every legend entry and every chart text inside its box: an HTML element not wider than
# its content box, an SVG text within its chart's viewBox.
_OVERFLOWS = """() => {
  const bad = [];
  for (const li of document.querySelectorAll('.chart-legend li')) {
    const box = li.closest('section.card').getBoundingClientRect();
    const r = li.getBoundingClientRect();
    if (li.scrollWidth > li.clientWidth + 1 || r.right > box.right + 1 || r.left < box.left - 1)
      bad.push('legend ' + li.textContent);
  }
  for (const t of document.querySelectorAll('svg.chart text')) {
    const vb = t.ownerSVGElement.viewBox.baseVal, b = t.getBBox();
    if (b.x < -1 || b.x + b.width > vb.width + 1) bad.push('svg text ' + t.textContent);
  }
  return bad;
}"""


@pytest.mark.parametrize("width", [1400, 620])
def test_dashboard_legends_fit_and_their_links_open_the_filtered_queue(browser, site, api, width):
    from hub.vocabulary import RULE_CODES

    _snapshots_with_every_rule(api)
    resp = api.post(
        f"/api/v1/mismatches/{api.ids['arabic']}/dismiss",
        "steward",
        json={"reason_code": "registry_wrong"},
    )
    assert resp.status_code == 200, resp.text
    context = browser.new_context(viewport={"width": width, "height": 1000}, locale="en-US")
    page = context.new_page()
    page.set_default_timeout(10_000)
    log_in(page, site, "viewer", "/dashboard")
    tax = page.locator('section.card[data-sector="tax"]')
    legend = tax.locator(".chart-legend").nth(1)  # open mismatches by rule
    assert legend.locator("li").all_inner_texts() == sorted(RULE_CODES)
    assert page.evaluate(_OVERFLOWS) == []
    markers = legend.locator("li").evaluate_all(
        "els => els.map(e => e.dataset.marker + '/' + e.dataset.dash)"
    )
    assert len(set(markers)) == len(RULE_CODES)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"dashboard_legends_{width}.png"), full_page=True)

    legend.locator('li[data-series="ID_ATTRIBUTES_INCONSISTENT"] a').click()
    page.wait_for_url(re.compile(r"/queue\?"))
    assert "sector=tax" in page.url and "rule=ID_ATTRIBUTES_INCONSISTENT" in page.url
    assert page.locator('select[name="rule"]').input_value() == "ID_ATTRIBUTES_INCONSISTENT"

    page.goto(site + "/dashboard")
    banking = page.locator('section.card[data-sector="banking"]')
    banking.locator('table.bar-list tr[data-key="registry_wrong"] a').click()
    page.wait_for_url(re.compile(r"dismissal_code=registry_wrong"))
    assert page.locator('select[name="dismissal_code"]').input_value() == "registry_wrong"
    rows = page.locator("table.queue tbody tr")
    assert rows.count() == 1 and "ACC-" in rows.first.inner_text()

    page.goto(site + "/dashboard")
    everywhere = page.locator("section.dismissals table.bar-list tbody tr")
    assert everywhere.evaluate_all("rs => rs.map(r => r.dataset.key)") == [
        "registry_wrong",
        "unspecified",
    ]
    page.locator('section.card[data-sector="tax"] svg.chart a .marker').last.click()
    page.wait_for_url(re.compile(r"/queue\?sector=tax"))
    context.close()

    # The rules' Vietnamese and Arabic names are longer than their codes: they fit too.
    for locale in ("vi-VN", "ar"):
        context = browser.new_context(viewport={"width": width, "height": 1000}, locale=locale)
        page = context.new_page()
        page.set_default_timeout(10_000)
        log_in(page, site, "viewer", "/dashboard")
        assert page.evaluate(_OVERFLOWS) == [], locale
        page.screenshot(path=str(ARTIFACTS / f"dashboard_legends_{width}_{locale}.png"))
        context.close()


def test_dismiss_on_the_detail_page_with_a_reason_code_shows_its_label(page, site, api):
    mid = api.ids["arabic"]
    log_in(page, site, "steward", f"/mismatches/{mid}")
    form = page.locator(f'form[action="/mismatches/{mid}/dismiss"]')
    note = form.locator('input[name="note"]')
    form.locator('select[name="reason_code"]').select_option("other")
    assert note.evaluate("e => e.required") is True  # "Other" needs words
    form.locator('select[name="reason_code"]').select_option("registry_wrong")
    assert note.evaluate("e => e.required") is False
    form.locator("button").click()
    page.wait_for_url(re.compile(r"/queue"))
    assert "dismiss done" in page.locator(".flash").inner_text()
    page.goto(site + "/queue?status=dismissed&sector=banking")
    row = page.locator(f'table.queue tbody tr:has(a[href^="/mismatches/{mid}"])')
    assert row.locator(".dismissal-code").inner_text() == "Registry wrong"
    page.goto(site + f"/mismatches/{mid}")
    assert page.locator("#dismissal-reason").inner_text() == "Registry wrong"
    assert "[Registry wrong]" in page.locator("ol.history").inner_text()

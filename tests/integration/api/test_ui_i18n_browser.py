"""The console in Vietnamese and Arabic, in a real headless Chromium: chosen by the user (saved
on the user, so it follows them to another browser) or by the browser's Accept-Language; the
Arabic interface laid out right to left (the computed ``direction`` of the header, navigation,
main area and tables), citizen IDs kept left to right. Screenshots go to ``artifacts/``."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from hub.db.models import User
from tests.integration.api.test_ui_browser import ARTIFACTS, browser, log_in, site  # noqa: F401

playwright_sync = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.requires("chromium")


def _context(browser, locale: str):  # noqa: F811
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, locale=locale)
    context.set_default_timeout(10_000)
    return context


def _shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"i18n-{name}.png"), full_page=True)


def _direction(page, selector: str) -> str:
    return page.eval_on_selector(selector, "e => getComputedStyle(e).direction")


def _user_locale(api, name: str) -> str | None:
    with api.engine.connect() as conn:
        return conn.execute(select(User.locale).where(User.name == name)).scalar_one()


def test_a_user_who_chose_vietnamese_sees_it_in_any_browser(browser, site, api):  # noqa: F811
    context = _context(browser, "en-US")
    page = context.new_page()
    log_in(page, site, "steward")
    assert page.locator("h1").inner_text() == "Mismatch queue"
    assert page.get_attribute("html", "lang") == "en"

    page.select_option('form.locale select[name="locale"]', "vi")  # submits on change
    page.wait_for_selector('html[lang="vi"]', state="attached")
    assert _user_locale(api, "steward") == "vi"
    context.close()

    # Another browser whose language is English: the user's choice wins.
    context = _context(browser, "en-US")
    page = context.new_page()
    log_in(page, site, "steward")
    assert page.get_attribute("html", "lang") == "vi"
    assert page.get_attribute("html", "dir") == "ltr"
    assert page.locator("h1").inner_text() == "Hàng đợi sai lệch"
    header = page.locator("header.top").inner_text()
    assert "Bảng tổng quan" in header and "Đăng xuất" in header
    queue = page.locator("table.queue")
    assert "Mức độ" in queue.locator("thead").inner_text()
    assert "Tên khác nhau" in queue.inner_text()  # NAME_MISMATCH, translated
    assert "Phát hiện lần đầu" in queue.locator("thead").inner_text()
    _shot(page, "vi-queue")

    page.goto(site + f"/mismatches/{api.ids['name']}")
    assert page.locator("h1").inner_text().startswith(f"Sai lệch {api.ids['name']}: Tên khác nhau")
    facts = page.locator("dl.facts").first.inner_text()
    assert "Trạng thái" in facts and "Họ và tên" in facts
    assert "Lịch sử" in page.locator("main").inner_text()
    _shot(page, "vi-detail")

    page.goto(site + "/dashboard")
    assert page.locator("h1").inner_text() == "Độ sạch dữ liệu theo ngành"
    _shot(page, "vi-dashboard")

    # Back to following the browser.
    page.select_option('form.locale select[name="locale"]', "")
    page.wait_for_selector('html[lang="en"]', state="attached")
    assert _user_locale(api, "steward") is None
    assert page.locator("h1").inner_text() == "Sector cleanliness"
    context.close()


def test_a_vietnamese_browser_without_a_user_choice_gets_vietnamese(browser, site, api):  # noqa: F811
    assert _user_locale(api, "steward") is None
    context = _context(browser, "vi-VN")
    page = context.new_page()
    page.goto(site + "/queue")
    assert page.locator("h1").inner_text() == "Đăng nhập"  # the login form too
    log_in(page, site, "steward")
    assert page.get_attribute("html", "lang") == "vi"
    assert page.locator("h1").inner_text() == "Hàng đợi sai lệch"
    assert "Áp dụng" in page.locator("form.filters").inner_text()

    page.goto(site + f"/mismatches/{api.ids['dob']}")
    assert "Ngày sinh khác nhau" in page.locator("h1").inner_text()
    page.fill('form[action$="/resolve"] input[name="note"]', "đã sửa")
    page.click('form[action$="/resolve"] button')
    page.wait_for_url(re.compile(r"/queue"))
    assert "đã giải quyết" in page.locator("p.flash").inner_text()  # the flash message

    page.goto(site + "/dashboard")
    assert page.locator("h1").inner_text() == "Độ sạch dữ liệu theo ngành"
    assert "sai lệch đang mở" in page.locator("main").inner_text()
    context.close()


def test_the_arabic_interface_is_laid_out_right_to_left(browser, site, api):  # noqa: F811
    context = _context(browser, "ar-EG")
    page = context.new_page()
    log_in(page, site, "steward")
    assert page.get_attribute("html", "lang") == "ar"
    assert page.get_attribute("html", "dir") == "rtl"
    assert page.locator("h1").inner_text() == "قائمة حالات عدم التطابق"
    for selector in ("header.top", "header.top nav", "main", "form.filters", "table.queue"):
        assert _direction(page, selector) == "rtl", selector
    # The header's first item (the brand) sits at the right edge, the filters start right.
    brand = page.locator("a.brand").bounding_box()
    signout = page.locator("form.who").bounding_box()
    assert brand["x"] > signout["x"]
    first_th = page.locator("table.queue thead th").nth(1).bounding_box()
    last_th = page.locator("table.queue thead th").last.bounding_box()
    assert first_th["x"] > last_th["x"]
    # Citizen IDs stay left to right.
    assert _direction(page, "table.queue td.mono") == "ltr"
    _shot(page, "ar-queue")

    page.goto(site + f"/mismatches/{api.ids['name']}")
    for selector in ("main", "dl.facts", "table.compare"):
        assert _direction(page, selector) == "rtl", selector
    assert "الاسم مختلف" in page.locator("h1").inner_text()
    _shot(page, "ar-detail")

    page.goto(site + "/dashboard")
    assert _direction(page, "main") == "rtl"
    assert page.locator("h1").inner_text() == "نظافة بيانات القطاعات"
    _shot(page, "ar-dashboard")
    context.close()

"""The console's language over HTTP: Accept-Language, the user's saved choice (it outlives the
session), the selector's form (CSRF, bad values refused with a reason), flash messages and
error pages in the chosen language, lang/dir on every page."""

from __future__ import annotations

import re

from sqlalchemy import select

from hub.db.models import User
from tests.integration.api.test_ui_forms import csrf_of, log_in

VI = {"Accept-Language": "vi-VN,vi;q=0.9,en;q=0.5"}


def _lang_dir(html: str) -> tuple[str, str]:
    m = re.search(r'<html lang="([^"]*)" dir="([^"]*)">', html)
    return m.group(1), m.group(2)


def _saved(api, name: str) -> str | None:
    with api.engine.connect() as conn:
        return conn.execute(select(User.locale).where(User.name == name)).scalar_one()


def test_the_browsers_language_chooses_without_a_user_setting(api):
    page = api.client.get("/login", headers=VI)
    assert _lang_dir(page.text) == ("vi", "ltr")
    assert "Đăng nhập" in page.text
    page = api.client.get("/login", headers={"Accept-Language": "ar;q=0.8, fr"})
    assert _lang_dir(page.text) == ("ar", "rtl")
    page = api.client.get("/login", headers={"Accept-Language": "de-DE"})
    assert _lang_dir(page.text) == ("en", "ltr")
    assert _lang_dir(api.client.get("/login").text) == ("en", "ltr")


def test_flash_messages_and_error_pages_speak_the_language(api):
    log_in(api.client, "steward")
    mid = api.ids["name"]
    token = csrf_of(api.client.get("/queue").text)
    api.client.post(
        f"/mismatches/{mid}/resolve", data={"note": "x", "csrf_token": token}, headers=VI
    )
    page = api.client.get("/queue", headers=VI)
    assert f"sai lệch {mid}: đã giải quyết" in page.text
    detail = api.client.get(f"/mismatches/{mid}", headers=VI).text
    assert "Số định danh cho biết gì" in detail  # what the ID says, part by part
    assert "chữ số 1–3" in detail and "thế kỷ và giới tính" in detail
    missing = api.client.get("/mismatches/987654321", headers=VI)
    assert missing.status_code == 404
    assert "Không tìm thấy" in missing.text and _lang_dir(missing.text)[0] == "vi"


def test_a_saved_choice_wins_over_the_browser_and_outlives_the_session(api):
    log_in(api.client, "steward")
    token = csrf_of(api.client.get("/queue").text)
    resp = api.client.post(
        "/profile/locale", data={"locale": "ar", "csrf_token": token, "back": "/dashboard"}
    )
    assert resp.status_code == 303 and resp.headers["location"] == "/dashboard"
    assert _saved(api, "steward") == "ar"
    page = api.client.get("/dashboard", headers=VI)
    assert _lang_dir(page.text) == ("ar", "rtl")
    assert "نظافة بيانات القطاعات" in page.text

    api.client.post("/logout", data={"csrf_token": csrf_of(page.text)})
    api.client.cookies.clear()
    log_in(api.client, "steward")  # a new session: the choice is read from the user
    assert _lang_dir(api.client.get("/queue", headers=VI).text) == ("ar", "rtl")

    token = csrf_of(api.client.get("/queue").text)
    api.client.post("/profile/locale", data={"locale": "", "csrf_token": token})
    assert _saved(api, "steward") is None
    assert _lang_dir(api.client.get("/queue", headers=VI).text) == ("vi", "ltr")


def test_the_selector_form_refuses_bad_input(api):
    resp = api.client.post("/profile/locale", data={"locale": "vi"})
    assert resp.status_code == 403  # no CSRF token (and no session)
    log_in(api.client, "steward")
    token = csrf_of(api.client.get("/queue").text)
    for bad in ("xx", "vi-VN", "a" * 300):
        resp = api.client.post("/profile/locale", data={"locale": bad, "csrf_token": token})
        assert resp.status_code == 422, bad
        assert "unknown language" in resp.text
    resp = api.client.post(
        "/profile/locale", data={"locale": "vi", "csrf_token": token, "back": "//evil.example/"}
    )
    assert resp.headers["location"] == "/queue"
    assert _saved(api, "steward") == "vi"

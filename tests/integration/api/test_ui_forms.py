"""UI sessions and forms over HTTP: login, CSRF, redirects, roles, errors as pages."""

from __future__ import annotations

import re

from hub.vocabulary import RULE_CODES
from tests.integration.api.seed import PASSWORD


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def log_in(client, name: str, password: str = PASSWORD, next_url: str = "/queue"):
    token = csrf_of(client.get("/login").text)
    return client.post(
        "/login",
        data={"name": name, "password": password, "csrf_token": token, "next": next_url},
    )


def test_login_sets_a_session_and_goes_to_the_asked_page(api):
    resp = log_in(api.client, "steward", next_url="/dashboard")
    assert resp.status_code == 303 and resp.headers["location"] == "/dashboard"
    cookie = resp.headers["set-cookie"]
    assert "hub_session=" in cookie and "httponly" in cookie.lower()
    assert "samesite=lax" in cookie.lower()
    assert api.client.get("/queue").status_code == 200


def test_wrong_password_or_unknown_user_is_refused_alike(api):
    for name, password in (("steward", "wrong password"), ("nobody", PASSWORD)):
        resp = log_in(api.client, name, password)
        assert resp.status_code == 401
        assert "Wrong user name or password" in resp.text
    assert api.client.get("/queue").status_code == 303


def test_login_never_redirects_off_site(api):
    for target in ("https://evil.example/", "//evil.example/", "/\\evil.example"):
        resp = log_in(api.client, "steward", next_url=target)
        assert resp.headers["location"] == "/queue", target
        api.client.post("/logout", data={"csrf_token": csrf_of(api.client.get("/queue").text)})


def test_a_form_post_without_the_session_csrf_token_is_refused(api):
    log_in(api.client, "steward")
    mid = api.ids["name"]
    for data in ({"note": "x"}, {"note": "x", "csrf_token": "forged"}):
        resp = api.client.post(f"/mismatches/{mid}/resolve", data=data)
        assert resp.status_code == 403
        assert "reload" in resp.text
    assert api.get(f"/api/v1/mismatches/{mid}").json()["mismatch"]["status"] == "open"
    token = csrf_of(api.client.get("/queue").text)
    resp = api.client.post(f"/mismatches/{mid}/resolve", data={"note": "x", "csrf_token": token})
    assert resp.status_code == 303
    assert api.get(f"/api/v1/mismatches/{mid}").json()["mismatch"]["status"] == "resolved"


def test_login_form_itself_is_csrf_protected(api):
    resp = api.client.post("/login", data={"name": "steward", "password": PASSWORD})
    assert resp.status_code == 403


def test_disabling_a_user_ends_their_session(api):
    log_in(api.client, "steward")
    assert api.client.get("/queue").status_code == 200
    api.post("/api/v1/users/steward/disable")
    resp = api.client.get("/queue")
    assert resp.status_code == 303 and resp.headers["location"].startswith("/login")


def test_logout_ends_the_session(api):
    log_in(api.client, "viewer")
    token = csrf_of(api.client.get("/queue").text)
    assert api.client.post("/logout", data={"csrf_token": token}).status_code == 303
    assert api.client.get("/queue").status_code == 303


def test_viewer_sees_no_action_forms_and_cannot_post_them(api):
    log_in(api.client, "viewer")
    page = api.client.get(f"/mismatches/{api.ids['name']}")
    assert page.status_code == 200 and 'action="/mismatches' not in page.text
    token = csrf_of(page.text)
    resp = api.client.post(f"/mismatches/{api.ids['name']}/resolve", data={"csrf_token": token})
    assert resp.status_code == 403


def test_the_detail_page_shows_each_candidates_score_and_why(api):
    log_in(api.client, "viewer")
    page = api.client.get(f"/mismatches/{api.ids['missing']}").text
    assert "Registry candidates" in page and "048095001111" in page and "1.00" in page
    assert "name 1.00 · birth date day/month swapped · same sex · same province" in page


def test_queue_shows_bad_filters_as_a_message_not_a_crash(api):
    log_in(api.client, "viewer")
    for query in (
        "rule=NOPE",
        "sector=fishing",
        "min_age_days=abc",
        "limit=100000",
        "after=garbage",
        "sort=password",
        "q=" + "x" * 80,
    ):
        resp = api.client.get("/queue?" + query)
        assert resp.status_code == 422, query
        assert 'class="flash error"' in resp.text
    assert api.client.get("/mismatches/abc").status_code == 422
    assert api.client.get("/mismatches/99999999").status_code == 404
    assert api.client.get("/no/such/page").status_code == 404


def test_dismiss_without_a_reason_code_in_the_ui_is_flashed_and_changes_nothing(api):
    log_in(api.client, "steward")
    mid = api.ids["arabic"]
    token = csrf_of(api.client.get("/queue").text)
    for data, words in (
        ({"note": "same person"}, "dismiss needs a reason code"),
        ({"reason_code": "bogus"}, "unknown reason code"),
        ({"reason_code": "other", "note": " "}, "needs a reason in words"),
    ):
        resp = api.client.post(f"/mismatches/{mid}/dismiss", data={"csrf_token": token, **data})
        assert resp.status_code == 303
        page = api.client.get(resp.headers["location"])
        assert words in page.text, data
    assert api.get(f"/api/v1/mismatches/{mid}").json()["mismatch"]["status"] == "open"


def test_dismiss_with_a_code_in_the_ui_shows_its_label_on_the_detail_and_history(api):
    log_in(api.client, "steward")
    mid = api.ids["arabic"]
    page = api.client.get(f"/mismatches/{mid}")
    assert 'name="reason_code"' in page.text and "Same person, transliteration" in page.text
    resp = api.client.post(
        f"/mismatches/{mid}/dismiss",
        data={"csrf_token": csrf_of(page.text), "reason_code": "registry_wrong"},
    )
    assert resp.status_code == 303
    detail = api.client.get(f"/mismatches/{mid}").text
    assert 'id="dismissal-reason" data-code="registry_wrong">Registry wrong<' in detail
    assert 'class="dismissal-code" data-code="registry_wrong">[Registry wrong]' in detail
    # A mismatch dismissed before codes existed reads "Unspecified".
    old = api.client.get(f"/mismatches/{api.ids['dismissed']}").text
    assert 'data-code="unspecified">Unspecified<' in old


def test_ui_export_streams_csv_of_the_queue_filter(api):
    log_in(api.client, "viewer")
    resp = api.client.get("/queue/export.csv?sector=banking&status=all")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/csv")
    assert len(resp.text.strip().splitlines()) == 4  # header + 3


def test_bulk_over_the_whole_filter_from_the_ui(api):
    log_in(api.client, "steward")
    token = csrf_of(api.client.get("/queue").text)
    resp = api.client.post(
        "/queue/bulk",
        data={
            "csrf_token": token,
            "scope": "filter",
            "f_sector": "tax",
            "f_status": "",
            "action": "assign",
            "assign_to": "operator",
            "back": "/queue",
        },
    )
    assert resp.status_code == 303
    assert "assign: 4 changed" in api.client.get("/queue").text
    items = api.get("/api/v1/mismatches", params={"assignee": "operator"}).json()["items"]
    assert len(items) == 4


def test_pages_send_security_headers(api):
    resp = api.client.get("/login")
    assert resp.headers["x-frame-options"] == "DENY"
    assert "default-src 'self'" in resp.headers["content-security-policy"]
    assert resp.headers["content-type"] == "text/html; charset=utf-8"


def test_the_queue_page_fetches_its_rule_counts_after_it_is_shown(api):
    assert log_in(api.client, "viewer").status_code == 303
    page = api.client.get("/queue", params={"sector": "tax"})
    assert page.status_code == 200
    assert 'data-counts="/queue/rule-counts?sector=tax"' in page.text
    counts = api.client.get("/queue/rule-counts", params={"sector": "tax"})
    assert counts.status_code == 200
    body = counts.json()
    assert set(body) == set(RULE_CODES)
    assert body["NAME_MISMATCH"] == {"n": 1, "exact": True}
    bad = api.client.get("/queue/rule-counts", params={"province": "0 1"})
    assert bad.status_code == 422 and "province" in bad.json()["detail"]
    api.client.cookies.clear()
    assert api.client.get("/queue/rule-counts").status_code == 303  # a login first

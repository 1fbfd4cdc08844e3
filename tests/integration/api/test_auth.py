"""Authentication and the role matrix: who may call what, and 401/403 with a reason."""

from __future__ import annotations

import pytest

from hub.api.auth import ROLE_PERMISSIONS, Permission
from hub.db.models import ROLES

# (method, path template, JSON body, permission needed). {name} etc. are seeded ids.
ENDPOINTS = [
    ("GET", "/api/v1/mismatches", None, Permission.READ),
    ("GET", "/api/v1/mismatches/counts", None, Permission.READ),
    ("GET", "/api/v1/mismatches/export", None, Permission.READ),
    ("GET", "/api/v1/mismatches/{name}", None, Permission.READ),
    ("GET", "/api/v1/stats", None, Permission.READ),
    ("GET", "/api/v1/connectors", None, Permission.READ),
    ("GET", "/api/v1/me", None, Permission.READ),
    ("POST", "/api/v1/mismatches/{dob}/assign", {}, Permission.ACT),
    ("POST", "/api/v1/mismatches/{name}/resolve", {"note": "ok"}, Permission.ACT),
    ("POST", "/api/v1/mismatches/{arabic}/dismiss", {"reason_code": "test_record"}, Permission.ACT),
    ("POST", "/api/v1/mismatches/{fixed}/reopen", {}, Permission.ACT),
    ("POST", "/api/v1/mismatches/{deceased}/comment", {"note": "x"}, Permission.ACT),
    (
        "POST",
        "/api/v1/mismatches/bulk",
        {"action": "comment", "ids": [1], "note": "x"},
        Permission.ACT,
    ),
    ("POST", "/api/v1/connectors/tax/pause", None, Permission.OPERATE),
    ("GET", "/api/v1/audit", None, Permission.ADMIN),
    ("GET", "/api/v1/users", None, Permission.ADMIN),
    ("POST", "/api/v1/users", {"name": "new-user", "role": "viewer"}, Permission.ADMIN),
    ("POST", "/api/v1/users/viewer/tokens", None, Permission.ADMIN),
    ("POST", "/api/v1/users/viewer/disable", None, Permission.ADMIN),
    ("POST", "/api/v1/users/viewer/enable", None, Permission.ADMIN),
]


def call(api, role, method, path, body):
    url = path.format(**api.ids)
    if method == "GET":
        return api.get(url, role)
    return api.post(url, role, json=body)


@pytest.mark.parametrize("role", ROLES)
def test_each_role_may_call_exactly_what_its_permissions_allow(api, role):
    for method, path, body, needed in ENDPOINTS:
        resp = call(api, role, method, path, body)
        if needed in ROLE_PERMISSIONS[role]:
            assert resp.status_code < 300, (role, method, path, resp.status_code, resp.text)
        else:
            assert resp.status_code == 403, (role, method, path, resp.status_code)
            assert role in resp.json()["detail"]


def test_roles_are_ordered_each_holding_the_permissions_of_the_one_before():
    for lower, higher in zip(ROLES, ROLES[1:], strict=False):
        assert ROLE_PERMISSIONS[lower] < ROLE_PERMISSIONS[higher]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer " + "x" * 5000},
    ],
)
def test_api_without_a_valid_token_answers_401_json(api_ro, headers):
    for method, path, body, _ in ENDPOINTS:
        url = path.format(**api_ro.ids)
        resp = api_ro.client.request(method, url, headers=headers, json=body)
        assert resp.status_code == 401, (url, resp.status_code)
        assert resp.json()["detail"]
        assert resp.headers["www-authenticate"] == "Bearer"


def test_a_session_cookie_does_not_authenticate_the_api(api_ro):
    api_ro.client.cookies.set("hub_session", "forged")
    assert api_ro.client.get("/api/v1/mismatches").status_code == 401
    api_ro.client.cookies.clear()


def test_a_disabled_user_s_token_stops_working_at_once(api):
    assert api.get("/api/v1/me", "viewer").status_code == 200
    assert api.post("/api/v1/users/viewer/disable").status_code == 200
    assert api.get("/api/v1/me", "viewer").status_code == 401
    assert api.post("/api/v1/users/viewer/enable").status_code == 200
    assert api.get("/api/v1/me", "viewer").json() == {
        "name": "viewer",
        "role": "viewer",
        "permissions": ["read"],
    }


def test_health_and_metrics_need_no_login_but_ui_pages_redirect_to_it(api_ro):
    client = api_ro.client
    assert client.get("/healthz").json() == {"status": "ok", "checks": {}}
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and "python_info" in metrics.text
    for page in (
        "/",
        "/queue",
        "/dashboard",
        "/connectors",
        "/admin/users",
        "/admin/audit",
        f"/mismatches/{api_ro.ids['name']}",
    ):
        resp = client.get(page)
        assert resp.status_code == 303, page
        assert resp.headers["location"].startswith("/login?next=")
    assert client.get("/login").status_code == 200


def test_tokens_and_passwords_are_stored_only_hashed(api_ro):
    from sqlalchemy import select

    from hub.db.models import ApiToken, User

    with api_ro.engine.connect() as conn:
        hashes = conn.scalars(select(ApiToken.token_hash)).all()
        passwords = conn.scalars(select(User.password_hash)).all()
    tokens = set(api_ro.seeded.tokens.values())
    assert not tokens & set(hashes) and all(len(h) == 64 for h in hashes)
    assert all(p.startswith("$argon2id$") for p in passwords)

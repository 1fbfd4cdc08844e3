"""What schemathesis' conformance checks found, pinned down (issue #18, item 11): 405s name
the allowed methods, parameters the schema does not describe are refused, timestamps are
RFC 3339 as the schema says, and the sector filter lists the configured sectors."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("TRACE", "/healthz", {"GET"}),
        ("POST", "/readyz", {"GET"}),
        ("DELETE", "/api/v1/users", {"GET", "POST"}),
        ("GET", "/api/v1/mismatches/bulk", {"POST"}),
        ("PUT", "/api/v1/mismatches/7", {"GET"}),
    ],
)
def test_a_405_says_which_methods_the_path_takes(api_ro, method, path, allow):
    resp = api_ro.client.request(method, path, headers=api_ro.headers("admin"))
    assert resp.status_code == 405
    assert {m.strip() for m in resp.headers["allow"].split(",")} == allow
    assert resp.json()["detail"]


def test_a_405_on_a_ui_page_has_the_allow_header_too(api_ro):
    resp = api_ro.client.request("PUT", "/login")
    assert resp.status_code == 405 and "GET" in resp.headers["allow"]


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/api/v1/mismatches", {"sectr": "tax"}),
        ("/api/v1/mismatches/export", {"sector": "tax", "fromat": "xlsx"}),
        ("/api/v1/stats", {"day": "3"}),
        ("/api/v1/connectors", {"x": "1"}),
    ],
)
def test_a_query_parameter_the_operation_does_not_take_is_refused(api_ro, path, params):
    resp = api_ro.get(path, params=params)
    assert resp.status_code == 422
    unknown = next(k for k in params if k not in ("sector",))
    assert f"unknown query parameter '{unknown}'" in resp.json()["detail"]


@pytest.mark.parametrize("value", ["0.5", "1700000000", "2026-12-01", "yesterday"])
def test_audit_times_are_rfc3339_as_published(api_ro, value):
    resp = api_ro.get("/api/v1/audit", params={"until": value})
    assert resp.status_code == 422 and "RFC 3339" in resp.json()["detail"]


@pytest.mark.parametrize(
    "value", ["2026-12-01T08:00:00Z", "2026-12-01T08:00:00.5+07:00", "2026-12-01T08:00:00"]
)
def test_audit_accepts_rfc3339_times(api_ro, value):
    assert api_ro.get("/api/v1/audit", params={"since": value}).status_code == 200


def test_the_published_sector_filter_lists_the_configured_sectors(api_ro):
    doc = api_ro.get("/api/v1/openapi.json").json()
    params = doc["paths"]["/api/v1/mismatches"]["get"]["parameters"]
    sector = next(p for p in params if p["name"] == "sector")
    assert sector["schema"]["items"]["enum"] == ["tax", "banking", "labour"]
    body = doc["components"]["schemas"]["FilterBody"]["properties"]["sector"]
    assert body["items"]["enum"] == ["tax", "banking", "labour"]
    export = doc["paths"]["/api/v1/mismatches/export"]["get"]
    assert "format" in {p["name"] for p in export["parameters"]}
    assert set(export["responses"]["200"]["content"]) == {
        "text/csv",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    }
    assert "Retry-After" in doc["paths"]["/api/v1/stats"]["get"]["responses"]["503"]["headers"]


def test_bulk_accepts_integral_numbers_and_refuses_null_targets(api):
    mid = api.ids["name"]
    resp = api.post(
        "/api/v1/mismatches/bulk", "steward", json={"action": "resolve", "ids": [float(mid)]}
    )
    assert resp.status_code == 200 and resp.json()["changed"] == [mid]
    resp = api.post(
        "/api/v1/mismatches/bulk", "steward", json={"action": "resolve", "ids": None, "filter": {}}
    )
    assert resp.status_code == 422


def test_a_single_valued_parameter_given_twice_is_refused(api_ro):
    resp = api_ro.get("/api/v1/mismatches", params=[("q", "MST"), ("q", "ACC")])
    assert resp.status_code == 422 and "'q' takes one value" in resp.json()["detail"]
    both = api_ro.get("/api/v1/mismatches", params=[("sector", "tax"), ("sector", "banking")])
    assert both.status_code == 200 and both.json()["total"] == len(api_ro.ids)

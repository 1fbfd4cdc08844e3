"""The mismatch endpoints: list, filters, paging, sorting, counts, detail, export."""

from __future__ import annotations

import csv
import io

import pytest
from sqlalchemy import select

from hub.db.models import AuditLog

SPEC_FIELDS = {
    "id",
    "sector",
    "record_key",
    "citizen_id",
    "rule",
    "field",
    "severity",
    "status",
    "sector_value",
    "registry_value",
    "first_seen_at",
    "last_seen_at",
    "resolution",
}


def ids_of(resp) -> set[int]:
    assert resp.status_code == 200, resp.text
    return {item["id"] for item in resp.json()["items"]}


def test_list_answers_items_and_total_with_every_spec_field(api_ro):
    body = api_ro.get("/api/v1/mismatches", "viewer").json()
    assert body["total"] == len(api_ro.ids) and body["total_exact"] is True
    assert len(body["items"]) == len(api_ro.ids)
    for item in body["items"]:
        assert SPEC_FIELDS <= item.keys()
    by_id = {i["id"]: i for i in body["items"]}
    arabic = by_id[api_ro.ids["arabic"]]
    assert arabic["sector_value"] == "أحمد علي" and arabic["registry_value"] == "محمد عبد الله"
    assert by_id[api_ro.ids["name"]]["registry_value"] == "Nguyễn Văn An"


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"sector": "banking"}, {"arabic", "unknown_id", "dismissed"}),
        ({"rule": "NAME_MISMATCH"}, {"name", "arabic", "dismissed"}),
        ({"severity": "critical"}, {"deceased"}),
        ({"status": "open"}, {"name", "dob", "missing", "arabic", "unknown_id"}),
        ({"status": ["resolved", "dismissed"]}, {"fixed", "dismissed"}),
        ({"province": "79"}, {"dob"}),
        ({"min_age_days": 30}, {"dob", "missing", "fixed"}),
        ({"max_age_days": 4}, {"name", "arabic"}),
        ({"q": "0010"}, {"name", "deceased", "dismissed"}),
        ({"q": "MST000"}, {"name", "dob", "deceased", "missing", "fixed"}),
        ({"q": "ACC-"}, {"arabic", "unknown_id", "dismissed"}),
        ({"q": "%"}, set()),
        ({"assignee": "steward"}, {"deceased"}),
        ({"sector": "tax", "rule": "NAME_MISMATCH", "status": "open"}, {"name"}),
        ({"sector": "labour"}, set()),
    ],
)
def test_list_filters_select_exactly_the_matching_mismatches(api_ro, params, expected):
    resp = api_ro.get("/api/v1/mismatches", "viewer", params=params)
    assert ids_of(resp) == {api_ro.ids[n] for n in expected}
    assert resp.json()["total"] == len(expected)


def test_keyset_paging_visits_every_mismatch_once_in_order(api_ro):
    seen: list[int] = []
    after = None
    for _ in range(10):
        params = {"limit": 3, "sort": "first_seen_at", "order": "asc"}
        if after:
            params["after"] = after
        body = api_ro.get("/api/v1/mismatches", params=params).json()
        seen += [i["id"] for i in body["items"]]
        after = body["next_cursor"]
        if after is None:
            break
    assert sorted(seen) == sorted(api_ro.ids.values()) and len(seen) == len(set(seen))
    ages = ["missing", "fixed", "dob", "dismissed", "deceased", "unknown_id", "name", "arabic"]
    assert seen == [api_ro.ids[n] for n in ages]


def test_offset_paging_and_severity_sort_put_critical_first(api_ro):
    first = api_ro.get("/api/v1/mismatches", params={"sort": "severity", "limit": 1}).json()
    assert first["items"][0]["id"] == api_ro.ids["deceased"]
    assert first["next_cursor"]
    second = api_ro.get(
        "/api/v1/mismatches", params={"sort": "severity", "limit": 1, "offset": 1}
    ).json()
    assert second["items"][0]["severity"] == "high"


@pytest.mark.parametrize(
    ("params", "status", "words"),
    [
        ({"rule": "NO_SUCH_RULE"}, 422, "rule"),
        ({"severity": "urgent"}, 422, "severity"),
        ({"status": "closed"}, 422, "status"),
        ({"sector": "fishing"}, 422, "unknown sector"),
        ({"limit": 501}, 422, "limit"),
        ({"limit": 0}, 422, "limit"),
        ({"offset": 10_001}, 422, "offset"),
        ({"after": "not-a-cursor"}, 404, "cursor"),
        ({"after": "W1tdXQ"}, 404, "cursor"),
        ({"sort": "citizen_id"}, 422, "sort"),
        ({"min_age_days": -1}, 422, "min_age_days"),
        ({"province": "0'; DROP"}, 422, "province"),
        ({"q": "a" * 65}, 422, "q"),
        ({"q": "ab\x00c"}, 422, "q"),
    ],
)
def test_bad_list_input_is_a_4xx_with_a_reason(api_ro, params, status, words):
    resp = api_ro.get("/api/v1/mismatches", params=params)
    assert resp.status_code == status, resp.text
    assert words in resp.json()["detail"]


def test_a_cursor_only_continues_the_sort_it_was_made_for(api_ro):
    cursor = api_ro.get("/api/v1/mismatches", params={"limit": 1}).json()["next_cursor"]
    resp = api_ro.get("/api/v1/mismatches", params={"after": cursor, "sort": "severity"})
    assert resp.status_code == 404 and "sort=id" in resp.json()["detail"]


def test_an_offset_after_a_cursor_skips_that_many_more(api_ro):
    first = api_ro.get("/api/v1/mismatches", params={"limit": 1}).json()
    rest = api_ro.get("/api/v1/mismatches", params={"after": first["next_cursor"]}).json()
    skipped = api_ro.get(
        "/api/v1/mismatches", params={"after": first["next_cursor"], "offset": 2}
    ).json()
    assert [i["id"] for i in skipped["items"]] == [i["id"] for i in rest["items"]][2:]


def test_an_empty_age_range_matches_nothing(api_ro):
    resp = api_ro.get("/api/v1/mismatches", params={"min_age_days": 10, "max_age_days": 5})
    assert resp.status_code == 200 and resp.json()["items"] == []


def test_counts_per_rule_ignore_the_rule_filter(api_ro):
    body = api_ro.get(
        "/api/v1/mismatches/counts",
        "viewer",
        params={"status": ["open", "in_review"], "rule": "DOB_MISMATCH"},
    ).json()
    counts = {c["rule"]: c["count"] for c in body["counts"]}
    assert counts["NAME_MISMATCH"] == 2 and counts["DECEASED_ACTIVE"] == 1
    assert counts["PROVINCE_MISMATCH"] == 0 and len(counts) == 11
    assert all(c["exact"] for c in body["counts"])


def test_detail_shows_both_records_side_by_side_with_differences_marked(api):
    resp = api.get(f"/api/v1/mismatches/{api.ids['dob']}", "viewer")
    assert resp.status_code == 200
    d = resp.json()
    assert d["mismatch"]["rule"] == "DOB_MISMATCH"
    assert d["sector_record"]["full_name"] == "Trần Thị Bích Ngọc"
    assert d["registry_record"]["citizen_id"] == "079185005678"
    fields = {f["field"]: f for f in d["fields"]}
    assert fields["date_of_birth"] == {
        "field": "date_of_birth",
        "sector_value": "1985-03-02",
        "registry_value": "1985-02-03",
        "differs": True,
        "flagged": True,
    }
    assert fields["full_name"]["differs"] is False and fields["full_name"]["flagged"] is False
    assert fields["date_of_death"]["sector_value"] is None
    assert d["history"][0]["actor"] == "reconciler" and d["history"][0]["action"] == "opened"


def test_detail_carries_suggestions_and_the_records_other_mismatches(api_ro):
    d = api_ro.get(f"/api/v1/mismatches/{api_ro.ids['missing']}").json()
    assert d["suggestions"][0]["citizen_id"] == "048095001111"
    assert d["suggestions"][0]["parts"]["birth_date"] == "day_month_swapped"
    assert d["suggestions"][0]["why"].startswith("name 1.00 · birth date day/month swapped")
    assert d["registry_record"] is None
    fixed = api_ro.get(f"/api/v1/mismatches/{api_ro.ids['fixed']}").json()
    assert fixed["related"] == []


def test_detail_view_is_audited_with_the_viewer_and_the_citizen(api):
    api.get(f"/api/v1/mismatches/{api.ids['arabic']}", "viewer")
    with api.engine.connect() as conn:
        row = conn.execute(
            select(AuditLog.actor, AuditLog.action, AuditLog.target_id, AuditLog.detail).where(
                AuditLog.action == "view"
            )
        ).one()
    assert row.actor == "viewer" and row.target_id == str(api.ids["arabic"])
    assert row.detail == {
        "sector": "banking",
        "record_key": "ACC-0001",
        "citizen_id": "29001011234567",
    }


@pytest.mark.parametrize(
    ("path", "status"),
    # Only digits are a mismatch id: /mismatches/abc matches no route (404).
    [("abc", 404), ("0", 422), ("-5", 404), ("99999999", 404), (str(2**63), 422)],
)
def test_bad_or_unknown_mismatch_id_is_a_4xx(api_ro, path, status):
    resp = api_ro.get(f"/api/v1/mismatches/{path}")
    assert resp.status_code == status and resp.json()["detail"]


def test_export_streams_the_filter_as_csv_and_is_audited(api):
    resp = api.get("/api/v1/mismatches/export", "viewer", params={"sector": "tax"})
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/csv")
    assert "attachment" in resp.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(resp.content.decode("utf-8-sig"))))
    assert {int(r["id"]) for r in rows} == {
        api.ids[n] for n in ("name", "dob", "deceased", "missing", "fixed")
    }
    assert SPEC_FIELDS <= set(rows[0])
    name_row = next(r for r in rows if int(r["id"]) == api.ids["name"])
    assert name_row["sector_value"] == "Nguyễn Văn Anh" and name_row["resolution"] == ""
    with api.engine.connect() as conn:
        detail = conn.scalar(select(AuditLog.detail).where(AuditLog.action == "export"))
    assert detail == {"sector": ["tax"]}


def test_export_refuses_a_bad_filter_before_streaming(api_ro):
    resp = api_ro.get("/api/v1/mismatches/export", params={"rule": "NOPE"})
    assert resp.status_code == 422


def test_beyond_the_count_cap_totals_and_rule_counts_are_estimates(api_ro, monkeypatch):
    from hub.api.queue import pages as mismatches

    monkeypatch.setattr(mismatches, "COUNT_CAP", 2)
    # (Open, and open and in review, are counted exactly from the figures: test_queue_counts.)
    body = api_ro.get("/api/v1/mismatches", params={"status": ["open", "resolved"]}).json()
    assert body["total_exact"] is False and body["total"] >= 3
    counts = api_ro.get("/api/v1/mismatches/counts").json()["counts"]
    name = next(c for c in counts if c["rule"] == "NAME_MISMATCH")
    assert name["exact"] is False and name["count"] >= 3
    dob = next(c for c in counts if c["rule"] == "DOB_MISMATCH")
    assert dob == {"rule": "DOB_MISMATCH", "count": 1, "exact": True}


def test_export_defuses_values_a_spreadsheet_would_evaluate(api):
    api.set_mismatch("name", sector_value='=HYPERLINK("http://x")', record_key="+123")
    resp = api.get("/api/v1/mismatches/export", "viewer", params={"sector": "tax"})
    text = resp.content.decode("utf-8-sig")
    row = next(r for r in csv.DictReader(io.StringIO(text)) if int(r["id"]) == api.ids["name"])
    assert row["sector_value"] == '\'=HYPERLINK("http://x")'
    # An ID cell is a string literal (="…"): shown as +123, never evaluated.
    assert row["record_key"] == '="+123"'

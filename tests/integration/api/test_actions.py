"""Steward actions on mismatches: assign, resolve, dismiss, reopen, comment, and in bulk."""

from __future__ import annotations

from sqlalchemy import select

from hub.db.models import AuditLog, Mismatch
from tests.integration.api.seed import history


def audit_rows(api, action: str) -> list[tuple]:
    with api.engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                select(AuditLog.actor, AuditLog.target_id, AuditLog.detail)
                .where(AuditLog.action == action)
                .order_by(AuditLog.id)
            )
        ]


def test_resolve_with_note_closes_it_and_records_who_and_why(api):
    mid = api.ids["name"]
    resp = api.post(f"/api/v1/mismatches/{mid}/resolve", "steward", json={"note": "sửa tên"})
    assert resp.status_code == 200, resp.text
    item = resp.json()
    assert item["status"] == "resolved" and item["resolution"] == "manual"
    assert item["resolved_at"] is not None
    assert history(api.engine, mid)[-1] == ("steward", "resolve", "open", "resolved", "sửa tên")
    actor, target, detail = audit_rows(api, "resolve")[0]
    assert (actor, target) == ("steward", str(mid))
    assert detail["record_key"] == "MST0001" and detail["sector"] == "tax"
    open_ids = {
        i["id"]
        for i in api.get("/api/v1/mismatches", params={"status": ["open", "in_review"]}).json()[
            "items"
        ]
    }
    assert mid not in open_ids


def test_assign_defaults_to_yourself_and_puts_it_in_review(api):
    mid = api.ids["dob"]
    item = api.post(f"/api/v1/mismatches/{mid}/assign", "steward").json()
    assert item["status"] == "in_review" and item["assignee"] == "steward"
    item = api.post(
        f"/api/v1/mismatches/{mid}/assign", "steward", json={"assignee": "operator"}
    ).json()
    assert item["assignee"] == "operator"
    assert history(api.engine, mid)[-1][:2] == ("steward", "assign")
    assert "assigned to operator" in history(api.engine, mid)[-1][4]


def test_assign_refuses_a_user_who_may_not_act_on_mismatches(api):
    mid = api.ids["dob"]
    # A name is schema-valid whoever holds it: no such user is a 404, a viewer a 409.
    for who, status in (("viewer", 409), ("nobody", 404)):
        resp = api.post(f"/api/v1/mismatches/{mid}/assign", "steward", json={"assignee": who})
        assert resp.status_code == status and who in resp.json()["detail"]


def test_dismiss_needs_a_known_reason_code(api):
    mid = api.ids["arabic"]
    for body in ({}, {"reason": "x"}, {"reason_code": ""}, {"note": "x"}):
        resp = api.post(f"/api/v1/mismatches/{mid}/dismiss", "steward", json=body)
        assert resp.status_code == 422, body
    resp = api.post(f"/api/v1/mismatches/{mid}/dismiss", "steward", json={"reason_code": "nope"})
    assert resp.status_code == 422
    detail = resp.json()["detail"]
    assert "nope" in detail and "same_person_transliteration" in detail and "other" in detail
    # "other" needs the reason in words; the others take it optionally.
    for reason in (None, "   "):
        body = {"reason_code": "other"} | ({"reason": reason} if reason else {})
        resp = api.post(f"/api/v1/mismatches/{mid}/dismiss", "steward", json=body)
        assert resp.status_code == 422 and "reason" in resp.json()["detail"], body
    assert history(api.engine, mid)[-1][1] != "dismiss"
    resp = api.post(
        f"/api/v1/mismatches/{mid}/dismiss",
        "steward",
        json={"reason_code": "same_person_transliteration", "reason": "cùng một người"},
    )
    assert resp.status_code == 200
    assert resp.json()["status"] == "dismissed"
    assert resp.json()["resolution"] == "false_positive"
    assert resp.json()["dismissal_code"] == "same_person_transliteration"
    assert history(api.engine, mid)[-1] == (
        "steward",
        "dismiss",
        "open",
        "dismissed",
        "cùng một người",
    )


def test_a_transition_its_status_does_not_allow_is_a_conflict(api):
    resp = api.post(f"/api/v1/mismatches/{api.ids['fixed']}/resolve", "steward")
    assert resp.status_code == 409 and "resolved" in resp.json()["detail"]
    resp = api.post(f"/api/v1/mismatches/{api.ids['name']}/reopen", "steward")
    assert resp.status_code == 409
    resp = api.post("/api/v1/mismatches/99999999/resolve", "steward")
    assert resp.status_code == 404


def test_reopen_puts_a_dismissed_mismatch_back_in_the_queue(api):
    mid = api.ids["dismissed"]
    item = api.post(f"/api/v1/mismatches/{mid}/reopen", "steward", json={"note": "sai"}).json()
    assert item["status"] == "open" and item["resolution"] is None and item["resolved_at"] is None
    assert item["dismissal_code"] is None
    assert history(api.engine, mid)[-1] == ("steward", "reopen", "dismissed", "open", "sai")


def test_comment_keeps_the_status_and_needs_a_note(api):
    mid = api.ids["deceased"]
    assert api.post(f"/api/v1/mismatches/{mid}/comment", "steward", json={}).status_code == 422
    item = api.post(
        f"/api/v1/mismatches/{mid}/comment", "steward", json={"note": "gọi cơ quan thuế"}
    ).json()
    assert item["status"] == "in_review"
    assert history(api.engine, mid)[-1] == (
        "steward",
        "comment",
        "in_review",
        "in_review",
        "gọi cơ quan thuế",
    )
    assert audit_rows(api, "comment")[0][2]["note"] == "gọi cơ quan thuế"


def test_unknown_body_fields_and_bad_types_are_refused(api):
    mid = api.ids["name"]
    assert api.post(f"/api/v1/mismatches/{mid}/resolve", json={"nope": 1}).status_code == 422
    assert api.post(f"/api/v1/mismatches/{mid}/resolve", json={"note": 5}).status_code == 422
    resp = api.post(
        f"/api/v1/mismatches/{mid}/resolve",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert resp.status_code == 422 and resp.json()["detail"]


def test_bulk_over_ids_changes_the_allowed_ones_and_reports_the_rest(api):
    ids = [api.ids["name"], api.ids["dob"], api.ids["fixed"], 99999999]
    resp = api.post(
        "/api/v1/mismatches/bulk",
        "steward",
        json={"action": "resolve", "ids": ids, "note": "đã xử lý"},
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["changed"] == sorted([api.ids["name"], api.ids["dob"]])
    assert {s["id"]: s["reason"] for s in body["skipped"]} == {
        api.ids["fixed"]: "cannot resolve a mismatch that is resolved",
        99999999: "no such mismatch",
    }
    assert history(api.engine, api.ids["dob"])[-1] == (
        "steward",
        "resolve",
        "open",
        "resolved",
        "đã xử lý",
    )
    assert len(audit_rows(api, "resolve")) == 2


def test_bulk_over_a_filter_works_in_bounded_rounds(api):
    body = {
        "action": "dismiss",
        "filter": {"sector": ["banking"], "status": ["open"]},
        "reason": "nguồn dữ liệu cũ",
        "reason_code": "test_record",
        "limit": 1,
    }
    first = api.post("/api/v1/mismatches/bulk", "steward", json=body).json()
    assert len(first["changed"]) == 1 and first["more"] is True
    second = api.post("/api/v1/mismatches/bulk", "steward", json=body).json()
    assert len(second["changed"]) == 1 and second["more"] is False
    third = api.post("/api/v1/mismatches/bulk", "steward", json=body).json()
    assert third == {"changed": [], "skipped": [], "more": False}
    with api.engine.connect() as conn:
        statuses = dict(
            conn.execute(
                select(Mismatch.id, Mismatch.status).where(Mismatch.sector == "banking")
            ).all()
        )
    assert statuses[api.ids["arabic"]] == statuses[api.ids["unknown_id"]] == "dismissed"


def test_bulk_comment_over_a_filter_goes_to_all_matching_or_none(api):
    body = {"action": "comment", "filter": {"sector": ["tax"]}, "note": "kiểm tra", "limit": 2}
    resp = api.post("/api/v1/mismatches/bulk", "steward", json=body)
    assert resp.status_code == 409 and "narrow" in resp.json()["detail"]
    body["limit"] = 10
    done = api.post("/api/v1/mismatches/bulk", "steward", json=body).json()
    assert len(done["changed"]) == 5 and done["more"] is False


def test_bulk_assign_over_a_filter_moves_on_each_round(api):
    body = {"action": "assign", "filter": {"sector": ["tax"]}, "assignee": "operator", "limit": 2}
    changed = []
    for _ in range(4):
        result = api.post("/api/v1/mismatches/bulk", "steward", json=body).json()
        changed += result["changed"]
        if not result["more"]:
            break
    expected = {api.ids[n] for n in ("name", "dob", "deceased", "missing")}
    assert set(changed) == expected and len(changed) == len(expected)


def test_bulk_input_errors_are_4xx(api):
    cases = [
        {"action": "resolve"},
        {"action": "resolve", "ids": [1], "filter": {}},
        {"action": "resolve", "ids": []},
        {"action": "dismiss", "ids": [api.ids["name"]]},
        {"action": "dismiss", "ids": [api.ids["name"]], "reason": "x"},
        {"action": "dismiss", "ids": [api.ids["name"]], "reason_code": "nope"},
        {"action": "resolve", "ids": [api.ids["name"]], "reason_code": "test_record"},
        {"action": "comment", "ids": [api.ids["name"]]},
        {"action": "explode", "ids": [1]},
        {"action": "resolve", "ids": list(range(1, 1002))},
        {"action": "resolve", "filter": {"rule": ["NOPE"]}},
        {"action": "resolve", "filter": {"sector": ["fishing"]}},
        {"action": "resolve", "ids": [0]},
    ]
    for body in cases:
        resp = api.post("/api/v1/mismatches/bulk", "steward", json=body)
        assert resp.status_code == 422, (body, resp.text)
        assert resp.json()["detail"]

"""Dismissal reason codes: required and checked against the configuration, stored on the
mismatch and its history, filtered on, and counted by /api/v1/stats per sector and in all."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select

from hub.config import DismissalReason, QueueConfig
from hub.db.models import AuditLog, Mismatch, MismatchHistory
from tests.integration.api.conftest import Api, _api, hub_config


def dismiss(api: Api, key: str, code: str, reason: str | None = None):
    body = {"reason_code": code} | ({"reason": reason} if reason else {})
    resp = api.post(f"/api/v1/mismatches/{api.ids[key]}/dismiss", "steward", json=body)
    assert resp.status_code == 200, resp.text
    return resp.json()


def stored_codes(api: Api, *keys: str) -> dict[str, str | None]:
    with api.engine.connect() as conn:
        rows = dict(
            conn.execute(
                select(Mismatch.id, Mismatch.dismissal_code).where(
                    Mismatch.id.in_([api.ids[k] for k in keys])
                )
            ).all()
        )
    return {k: rows[api.ids[k]] for k in keys}


def history_codes(api: Api, key: str) -> list[tuple[str, str | None]]:
    h = MismatchHistory
    with api.engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                select(h.action, h.dismissal_code)
                .where(h.mismatch_id == api.ids[key])
                .order_by(h.id)
            )
        ]


def test_a_dismissal_stores_its_code_on_the_mismatch_history_and_audit_log(api):
    item = dismiss(api, "arabic", "registry_wrong", "سجل خاطئ")
    assert item["dismissal_code"] == "registry_wrong"
    assert stored_codes(api, "arabic") == {"arabic": "registry_wrong"}
    assert history_codes(api, "arabic")[-1] == ("dismiss", "registry_wrong")
    detail = api.get(f"/api/v1/mismatches/{api.ids['arabic']}", "viewer").json()
    assert detail["history"][-1]["dismissal_code"] == "registry_wrong"
    assert detail["history"][-1]["note"] == "سجل خاطئ"
    with api.engine.connect() as conn:
        audit = conn.scalar(
            select(AuditLog.detail).where(AuditLog.action == "dismiss").order_by(AuditLog.id)
        )
    assert audit["dismissal_code"] == "registry_wrong"
    # A reopen drops the code (it holds only while dismissed); its history row has none.
    resp = api.post(f"/api/v1/mismatches/{api.ids['arabic']}/reopen", "steward")
    assert resp.json()["dismissal_code"] is None
    assert stored_codes(api, "arabic") == {"arabic": None}
    assert history_codes(api, "arabic")[-1] == ("reopen", None)


def test_a_bulk_dismissal_stores_the_code_on_every_row(api):
    body = {
        "action": "dismiss",
        "ids": [api.ids["name"], api.ids["dob"]],
        "reason_code": "test_record",
    }
    resp = api.post("/api/v1/mismatches/bulk", "steward", json=body)
    assert resp.status_code == 200, resp.text
    assert sorted(resp.json()["changed"]) == sorted([api.ids["name"], api.ids["dob"]])
    assert stored_codes(api, "name", "dob") == {"name": "test_record", "dob": "test_record"}
    assert history_codes(api, "dob")[-1] == ("dismiss", "test_record")
    # Over a filter too, and "other" needs words there as well.
    body = {"action": "dismiss", "filter": {"sector": ["banking"]}, "reason_code": "other"}
    resp = api.post("/api/v1/mismatches/bulk", "steward", json=body)
    assert resp.status_code == 422 and "words" in resp.json()["detail"]
    resp = api.post("/api/v1/mismatches/bulk", "steward", json=body | {"reason": "dữ liệu cũ"})
    assert len(resp.json()["changed"]) == 2
    assert stored_codes(api, "arabic", "unknown_id") == {"arabic": "other", "unknown_id": "other"}


def test_stats_count_dismissals_by_code_per_sector_and_in_all(api):
    dismiss(api, "arabic", "registry_wrong")
    dismiss(api, "unknown_id", "test_record")
    dismiss(api, "name", "test_record")
    dismiss(api, "dob", "other", "khác")
    body = api.get("/api/v1/stats", "viewer").json()
    by_sector = {s["sector"]: s["dismissed_by_code"] for s in body["sectors"]}
    # The seeded dismissal predates codes: "unspecified".
    assert by_sector["banking"] == {"registry_wrong": 1, "test_record": 1, "unspecified": 1}
    assert by_sector["tax"] == {"other": 1, "test_record": 1}
    assert body["dismissed_by_code"] == {
        "other": 1,
        "registry_wrong": 1,
        "test_record": 2,
        "unspecified": 1,
    }
    assert [r["code"] for r in body["dismissal_reasons"]] == [
        "same_person_transliteration",
        "registry_wrong",
        "test_record",
        "other",
    ]
    assert [r["note_required"] for r in body["dismissal_reasons"]] == [False] * 3 + [True]
    api.post(f"/api/v1/mismatches/{api.ids['name']}/reopen", "steward")
    body = api.get("/api/v1/stats", "viewer").json()
    assert body["dismissed_by_code"]["test_record"] == 1


def test_the_list_filters_on_dismissal_codes(api):
    dismiss(api, "arabic", "registry_wrong")
    dismiss(api, "name", "test_record")

    def ids(**params) -> set[int]:
        resp = api.get("/api/v1/mismatches", "viewer", params=params)
        assert resp.status_code == 200, resp.text
        return {i["id"] for i in resp.json()["items"]}

    assert ids(dismissal_code="registry_wrong") == {api.ids["arabic"]}
    assert ids(status="dismissed", dismissal_code="unspecified") == {api.ids["dismissed"]}
    assert ids(dismissal_code=["test_record", "unspecified"]) == {
        api.ids["name"],
        api.ids["dismissed"],
    }
    assert ids(dismissal_code="same_person_transliteration") == set()  # configured, unused
    assert ids(dismissal_code="registry_wrong", sector="tax") == set()
    resp = api.get("/api/v1/mismatches", "viewer", params={"dismissal_code": "bogus"})
    assert resp.status_code == 422 and "registry_wrong" in resp.json()["detail"]
    resp = api.get("/api/v1/mismatches/counts", "viewer", params={"dismissal_code": "test_record"})
    counts = {c["rule"]: c["count"] for c in resp.json()["counts"]}
    assert counts["NAME_MISMATCH"] == 1


@pytest.fixture
def api_custom(servers, api_template) -> Iterator[Api]:
    reasons = QueueConfig(
        dismissal_reasons=[
            DismissalReason(code="duplicate", label="Duplicate record"),
            DismissalReason(code="needs_words", label="Explain", note_required=True),
        ]
    )
    yield from _api(
        servers,
        api_template,
        lambda url, bootstrap: hub_config(url, bootstrap).model_copy(update={"queue": reasons}),
    )


def test_the_configured_codes_are_the_allowed_ones(api_custom):
    api = api_custom
    resp = api.post(
        f"/api/v1/mismatches/{api.ids['arabic']}/dismiss",
        "steward",
        json={"reason_code": "test_record"},
    )
    assert resp.status_code == 422
    assert "duplicate, needs_words" in resp.json()["detail"]
    resp = api.post(
        f"/api/v1/mismatches/{api.ids['arabic']}/dismiss",
        "steward",
        json={"reason_code": "needs_words"},
    )
    assert resp.status_code == 422
    assert dismiss(api, "arabic", "duplicate")["dismissal_code"] == "duplicate"
    # A code dropped from the configuration still filters the rows that carry it.
    api.set_mismatch("name", status="dismissed", dismissal_code="test_record")
    resp = api.get("/api/v1/mismatches", "viewer", params={"dismissal_code": "test_record"})
    assert [i["id"] for i in resp.json()["items"]] == [api.ids["name"]]

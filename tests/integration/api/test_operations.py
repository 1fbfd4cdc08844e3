"""Stats, connector status and control, the audit log, user admin, health."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select, update

from hub.api.app import create_app
from hub.db.models import ConnectorRequest, ConnectorState
from tests.integration.api.conftest import TestClient, hub_config


def test_stats_give_per_sector_figures_and_history(api_ro):
    body = api_ro.get("/api/v1/stats", "viewer").json()
    sectors = {s["sector"]: s for s in body["sectors"]}
    assert set(sectors) == {"tax", "banking", "labour"}
    tax = sectors["tax"]
    assert (tax["records_seen"], tax["records_verified"]) == (5, 1)
    assert tax["verified_ratio"] == 0.2
    assert tax["open_by_rule"] == {
        "NAME_MISMATCH": 1,
        "DOB_MISMATCH": 1,
        "DECEASED_ACTIVE": 1,
        "ID_MISSING": 1,
    }
    assert tax["open_total"] == 4
    assert len(tax["series"]) == 5
    assert tax["series"][0]["at"] < tax["series"][-1]["at"]
    assert tax["series"][-1]["open_by_rule"] == {"NAME_MISMATCH": 1, "DOB_MISMATCH": 1}
    labour = sectors["labour"]
    assert labour["records_seen"] == 0 and labour["verified_ratio"] is None
    assert labour["series"] == []


def test_stats_history_window_and_points_are_bounded(api_ro):
    def tax_series(**params):
        body = api_ro.get("/api/v1/stats", params=params).json()
        return next(s for s in body["sectors"] if s["sector"] == "tax")["series"]

    assert len(tax_series(days=30)) == 5
    assert len(tax_series(days=2)) == 1  # snapshots are 5, 4, 3, 2 and 1 day old
    assert 1 <= len(tax_series(days=30, points=2)) <= 2
    assert api_ro.get("/api/v1/stats", params={"days": 0}).status_code == 422
    assert api_ro.get("/api/v1/stats", params={"points": 100_000}).status_code == 422


def _beat(api, name: str, age_s: float) -> None:
    """Set connector ``name``'s heartbeat ``age_s`` seconds into the past."""
    with api.engine.begin() as conn:
        conn.execute(
            update(ConnectorState)
            .where(ConnectorState.name == name)
            .values(heartbeat_at=func.now() - timedelta(seconds=age_s))
        )


def test_connectors_list_reported_and_configured_ones(api):
    _beat(api, "tax", 1)
    rows = {c["name"]: c for c in api.get("/api/v1/connectors", "viewer").json()}
    assert rows["tax"]["state"] == "running" and rows["tax"]["lag_bytes"] == 1024
    assert rows["banking"]["state"] == "paused"
    assert rows["labour"]["state"] == "not_reported" and rows["labour"]["configured"]
    assert rows["registry"]["state"] == "not_reported"
    _beat(api, "tax", 60)  # its process was killed a minute ago
    rows = {c["name"]: c for c in api.get("/api/v1/connectors", "viewer").json()}
    assert rows["tax"]["state"] == "down" and rows["tax"]["reported_state"] == "running"
    assert rows["tax"]["heartbeat_age_s"] >= 60


def test_operator_requests_are_queued_for_the_connector_and_audited(api):
    resp = api.post("/api/v1/connectors/banking/resume", "operator")
    assert resp.status_code == 202
    req = resp.json()
    assert (req["connector"], req["action"], req["requested_by"]) == (
        "banking",
        "resume",
        "operator",
    )
    with api.engine.connect() as conn:
        row = conn.execute(select(ConnectorRequest).where(ConnectorRequest.id == req["id"])).one()
    assert row.handled_at is None
    pending = {c["name"]: c for c in api.get("/api/v1/connectors").json()}["banking"]
    assert [p["action"] for p in pending["pending_requests"]] == ["resume"]
    audit = api.get("/api/v1/audit", params={"action": "connector_resume"}).json()["items"]
    assert audit[0]["actor"] == "operator" and audit[0]["target_id"] == "banking"


def test_connector_control_refuses_unknown_connectors_and_actions(api):
    assert api.post("/api/v1/connectors/fishing/pause", "operator").status_code == 404
    assert api.post("/api/v1/connectors/tax/explode", "operator").status_code == 422
    assert api.post("/api/v1/connectors/Tax!/pause", "operator").status_code == 422


def test_audit_log_answers_who_viewed_and_changed_a_mismatch(api):
    mid = api.ids["name"]
    api.get(f"/api/v1/mismatches/{mid}", "steward")
    api.post(f"/api/v1/mismatches/{mid}/resolve", "steward", json={"note": "đã sửa"})
    api.get(f"/api/v1/mismatches/{api.ids['dob']}", "viewer")
    items = api.get("/api/v1/audit", params={"target_id": str(mid)}).json()["items"]
    assert [(i["actor"], i["action"]) for i in items] == [
        ("steward", "resolve"),
        ("steward", "view"),
    ]
    assert items[0]["detail"]["note"] == "đã sửa"
    by_citizen = api.get("/api/v1/audit", params={"citizen_id": "079185005678"}).json()
    assert [(i["actor"], i["action"]) for i in by_citizen["items"]] == [("viewer", "view")]
    page = api.get("/api/v1/audit", params={"limit": 1}).json()
    assert len(page["items"]) == 1 and page["next_after"]
    older = api.get("/api/v1/audit", params={"limit": 1, "after": page["next_after"]}).json()
    assert older["items"][0]["id"] < page["items"][0]["id"]
    assert api.get("/api/v1/audit", params={"since": "yesterday"}).status_code == 422


def test_admin_creates_a_user_whose_token_works_at_once(api):
    resp = api.post("/api/v1/users", json={"name": "lan.nguyen", "role": "steward"})
    assert resp.status_code == 201
    body = resp.json()
    assert body["user"]["name"] == "lan.nguyen" and body["user"]["has_password"] is False
    me = api.client.get("/api/v1/me", headers={"Authorization": f"Bearer {body['token']}"})
    assert me.json()["role"] == "steward"
    again = api.post("/api/v1/users", json={"name": "lan.nguyen", "role": "viewer"})
    assert again.status_code == 409
    names = [u["name"] for u in api.get("/api/v1/users").json()]
    assert "lan.nguyen" in names
    token = api.post("/api/v1/users/lan.nguyen/tokens").json()["token"]
    assert token != body["token"]


def test_user_admin_refuses_bad_input(api):
    cases = [
        {"name": "bad name", "role": "viewer"},
        {"name": "x", "role": "superuser"},
        {"name": "x", "role": "viewer", "password": "short"},
        {"name": "", "role": "viewer"},
    ]
    for body in cases:
        assert api.post("/api/v1/users", json=body).status_code == 422, body
    assert api.post("/api/v1/users/nobody/disable").status_code == 404
    assert api.post("/api/v1/users/admin/disable").status_code == 409


def test_readyz_checks_the_database_and_kafka(api_ro, servers):
    ok = api_ro.client.get("/readyz")
    assert ok.status_code == 200
    assert ok.json() == {"status": "ok", "checks": {"database": "ok", "kafka": "ok"}}
    config = hub_config(api_ro.url, "127.0.0.1:1")
    with TestClient(create_app(config)) as client:
        bad = client.get("/readyz")
    assert bad.status_code == 503
    assert bad.json()["checks"]["database"] == "ok"
    assert bad.json()["checks"]["kafka"].startswith("unreachable")


def test_logs_never_carry_citizen_ids_from_queries_or_failures(api, caplog, monkeypatch):
    import logging

    from sqlalchemy.exc import IntegrityError

    from hub.api.queue import detail as mismatches

    caplog.set_level(logging.DEBUG, logger="hub.api")
    api.get("/api/v1/mismatches", params={"q": "001090001234"})
    api.get("/api/v1/audit", params={"citizen_id": "079185005678"})

    def boom(conn, mismatch_id, *args):
        raise IntegrityError("SELECT … WHERE citizen_id = '001090001234'", {}, Exception("x"))

    monkeypatch.setattr(mismatches, "detail", boom)
    resp = api.get(f"/api/v1/mismatches/{api.ids['name']}")
    assert resp.status_code == 500 and resp.json() == {"detail": "internal error"}
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "GET /api/v1/mismatches 200" in text and "unhandled IntegrityError" in text
    assert "001090001234" not in text and "079185005678" not in text

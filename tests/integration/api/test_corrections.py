"""Corrections over the REST API: propose, list, get, approve (a second person), send (to the
sector's corrections topic), withdraw, reject / acknowledge, the work list and the agency's
returned file — every endpoint by role, and bad input answered 4xx with a reason."""

from __future__ import annotations

import csv
import io
import time
import uuid
from collections.abc import Iterator

import pytest
from kafka import KafkaConsumer, TopicPartition
from openpyxl import Workbook, load_workbook
from sqlalchemy import delete, select

from hub.avro.codec import decode
from hub.config import parse_config
from hub.db.models import AuditLog, Correction, CorrectionHistory
from hub.kafka import client_settings
from hub.testing import Servers
from tests.integration.api.conftest import SECTORS, Api, Template, _api

ROLES = ("viewer", "steward", "approver", "operator", "admin")


def corrections_config(db_url: str, bootstrap: str, prefix: str):
    def source(approval: bool) -> dict:
        return {
            "url": "postgresql://reader@localhost/src",
            "table": "public.t",
            "key": "ma_so",
            "columns": {
                "citizen_id": "so_cccd",
                "full_name": "ho_ten",
                "date_of_birth": "ngay_sinh",
                "sex": {"column": "gioi_tinh", "map": {"Nam": "M", "Nữ": "F"}},
            },
            "corrections": {"approval": approval},
        }

    return parse_config(
        {
            "database": {"url": db_url},
            "kafka": {"bootstrap_servers": bootstrap, "topic_prefix": prefix},
            "api": {"listen": "127.0.0.1:0"},
            "registry": source(False),
            # banking needs a second person's approval before a correction is sent
            "sectors": {s: source(s == "banking") for s in SECTORS},
        },
        env={},
    )


@pytest.fixture(scope="module")
def module_api(servers: Servers, api_template: Template) -> Iterator[Api]:
    """One seeded database and app for the module (corrections do not change mismatches)."""
    prefix = f"c{uuid.uuid4().hex[:8]}"
    yield from _api(
        servers, api_template, lambda url, bootstrap: corrections_config(url, bootstrap, prefix)
    )


@pytest.fixture
def api(module_api: Api) -> Api:
    """The module's world with no corrections yet (ids keep growing: never reused)."""
    with module_api.engine.begin() as conn:
        conn.execute(delete(Correction))
    return module_api


def propose(api, key="name", role="steward", **body):
    body = {"kind": "value", "proposed_value": "Nguyễn Văn An", "reason": "registry", **body}
    return api.post(f"/api/v1/mismatches/{api.ids[key]}/corrections", role, json=body)


def created(api, key="name", **body) -> dict:
    resp = propose(api, key, **body)
    assert resp.status_code == 201, resp.text
    return resp.json()


def actions(api, cid: int) -> list[tuple]:
    with api.engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                select(CorrectionHistory.actor, CorrectionHistory.action)
                .where(CorrectionHistory.correction_id == cid)
                .order_by(CorrectionHistory.id)
            )
        ]


def test_a_steward_proposes_the_registry_name_and_it_is_recorded_with_history_and_audit(api):
    c = created(api)
    assert c["status"] == "proposed" and c["kind"] == "value" and c["field"] == "full_name"
    assert c["current_value"] and c["proposed_by"] == "steward"
    detail = api.get(f"/api/v1/corrections/{c['id']}", "viewer").json()
    assert [(h["actor"], h["action"], h["to_status"]) for h in detail["history"]] == [
        ("steward", "propose", "proposed")
    ]
    with api.engine.connect() as conn:
        audited = conn.execute(
            select(AuditLog.actor, AuditLog.action).where(AuditLog.target_type == "correction")
        ).all()
    assert ("steward", "correction_propose") in audited
    assert ("viewer", "correction_view") in audited
    page = api.get("/api/v1/corrections", "viewer", params={"sector": "tax"}).json()
    assert [i["id"] for i in page["items"]] == [c["id"]]
    assert api.get("/api/v1/corrections", params={"status": "sent"}).json()["items"] == []


def test_a_viewer_cannot_propose_and_a_second_live_proposal_is_refused(api):
    resp = propose(api, role="viewer")
    assert resp.status_code == 403 and "viewer" in resp.json()["detail"]
    created(api)
    again = propose(api)
    assert again.status_code == 409 and "under way" in again.json()["detail"]


@pytest.mark.parametrize(
    ("key", "body", "status", "words"),
    [
        ("name", {"kind": "candidate", "proposed_value": "001090001234"}, 409, "candidate"),
        ("deceased", {"kind": "value", "proposed_value": "closed"}, 409, "no single value"),
        ("dob", {"kind": "value", "proposed_value": "14/03/1985"}, 409, "not a date"),
        ("name", {"kind": "value", "proposed_value": "   "}, 422, "proposed_value"),
        ("name", {"kind": "other", "proposed_value": "x"}, 422, "kind"),
        ("name", {"kind": "value"}, 422, "proposed_value"),
        ("fixed", {"kind": "value", "proposed_value": "79"}, 409, "resolved"),
    ],
)
def test_a_proposal_that_does_not_fit_is_refused_with_a_reason(api, key, body, status, words):
    resp = api.post(f"/api/v1/mismatches/{api.ids[key]}/corrections", "steward", json=body)
    assert resp.status_code == status, resp.text
    assert words in resp.json()["detail"]


def test_an_unknown_sector_in_the_list_filter_is_a_422_naming_it(api):
    resp = api.get("/api/v1/corrections", "viewer", params={"sector": "taxx"})
    assert resp.status_code == 422 and "unknown sector 'taxx'" in resp.json()["detail"]


def test_unknown_ids_are_404(api):
    assert propose(api, key="name").status_code == 201
    resp = api.post("/api/v1/mismatches/999999/corrections", "steward",
                    json={"kind": "value", "proposed_value": "x"})  # fmt: skip
    assert resp.status_code == 404
    assert api.get("/api/v1/corrections/999999").status_code == 404
    assert api.post("/api/v1/corrections/999999/withdraw", "steward").status_code == 404


def _consume(api, sector: str, correction_id: int) -> list[dict]:
    """The events of one correction on the sector's topic (other tests' share it)."""
    topic = f"{api.config.kafka.topic_prefix}.corrections.{sector}"
    consumer = KafkaConsumer(**client_settings(api.config.kafka), enable_auto_commit=False)
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        out: list[dict] = []
        deadline = time.monotonic() + 20
        while not out and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                events = [decode(r.value)[1] for r in records]
                out += [e for e in events if e["correction_id"] == correction_id]
        return out
    finally:
        consumer.close()


def test_send_produces_the_correction_to_the_sector_topic_and_it_cannot_be_withdrawn(api):
    c = created(api)
    resp = api.post(f"/api/v1/corrections/{c['id']}/send", "steward")
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "sent" and resp.json()["sent_at"]
    (event,) = _consume(api, "tax", c["id"])
    assert event["correction_id"] == c["id"] and event["suggested_value"] == "Nguyễn Văn An"
    assert (event["rule"], event["kind"], event["record_key"]) == (
        "NAME_MISMATCH",
        "value",
        "MST0001",
    )
    resp = api.post(f"/api/v1/corrections/{c['id']}/withdraw", "steward")
    assert resp.status_code == 409 and "sent" in resp.json()["detail"]
    assert actions(api, c["id"]) == [("steward", "propose"), ("steward", "send")]


def test_with_approval_on_a_steward_cannot_approve_their_own_nor_send_unapproved(api):
    c = created(api, key="unknown_id", kind="candidate", proposed_value="001090001234")
    cid = c["id"]
    assert c["current_value"] == "999999999999"
    resp = api.post(f"/api/v1/corrections/{cid}/send", "steward")
    assert resp.status_code == 409 and "needs approval" in resp.json()["detail"]
    resp = api.post(f"/api/v1/corrections/{cid}/approve", "steward")
    assert resp.status_code == 403 and "steward" in resp.json()["detail"]

    # An approver who proposed it may not approve it either; another approver may.
    other = created(api, key="arabic", role="approver", proposed_value="Ahmed")
    resp = api.post(f"/api/v1/corrections/{other['id']}/approve", "approver")
    assert resp.status_code == 403 and "your own" in resp.json()["detail"]
    resp = api.post(f"/api/v1/corrections/{cid}/approve", "approver", json={"reason": "ok"})
    assert resp.status_code == 200 and resp.json()["approved_by"] == "approver"
    result = api.post(
        "/api/v1/corrections/send", "steward", json={"ids": [cid, other["id"], 424242]}
    ).json()
    assert [s["id"] for s in result["sent"]] == [cid]
    assert {s["id"]: s["reason"] for s in result["skipped"]} == {
        other["id"]: f"correction {other['id']} needs approval before it is sent (banking)",
        424242: "no correction 424242",
    }


def test_withdraw_reject_and_acknowledge_follow_the_lifecycle(api):
    a = created(api)
    resp = api.post(f"/api/v1/corrections/{a['id']}/withdraw", "steward", json={"reason": "x"})
    assert resp.json()["status"] == "withdrawn" and resp.json()["closed_at"]
    b = created(api)  # the mismatch is free again
    api.post(f"/api/v1/corrections/{b['id']}/send", "steward")
    resp = api.post(f"/api/v1/corrections/{b['id']}/reject", "steward", json={"reason": " "})
    assert resp.status_code == 422
    resp = api.post(
        f"/api/v1/corrections/{b['id']}/reject", "steward", json={"reason": "wrong person"}
    )
    assert resp.json()["status"] == "rejected" and resp.json()["agency_reason"] == "wrong person"
    resp = api.post(f"/api/v1/corrections/{b['id']}/acknowledge", "steward")
    assert resp.status_code == 409
    d = created(api, key="dob", proposed_value="1985-03-14")
    api.post(f"/api/v1/corrections/{d['id']}/send", "steward")
    resp = api.post(f"/api/v1/corrections/{d['id']}/acknowledge", "steward")
    assert resp.json()["status"] == "acknowledged"


def _sent(api) -> tuple[dict, dict]:
    name = created(api)
    dob = created(api, key="dob", proposed_value="1985-03-14")
    sent = api.post("/api/v1/corrections/send", "steward", json={"ids": [name["id"], dob["id"]]})
    assert len(sent.json()["sent"]) == 2, sent.text
    return name, dob


def test_the_work_list_is_in_the_sectors_own_column_names_as_csv_and_xlsx(api):
    name, dob = _sent(api)
    resp = api.get("/api/v1/corrections/worklist", "steward", params={"sector": "tax"})
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(resp.content.decode("utf-8-sig"))))
    assert rows[0] == ["correction_id", "ma_so", "field", "current_value", "proposed_value"]
    assert rows[1][:3] == [str(name["id"]), "MST0001", "ho_ten"]
    assert rows[1][4] == "Nguyễn Văn An"
    assert rows[2][2] == "ngay_sinh" and rows[2][4] == "1985-03-14"

    resp = api.get(
        "/api/v1/corrections/worklist", "steward", params={"sector": "tax", "format": "xlsx"}
    )
    ws = load_workbook(io.BytesIO(resp.content)).worksheets[0]
    assert [c.value for c in ws[1]] == rows[0]
    assert ws.max_row == 3
    assert api.get("/api/v1/corrections/worklist", "viewer",
                   params={"sector": "tax"}).status_code == 403  # fmt: skip
    resp = api.get("/api/v1/corrections/worklist", "steward", params={"sector": "nope"})
    assert resp.status_code == 422 and "unknown sector" in resp.json()["detail"]


def _upload(api, content: bytes, name="returned.csv", sector="tax", role="steward"):
    return api.post(
        "/api/v1/corrections/returned",
        role,
        params={"sector": sector},
        files={"file": (name, content, "application/octet-stream")},
    )


def test_a_returned_file_marks_rows_and_names_each_bad_row(api):
    name, dob = _sent(api)
    table = [
        ["correction_id", "ma_so", "field", "current_value", "proposed_value", "status", "reason"],
        [name["id"], "MST0001", "ho_ten", "", "", "rejected", "not this person"],
        [dob["id"], "MST0002", "ngay_sinh", "", "", "Acknowledged", ""],
        ["abc", "MST0001", "", "", "", "rejected", "x"],
        [name["id"], "MST0001", "", "", "", "maybe", ""],
        [dob["id"], "MST0009", "", "", "", "rejected", "x"],
        [999999, "MST0001", "", "", "", "acknowledged", ""],
        [name["id"], "MST0001", "", "", "", "rejected", ""],
    ]
    wb = Workbook()
    for r in table:
        wb.active.append(r)
    data = io.BytesIO()
    wb.save(data)
    resp = _upload(api, data.getvalue(), "returned.xlsx")
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert (out["applied"], out["errors"]) == (2, 5)
    by_row = {r["row"]: (r["result"], r["reason"]) for r in out["rows"]}
    assert by_row[2] == ("rejected", "not this person")
    assert by_row[3] == ("acknowledged", None)
    assert by_row[4] == ("error", "bad correction_id 'abc'")
    assert "rejected or acknowledged" in by_row[5][1]
    assert "not about record" in by_row[6][1]
    assert by_row[7] == ("error", "no correction 999999 in sector tax")
    assert by_row[8] == ("error", "a rejected row needs a reason")
    statuses = dict(api.engine.connect().execute(select(Correction.id, Correction.status)).all())
    assert statuses == {name["id"]: "rejected", dob["id"]: "acknowledged"}


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"", "empty file"),
        (b"correction_id,status\n1,rejected\n", "missing column ma_so"),
        (b"\xff\xfe\x00garbage", "neither XLSX nor UTF-8 CSV"),
        (b"PK\x03\x04broken", "not a readable XLSX"),
    ],
)
def test_a_returned_file_that_cannot_be_read_is_409_with_the_reason(api, content, words):
    resp = _upload(api, content)
    assert resp.status_code == 409 and words in resp.json()["detail"], resp.text


def test_every_correction_endpoint_needs_the_right_role(api):
    c = created(api)
    cid = c["id"]
    calls = [
        ("GET", "/api/v1/corrections", None, "viewer"),
        ("GET", f"/api/v1/corrections/{cid}", None, "viewer"),
        ("POST", f"/api/v1/mismatches/{api.ids['dob']}/corrections",
         {"kind": "value", "proposed_value": "1985-03-14"}, "steward"),
        ("POST", f"/api/v1/corrections/{cid}/approve", None, "approver"),
        ("GET", "/api/v1/corrections/worklist?sector=tax", None, "steward"),
    ]  # fmt: skip
    for method, path, body, lowest in calls:
        for role in ROLES:
            if method == "GET":
                resp = api.get(path, role)
            else:
                resp = api.post(path, role, json=body)
            allowed = ROLES.index(role) >= ROLES.index(lowest)
            if allowed:
                assert resp.status_code < 500 and resp.status_code != 403, (role, path, resp.text)
            else:
                assert resp.status_code == 403, (role, path, resp.status_code)
    for path in (f"/api/v1/corrections/{cid}/send", "/api/v1/corrections/send"):
        assert api.post(path, "viewer", json={"ids": [cid]}).status_code == 403
    assert _upload(api, b"x", role="viewer").status_code == 403
    assert api.client.get("/api/v1/corrections").status_code == 401


def _ui_login(api, name: str) -> str:
    from tests.integration.api.test_ui_forms import csrf_of, log_in

    log_in(api.client, name)
    return csrf_of(api.client.get("/queue").text)


def test_the_ui_proposes_sends_and_lists_a_correction_and_the_dashboard_counts_it(api):
    csrf = _ui_login(api, "steward")
    try:
        mid = api.ids["name"]
        page = api.client.get(f"/mismatches/{mid}")
        assert page.status_code == 200 and 'class="propose-value"' in page.text
        resp = api.client.post(
            f"/mismatches/{mid}/corrections/propose",
            data={"csrf_token": csrf, "kind": "value", "proposed_value": "Nguyễn Văn An",
                  "reason": "registry"},
        )  # fmt: skip
        assert resp.status_code == 303
        (c,) = api.get("/api/v1/corrections", params={"mismatch_id": mid}).json()["items"]
        assert api.client.post(f"/corrections/{c['id']}/approve",
                               data={"csrf_token": csrf}).status_code == 303  # fmt: skip
        assert api.get(f"/api/v1/corrections/{c['id']}").json()["status"] == "proposed"
        api.client.post(f"/corrections/{c['id']}/send", data={"csrf_token": csrf})
        listing = api.client.get("/corrections", params={"sector": "tax", "status": "sent"})
        assert listing.status_code == 200, listing.text
        assert f'data-correction="{c["id"]}"' in listing.text
        assert "Download work list (CSV)" in listing.text
        sheet = api.client.get("/corrections/worklist.csv", params={"sector": "tax"})
        assert sheet.status_code == 200 and "MST0001" in sheet.content.decode("utf-8-sig")
        dash = api.client.get("/dashboard")
        assert dash.status_code == 200 and 'data-figure="sent">1<' in dash.text
        assert api.client.get("/corrections", params={"sector": "nope"}).status_code == 422
    finally:
        api.client.post("/logout", data={"csrf_token": csrf})

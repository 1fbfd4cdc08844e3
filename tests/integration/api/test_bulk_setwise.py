"""Bulk actions write their history and audit rows set-wise, in the statement that changes
the mismatches (issue #24 item 6: 10k assigns took 4.9 s one row at a time): exactly one
history and one audit row per changed mismatch, with the same content as before."""

from __future__ import annotations

from sqlalchemy import func, select, text

from hub.db.models import AuditLog, Mismatch, MismatchHistory

# 2,000 more open mismatches beside the seeded ones.
_MORE = """
INSERT INTO mismatches (sector, record_key, rule, field, severity, status, citizen_id,
                        province_code, sector_value, registry_value, values_hash)
SELECT 'labour', 'BULK' || g, 'NAME_MISMATCH', 'full_name', 'low', 'open',
       '001090' || lpad(g::text, 6, '0'), '01', 'a', 'b', md5(g::text)
FROM generate_series(1, 2000) AS g
"""


def _rows(api, action: str):
    with api.engine.connect() as conn:
        hist = conn.execute(
            select(
                MismatchHistory.mismatch_id,
                MismatchHistory.actor,
                MismatchHistory.from_status,
                MismatchHistory.to_status,
                MismatchHistory.note,
            )
            .where(MismatchHistory.action == action)
            .order_by(MismatchHistory.id)
        ).all()
        audit = conn.execute(
            select(AuditLog.actor, AuditLog.target_type, AuditLog.target_id, AuditLog.detail)
            .where(AuditLog.action == action)
            .order_by(AuditLog.id)
        ).all()
    return hist, audit


def test_a_bulk_assign_writes_one_history_and_one_audit_row_per_change(api):
    with api.engine.begin() as conn:
        conn.execute(text(_MORE))
    body = {"action": "assign", "filter": {"sector": ["labour"]}, "assignee": "steward"}
    result = api.post("/api/v1/mismatches/bulk", "steward", json=body).json()
    changed = result["changed"]
    assert len(changed) == 2000 and result["more"] is False
    hist, audit = _rows(api, "assign")
    assert [h[0] for h in hist] == changed  # one each, in id order
    assert {h[1:] for h in hist} == {("steward", "open", "in_review", "assigned to steward")}
    assert [int(a[2]) for a in audit] == changed
    with api.engine.connect() as conn:
        keys = dict(
            conn.execute(
                select(Mismatch.id, Mismatch.record_key).where(Mismatch.id.in_(changed))
            ).all()
        )
    for actor, target_type, target_id, detail in audit:
        assert (actor, target_type) == ("steward", "mismatch")
        mid = int(target_id)
        assert detail == {
            "sector": "labour",
            "record_key": keys[mid],
            "citizen_id": "001090" + keys[mid][4:].rjust(6, "0"),
            "from_status": "open",
            "to_status": "in_review",
            "assignee": "steward",
        }  # no note: None values are left out


def test_a_bulk_dismiss_and_a_single_resolve_audit_their_note(api):
    mid = api.ids["name"]
    resp = api.post(f"/api/v1/mismatches/{mid}/resolve", "steward", json={"note": "sửa rồi"})
    assert resp.status_code == 200
    hist, audit = _rows(api, "resolve")
    assert [h[0] for h in hist][-1] == mid and audit[-1][3]["note"] == "sửa rồi"
    body = {"action": "dismiss", "filter": {"sector": ["banking"]}, "reason": "registry wrong",
            "reason_code": "registry_wrong"}  # fmt: skip
    resp = api.post("/api/v1/mismatches/bulk", "steward", json=body)
    assert resp.status_code == 200, resp.text
    changed = resp.json()["changed"]
    hist, audit = _rows(api, "dismiss")
    assert [h[0] for h in hist] == changed and [int(a[2]) for a in audit] == changed
    assert all(h[4] == "registry wrong" for h in hist)
    assert all(a[3]["note"] == "registry wrong" and "assignee" not in a[3] for a in audit)
    assert all(a[3]["dismissal_code"] == "registry_wrong" for a in audit)
    with api.engine.connect() as conn:
        codes = conn.scalars(
            select(MismatchHistory.dismissal_code).where(MismatchHistory.mismatch_id.in_(changed))
            .where(MismatchHistory.action == "dismiss")
        ).all()  # fmt: skip
    assert codes == ["registry_wrong"] * len(changed)
    with api.engine.connect() as conn:
        n = conn.scalar(select(func.count()).where(MismatchHistory.mismatch_id.in_(changed)))
    assert n >= len(changed)

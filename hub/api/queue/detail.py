"""One mismatch as a steward opens it: both records side by side, the record's other
mismatches, the reconciler's suggestions and the history."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select

from hub.api.errors import NotFound
from hub.api.queue import compare
from hub.api.queue.filters import ITEM_COLUMNS, M, as_item
from hub.db.models import MismatchHistory, RegistryCitizen, SectorRecord
from hub.idschemes import IdScheme
from hub.vocabulary import CANONICAL_FIELDS, OPEN_STATUSES

# Canonical fields shown side by side; a sector record lacks date_of_death, the registry
# lacks status and last_activity_date.
RECORD_FIELDS = CANONICAL_FIELDS
_SECTOR_ONLY = {"status", "last_activity_date"}
_REGISTRY_ONLY = {"date_of_death"}


_value = compare.text


def _sector_record(conn: Connection, sector: str, record_key: str) -> dict[str, Any] | None:
    s = SectorRecord
    row = conn.execute(
        select(
            s.citizen_id_raw,
            s.citizen_id,
            s.legacy_id,
            s.full_name,
            s.date_of_birth,
            s.sex,
            s.province_code,
            s.address,
            s.status,
            s.last_activity_date,
            s.attributes,
            s.verified,
            s.source_ts,
            s.updated_at,
        ).where(s.sector == sector, s.record_key == record_key)
    ).one_or_none()
    return dict(row._mapping) if row else None


def _registry_record(conn: Connection, sec: dict[str, Any] | None, m: Any) -> dict | None:
    r = RegistryCitizen
    cols = compare.REGISTRY_COLUMNS
    keys = []
    if sec and sec.get("citizen_id"):
        keys.append(r.citizen_id == sec["citizen_id"])
    elif m.citizen_id:
        keys.append(r.citizen_id == m.citizen_id)
    if sec and sec.get("legacy_id"):
        keys.append(r.legacy_id == sec["legacy_id"])
    for cond in keys:
        row = conn.execute(select(*cols).where(cond).limit(1)).one_or_none()
        if row:
            return dict(row._mapping)
    return None


def detail(conn: Connection, mismatch_id: int, scheme: IdScheme | None = None) -> dict[str, Any]:
    """The mismatch, both records with a per-field comparison, the record's other
    mismatches, suggestions, what to compare for its rule (:func:`compare_for`) and history.
    NotFound if there is no such mismatch.

    A field ``differs`` when both sides hold a value and the values are not equal as
    stored; it is ``flagged`` when an open or in-review mismatch of this record names it.
    """
    row = conn.execute(select(*ITEM_COLUMNS, M.suggestions).where(M.id == mismatch_id)).first()
    if row is None:
        raise NotFound(f"no mismatch {mismatch_id}")
    item = as_item(row[:-1])
    m = row
    sec = _sector_record(conn, m.sector, m.record_key)
    reg = _registry_record(conn, sec, m)
    related = [
        dict(r._mapping)
        for r in conn.execute(
            select(M.id, M.rule, M.field, M.severity, M.status)
            .where(M.sector == m.sector, M.record_key == m.record_key)
            .order_by(M.id)
            .limit(50)
        )
    ]
    flagged = {r["field"] for r in related if r["status"] in OPEN_STATUSES and r["field"]}
    if item["status"] in OPEN_STATUSES and item["field"]:
        flagged.add(item["field"])
    fields = []
    for name in RECORD_FIELDS:
        if sec is None and reg is None:
            break
        if name == "citizen_id":
            sv = sec.get("citizen_id_raw") if sec else None
        else:
            sv = None if (sec is None or name in _REGISTRY_ONLY) else sec.get(name)
        rv = None if (reg is None or name in _SECTOR_ONLY) else reg.get(name)
        sv, rv = _value(sv), _value(rv)
        fields.append(
            {
                "field": name,
                "sector_value": sv,
                "registry_value": rv,
                "differs": sv is not None and rv is not None and sv != rv,
                "flagged": name in flagged,
            }
        )
    history = [
        dict(h._mapping)
        for h in conn.execute(
            select(
                MismatchHistory.id,
                MismatchHistory.at,
                MismatchHistory.actor,
                MismatchHistory.action,
                MismatchHistory.from_status,
                MismatchHistory.to_status,
                MismatchHistory.note,
                MismatchHistory.dismissal_code,
            )
            .where(MismatchHistory.mismatch_id == mismatch_id)
            .order_by(MismatchHistory.id)
        )
    ]
    suggestions = _suggestions(m.suggestions)
    return {
        "mismatch": item,
        "sector_record": _jsonable_record(sec),
        "registry_record": _jsonable_record(reg),
        "fields": fields,
        "suggestions": suggestions,
        "compare": compare_for(conn, item, sec, reg, suggestions, scheme),
        "related": [r for r in related if r["id"] != mismatch_id],
        "history": history,
    }


def compare_for(
    conn: Connection,
    item: dict[str, Any],
    sec: dict[str, Any] | None,
    reg: dict[str, Any] | None,
    suggestions: list[dict[str, Any]],
    scheme: IdScheme | None,
) -> dict[str, Any]:
    """Per rule, what the page sets side by side (:mod:`hub.api.queue.compare`), and the
    citizen ID whose page (``/citizens/{id}``) the detail links to."""
    rule = item["rule"]
    return {
        "group": compare.group(conn, sec, (item["sector"], item["record_key"]))
        if rule == "DUPLICATE_ID" and sec and sec.get("citizen_id")
        else None,
        "suggested": compare.suggested_record(conn, sec, item["registry_value"])
        if rule == "ID_LEGACY"
        else None,
        "candidates": compare.candidates(conn, sec, suggestions),
        "id": compare.explain_id(scheme, sec, rule),
        "citizen_id": citizen_link(scheme, sec, reg),
    }


def citizen_link(
    scheme: IdScheme | None, sec: dict[str, Any] | None, reg: dict[str, Any] | None
) -> str | None:
    """The ID a citizen page opens for this record: the registry citizen it matches, else
    the record's own ID when the scheme can read it."""
    if reg is not None:
        return reg["citizen_id"]
    cid = (sec or {}).get("citizen_id")
    if not cid or scheme is None or scheme.parse(cid).kind == "invalid":
        return None
    return cid


def _jsonable_record(rec: dict[str, Any] | None) -> dict[str, Any] | None:
    if rec is None:
        return None
    return {
        k: (v if isinstance(v, dict | bool) or v is None else _value(v)) for k, v in rec.items()
    }


def _suggestions(raw: Any) -> list[dict[str, Any]]:
    """The reconciler's candidates as a list of objects, whatever shape it stored."""
    if not raw:
        return []
    if isinstance(raw, dict):
        raw = [raw]
    out = []
    for s in raw if isinstance(raw, list) else []:
        out.append(s if isinstance(s, dict) else {"value": s})
    return out

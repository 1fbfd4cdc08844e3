"""One citizen's page: the registry record, every sector record carrying the ID (or the
citizen's legacy number, or suggested for the citizen as a candidate), their open
mismatches and the corrections proposed for them."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import Connection, and_, or_, select, tuple_

from hub.api import audit
from hub.api.errors import NotFound
from hub.api.queue import compare
from hub.api.queue.corrections import ITEM_COLUMNS as CORRECTION_COLUMNS
from hub.db.models import Correction, Mismatch, RegistryCitizen, SectorRecord
from hub.idschemes import IdScheme
from hub.vocabulary import OPEN_STATUSES
from reconciliation.corrections import CANDIDATE

CITIZEN = "citizen"
RECORD_LIMIT = 200
"""Sector records listed at most per relation (carrying, candidate)."""
MISMATCH_LIMIT = 500

RECORD_FIELDS = ("full_name", "date_of_birth", "sex", "province_code", "address")
"""The fields each sector record is set beside the registry record by."""

_S = SectorRecord
_RECORD_COLUMNS = (
    _S.sector,
    _S.record_key,
    _S.citizen_id_raw,
    _S.citizen_id,
    _S.legacy_id,
    _S.full_name,
    _S.date_of_birth,
    _S.sex,
    _S.province_code,
    _S.address,
    _S.status,
    _S.last_activity_date,
    _S.verified,
    _S.updated_at,
)
_PATH = re.compile(r"^((?:/api/v1)?/citizens/)[^/]+")


def loggable_path(path: str) -> str:
    """``path`` as the access log may show it: a citizen page's ID is masked."""
    return _PATH.sub(r"\1…", path)


def resolve_id(scheme: IdScheme, raw: str) -> tuple[str, str]:
    """The normalized ID and its kind (``current``/``legacy``); NotFound with the scheme's
    reason for an ID it cannot read."""
    normalized = scheme.normalize(raw) if len(raw) <= 64 else None
    if normalized is None:
        raise NotFound("no citizen ID given" if len(raw) <= 64 else "not a citizen ID (too long)")
    info = scheme.parse(normalized)
    if info.kind == "invalid":
        raise NotFound(f"not a valid citizen ID ({scheme.name} scheme): {info.reason}")
    return normalized, info.kind


def citizen(conn: Connection, scheme: IdScheme, raw: str) -> dict[str, Any]:
    """The citizen page's data for the ID ``raw`` (any spelling the scheme normalizes; a
    legacy number opens its holder's page). NotFound when the ID is invalid, or when
    neither the registry nor any sector record knows it."""
    normalized, kind = resolve_id(scheme, raw)
    reg = _registry(conn, normalized, kind)
    cid = reg["citizen_id"] if reg else normalized
    carried = {cid, normalized} | ({reg["legacy_id"]} if reg and reg["legacy_id"] else set())
    records, more = _carrying(conn, carried, RECORD_LIMIT)
    seen = {(r["sector"], r["record_key"]) for r in records}
    suggested, more_suggested = _suggested_for(conn, cid, seen)
    records += suggested
    if reg is None and not records:
        raise NotFound("no registry citizen or sector record has this citizen ID")
    mismatches = _open_mismatches(conn, [(r["sector"], r["record_key"]) for r in records])
    out = []
    for r in records:
        key = (r["sector"], r["record_key"])
        relation = r.pop("relation")
        if relation == "carries" and r["citizen_id"] != cid:
            relation = "legacy"
        out.append(
            {
                "sector": r["sector"],
                "record_key": r["record_key"],
                "relation": relation,
                "record": {k: _json(v) for k, v in r.items()},
                "fields": [
                    compare.compare_field(f, r.get(f), (reg or {}).get(f)) for f in RECORD_FIELDS
                ],
                "open_mismatches": mismatches.get(key, []),
            }
        )
    own = {**(reg or {}), "citizen_id_raw": cid}
    return {
        "citizen_id": cid,
        "id": compare.explain_id(scheme, own, ""),
        "registry_record": {k: _json(v) for k, v in reg.items()} if reg else None,
        "records": out,
        "more": more or more_suggested,
        "corrections": corrections_for(conn, cid, [(r["sector"], r["record_key"]) for r in out]),
    }


def record_view(conn: Connection, actor: str, page: dict[str, Any]) -> None:
    """Audit a view of the citizen's page (SPEC §6), in the caller's transaction: the
    citizen ID in the detail answers "who saw this citizen's records"."""
    audit.record(
        conn,
        actor,
        "view",
        target_type=CITIZEN,
        target_id=page["citizen_id"],
        detail={"citizen_id": page["citizen_id"], "records": len(page["records"])},
    )


def corrections_for(
    conn: Connection, citizen_id: str, records: list[tuple[str, str]]
) -> list[dict[str, Any]]:
    """The corrections proposed for the citizen's records, and those proposing that a record
    carry this citizen's ID (an accepted candidate), newest first."""
    c = Correction
    cond = and_(c.kind == CANDIDATE, c.proposed_value == citizen_id)
    if records:
        cond = or_(tuple_(c.sector, c.record_key).in_(records), cond)
    rows = conn.execute(
        select(*CORRECTION_COLUMNS).where(cond).order_by(c.id.desc()).limit(RECORD_LIMIT)
    )
    return [{k: _json(v) for k, v in r._mapping.items()} for r in rows]


def _json(v: Any) -> Any:
    return v if isinstance(v, bool | int | float | dict) or v is None else compare.text(v)


def _registry(conn: Connection, normalized: str, kind: str) -> dict[str, Any] | None:
    r = RegistryCitizen
    cond = r.legacy_id == normalized if kind == "legacy" else r.citizen_id == normalized
    row = conn.execute(
        select(*compare.REGISTRY_COLUMNS).where(cond).order_by(r.citizen_id).limit(1)
    ).one_or_none()
    return dict(row._mapping) if row else None


def _carrying(conn: Connection, ids: set[str], limit: int) -> tuple[list[dict], bool]:
    rows = conn.execute(
        select(*_RECORD_COLUMNS)
        .where(_S.citizen_id.in_(sorted(ids)))
        .order_by(_S.sector, _S.record_key)
        .limit(limit + 1)
    ).all()
    out = [{**r._mapping, "relation": "carries"} for r in rows[:limit]]
    return out, len(rows) > limit


def _suggested_for(
    conn: Connection, citizen_id: str, seen: set[tuple[str, str]]
) -> tuple[list[dict], bool]:
    """Sector records an open mismatch suggests this citizen for (the GIN index of
    migration 0011 answers the containment)."""
    m = Mismatch
    keys = conn.execute(
        select(m.sector, m.record_key)
        .where(
            m.suggestions.contains([{"citizen_id": citizen_id}]),
            m.status.in_(OPEN_STATUSES),
        )
        .distinct()
        .order_by(m.sector, m.record_key)
        .limit(RECORD_LIMIT + 1)
    ).all()
    more = len(keys) > RECORD_LIMIT
    wanted = [tuple(k) for k in keys[:RECORD_LIMIT] if tuple(k) not in seen]
    if not wanted:
        return [], more
    rows = conn.execute(
        select(*_RECORD_COLUMNS)
        .where(tuple_(_S.sector, _S.record_key).in_(wanted))
        .order_by(_S.sector, _S.record_key)
    ).all()
    return [{**r._mapping, "relation": "candidate"} for r in rows], more


def _open_mismatches(conn: Connection, keys: list[tuple[str, str]]) -> dict[tuple, list[dict]]:
    if not keys:
        return {}
    m = Mismatch
    out: dict[tuple, list[dict]] = {}
    for r in conn.execute(
        select(
            m.sector,
            m.record_key,
            m.id,
            m.rule,
            m.field,
            m.severity,
            m.status,
            m.sector_value,
            m.registry_value,
            m.first_seen_at,
        )
        .where(tuple_(m.sector, m.record_key).in_(keys), m.status.in_(OPEN_STATUSES))
        .order_by(m.id)
        .limit(MISMATCH_LIMIT)
    ):
        row = dict(r._mapping)
        out.setdefault((row.pop("sector"), row.pop("record_key")), []).append(row)
    return out

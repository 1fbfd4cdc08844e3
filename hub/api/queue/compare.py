"""What a steward compares on a mismatch's page, per rule: the records of a duplicate-ID
group side by side, the registry record an ``ID_LEGACY`` suggests, each candidate's birth
date, sex and province beside the sector record's, and, in words, what the record's own ID
says (from the ID scheme's ``explain``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, select

from hub.db.models import RegistryCitizen, SectorRecord
from hub.idschemes import IdScheme

GROUP_LIMIT = 50
"""Records of a duplicate-ID group shown at most (a group that large is a data problem)."""

GROUP_FIELDS = (
    "citizen_id_raw",
    "full_name",
    "date_of_birth",
    "sex",
    "province_code",
    "address",
    "status",
    "last_activity_date",
)
"""The sector fields set side by side for the records of a group."""

CANDIDATE_FIELDS = ("full_name", "date_of_birth", "sex", "province_code")
"""What a candidate is set beside the sector record by: the parts its score compares."""

LEGACY_FIELDS = ("full_name", "date_of_birth", "sex", "province_code", "address")

REGISTRY_COLUMNS = (
    RegistryCitizen.citizen_id,
    RegistryCitizen.legacy_id,
    RegistryCitizen.full_name,
    RegistryCitizen.date_of_birth,
    RegistryCitizen.sex,
    RegistryCitizen.province_code,
    RegistryCitizen.address,
    RegistryCitizen.date_of_death,
    RegistryCitizen.attributes,
    RegistryCitizen.updated_at,
)
"""What a page shows of a registry record."""


def text(v: Any) -> str | None:
    """A stored value as the page and the API show it (dates in ISO form)."""
    if v is None:
        return None
    if isinstance(v, date | datetime):
        return v.isoformat()
    return str(v)


def date_parts_differing(a: str | None, b: str | None) -> list[str]:
    """Which of ``year``, ``month``, ``day`` differ between two ISO dates (``[]`` when
    either is missing or not a date): the marks inside a birth-date cell."""
    try:
        x, y = date.fromisoformat(a or ""), date.fromisoformat(b or "")
    except ValueError:
        return []
    return [n for n in ("year", "month", "day") if getattr(x, n) != getattr(y, n)]


def compare_field(name: str, sector_value: Any, other_value: Any) -> dict[str, Any]:
    """One row of a comparison: both values, whether they differ (only when both are held),
    and for a date which of its parts differ."""
    sv, ov = text(sector_value), text(other_value)
    differs = sv is not None and ov is not None and sv.strip() != ov.strip()
    return {
        "field": name,
        "sector_value": sv,
        "other_value": ov,
        "differs": differs,
        "parts": date_parts_differing(sv, ov) if differs else [],
    }


def registry_records(conn: Connection, citizen_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The registry replica's records of ``citizen_ids``, by ID."""
    ids = sorted({c for c in citizen_ids if c})
    if not ids:
        return {}
    rows = conn.execute(select(*REGISTRY_COLUMNS).where(RegistryCitizen.citizen_id.in_(ids)))
    return {r.citizen_id: dict(r._mapping) for r in rows}


def group(conn: Connection, sec: Mapping[str, Any], here: tuple[str, str]) -> dict[str, Any]:
    """Every sector record carrying the normalized ID of ``sec`` (this sector first, this
    record first of all), each field marked where it differs from this record's."""
    s = SectorRecord
    rows = [
        dict(r._mapping)
        for r in conn.execute(
            select(s.sector, s.record_key, *(getattr(s, f) for f in GROUP_FIELDS))
            .where(s.citizen_id == sec["citizen_id"])
            .order_by(s.sector != here[0], s.sector, s.record_key)
            .limit(GROUP_LIMIT + 1)
        )
    ]
    more = len(rows) > GROUP_LIMIT
    rows = rows[:GROUP_LIMIT]
    rows.sort(key=lambda r: (r["sector"], r["record_key"]) != here)
    records = []
    for r in rows:
        this = (r["sector"], r["record_key"]) == here
        cells = [compare_field(f, sec.get(f), r[f]) for f in GROUP_FIELDS]
        if this:
            cells = [{**c, "differs": False, "parts": []} for c in cells]
        records.append(
            {
                "sector": r["sector"],
                "record_key": r["record_key"],
                "this": this,
                "fields": [
                    {
                        "field": c["field"],
                        "value": c["other_value"],
                        "differs": c["differs"],
                        "parts": c["parts"],
                    }
                    for c in cells
                ],
            }
        )
    return {"fields": list(GROUP_FIELDS), "records": records, "more": more}


def candidates(
    conn: Connection, sec: Mapping[str, Any] | None, suggestions: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Each suggested registry candidate with its birth date, sex and province (and name)
    beside the sector record's, differing parts marked."""
    ids = [s.get("citizen_id") for s in suggestions if isinstance(s.get("citizen_id"), str)]
    found = registry_records(conn, ids)
    out = []
    for s in suggestions:
        cid = s.get("citizen_id")
        reg = found.get(cid) if isinstance(cid, str) else None
        out.append(
            {
                "citizen_id": cid if isinstance(cid, str) else None,
                "full_name": (reg or {}).get("full_name") or s.get("full_name"),
                "score": s.get("score") if isinstance(s.get("score"), int | float) else None,
                "why": s.get("why") if isinstance(s.get("why"), str) else None,
                "in_registry": reg is not None,
                "fields": [
                    compare_field(f, (sec or {}).get(f), (reg or {}).get(f))
                    for f in CANDIDATE_FIELDS
                ],
            }
        )
    return out


def suggested_record(
    conn: Connection, sec: Mapping[str, Any] | None, current_id: str | None
) -> dict[str, Any] | None:
    """For ``ID_LEGACY``: the registry record of the current ID the hub suggests, beside
    the sector record."""
    if not current_id:
        return None
    reg = registry_records(conn, [current_id]).get(current_id)
    if reg is None:
        return {"citizen_id": current_id, "in_registry": False, "fields": []}
    return {
        "citizen_id": current_id,
        "legacy_id": reg["legacy_id"],
        "in_registry": True,
        "fields": [compare_field(f, (sec or {}).get(f), reg.get(f)) for f in LEGACY_FIELDS],
    }


def _part_differs(fld: str | None, said: str | None, record_value: str | None) -> bool | None:
    """Whether the record disagrees with what an ID part says (``None``: nothing to compare)."""
    if fld is None or said is None or record_value is None:
        return None
    if fld == "date_of_birth":
        return record_value[: len(said)] != said  # a year compares with the year only
    if fld == "province_code" and said.isdigit() and record_value.strip().isdigit():
        return int(said) != int(record_value)  # "01" and "001" name one province
    return said != record_value.strip()


def explain_id(scheme: IdScheme | None, sec: Mapping[str, Any] | None, rule: str) -> dict[str, Any]:
    """The record's ID in words: each part with what it says and what the record holds
    beside it, and sentences for the ID rules."""
    raw = (sec or {}).get("citizen_id_raw")
    normalized = scheme.normalize(raw) if scheme is not None and raw else None
    parts = []
    reason = None
    if normalized is not None and scheme is not None:
        reason = scheme.parse(normalized).reason
        for p in scheme.explain(normalized):
            held = text((sec or {}).get(p.field)) if p.field else None
            parts.append(
                {
                    "positions": p.positions,
                    "label": p.label,
                    "digits": p.digits,
                    "meaning": p.meaning,
                    "text": p.text(),
                    "field": p.field,
                    "value": p.value,
                    "record_value": held,
                    "differs": _part_differs(p.field, p.value, held),
                }
            )
    return {
        "scheme": scheme.name if scheme else None,
        "parts": parts,
        "sentences": _sentences(rule, parts, reason, normalized is not None),
    }


def _sentences(rule: str, parts: list[dict], reason: str | None, has_id: bool) -> list[str]:
    if rule == "ID_MISSING":
        return [
            "The sector record carries no citizen ID, so the hub cannot match it to the registry.",
            "The registry candidates below share its birth date, its name within a year of "
            "its birth, or its name in its province; accepting one gives the record an ID.",
        ]
    if rule == "ID_ATTRIBUTES_INCONSISTENT":
        out = [
            "The record's own ID encodes facts about its holder; the record disagrees "
            "with some of them:"
        ]
        for p in parts:
            if p["differs"]:
                out.append(f"{p['text']}, but the record holds {p['record_value']}.")
        if len(out) == 1:
            out.append("(the record has changed since: it agrees with its ID now)")
        return out
    if rule == "ID_INVALID":
        return [f"The ID cannot be read: {reason or 'it does not fit the ID scheme'}."]
    if rule == "ID_LEGACY":
        return [
            "The record carries a legacy ID number; the registry holds the citizen under the "
            "current ID shown below, which the record should carry instead."
        ]
    if rule == "ID_NOT_IN_REGISTRY" and has_id:
        return [
            "The ID is well formed but no registry citizen holds it; the candidates below "
            "may be the person the record means."
        ]
    return []

"""A small store in the shape the reconciler leaves it: registry replica, sector records,
mismatches with history, stats snapshots and connector state — plus one user per role."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Engine, insert, select

from hub.api.users import create_user
from hub.db.models import (
    ConnectorState,
    Mismatch,
    MismatchHistory,
    RegistryCitizen,
    SectorRecord,
    StatsSnapshot,
)

PASSWORD = "correct horse battery"
NOW = datetime.now(UTC)

REGISTRY = [
    # citizen_id, legacy_id, full_name, dob, sex, province, date_of_death
    ("001090001234", "012345678", "Nguyễn Văn An", date(1990, 5, 1), "M", "01", None),
    ("079185005678", None, "Trần Thị Bích Ngọc", date(1985, 2, 3), "F", "79", None),
    ("001070009999", None, "Lê Văn Dũng", date(1970, 7, 7), "M", "01", date(2020, 1, 1)),
    ("29001011234567", None, "محمد عبد الله", date(1990, 1, 1), "M", "88", None),
    ("048095001111", None, "Phạm Thị Hoa", date(1995, 9, 9), "F", "48", None),
]

SECTOR = [
    # sector, record_key, citizen_id_raw, name, dob, sex, province, status, last_activity, verified
    (
        "tax",
        "MST0001",
        "001090001234",
        "Nguyễn Văn Anh",
        date(1990, 5, 1),
        "M",
        "01",
        "active",
        date(2024, 3, 1),
        False,
    ),
    (
        "tax",
        "MST0002",
        "079185005678",
        "Trần Thị Bích Ngọc",
        date(1985, 3, 2),
        "F",
        "79",
        "active",
        date(2024, 1, 1),
        False,
    ),
    (
        "tax",
        "MST0003",
        "001070009999",
        "Lê Văn Dũng",
        date(1970, 7, 7),
        "M",
        "01",
        "active",
        date(2023, 6, 1),
        False,
    ),
    ("tax", "MST0004", None, "Phạm Thị Hoa", date(1995, 9, 9), "F", "48", "active", None, False),
    (
        "tax",
        "MST0005",
        "048095001111",
        "Phạm Thị Hoa",
        date(1995, 9, 9),
        "F",
        "48",
        "active",
        None,
        True,
    ),
    (
        "banking",
        "ACC-0001",
        "29001011234567",
        "أحمد علي",
        date(1990, 1, 1),
        "M",
        "88",
        "active",
        None,
        False,
    ),
    (
        "banking",
        "ACC-0002",
        "999999999999",
        "Hoàng Văn Minh",
        date(1980, 1, 1),
        "M",
        "01",
        "active",
        None,
        False,
    ),
    (
        "banking",
        "ACC-0003",
        "001090001234",
        "NGUYEN VAN AN",
        date(1990, 5, 1),
        "M",
        "01",
        "active",
        None,
        True,
    ),
]


@dataclass
class Seeded:
    """Ids of the seeded mismatches by a short name, and one API token per role."""

    ids: dict[str, int] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)


MISMATCHES = [
    # name, sector, record_key, citizen_id, rule, field, severity, status, resolution,
    # sector_value, registry_value, score, age_days, assignee, suggestions
    (
        "name",
        "tax",
        "MST0001",
        "001090001234",
        "NAME_MISMATCH",
        "full_name",
        "low",
        "open",
        None,
        "Nguyễn Văn Anh",
        "Nguyễn Văn An",
        0.93,
        3,
        None,
        None,
    ),
    (
        "dob",
        "tax",
        "MST0002",
        "079185005678",
        "DOB_MISMATCH",
        "date_of_birth",
        "medium",
        "open",
        None,
        "1985-03-02",
        "1985-02-03",
        None,
        40,
        None,
        None,
    ),
    (
        "deceased",
        "tax",
        "MST0003",
        "001070009999",
        "DECEASED_ACTIVE",
        "status",
        "critical",
        "in_review",
        None,
        "active",
        "2020-01-01",
        None,
        10,
        "steward",
        None,
    ),
    (
        "missing",
        "tax",
        "MST0004",
        None,
        "ID_MISSING",
        "citizen_id",
        "medium",
        "open",
        None,
        None,
        None,
        None,
        100,
        None,
        [
            {
                "citizen_id": "048095001111",
                "full_name": "Phạm Thị Hoa",
                "date_of_birth": "1995-09-09",
                "score": 0.9987,
                "parts": {
                    "name": 1.0,
                    "name_level": "equal",
                    "birth_date": "day_month_swapped",
                    "sex": "same",
                    "province": "same",
                },
                "found_by": ["birth_date_swapped"],
                "why": "name 1.00 · birth date day/month swapped · same sex · same province",
            }
        ],
    ),
    (
        "arabic",
        "banking",
        "ACC-0001",
        "29001011234567",
        "NAME_MISMATCH",
        "full_name",
        "high",
        "open",
        None,
        "أحمد علي",
        "محمد عبد الله",
        0.31,
        1,
        None,
        None,
    ),
    (
        "unknown_id",
        "banking",
        "ACC-0002",
        "999999999999",
        "ID_NOT_IN_REGISTRY",
        "citizen_id",
        "high",
        "open",
        None,
        "999999999999",
        None,
        None,
        5,
        None,
        [],
    ),
    (
        "fixed",
        "tax",
        "MST0005",
        "048095001111",
        "PROVINCE_MISMATCH",
        "province_code",
        "low",
        "resolved",
        "fixed_at_source",
        "47",
        "48",
        None,
        60,
        None,
        None,
    ),
    (
        "dismissed",
        "banking",
        "ACC-0003",
        "001090001234",
        "NAME_MISMATCH",
        "full_name",
        "low",
        "dismissed",
        "false_positive",
        "NGUYEN VAN AN",
        "Nguyễn Văn An",
        0.99,
        20,
        None,
        None,
    ),
]


def seed(engine: Engine) -> Seeded:
    """Fill an empty, migrated hub database; returns what the tests refer to."""
    out = Seeded()
    with engine.begin() as conn:
        conn.execute(
            insert(RegistryCitizen),
            [
                dict(
                    citizen_id=c,
                    legacy_id=legacy,
                    full_name=name,
                    name_folded=name.lower(),
                    date_of_birth=dob,
                    sex=sex,
                    province_code=prov,
                    date_of_death=dod,
                    attributes={},
                )
                for c, legacy, name, dob, sex, prov, dod in REGISTRY
            ],
        )
        conn.execute(
            insert(SectorRecord),
            [
                dict(
                    sector=s,
                    record_key=k,
                    citizen_id_raw=cid,
                    citizen_id=cid if cid and cid != "999999999999" else cid,
                    full_name=name,
                    name_folded=name.lower(),
                    date_of_birth=dob,
                    sex=sex,
                    province_code=prov,
                    status=status,
                    last_activity_date=last,
                    verified=verified,
                    attributes={"branch": "Hà Nội"},
                )
                for s, k, cid, name, dob, sex, prov, status, last, verified in SECTOR
            ],
        )
        for (
            name,
            sector,
            key,
            cid,
            rule,
            fld,
            sev,
            status,
            resolution,
            sv,
            rv,
            score,
            age,
            assignee,
            suggestions,
        ) in MISMATCHES:
            first = NOW - timedelta(days=age, hours=1)
            mid = conn.scalar(
                insert(Mismatch)
                .values(
                    sector=sector,
                    record_key=key,
                    rule=rule,
                    field=fld,
                    severity=sev,
                    status=status,
                    resolution=resolution,
                    citizen_id=cid,
                    province_code=REGISTRY_PROVINCE.get(cid, "01"),
                    sector_value=sv,
                    registry_value=rv,
                    score=score,
                    suggestions=suggestions,
                    values_hash=f"h-{name}",
                    assignee=assignee,
                    first_seen_at=first,
                    last_seen_at=NOW - timedelta(hours=1),
                    resolved_at=NOW if status in ("resolved", "dismissed") else None,
                )
                .returning(Mismatch.id)
            )
            out.ids[name] = mid
            conn.execute(
                insert(MismatchHistory).values(
                    mismatch_id=mid,
                    at=first,
                    actor="reconciler",
                    action="opened",
                    from_status=None,
                    to_status="open",
                    note="rule fails",
                )
            )
        for sector, seen in (("tax", 5), ("banking", 3)):
            for i in range(5):
                conn.execute(
                    insert(StatsSnapshot).values(
                        at=NOW - timedelta(days=5 - i),
                        sector=sector,
                        records_seen=seen,
                        records_verified=min(i // 2, seen),
                        open_by_rule={"NAME_MISMATCH": 3 - i // 2, "DOB_MISMATCH": 1},
                    )
                )
        conn.execute(
            insert(ConnectorState).values(
                name="tax",
                capture="logical",
                state="running",
                position="0/16B3748",
                snapshot_done=True,
                rows_captured=5,
                lag_bytes=1024,
                lag_seconds=0.5,
                last_event_at=NOW,
                heartbeat_at=NOW,
            )
        )
        conn.execute(
            insert(ConnectorState).values(
                name="banking", capture="poll", state="paused", rows_captured=3
            )
        )
    for role in ("viewer", "steward", "approver", "operator", "admin"):
        _, token = create_user(engine, role, role, PASSWORD)
        out.tokens[role] = token
    return out


REGISTRY_PROVINCE = {c: prov for c, _, _, _, _, prov, _ in REGISTRY}


def history(engine: Engine, mismatch_id: int) -> list[tuple]:
    """(actor, action, from_status, to_status, note) of a mismatch, oldest first."""
    h = MismatchHistory
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                select(h.actor, h.action, h.from_status, h.to_status, h.note)
                .where(h.mismatch_id == mismatch_id)
                .order_by(h.id)
            )
        ]

"""Extra store rows for the compare and citizen-page tests, added to a module's own clone of
the seeded database: a duplicate-ID group, a legacy ID, an ID whose encoded attributes the
record contradicts, and a second candidate whose birth date, sex and province differ."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import Engine, insert, update

from hub.db.models import Mismatch, SectorRecord
from hub.testing import Servers
from tests.integration.api.conftest import Api, Template, _api

NOW = datetime.now(UTC)
AN = "001090001234"  # Nguyễn Văn An: tax MST0001, banking ACC-0003; legacy 012345678
NGOC = "079185005678"  # Trần Thị Bích Ngọc, F, 1985-02-03, province 79
SECTOR_ONLY = "048199000777"  # well formed, held by labour LAB-03 only


def _record(sector, key, raw, name, dob, sex, province, status="active") -> dict:
    return dict(
        sector=sector,
        record_key=key,
        citizen_id_raw=raw,
        citizen_id=raw.replace(" ", ""),
        full_name=name,
        name_folded=name.lower(),
        date_of_birth=dob,
        sex=sex,
        province_code=province,
        status=status,
        verified=False,
        attributes={},
    )


def _mismatch(sector, key, cid, rule, fld, severity, sv, rv, context=None) -> dict:
    return dict(
        sector=sector,
        record_key=key,
        rule=rule,
        field=fld,
        severity=severity,
        status="open",
        citizen_id=cid,
        province_code="01",
        sector_value=sv,
        registry_value=rv,
        values_hash=f"h-{key}-{rule}",
        first_seen_at=NOW,
        last_seen_at=NOW,
    )


def add_cases(engine: Engine, ids: dict[str, int]) -> dict[str, int]:
    """Insert the extra rows; returns ``ids`` with the new mismatches by short name."""
    out = dict(ids)
    with engine.begin() as conn:
        conn.execute(
            insert(SectorRecord),
            [
                _record("tax", "MST0006", "001 090 001 234", "Nguyễn Văn Ân", date(1990, 1, 5),
                        "M", "01"),
                _record("labour", "LAB-01", "012345678", "Nguyễn Văn An", date(1990, 5, 1),
                        "M", "01"),
                _record("labour", "LAB-02", NGOC, "Trần Thị Bích Ngọc", date(1990, 2, 3),
                        "M", "79"),
                _record("labour", "LAB-03", SECTOR_ONLY, "Võ Thị Lan", None, "F", "48"),
            ],
        )  # fmt: skip
        for name, row in (
            ("duplicate", _mismatch("tax", "MST0001", AN, "DUPLICATE_ID", "citizen_id", "high",
                                    AN, None)),
            ("legacy", _mismatch("labour", "LAB-01", "012345678", "ID_LEGACY", "citizen_id",
                                 "low", "012345678", AN)),
            ("attributes", _mismatch("labour", "LAB-02", NGOC, "ID_ATTRIBUTES_INCONSISTENT",
                                     "citizen_id", "medium", "born 1990; sex M",
                                     "ID encodes born 1985; sex F")),
        ):  # fmt: skip
            out[name] = conn.scalar(insert(Mismatch).values(**row).returning(Mismatch.id))
        # The ID_MISSING record gets a second candidate that differs in every part.
        second = {"citizen_id": NGOC, "full_name": "Trần Thị Bích Ngọc", "score": 0.07,
                  "why": "name 0.40 · different birth date"}  # fmt: skip
        missing = conn.scalar(
            update(Mismatch)
            .where(Mismatch.id == ids["missing"])
            .values(suggestions=Mismatch.suggestions.op("||")([second]))
            .returning(Mismatch.id)
        )
        assert missing == ids["missing"]
    return out


@pytest.fixture(scope="module")
def cases(servers: Servers, api_template: Template) -> Iterator[tuple[Api, dict[str, int]]]:
    """One database per module: the seeded store plus :func:`add_cases` (read-only tests;
    audit rows pile up)."""
    for api in _api(servers, api_template):
        yield api, add_cases(api.engine, api.ids)

"""The generator's working records, and the calendar they are dated in: a registry citizen,
a sector record in canonical terms, the demo's "today" and its activity windows."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime
from typing import Any

AS_OF = date(2025, 6, 30)
"""The demo's "today": activity dates never pass it, so the data does not depend on the clock."""

FIRST_BIRTH_YEAR, LAST_BIRTH_YEAR = 1930, 2006

ACTIVITY_FROM: dict[str, date] = {
    "tax": date(2023, 1, 1),
    "banking": date(2024, 1, 1),
    "labour": date(2021, 1, 1),
    "construction": date(2012, 1, 1),
}
"""Start of the activity window of living citizens' sector records: last filing,
transaction, social-insurance payment, permit issue."""


class Citizen:
    """A registry citizen as generated (canonical values), and the sectors holding a record."""

    __slots__ = (
        "citizen_id", "legacy_id", "full_name", "date_of_birth", "sex", "province_code",
        "address", "date_of_death", "updated_at", "sectors", "reserved",
    )  # fmt: skip

    def __init__(self) -> None:
        self.legacy_id: str | None = None
        self.date_of_death: date | None = None
        self.sectors: list[str] = []
        # "date_of_birth" or "sex" when the registry itself disagrees with the citizen's ID;
        # such a citizen's sector records are left clean copies of the registry.
        self.reserved: str | None = None


class Record:
    """A sector record in canonical terms; ``full_name`` is already in the sector's spelling."""

    __slots__ = (
        "key", "citizen", "citizen_id", "full_name", "date_of_birth", "sex", "province_code",
        "last_activity_date", "status", "updated_at", "extra", "injected",
    )  # fmt: skip

    def __init__(self, key: str, citizen: Citizen) -> None:
        self.key = key
        self.citizen = citizen
        self.citizen_id: str | None = citizen.citizen_id
        self.full_name = citizen.full_name
        self.date_of_birth = citizen.date_of_birth
        self.sex = citizen.sex
        self.province_code = citizen.province_code
        self.extra: dict[str, Any] = {}
        self.injected = False


_EPOCH = date(1970, 1, 1).toordinal()


def stamp(day: date, rng: random.Random) -> datetime:
    """A moment during office hours (UTC) on ``day``: when the record was last written."""
    return datetime.fromtimestamp(
        (day.toordinal() - _EPOCH) * 86400 + 8 * 3600 + int(rng.random() * 36000), UTC
    )

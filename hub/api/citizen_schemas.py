"""Response models of the comparison on a mismatch's page and of a citizen's page."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field


class CompareCell(BaseModel):
    field: str
    sector_value: str | None
    other_value: str | None = Field(description="The registry's (or other record's) value.")
    differs: bool = Field(description="Both sides hold a value and the values differ.")
    parts: list[Literal["year", "month", "day"]] = Field(
        description="For a differing date, which of its parts differ."
    )


class GroupCell(BaseModel):
    field: str
    value: str | None
    differs: bool = Field(description="Differs from the value of the mismatch's own record.")
    parts: list[Literal["year", "month", "day"]]


class GroupRecord(BaseModel):
    sector: str
    record_key: str
    this: bool = Field(description="The record the mismatch is about.")
    fields: list[GroupCell]


class DuplicateGroup(BaseModel):
    """Every sector record carrying the ID (a ``DUPLICATE_ID`` group), side by side."""

    fields: list[str]
    records: list[GroupRecord]
    more: bool = Field(description="More records carry the ID than are listed.")


class CandidateCompare(BaseModel):
    citizen_id: str | None
    full_name: str | None
    score: float | None
    why: str | None
    in_registry: bool
    fields: list[CompareCell] = Field(description="Name, birth date, sex and province.")


class SuggestedRecord(BaseModel):
    """For ``ID_LEGACY``: the registry record of the current ID the hub suggests."""

    citizen_id: str
    legacy_id: str | None = None
    in_registry: bool
    fields: list[CompareCell]


class IdPartOut(BaseModel):
    positions: str = Field(description="Which digits, e.g. `digits 1–3`.")
    label: str
    digits: str
    meaning: str
    text: str = Field(description="The part in words: `digits 1–3: province 001 → Hà Nội`.")
    field: str | None = Field(description="The record field the part speaks about.")
    value: str | None = Field(description="What the part says about that field.")
    record_value: str | None = Field(description="What the record holds in that field.")
    differs: bool | None = Field(description="The record disagrees (null: nothing to compare).")


class IdExplanation(BaseModel):
    scheme: str | None
    parts: list[IdPartOut]
    sentences: list[str] = Field(description="The ID rules explained in words.")


class Compare(BaseModel):
    """What the mismatch's rule asks a steward to compare."""

    group: DuplicateGroup | None
    suggested: SuggestedRecord | None
    candidates: list[CandidateCompare]
    id: IdExplanation
    citizen_id: str | None = Field(description="The ID of the citizen page to open.")


class CitizenMismatch(BaseModel):
    id: int
    rule: str
    field: str
    severity: str
    status: str
    sector_value: str | None
    registry_value: str | None
    first_seen_at: datetime


class CitizenRecord(BaseModel):
    sector: str
    record_key: str
    relation: Literal["carries", "legacy", "candidate"] = Field(
        description="`carries` the ID, carries the citizen's `legacy` number, or was "
        "suggested for the citizen as a `candidate`."
    )
    record: dict[str, Any]
    fields: list[CompareCell] = Field(description="Beside the registry record's values.")
    open_mismatches: list[CitizenMismatch]


class CitizenOut(BaseModel):
    citizen_id: str
    id: IdExplanation
    registry_record: dict[str, Any] | None
    records: list[CitizenRecord]
    more: bool = Field(description="More records relate to the citizen than are listed.")
    corrections: list[dict[str, Any]] = Field(
        description="Corrections proposed for the citizen's records, or proposing that a "
        "record carry this ID (newest first; the fields of GET /api/v1/corrections/{id})."
    )

"""Request and response bodies of the REST API: the shapes /api/v1/openapi.json publishes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from hub.api.citizen_schemas import Compare
from hub.api.connectors import ACTIONS as CONNECTOR_ACTIONS
from hub.api.queue.actions import MAX_BULK, MAX_BULK_IDS
from hub.api.queue.pages import SORTS
from hub.api.users import NAME_PATTERN
from hub.db.models import ROLES
from hub.vocabulary import MISMATCH_STATUSES, RULE_CODES, SEVERITIES
from reconciliation.lifecycle import STEWARD_ACTIONS

# Text that PostgreSQL can store: no NUL (lone surrogates are refused by the app's handler).
SAFE_TEXT = r"^[^\x00]*$"
Note = Annotated[str, StringConstraints(max_length=4000, pattern=SAFE_TEXT)]


def _char_class(chars: list[str]) -> str:
    return "".join(f"\\u{ord(c):04x}" for c in chars)


# What str.strip() removes, spelled out: the regex engines that read the pattern (pydantic's,
# Python's, the client's) do not agree on what \s means.
_SPACES = _char_class([chr(c) for c in range(0x10000) if chr(c).isspace()])
# A note or reason that is required: no NUL and at least one character that is not blank.
NONBLANK_TEXT = f"^[^\\u0000]*[^\\u0000{_SPACES}][^\\u0000]*$"
RequiredNote = Annotated[
    str, StringConstraints(min_length=1, max_length=4000, pattern=NONBLANK_TEXT)
]
UserName = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]

Rule = Literal[RULE_CODES]  # type: ignore[valid-type]
Severity = Literal[SEVERITIES]  # type: ignore[valid-type]
Status = Literal[MISMATCH_STATUSES]  # type: ignore[valid-type]
Role = Literal[ROLES]  # type: ignore[valid-type]
ConnectorAction = Literal[CONNECTOR_ACTIONS]  # type: ignore[valid-type]
MismatchAction = Literal[tuple(STEWARD_ACTIONS)]  # type: ignore[valid-type]


def _integral(value: Any) -> Any:
    # JSON Schema's integer includes 5.0; the models are strict otherwise (no true, no "5").
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# The largest integer every JSON reader holds exactly (a double's 53 bits): ids in a body
# stay below it, so 9223372036854775807 and 9.223372036854776e18 never mean the same.
MAX_JSON_INT = 2**53 - 1
JsonInt = BeforeValidator(_integral)  # Annotated[int, Field(...constraints), JsonInt]


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Error(BaseModel):
    """Every error answer: the reason, in words."""

    detail: str


class MismatchItem(_Out):
    id: int
    sector: str
    record_key: str
    citizen_id: str | None = Field(description="The citizen ID as the sector holds it.")
    rule: str
    field: str
    severity: str
    status: str
    resolution: str | None
    dismissal_code: str | None = Field(
        description="The reason code of a dismissal (null: not dismissed, or dismissed "
        "before codes existed)."
    )
    sector_value: str | None
    registry_value: str | None
    score: float | None
    province_code: str | None
    assignee: str | None
    first_seen_at: datetime
    last_seen_at: datetime
    resolved_at: datetime | None
    updated_at: datetime
    age_days: int | None = Field(None, description="Whole days since first seen.")
    due_at: datetime | None = Field(
        None, description="First seen plus the due days of its sector and severity."
    )
    overdue: bool | None = Field(None, description="Open or in review and past due_at.")


class MismatchPage(BaseModel):
    items: list[MismatchItem]
    total: int = Field(
        description="Mismatches matching the filters (on every page): exact up to 10000 "
        "(total_exact), beyond it the planner's estimate."
    )
    total_exact: bool
    next_cursor: str | None = Field(description="Pass as `after` for the next page.")


class RuleCount(BaseModel):
    rule: str
    count: int
    exact: bool


class RuleCounts(BaseModel):
    counts: list[RuleCount]


class FieldComparison(BaseModel):
    field: str
    sector_value: str | None
    registry_value: str | None
    differs: bool = Field(description="Both sides hold a value and the values differ.")
    flagged: bool = Field(description="An open or in-review mismatch of the record names it.")


class HistoryEntry(_Out):
    id: int
    at: datetime
    actor: str
    action: str
    from_status: str | None
    to_status: str | None
    note: str | None
    dismissal_code: str | None = None


class RelatedMismatch(BaseModel):
    id: int
    rule: str
    field: str
    severity: str
    status: str


class MismatchDetail(BaseModel):
    mismatch: MismatchItem
    sector_record: dict[str, Any] | None
    registry_record: dict[str, Any] | None
    fields: list[FieldComparison]
    suggestions: list[dict[str, Any]]
    compare: Compare
    related: list[RelatedMismatch]
    history: list[HistoryEntry]


class AssignBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    assignee: UserName | None = Field(None, description="A steward's name; default yourself.")
    note: Note | None = None


class NoteBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    note: Note | None = None


class RequiredNoteBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    note: RequiredNote = Field(description="Not blank.")


# A configured dismissal reason code (``queue.dismissal_reasons``); checked against the
# configuration by the action, which names the allowed codes.
ReasonCode = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=SAFE_TEXT)]


class DismissBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    reason_code: ReasonCode = Field(
        description="One of the configured dismissal reason codes (GET /api/v1/stats lists "
        "them); an unknown code is refused with the allowed ones."
    )
    reason: Note | None = Field(
        None, description="Why it is a false positive, in words; required with code `other`."
    )


class FilterBody(BaseModel):
    """The list filters, for bulk actions over a filter."""

    model_config = ConfigDict(extra="forbid", strict=True)
    sector: list[Annotated[str, StringConstraints(max_length=40)]] = []
    rule: list[Rule] = []
    severity: list[Severity] = []
    status: list[Status] = []
    province: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9]{1,16}$")] | None = None
    min_age_days: Annotated[int, Field(ge=0, le=36500), JsonInt] | None = None
    max_age_days: Annotated[int, Field(ge=0, le=36500), JsonInt] | None = None
    q: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=SAFE_TEXT)] | None = (
        None
    )
    assignee: UserName | None = None
    overdue: bool | None = None
    name: (
        Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=SAFE_TEXT)] | None
    ) = None
    dismissal_code: list[ReasonCode] = Field(
        [], description="Dismissed with these reason codes (`unspecified`: without one)."
    )


def _bulk_schema(schema: dict[str, Any]) -> None:
    """Publish what ``BulkBody`` checks: exactly one of ``ids`` and ``filter`` (neither may
    be null), a reason code to dismiss and a note to comment, not blank."""
    props = schema["properties"]
    for name in ("ids", "filter"):
        props[name].pop("default", None)
    schema["oneOf"] = [{"required": ["ids"]}, {"required": ["filter"]}]
    schema["allOf"] = [
        {
            "if": {"properties": {"action": {"const": action}}, "required": ["action"]},
            "then": {
                "required": [field],
                "properties": {field: {"type": "string", "pattern": NONBLANK_TEXT}},
            },
        }
        for action, field in (("dismiss", "reason_code"), ("comment", "note"))
    ]


class BulkBody(BaseModel):
    """Exactly one of ``ids`` and ``filter``. ``reason_code`` is required to dismiss (with
    ``reason`` when the code asks for words), ``note`` to comment; ``assignee`` applies to
    assign (default yourself)."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra=_bulk_schema)
    action: MismatchAction
    # Not Optional: null is refused; absent is None (pydantic does not validate defaults).
    ids: Annotated[
        list[Annotated[int, Field(ge=1, le=MAX_JSON_INT), JsonInt]],
        Field(min_length=1, max_length=MAX_BULK_IDS),
    ] = None  # type: ignore[assignment]
    filter: FilterBody = None  # type: ignore[assignment]
    limit: Annotated[int, Field(ge=1, le=MAX_BULK), JsonInt] = MAX_BULK
    note: Note | None = None
    reason: Note | None = None
    reason_code: ReasonCode | None = None
    assignee: UserName | None = None

    @model_validator(mode="after")
    def _one_target(self) -> BulkBody:
        if (self.ids is None) == (self.filter is None):
            raise ValueError("give exactly one of ids and filter")
        return self


class BulkResultOut(BaseModel):
    changed: list[int]
    skipped: list[dict[str, Any]]
    more: bool = Field(description="Filter mode: more matching mismatches remain; run again.")


class SeriesPoint(BaseModel):
    at: datetime
    records_seen: int
    records_verified: int
    verified_ratio: float | None
    open_by_rule: dict[str, int]


class SectorStatsOut(BaseModel):
    sector: str
    records_seen: int
    records_verified: int
    verified_ratio: float | None
    open_total: int
    open_by_rule: dict[str, int]
    dismissed_by_code: dict[str, int] = Field(
        description="Dismissed mismatches now, by reason code (`unspecified`: without one)."
    )
    series: list[SeriesPoint]
    overdue: int = Field(0, description="Open or in review past their due days, now.")


class DismissalReasonOut(BaseModel):
    code: str
    label: str
    note_required: bool


class StatsOut(BaseModel):
    computed_at: datetime
    sectors: list[SectorStatsOut]
    dismissed_by_code: dict[str, int] = Field(
        description="Dismissed mismatches now, by reason code, over every sector."
    )
    dismissal_reasons: list[DismissalReasonOut] = Field(
        description="The configured dismissal reason codes, in the order offered."
    )


class PendingRequest(BaseModel):
    id: int
    action: str
    requested_by: str
    requested_at: datetime


class ConnectorOut(BaseModel):
    name: str
    capture: str | None
    state: str
    reported_state: str | None = None
    heartbeat_age_s: float | None = None
    report_age_s: float | None = None
    configured: bool
    position: str | None
    snapshot_done: bool | None
    snapshot_progress: dict[str, Any] | None
    snapshot: dict[str, Any] | None = None
    rows_captured: int | None
    lag_bytes: int | None
    lag_seconds: float | None
    last_event_at: datetime | None
    heartbeat_at: datetime | None
    error: str | None
    updated_at: datetime | None
    pending_requests: list[PendingRequest]


class ConnectorRequestOut(BaseModel):
    id: int
    connector: str
    action: str
    requested_by: str
    requested_at: datetime


class AuditEntry(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str
    target_type: str | None
    target_id: str | None
    detail: dict[str, Any] | None


class AuditPage(BaseModel):
    items: list[AuditEntry]
    next_after: int | None = Field(description="Pass as `after` for the next (older) page.")


class UserOut(_Out):
    id: int
    name: str
    role: str
    disabled: bool
    has_password: bool
    created_at: datetime
    tokens: int


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    name: UserName
    role: Role
    password: (
        Annotated[str, StringConstraints(min_length=8, max_length=1024, pattern=SAFE_TEXT)] | None
    ) = None


class UserCreated(BaseModel):
    user: UserOut
    token: str = Field(description="The new API token: shown this once, stored only hashed.")


class TokenOut(BaseModel):
    token: str = Field(description="The new API token: shown this once, stored only hashed.")


class Me(BaseModel):
    name: str
    role: str
    permissions: list[str]


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = {}


SORT_NAMES = tuple(SORTS)


class SavedQuery(BaseModel):
    """A queue page's filter, one value per field as the page takes it (empty: any;
    ``status`` left out is the working queue, open and in review; ``all`` every status)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    sector: Annotated[str, StringConstraints(max_length=40)] | None = None
    rule: Rule | None = None
    severity: Severity | None = None
    status: Status | Literal["all"] | None = None
    province: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9]{1,16}$")] | None = None
    min_age_days: Annotated[int, Field(ge=0, le=36500), JsonInt] | None = None
    max_age_days: Annotated[int, Field(ge=0, le=36500), JsonInt] | None = None
    q: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=SAFE_TEXT)] | None = (
        None
    )
    assignee: UserName | None = Field(None, description="A user name; `me` is whoever uses it.")
    overdue: bool | None = None
    name: (
        Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=SAFE_TEXT)] | None
    ) = None
    dismissal_code: ReasonCode | None = None
    sort: Literal[tuple(SORT_NAMES)] | None = None  # type: ignore[valid-type]
    order: Literal["asc", "desc"] | None = None


class SavedFilterIn(BaseModel):
    """A queue filter to keep under a name (unique per user)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    name: Annotated[str, StringConstraints(min_length=1, max_length=80, pattern=SAFE_TEXT)]
    filter: SavedQuery


class SavedFilterOut(BaseModel):
    id: int
    name: str
    query: str = Field(
        description="The queue page's query string: open `/queue?<query>` to use it."
    )
    created_at: datetime

"""Which mismatches a queue view covers (:class:`MismatchFilter`, checked against the
vocabulary) and the columns of a list item and an export row (ITEM_FIELDS)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, and_, func, literal, not_, or_, select
from sqlalchemy.sql import ColumnElement

from hub.api.errors import Unprocessable
from hub.config import DEFAULT_DISMISSAL_REASONS, UNSPECIFIED_DISMISSAL
from hub.db.models import Mismatch
from hub.vocabulary import MISMATCH_STATUSES, RULE_CODES, SEVERITIES

M = Mismatch

# Columns of a list item / CSV row, in order (SPEC §6 plus what a steward needs to triage).
ITEM_FIELDS = (
    "id",
    "sector",
    "record_key",
    "citizen_id",
    "rule",
    "field",
    "severity",
    "status",
    "resolution",
    "dismissal_code",
    "sector_value",
    "registry_value",
    "score",
    "province_code",
    "assignee",
    "first_seen_at",
    "last_seen_at",
    "resolved_at",
    "updated_at",
)
ITEM_COLUMNS = [getattr(M, f) for f in ITEM_FIELDS]


def as_item(row: Any) -> dict[str, Any]:
    """A list item from a row of ITEM_COLUMNS."""
    return dict(zip(ITEM_FIELDS, row, strict=True))


@dataclass(frozen=True)
class MismatchFilter:
    """Which mismatches a list, count, bulk action or export covers. Empty means any.

    ``q`` is a prefix of the record key or of the citizen ID as the sector holds it;
    ages count whole days since the mismatch was first seen. ``dismissal_code`` keeps the
    dismissed mismatches of those reason codes (``unspecified``: dismissed without one).
    """

    sector: tuple[str, ...] = ()
    rule: tuple[str, ...] = ()
    severity: tuple[str, ...] = ()
    status: tuple[str, ...] = ()
    province: str | None = None
    min_age_days: int | None = None
    max_age_days: int | None = None
    q: str | None = None
    assignee: str | None = None
    overdue: bool | None = None
    name: str | None = None
    # The due days ``overdue`` is judged by (hub.api.queue.due); not a filter value itself.
    due: tuple[tuple[str | None, str, int], ...] = field(default=(), compare=False, repr=False)
    dismissal_code: tuple[str, ...] = ()
    # How the name filter is searched (hub.api.queue.names.name_condition): set by a page
    # whose name matches are estimated many; not a filter value itself.
    name_broad: bool = field(default=False, compare=False, repr=False)
    # The words of the name the index is asked for (the uncommon ones; None: all of them),
    # the whole name then checked on those records: set by a page, as ``name_broad``.
    name_index_words: tuple[str, ...] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def of(cls, **values: Any) -> MismatchFilter:
        """The filter of request values (lists become tuples)."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

    def conditions(self, *, without_rule: bool = False) -> list[ColumnElement[bool]]:
        cond: list[ColumnElement[bool]] = []
        if self.status:
            cond.append(_in(M.status, self.status))
        if self.sector:
            cond.append(_in(M.sector, self.sector))
        if self.rule and not without_rule:
            cond.append(_in(M.rule, self.rule))
        if self.severity:
            cond.append(_in(M.severity, self.severity))
        if self.province:
            cond.append(M.province_code == self.province)
        if self.assignee:
            cond.append(M.assignee == self.assignee)
        if self.min_age_days is not None:
            cond.append(M.first_seen_at <= func.now() - _days(self.min_age_days))
        if self.max_age_days is not None:
            cond.append(M.first_seen_at > func.now() - _days(self.max_age_days + 1))
        if self.dismissal_code:
            cond.append(_dismissed_with(self.dismissal_code))
        if self.q:
            # Prefix match served by the varchar_pattern_ops indexes (migration 0004).
            pattern = _like_escape(self.q) + "%"
            cond.append(
                or_(
                    M.record_key.like(pattern, escape="\\"),
                    M.citizen_id.like(pattern, escape="\\"),
                )
            )
        cond.extend(self._ergonomic_conditions())
        return cond

    def _ergonomic_conditions(self) -> list[ColumnElement[bool]]:
        """The overdue and name filters (hub.api.queue.due, hub.api.queue.names)."""
        from hub.api.queue import due, names  # they build on this module

        cond: list[ColumnElement[bool]] = []
        if self.overdue is not None:
            over = due.overdue_condition(self.due)
            cond.append(over if self.overdue else not_(over))
        if self.name:
            cond.append(
                names.name_condition(
                    self.name, broad=self.name_broad, index_words=self.name_index_words
                )
            )
        return cond

    def params(self) -> dict[str, Any]:
        """The filter as query parameters (for links and the audit log); empty ones dropped."""
        out: dict[str, Any] = {}
        for k, v in self.__dict__.items():
            if k in ("due", "name_broad", "name_index_words") or v in (None, (), ""):
                continue
            out[k] = list(v) if isinstance(v, tuple) else v
        return out

    def is_empty(self) -> bool:
        return not self.params()


def _in(col: ColumnElement, values: Sequence[str]) -> ColumnElement[bool]:
    return col == values[0] if len(values) == 1 else col.in_(values)


def _dismissed_with(codes: Sequence[str]) -> ColumnElement[bool]:
    # status = 'dismissed' lets the planner take the partial index of migration 0015.
    named = [c for c in codes if c != UNSPECIFIED_DISMISSAL]
    either = []
    if named:
        either.append(_in(M.dismissal_code, named))
    if len(named) < len(codes):
        either.append(M.dismissal_code.is_(None))
    return and_(M.status == "dismissed", either[0] if len(either) == 1 else or_(*either))


def _days(n: int) -> ColumnElement:
    return func.make_interval(0, 0, 0, n)


def _like_escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def check_filter(
    conn: Connection,
    f: MismatchFilter,
    known_sectors: Sequence[str],
    known_codes: Sequence[str] = tuple(r.code for r in DEFAULT_DISMISSAL_REASONS),
) -> None:
    """Refuse values no mismatch can have (Unprocessable), so a typo is not an empty page.
    An age range with min_age_days above max_age_days is allowed: it matches nothing.
    ``known_codes`` are the configured dismissal reason codes."""
    for name, values, known in (
        ("rule", f.rule, RULE_CODES),
        ("severity", f.severity, SEVERITIES),
        ("status", f.status, MISMATCH_STATUSES),
    ):
        bad = [v for v in values if v not in known]
        if bad:
            raise Unprocessable(f"unknown {name} {', '.join(bad)} (known: {', '.join(known)})")
    for s in f.sector:
        if s in known_sectors:
            continue
        # A sector dropped from the config may still have mismatches (unique index lookup).
        if conn.scalar(select(literal(1)).where(M.sector == s).limit(1)) is None:
            raise Unprocessable(
                f"unknown sector {s!r} (configured: {', '.join(known_sectors) or 'none'})"
            )
    for c in f.dismissal_code:
        if c in known_codes or c == UNSPECIFIED_DISMISSAL:
            continue
        # A code dropped from the config may still be on dismissed mismatches.
        if conn.scalar(select(literal(1)).where(_dismissed_with((c,))).limit(1)) is None:
            allowed = ", ".join([*known_codes, UNSPECIFIED_DISMISSAL])
            raise Unprocessable(f"unknown dismissal_code {c[:64]!r} (known: {allowed})")

"""A sample of a source table's rows mapped as the run maps them, so ``hub connector check``
reports every value that would dead-letter before the connector runs: grouped per column
and reason, with a count and one masked example, and the values a ``map:`` lacks."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from connectors.base import FAIL, OK, WARN, CheckResult
from connectors.events import Batch, EventBuilder
from connectors.mapping import UnmappedValueError, value_text
from hub.errors import SkippableError
from hub.logs import mask_id, mask_ids
from hub.vocabulary import DATE_FIELDS

SAMPLE_ROWS = 1000
"""Rows read for the sample (``LIMIT``: no full scan, no sort)."""
SHOWN_VALUES = 10
"""Unmapped values listed per value map; the rest are counted."""
CATEGORICAL_FIELDS = frozenset({"sex", "status", "province_code"})
"""Fields whose values are codes, not personal data: shown as they are."""
PERSONAL_FIELDS = frozenset({"citizen_id", "legacy_id", "full_name", "address"})
_SHOWN_CHARS = 40


@dataclass
class ValueProblem:
    """Sampled values of one column that fail for one reason."""

    column: str | None
    reason: str
    count: int = 0
    example: str = "-"


@dataclass
class UnmappedValues:
    """Distinct sampled values of a mapped column that its field's value map lacks."""

    field: str
    column: str
    counts: Counter[str] = field(default_factory=Counter)


@dataclass
class SampleReport:
    """What mapping the sampled rows found (see :func:`sample_rows`)."""

    rows: int = 0
    failing_rows: int = 0
    problems: dict[tuple[str | None, str], ValueProblem] = field(default_factory=dict)
    unmapped: dict[str, UnmappedValues] = field(default_factory=dict)
    checked: Counter[str] = field(default_factory=Counter)
    """Non-null values mapped per column, whatever the outcome."""

    def problem(self, column: str | None, reason: str, example: str) -> None:
        reason = mask_ids(reason)  # reasons never carry a value; a safety net all the same
        entry = self.problems.get((column, reason))
        if entry is None:
            entry = self.problems[column, reason] = ValueProblem(column, reason, example=example)
        entry.count += 1

    def results(self) -> list[CheckResult]:
        """One check line per problem (FAIL), or one ok line; a value map's gaps first."""
        if not self.rows:
            return [CheckResult(WARN, "sample", "the table is empty: no values to check")]
        out = []
        for gap in self.unmapped.values():
            total = sum(gap.counts.values())
            listed = ", ".join(
                f"{value!r} ×{n}" for value, n in gap.counts.most_common(SHOWN_VALUES)
            )
            more = len(gap.counts) - SHOWN_VALUES
            if more > 0:
                listed += f" and {more} more"
            out.append(
                CheckResult(FAIL, "value map",
                            f"{gap.field} ({gap.column}): the map is incomplete, "
                            f"{len(gap.counts)} sampled value(s) not in it ({total} of "
                            f"{self.rows} rows would dead-letter): {listed}; add them to "
                            f"columns.{gap.field}.map")
            )  # fmt: skip
        for p in sorted(self.problems.values(), key=lambda p: (-p.count, p.column or "")):
            out.append(
                CheckResult(FAIL, "sample values",
                            f"{p.count} of {self.rows} sampled rows would dead-letter: "
                            f"{p.reason} (e.g. {p.example})")
            )  # fmt: skip
        if not out:
            out.append(
                CheckResult(OK, "sample values",
                            f"{self.rows} sampled rows map, none would dead-letter")
            )  # fmt: skip
        return out


def sample_rows(builder: EventBuilder, rows: Iterable[Mapping[str, Any]]) -> SampleReport:
    """Map each row as the run does and collect what would dead-letter.

    Each mapped column is mapped on its own (``RecordMapper.map`` with ``partial``), so a row
    reports every failing column, not only its first; a row whose columns all map is then
    built into an event as the run builds it (encoding included).
    """
    mapper = builder.mapper
    fields_of: dict[str, list[str]] = {}
    for f in mapper.fields:
        fields_of.setdefault(f.column, []).append(f.name)
    report = SampleReport()
    read = tuple(mapper.columns)
    for row in rows:
        report.rows += 1
        failed = False
        for column, names in fields_of.items():
            if column not in row:
                continue  # the columns check names a missing column
            value = row[column]
            if value is not None:
                report.checked[column] += 1
            try:
                mapper.map({column: value}, partial=True)
            except UnmappedValueError as exc:
                failed = True
                gap = report.unmapped.get(exc.field)
                if gap is None:
                    gap = report.unmapped[exc.field] = UnmappedValues(exc.field, column)
                gap.counts[shown_value([exc.field], value)] += 1
            except SkippableError as exc:
                failed = True
                report.problem(exc.column, exc.reason, masked_example(names, value))
        if not failed and all(c in row for c in read):
            batch = Batch()
            builder.add(batch, "r", None, row, position="check", snapshot=True)
            for letter in batch.dead_letters:
                failed = True
                names = fields_of.get(letter.column or "", [])
                value = row.get(letter.column) if letter.column else None
                report.problem(letter.column, letter.reason, masked_example(names, value))
        report.failing_rows += failed
    return report


def masked_example(fields: Iterable[str], value: Any) -> str:
    """A value safe to print: codes as they are, dates as their shape (``99/99/9999``),
    anything else (IDs, names, addresses, attributes) masked like a citizen ID."""
    names = set(fields)
    opaque = _opaque(value)
    if opaque is not None:
        return opaque
    text = value_text(value)
    if names and names <= CATEGORICAL_FIELDS:
        return repr(mask_ids(text)[:_SHOWN_CHARS])
    if names and names <= DATE_FIELDS | CATEGORICAL_FIELDS:
        return repr(_shape(text)[:_SHOWN_CHARS])
    return repr(mask_id(text))


def shown_value(fields: Iterable[str], value: Any) -> str:
    """A value a value map lacks, as listed: in full (masked where it looks like an ID)
    when the field holds codes, else masked."""
    opaque = _opaque(value)
    if opaque is not None:
        return opaque
    text = value_text(value)
    if set(fields) & PERSONAL_FIELDS:
        return mask_id(text)
    return mask_ids(text)[:_SHOWN_CHARS]


def _opaque(value: Any) -> str | None:
    """What is shown of a value that has no text form (binary): its kind and size."""
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(bytes(value))} bytes>"
    return None


def _shape(text: str) -> str:
    """Digits as ``9``, letters as ``a``/``A``: the format of a value without its content."""
    return re.sub(r"[^\W\d_]", lambda m: "A" if m.group().isupper() else "a",
                  re.sub(r"\d", "9", text))  # fmt: skip

"""The hub's domain vocabulary, defined once: canonical fields, rules (code, severity, field),
severities, mismatch and record statuses, candidate keys.

Config validation, the rules, the lifecycle, the API filters and labels, the bench and the
demo all import these names; adding a rule is one entry in :data:`RULES` (and its function
in ``reconciliation.rules``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

CANONICAL_FIELDS = (
    "citizen_id",
    "legacy_id",
    "full_name",
    "date_of_birth",
    "sex",
    "province_code",
    "address",
    "date_of_death",
    "status",
    "last_activity_date",
)
"""The fields of the canonical record every source is mapped onto (SPEC §4)."""
DATE_FIELDS = frozenset({"date_of_birth", "date_of_death", "last_activity_date"})

SEVERITIES = ("low", "medium", "high", "critical")
"""Mismatch severities, least severe first."""


@dataclass(frozen=True, slots=True)
class Rule:
    """A rule's identity: its code, the canonical field it reports on (part of a mismatch's
    identity), its severity unless the sector overrides it, and whether its mismatches
    carry registry candidates."""

    code: str
    field: str
    severity: str
    suggests: bool = False


RULES: Mapping[str, Rule] = {
    r.code: r
    for r in (
        Rule("ID_MISSING", "citizen_id", "medium", suggests=True),
        Rule("ID_INVALID", "citizen_id", "high"),
        Rule("ID_LEGACY", "citizen_id", "low", suggests=True),
        Rule("ID_NOT_IN_REGISTRY", "citizen_id", "high", suggests=True),
        Rule("ID_ATTRIBUTES_INCONSISTENT", "citizen_id", "medium"),
        # Graded by similarity: see reconciliation.names.name_severity.
        Rule("NAME_MISMATCH", "full_name", "medium"),
        # Medium when only day/month differ (same birth year).
        Rule("DOB_MISMATCH", "date_of_birth", "high"),
        Rule("SEX_MISMATCH", "sex", "high"),
        Rule("DECEASED_ACTIVE", "status", "critical"),
        Rule("DUPLICATE_ID", "citizen_id", "high"),
        Rule("PROVINCE_MISMATCH", "province_code", "low"),
    )
}
"""Every rule (SPEC §5), in the order the UI and the counts list them."""
RULE_CODES = tuple(RULES)
DEFAULT_SEVERITY: Mapping[str, str] = {r.code: r.severity for r in RULES.values()}
"""Severity of each rule when the sector's ``rules.severities`` does not override it."""
RULE_FIELDS: Mapping[str, str] = {r.code: r.field for r in RULES.values()}
"""The canonical field each rule reports on."""
SUGGESTING_RULES = frozenset(r.code for r in RULES.values() if r.suggests)
"""Rules whose mismatches carry registry candidates (found by birth date + name)."""

MISMATCH_STATUSES = ("open", "in_review", "resolved", "dismissed")
OPEN_STATUSES = ("open", "in_review")
"""The working queue: statuses the reconciler refreshes or resolves, the gauges count and
a steward assigns, resolves or dismisses from."""
CLOSED_STATUSES = tuple(s for s in MISMATCH_STATUSES if s not in OPEN_STATUSES)
OPEN_STATUSES_SQL = "(" + ", ".join(f"'{s}'" for s in OPEN_STATUSES) + ")"
"""``OPEN_STATUSES`` as an SQL list of literals, for ``status IN …`` (literal constants let
the planner match partial indexes and keep statements identical across runs)."""

INACTIVE_RECORD_STATUSES = frozenset({"closed", "inactive"})
"""Canonical record statuses that are not active; connectors map source values onto these."""

CANDIDATE_KEYS = (
    "birth_date",
    "birth_date_swapped",
    "birth_year_name",
    "name_province",
    "id_encoded",
)
"""The blocking keys that find registry candidates (reconciliation.suggestions): the exact
birth date; the birth date with day and month swapped; birth year ± 1 with the name key (family
and given name, or an Arabic first and father's name); the folded full name, in any word order,
with the province; the birth year and sex a structurally valid but unknown ID encodes."""

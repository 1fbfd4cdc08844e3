"""The rule engine: one sector record and its registry match in, the mismatches it shows out.

Contract of a rule (SPEC §5). A rule is a pure function of

- the sector record as the hub last saw it (:class:`SectorFacts`),
- the registry citizen it matches (:class:`RegistryFacts`, or ``None`` when the record's
  ID finds nobody) — for a legacy ID, the citizen who holds that legacy number,
- what the ID scheme reads from the record's ID (:class:`~hub.idschemes.IdInfo`,
  ``None`` when the record has no ID),
- the sector's rule settings (:class:`RuleSet`),
- and, for ``DUPLICATE_ID`` only, the keys of the sector's *other* active records carrying
  the same normalized ID.

It returns zero or one :class:`Finding` per (rule, field); an absent finding means the rule
passes, which is what resolves an open mismatch. Rules never raise on odd data (a missing
value means "nothing to compare", never a mismatch of its own, except ``ID_MISSING``) and
never do I/O, so the engine can evaluate a record as often as it likes: evaluating the
same inputs twice gives equal findings, and equal findings leave the mismatch store alone.

A rule's code, the field it reports on and its default severity are its entry in
``hub.vocabulary.RULES``; its logic is here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Protocol

from hub.config import RulesConfig
from hub.idschemes import IdInfo
from hub.vocabulary import DEFAULT_SEVERITY, INACTIVE_RECORD_STATUSES, RULE_FIELDS
from reconciliation.names import compare, name_severity


def is_active(status: str | None) -> bool:
    """A record is active unless its status is unknown or maps to closed/inactive."""
    return status is not None and status.strip().lower() not in INACTIVE_RECORD_STATUSES


class SectorFacts(Protocol):
    """What rules read from a sector record (canonical fields, sector's own spelling)."""

    citizen_id_raw: str | None
    full_name: str | None
    date_of_birth: date | None
    sex: str | None
    province_code: str | None
    status: str | None
    last_activity_date: date | None


class RegistryFacts(Protocol):
    """What rules read from the registry citizen a record matches."""

    citizen_id: str
    full_name: str | None
    date_of_birth: date | None
    sex: str | None
    province_code: str | None
    date_of_death: date | None


@dataclass(frozen=True, slots=True)
class Finding:
    """One rule failing on one record.

    ``sector_value``/``registry_value`` are what a steward sees side by side; ``context``
    holds further values the finding depends on (e.g. the other records of a duplicate
    group). Together they make :attr:`values_hash`, which is what keeps a dismissal in
    force: a dismissed mismatch reopens only when that hash changes. ``note`` explains
    the finding in the history and is not part of the hash.
    """

    rule: str
    field: str
    severity: str
    sector_value: str | None = None
    registry_value: str | None = None
    score: float | None = None
    context: str | None = None
    note: str | None = field(default=None, compare=False)

    @property
    def key(self) -> tuple[str, str]:
        return (self.rule, self.field)

    @property
    def values_hash(self) -> str:
        parts = (self.rule, self.field, self.sector_value, self.registry_value, self.context)
        text = "\x1f".join("\x00" if p is None else p for p in parts)
        return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class RuleSet:
    """A sector's rule settings, compiled once: switches, severity overrides, name strictness.

    A severity override replaces the rule's severity outright, graded ones included.
    """

    disabled: frozenset[str] = frozenset()
    severities: Mapping[str, str] = field(default_factory=dict)
    unique_citizen: bool = False
    strict_script_names: bool = False

    @classmethod
    def from_config(cls, rules: RulesConfig, *, strict_script_names: bool = False) -> RuleSet:
        """``strict_script_names`` is the reconciler-wide default; the sector's own switch adds to it."""
        return cls(
            disabled=frozenset(rules.disabled),
            severities=dict(rules.severities),
            unique_citizen=rules.unique_citizen,
            strict_script_names=strict_script_names or rules.strict_script_names,
        )

    def enabled(self, rule: str) -> bool:
        return rule not in self.disabled


def evaluate(
    record: SectorFacts,
    match: RegistryFacts | None,
    id_info: IdInfo | None,
    rules: RuleSet,
    *,
    duplicates: Collection[str] = (),
) -> list[Finding]:
    """Every rule that fails on ``record``; see the module docstring for the contract.

    ``match`` must be the citizen whose current ID equals the record's normalized ID, or,
    when ``id_info.kind == "legacy"``, the citizen whose legacy ID it is. ``duplicates``
    are the other *active* records of the sector carrying the same normalized ID (only
    consulted when the sector's ``unique_citizen`` is set).
    """
    found: list[Finding] = []
    add = found.append
    raw = record.citizen_id_raw

    if id_info is None:
        add(_finding("ID_MISSING", None, None, note="the record carries no citizen ID"))
    elif id_info.kind == "invalid":
        add(_finding("ID_INVALID", raw, None, note=id_info.reason))
    elif id_info.kind == "legacy":
        if match is None:
            add(_finding("ID_NOT_IN_REGISTRY", raw, None, note="legacy ID unknown to the registry"))
        else:
            add(
                _finding(
                    "ID_LEGACY",
                    raw,
                    match.citizen_id,
                    note="legacy ID; the registry's current ID is suggested",
                )
            )
    else:
        if match is None:
            add(
                _finding(
                    "ID_NOT_IN_REGISTRY", raw, None, note="valid ID the registry does not hold"
                )
            )
        inconsistent = _id_attributes(record, id_info)
        if inconsistent is not None:
            add(inconsistent)

    if match is not None:
        _compare_with_registry(record, match, rules, add)

    if (
        rules.unique_citizen
        and duplicates
        and id_info is not None
        and id_info.kind != "invalid"
        and is_active(record.status)
    ):
        others = sorted(duplicates)
        add(
            _finding(
                "DUPLICATE_ID",
                raw,
                None,
                context=",".join(others),
                note=f"{len(others) + 1} active records of the sector carry this ID",
            )
        )

    return _apply_settings(found, rules)


def _compare_with_registry(record: SectorFacts, match: RegistryFacts, rules: RuleSet, add) -> None:
    if record.full_name is not None and match.full_name is not None:
        cmp = compare(record.full_name, match.full_name, strict_script=rules.strict_script_names)
        severity = name_severity(cmp)
        if severity is not None:
            add(
                Finding(
                    "NAME_MISMATCH",
                    "full_name",
                    severity,
                    record.full_name,
                    match.full_name,
                    score=round(cmp.score, 4),
                    note=f"{cmp.kind.replace('_', ' ')}, similarity {cmp.score:.2f}",
                )
            )

    dob, reg_dob = record.date_of_birth, match.date_of_birth
    if dob is not None and reg_dob is not None and dob != reg_dob:
        swapped = dob.year == reg_dob.year and (dob.day, dob.month) == (reg_dob.month, reg_dob.day)
        if swapped:
            severity, note = "medium", "day and month swapped"
        elif dob.year == reg_dob.year:
            severity, note = "medium", "same birth year"
        else:
            severity, note = "high", "different birth year"
        add(
            Finding(
                "DOB_MISMATCH",
                "date_of_birth",
                severity,
                dob.isoformat(),
                reg_dob.isoformat(),
                note=note,
            )
        )

    if record.sex is not None and match.sex is not None and record.sex != match.sex:
        add(_finding("SEX_MISMATCH", record.sex, match.sex))

    if match.date_of_death is not None:
        death = match.date_of_death
        activity = record.last_activity_date
        active = is_active(record.status)
        late = activity is not None and activity > death
        if active or late:
            why = []
            if active:
                why.append(f"status {record.status}")
            if late:
                why.append(f"activity on {activity.isoformat()}")
            add(
                _finding(
                    "DECEASED_ACTIVE",
                    f"{record.status or '-'}; last activity {activity.isoformat() if activity else '-'}",
                    f"died {death.isoformat()}",
                    note=" and ".join(why) + " after the registered death",
                )
            )

    province, reg_province = record.province_code, match.province_code
    if province is not None and reg_province is not None:
        if province.strip() != reg_province.strip():
            add(_finding("PROVINCE_MISMATCH", province, reg_province))


def _id_attributes(record: SectorFacts, info: IdInfo) -> Finding | None:
    """Birth date/year and sex encoded in a current ID against the record's own values."""
    own: list[str] = []
    encoded: list[str] = []
    dob = record.date_of_birth
    if dob is not None:
        if info.birth_date is not None and info.birth_date != dob:
            own.append(f"born {dob.isoformat()}")
            encoded.append(f"born {info.birth_date.isoformat()}")
        elif (
            info.birth_date is None and info.birth_year is not None and info.birth_year != dob.year
        ):
            own.append(f"born {dob.year}")
            encoded.append(f"born {info.birth_year}")
    if record.sex is not None and info.sex is not None and record.sex != info.sex:
        own.append(f"sex {record.sex}")
        encoded.append(f"sex {info.sex}")
    if not own:
        return None
    return _finding(
        "ID_ATTRIBUTES_INCONSISTENT",
        "; ".join(own),
        "ID encodes " + "; ".join(encoded),
        note="the record disagrees with what its own ID encodes",
    )


def _finding(
    rule: str,
    sector_value: str | None,
    registry_value: str | None,
    *,
    context: str | None = None,
    note: str | None = None,
) -> Finding:
    return Finding(
        rule,
        RULE_FIELDS[rule],
        DEFAULT_SEVERITY[rule],
        sector_value,
        registry_value,
        context=context,
        note=note,
    )


def _apply_settings(found: list[Finding], rules: RuleSet) -> list[Finding]:
    if not rules.disabled and not rules.severities:
        return found
    out = []
    for f in found:
        if f.rule in rules.disabled:
            continue
        override = rules.severities.get(f.rule)
        if override is not None and override != f.severity:
            f = Finding(
                f.rule,
                f.field,
                override,
                f.sector_value,
                f.registry_value,
                f.score,
                f.context,
                f.note,
            )
        out.append(f)
    return out

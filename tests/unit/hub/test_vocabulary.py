"""The vocabulary is consistent: every rule reports on a canonical field with a known severity."""

from __future__ import annotations

from hub.config import RulesConfig
from hub.vocabulary import (
    CANONICAL_FIELDS,
    CLOSED_STATUSES,
    DEFAULT_SEVERITY,
    MISMATCH_STATUSES,
    OPEN_STATUSES,
    OPEN_STATUSES_SQL,
    RULE_CODES,
    RULE_FIELDS,
    RULES,
    SEVERITIES,
    SUGGESTING_RULES,
)


def test_every_rule_reports_on_a_canonical_field_with_a_known_severity():
    for code, rule in RULES.items():
        assert rule.code == code
        assert rule.field in CANONICAL_FIELDS
        assert rule.severity in SEVERITIES
    assert set(DEFAULT_SEVERITY) == set(RULE_FIELDS) == set(RULE_CODES) == set(RULES)


def test_candidates_are_suggested_for_the_id_rules_only():
    assert SUGGESTING_RULES == {"ID_MISSING", "ID_NOT_IN_REGISTRY", "ID_LEGACY"}


def test_open_and_closed_statuses_split_the_mismatch_statuses():
    assert set(OPEN_STATUSES) | set(CLOSED_STATUSES) == set(MISMATCH_STATUSES)
    assert not set(OPEN_STATUSES) & set(CLOSED_STATUSES)
    assert OPEN_STATUSES_SQL == "('open', 'in_review')"


def test_config_accepts_every_rule_and_severity_of_the_vocabulary():
    rules = RulesConfig(disabled=RULE_CODES, severities=dict.fromkeys(RULE_CODES, SEVERITIES[-1]))
    assert rules.disabled == RULE_CODES

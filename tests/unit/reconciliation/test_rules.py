"""The rule engine: every SPEC §5 rule, its severities, per-sector settings, and invariants."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.config import RulesConfig
from hub.idschemes import get_scheme
from hub.idschemes.vn import make_id
from hub.vocabulary import DEFAULT_SEVERITY, RULE_CODES, RULE_FIELDS, SEVERITIES
from reconciliation.rules import (
    Finding,
    RuleSet,
    evaluate,
    is_active,
)

VN = get_scheme("vn")
EG = get_scheme("eg")


@dataclass(frozen=True)
class Rec:
    citizen_id_raw: str | None
    full_name: str | None = "Nguyễn Văn An"
    date_of_birth: date | None = date(1985, 3, 14)
    sex: str | None = "M"
    province_code: str | None = "079"
    status: str | None = "active"
    last_activity_date: date | None = date(2024, 5, 1)


@dataclass(frozen=True)
class Citizen:
    citizen_id: str
    full_name: str | None = "Nguyễn Văn An"
    date_of_birth: date | None = date(1985, 3, 14)
    sex: str | None = "M"
    province_code: str | None = "079"
    date_of_death: date | None = None
    legacy_id: str | None = None


CID = make_id("079", 1985, "M", 123)
CITIZEN = Citizen(CID)
PLAIN = RuleSet()


def run(rec: Rec, match: Citizen | None = CITIZEN, rules: RuleSet = PLAIN, **kw) -> list[Finding]:
    return evaluate(rec, match, VN.inspect(rec.citizen_id_raw), rules, **kw)


def rules_of(findings: list[Finding]) -> list[str]:
    return sorted(f.rule for f in findings)


def only(findings: list[Finding], rule: str) -> Finding:
    hits = [f for f in findings if f.rule == rule]
    assert len(hits) == 1, findings
    return hits[0]


def test_a_record_that_agrees_with_the_registry_has_no_findings():
    assert run(Rec(CID)) == []


def test_an_unaccented_upper_case_bank_name_is_not_a_mismatch():
    assert run(Rec(CID, full_name="NGUYEN VAN AN")) == []


def test_an_id_typed_with_separators_matches():
    assert run(Rec(f"{CID[:3]} {CID[3:6]}-{CID[6:]}")) == []


@pytest.mark.parametrize("raw", [None, "", "   "])
def test_record_without_id_raises_id_missing_only(raw):
    findings = run(Rec(raw), match=None)
    f = only(findings, "ID_MISSING")
    assert (f.field, f.severity) == ("citizen_id", "medium")
    assert rules_of(findings) == ["ID_MISSING"]


@pytest.mark.parametrize("raw", ["07908500012", "0790850001234", "07908500O123", "000085000123"])
def test_id_failing_the_structure_check_is_invalid(raw):
    findings = run(Rec(raw), match=None)
    f = only(findings, "ID_INVALID")
    assert (f.field, f.severity, f.sector_value) == ("citizen_id", "high", raw)
    assert f.note  # the scheme's reason
    assert rules_of(findings) == ["ID_INVALID"]


def test_known_legacy_id_suggests_the_current_id_and_compares_with_that_citizen():
    legacy = "123456789"
    holder = replace(CITIZEN, legacy_id=legacy, full_name="Trần Thị Bình")
    findings = run(Rec(legacy, full_name="Nguyễn Văn An"), match=holder)
    f = only(findings, "ID_LEGACY")
    assert (f.field, f.severity, f.sector_value, f.registry_value) == (
        "citizen_id",
        "low",
        legacy,
        CID,
    )
    assert only(findings, "NAME_MISMATCH").registry_value == "Trần Thị Bình"


def test_unknown_legacy_id_is_not_in_registry():
    findings = run(Rec("123456789"), match=None)
    assert rules_of(findings) == ["ID_NOT_IN_REGISTRY"]


def test_valid_id_unknown_to_the_registry():
    findings = run(Rec(CID), match=None)
    f = only(findings, "ID_NOT_IN_REGISTRY")
    assert (f.field, f.severity, f.sector_value) == ("citizen_id", "high", CID)
    assert rules_of(findings) == ["ID_NOT_IN_REGISTRY"]


def test_birth_year_encoded_in_the_id_disagreeing_with_the_records_own_is_inconsistent():
    findings = run(Rec(CID, date_of_birth=date(1987, 3, 14)), match=None)
    f = only(findings, "ID_ATTRIBUTES_INCONSISTENT")
    assert (f.field, f.severity) == ("citizen_id", "medium")
    assert "1987" in f.sector_value and "1985" in f.registry_value


def test_sex_encoded_in_the_id_disagreeing_with_the_records_own_is_inconsistent():
    findings = run(Rec(CID, sex="F"), match=replace(CITIZEN, sex="F"))
    assert rules_of(findings) == ["ID_ATTRIBUTES_INCONSISTENT"]


def test_id_attributes_compare_only_fields_the_record_has():
    assert run(Rec(CID, sex=None, date_of_birth=None)) == []


def test_egyptian_id_encodes_the_full_birth_date():
    from hub.idschemes.eg import make_id as eg_id

    nid = eg_id(date(1990, 7, 2), "01", "F", 17)
    rec = Rec(nid, date_of_birth=date(1990, 7, 3), sex="F")
    info = EG.inspect(nid)
    findings = evaluate(rec, None, info, PLAIN)
    assert "ID_ATTRIBUTES_INCONSISTENT" in rules_of(findings)
    assert evaluate(replace(rec, date_of_birth=date(1990, 7, 2)), None, info, PLAIN) == [
        Finding("ID_NOT_IN_REGISTRY", "citizen_id", "high", nid)
    ]


@pytest.mark.parametrize(
    ("name", "severity"),
    [
        ("Nguyễn Văn Bình", "high"),  # another given name
        ("Nguyễn Văn Anh", "medium"),  # one-letter typo
        ("Văn An Nguyễn", "low"),  # word order
    ],
)
def test_name_mismatch_severity_follows_similarity(name, severity):
    f = only(run(Rec(CID, full_name=name)), "NAME_MISMATCH")
    assert (f.field, f.severity, f.sector_value, f.registry_value) == (
        "full_name",
        severity,
        name,
        "Nguyễn Văn An",
    )
    assert f.score is not None and 0 <= f.score <= 1


def test_script_only_name_difference_counts_when_the_sector_is_strict():
    strict = RuleSet.from_config(RulesConfig(strict_script_names=True))
    f = only(run(Rec(CID, full_name="NGUYEN VAN AN"), rules=strict), "NAME_MISMATCH")
    assert f.severity == "low"
    assert RuleSet.from_config(RulesConfig(), strict_script_names=True).strict_script_names


@pytest.mark.parametrize(
    ("dob", "severity"),
    [
        (date(1985, 3, 13), "medium"),  # a day off, same year
        (date(1985, 12, 3), "medium"),  # same year, other month
        (date(1986, 3, 14), "high"),  # another year
    ],
)
def test_dob_mismatch_severity(dob, severity):
    f = only(run(Rec(CID, date_of_birth=dob)), "DOB_MISMATCH")
    assert (f.field, f.severity, f.sector_value, f.registry_value) == (
        "date_of_birth",
        severity,
        dob.isoformat(),
        "1985-03-14",
    )


def test_day_month_swap_is_a_medium_dob_mismatch():
    citizen = replace(CITIZEN, date_of_birth=date(1985, 3, 11))
    f = only(run(Rec(CID, date_of_birth=date(1985, 11, 3)), match=citizen), "DOB_MISMATCH")
    assert f.severity == "medium"
    assert f.note == "day and month swapped"


def test_dob_in_another_year_is_also_inconsistent_with_the_id():
    findings = run(Rec(CID, date_of_birth=date(1983, 3, 14)))
    assert rules_of(findings) == ["DOB_MISMATCH", "ID_ATTRIBUTES_INCONSISTENT"]


def test_sex_mismatch_is_high():
    citizen = replace(CITIZEN, sex="F")  # the registry's own entry disagrees with the ID
    f = only(run(Rec(CID, sex="M"), match=citizen), "SEX_MISMATCH")
    assert (f.field, f.severity, f.sector_value, f.registry_value) == ("sex", "high", "M", "F")


@pytest.mark.parametrize(
    ("status", "activity", "fires"),
    [
        ("active", date(2020, 1, 1), True),  # active status after death
        ("closed", date(2022, 6, 1), True),  # activity after death
        ("closed", date(2021, 12, 31), False),  # closed, last activity before death
        ("inactive", date(2022, 1, 1), False),  # activity on the day of death is not after it
        (None, None, False),  # unknown status is not active
        ("suspended", None, True),  # any status but closed/inactive counts as active
    ],
)
def test_deceased_active(status, activity, fires):
    dead = replace(CITIZEN, date_of_death=date(2022, 1, 1))
    findings = run(Rec(CID, status=status, last_activity_date=activity), match=dead)
    if fires:
        f = only(findings, "DECEASED_ACTIVE")
        assert (f.field, f.severity, f.registry_value) == ("status", "critical", "died 2022-01-01")
    else:
        assert findings == []


def test_death_registered_after_the_sector_record_exists_raises_deceased_active():
    record = Rec(CID, status="active", last_activity_date=date(2024, 5, 1))
    assert run(record, match=CITIZEN) == []
    died = replace(CITIZEN, date_of_death=date(2024, 2, 1))
    assert rules_of(run(record, match=died)) == ["DECEASED_ACTIVE"]


def test_duplicate_id_only_where_the_sector_requires_unique_citizens():
    unique = RuleSet(unique_citizen=True)
    f = only(run(Rec(CID), rules=unique, duplicates=["k2", "k1"]), "DUPLICATE_ID")
    assert (f.field, f.severity, f.context) == ("citizen_id", "high", "k1,k2")
    assert run(Rec(CID), rules=PLAIN, duplicates=["k2"]) == []
    assert run(Rec(CID), rules=unique) == []


def test_closed_record_is_not_part_of_a_duplicate():
    unique = RuleSet(unique_citizen=True)
    assert run(Rec(CID, status="closed"), rules=unique, duplicates=["k2"]) == []


def test_duplicate_group_change_changes_the_values_hash():
    unique = RuleSet(unique_citizen=True)
    a = only(run(Rec(CID), rules=unique, duplicates=["k2"]), "DUPLICATE_ID")
    b = only(run(Rec(CID), rules=unique, duplicates=["k2", "k3"]), "DUPLICATE_ID")
    assert a.values_hash != b.values_hash


def test_province_mismatch_unless_disabled():
    f = only(run(Rec(CID, province_code="001")), "PROVINCE_MISMATCH")
    assert (f.field, f.severity, f.sector_value, f.registry_value) == (
        "province_code",
        "low",
        "001",
        "079",
    )
    off = RuleSet.from_config(RulesConfig(disabled=("PROVINCE_MISMATCH",)))
    assert run(Rec(CID, province_code="001"), rules=off) == []


def test_disabled_rules_never_fire():
    off = RuleSet.from_config(RulesConfig(disabled=("NAME_MISMATCH", "ID_NOT_IN_REGISTRY")))
    assert run(Rec(CID, full_name="Lê Thị Hoa"), rules=off) == []
    assert run(Rec(CID), match=None, rules=off) == []


def test_severity_override_replaces_graded_severities():
    cfg = RulesConfig(severities={"NAME_MISMATCH": "critical", "ID_LEGACY": "medium"})
    rules = RuleSet.from_config(cfg)
    assert only(
        run(Rec(CID, full_name="Văn An Nguyễn"), rules=rules), "NAME_MISMATCH"
    ).severity == ("critical")
    holder = replace(CITIZEN, legacy_id="123456789")
    assert only(run(Rec("123456789"), match=holder, rules=rules), "ID_LEGACY").severity == "medium"


def test_is_active():
    assert is_active("active") and is_active("Suspended")
    assert not is_active(None) and not is_active("closed") and not is_active(" Inactive ")


def test_finding_hash_ignores_the_note_and_covers_the_values():
    a = Finding("NAME_MISMATCH", "full_name", "high", "A", "B", note="x")
    assert a.values_hash == Finding("NAME_MISMATCH", "full_name", "high", "A", "B").values_hash
    assert a.values_hash != Finding("NAME_MISMATCH", "full_name", "high", "A", "C").values_hash
    assert a.values_hash != Finding("NAME_MISMATCH", "full_name", "high", None, "AB").values_hash


# --- properties over open-ended inputs ---------------------------------------------------

names = st.one_of(st.none(), st.text(max_size=30))
dates = st.one_of(st.none(), st.dates(min_value=date(1900, 1, 1), max_value=date(2030, 12, 31)))
raw_ids = st.one_of(
    st.none(),
    st.text(alphabet="0123456789 -O", max_size=14),
    st.builds(
        lambda p, y, s, n: make_id(p, y, s, n),
        st.sampled_from(["001", "079", "038"]),
        st.integers(1900, 2099),
        st.sampled_from("MF"),
        st.integers(0, 999_999),
    ),
)
records = st.builds(
    Rec,
    citizen_id_raw=raw_ids,
    full_name=names,
    date_of_birth=dates,
    sex=st.sampled_from([None, "M", "F"]),
    province_code=st.one_of(st.none(), st.sampled_from(["001", "079", "038"])),
    status=st.sampled_from([None, "active", "closed", "inactive", "x"]),
    last_activity_date=dates,
)
citizens = st.one_of(
    st.none(),
    st.builds(
        Citizen,
        citizen_id=st.just(CID),
        full_name=names,
        date_of_birth=dates,
        sex=st.sampled_from([None, "M", "F"]),
        province_code=st.one_of(st.none(), st.sampled_from(["001", "079"])),
        date_of_death=dates,
    ),
)
rule_sets = st.builds(
    RuleSet,
    disabled=st.frozensets(st.sampled_from(RULE_CODES)),
    severities=st.dictionaries(st.sampled_from(RULE_CODES), st.sampled_from(SEVERITIES)),
    unique_citizen=st.booleans(),
    strict_script_names=st.booleans(),
)


@given(records, citizens, rule_sets, st.lists(st.text(max_size=5), max_size=3))
def test_findings_are_well_formed_for_any_record(rec, citizen, rules, dups):
    info = VN.inspect(rec.citizen_id_raw)
    findings = evaluate(rec, citizen, info, rules, duplicates=dups)
    keys = [f.key for f in findings]
    assert len(keys) == len(set(keys))  # at most one per (rule, field)
    for f in findings:
        assert f.rule not in rules.disabled
        assert f.field == RULE_FIELDS[f.rule]
        assert f.severity == rules.severities.get(f.rule, f.severity)
        assert f.severity in SEVERITIES
        assert f.score is None or 0.0 <= f.score <= 1.0
    assert evaluate(rec, citizen, info, rules, duplicates=dups) == findings  # pure


@given(records)
def test_exactly_one_id_rule_explains_a_record_without_a_match(rec):
    findings = evaluate(rec, None, VN.inspect(rec.citizen_id_raw), PLAIN)
    id_rules = {"ID_MISSING", "ID_INVALID", "ID_NOT_IN_REGISTRY"} & set(rules_of(findings))
    assert len(id_rules) == 1


@given(
    st.sampled_from(["001", "079", "096"]),
    st.dates(min_value=date(1900, 1, 1), max_value=date(2099, 12, 31)),
    st.sampled_from("MF"),
    st.integers(0, 999_999),
    st.sampled_from(["active", "closed", None]),
)
def test_a_faithful_copy_of_a_living_citizen_is_clean(province, dob, sex, serial, status):
    cid = make_id(province, dob.year, sex, serial)
    citizen = Citizen(cid, "Phạm Thị Thu Hà", dob, sex, province)
    rec = Rec(cid, "PHAM THI THU HA", dob, sex, province, status, date(2024, 1, 1))
    assert evaluate(rec, citizen, VN.inspect(cid), RuleSet(unique_citizen=True)) == []


def test_every_rule_has_a_default_severity():
    assert set(DEFAULT_SEVERITY) == set(RULE_CODES)

"""The Egyptian demo population (``hub demo --scheme eg``): valid national numbers, Arabic
names with the SPEC §5 variants as noise, and a manifest that is exactly what is wrong."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.config import RulesConfig, parse_config
from hub.demo import egypt
from hub.demo.generator import MIN_PER_RULE, build
from hub.demo.manifest import Population
from hub.demo.population import EG_SOURCE_TABLES, SECTORS, demo_config
from hub.idschemes.eg import GOVERNORATE_CODES, EgyptNationalNumber
from hub.vocabulary import RULE_CODES
from reconciliation.names import compare
from tests.unit.hub import test_demo_generator as vn_tests
from tests.unit.hub.test_demo_generator import manifest_set

SCHEME = EgyptNationalNumber()
URLS = {s: f"postgresql://postgres@127.0.0.1:5432/demo_{s}" for s in EG_SOURCE_TABLES}
CONFIG = demo_config(URLS, "eg")

# Egypt has no legacy ID numbers, so ID_LEGACY never applies.
APPLICABLE = {
    "tax": set(RULE_CODES) - {"PROVINCE_MISMATCH", "ID_LEGACY"},
    "banking": set(RULE_CODES) - {"PROVINCE_MISMATCH", "DUPLICATE_ID", "ID_LEGACY"},
    "labour": set(RULE_CODES) - {"ID_LEGACY"},
    "construction": set(RULE_CODES)
    - {"PROVINCE_MISMATCH", "DUPLICATE_ID", "SEX_MISMATCH", "ID_LEGACY"},
}


@pytest.fixture(scope="module")
def small() -> Population:
    return build(2000, seed=6, scheme="eg")


def canonical(source: str, population: Population) -> list[tuple[str, SimpleNamespace]]:
    """(record key, canonical record) for every row, mapped with the eg demo's hub config."""
    return vn_tests.canonical(source, population, CONFIG, EG_SOURCE_TABLES)


def independent_check(population: Population) -> set[tuple[str, str, str, str]]:
    """SPEC §5 for the eg scheme written out plainly, to check the manifest against."""
    by_id = {c.citizen_id: c for _, c in canonical("registry", population)}
    found: set[tuple[str, str, str, str]] = set()
    for sector in SECTORS:
        rules = RulesConfig.model_validate(CONFIG["sectors"][sector].get("rules", {}))
        active_by_id: dict[str, list[str]] = defaultdict(list)
        for key, r in canonical(sector, population):
            cid = SCHEME.normalize(r.citizen_id)
            hits: list[tuple[str, str]] = []
            info = None if cid is None else SCHEME.parse(cid)
            if info is None:
                hits.append(("ID_MISSING", "citizen_id"))
            elif info.kind == "invalid":
                hits.append(("ID_INVALID", "citizen_id"))
            else:
                if r.status == "active":
                    active_by_id[cid].append(key)
                if info.birth_date != r.date_of_birth or (r.sex is not None and r.sex != info.sex):
                    hits.append(("ID_ATTRIBUTES_INCONSISTENT", "citizen_id"))
                reg = by_id.get(cid)
                if reg is None:
                    hits.append(("ID_NOT_IN_REGISTRY", "citizen_id"))
                else:
                    if egypt.fold_arabic(r.full_name) != egypt.fold_arabic(reg.full_name):
                        hits.append(("NAME_MISMATCH", "full_name"))
                    if r.date_of_birth != reg.date_of_birth:
                        hits.append(("DOB_MISMATCH", "date_of_birth"))
                    if r.sex is not None and r.sex != reg.sex:
                        hits.append(("SEX_MISMATCH", "sex"))
                    if r.province_code is not None and r.province_code != reg.province_code:
                        hits.append(("PROVINCE_MISMATCH", "province_code"))
                    died = reg.date_of_death
                    if died and (r.status == "active" or r.last_activity_date > died):
                        hits.append(("DECEASED_ACTIVE", "status"))
            found.update((sector, key, rule, f) for rule, f in hits if rule not in rules.disabled)
        if rules.unique_citizen:
            for keys in active_by_id.values():
                if len(keys) > 1:
                    found.update((sector, k, "DUPLICATE_ID", "citizen_id") for k in keys)
    return found


def test_manifest_is_exactly_what_an_independent_check_finds(small: Population) -> None:
    assert independent_check(small) == manifest_set(small.manifest)


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6), citizens=st.integers(100, 1500))
def test_manifest_is_exact_for_any_seed(seed: int, citizens: int) -> None:
    population = build(citizens, seed=seed, scheme="eg")
    assert independent_check(population) == manifest_set(population.manifest)


def test_reconciliation_rules_find_exactly_the_manifest(small: Population) -> None:
    """The reconciler's own rule engine (names.compare included), fed the eg rows, agrees."""
    by_id = {c.citizen_id: c for _, c in canonical("registry", small)}

    def match(info, cid):
        return by_id.get(cid) if info is not None and info.kind == "current" else None

    found = vn_tests.rules_found(small, match, CONFIG, EG_SOURCE_TABLES, SCHEME)
    assert found == manifest_set(small.manifest)


def test_every_rule_but_id_legacy_appears_in_every_sector_it_applies_to(small: Population) -> None:
    counts = small.manifest.counts()
    for sector, rules in APPLICABLE.items():
        for rule in rules:
            assert counts.get((sector, rule), 0) >= MIN_PER_RULE, (sector, rule)
    assert {m.rule for m in small.manifest.mismatches} == set(RULE_CODES) - {"ID_LEGACY"}
    for m in small.manifest.mismatches:
        assert m.rule in APPLICABLE[m.sector], m


def test_registry_ids_are_valid_and_encode_each_citizens_birth_date_and_sex(
    small: Population,
) -> None:
    """Every registry ID passes the eg scheme; its birth date and sex are the record's own
    except for the registry anomalies the manifest lists."""
    anomalies = {a["citizen_id"]: a["field"] for a in small.manifest.registry_anomalies}
    assert anomalies, "the demo injects registry-side ID_ATTRIBUTES_INCONSISTENT"
    for _, c in canonical("registry", small):
        assert len(c.citizen_id) == 14 and c.citizen_id.isascii()
        info = SCHEME.parse(c.citizen_id)
        assert info.kind == "current", c.citizen_id
        assert info.region_code in GOVERNORATE_CODES
        assert (info.birth_date != c.date_of_birth) == (
            anomalies.get(c.citizen_id) == "date_of_birth"
        )
        assert (info.sex != c.sex) == (anomalies.get(c.citizen_id) == "sex")
        assert c.legacy_id is None
        assert c.province_code in egypt.GOVERNORATES_AR


def test_sector_ids_are_valid_and_agree_with_the_record_unless_a_mismatch_was_injected(
    small: Population,
) -> None:
    noted = {(m.sector, m.record_key) for m in small.manifest.mismatches}
    for sector in SECTORS:
        for key, r in canonical(sector, small):
            if (sector, key) in noted:
                continue
            info = SCHEME.inspect(r.citizen_id)
            assert info is not None and info.kind == "current", (sector, key, r.citizen_id)
            assert info.birth_date == r.date_of_birth
            assert r.sex is None or info.sex == r.sex


def test_names_are_arabic_with_compounds_and_every_spelling_variant_as_noise(
    small: Population,
) -> None:
    names = [c.full_name for _, c in canonical("registry", small)]
    assert all(any("\u0621" <= ch <= "\u064a" for ch in n) for n in names)
    assert any("عبد " in n for n in names)
    assert any(ch in n for n in names for ch in "أإآ")
    assert any(n.split()[0].endswith("ة") for n in names)
    noise = small.manifest.noise
    for kind in ("hamza", "taa_marbuta", "alef_maqsura", "tashkeel", "tatweel", "compound_spacing"):
        assert noise["names"].get(kind, 0) > 0, kind
    assert noise["ids"].get("arabic_indic_digits", 0) > 0
    construction = [r.citizen_id for _, r in canonical("construction", small) if r.citizen_id]
    assert any("٠" <= ch <= "٩" for cid in construction for ch in cid)


def test_noise_is_never_listed_as_a_mismatch(small: Population) -> None:
    """A record whose name or ID differs from the registry only by a SPEC §5 variant has no
    NAME_MISMATCH / ID rule in the manifest, and the reconciler's names.compare agrees."""
    by_id = {c.citizen_id: c for _, c in canonical("registry", small)}
    rules_of = defaultdict(set)
    for m in small.manifest.mismatches:
        rules_of[(m.sector, m.record_key)].add(m.rule)
    variants = 0
    for sector in SECTORS:
        for key, r in canonical(sector, small):
            reg = by_id.get(SCHEME.normalize(r.citizen_id) or "")
            if reg is None or r.full_name == reg.full_name:
                continue
            if egypt.fold_arabic(r.full_name) == egypt.fold_arabic(reg.full_name):
                variants += 1
                assert "NAME_MISMATCH" not in rules_of[(sector, key)]
                assert compare(r.full_name, reg.full_name).equal, (r.full_name, reg.full_name)
    assert variants > 100


def test_demo_config_is_a_valid_eg_hub_config_with_arabic_and_transliterated_columns() -> None:
    config = parse_config(
        {
            "kafka": {"bootstrap_servers": "127.0.0.1:9092"},
            "database": {"url": "postgresql://h@127.0.0.1/hub"},
            "id_scheme": "eg",
            **CONFIG,
        },
        env={},
    )
    assert config.registry.mapping("citizen_id").column == "الرقم_القومي"
    assert config.registry.mapping("sex").map == {"ذكر": "M", "أنثى": "F"}
    assert config.sectors["tax"].mapping("citizen_id").column == "ragam_qawmi"
    assert config.sectors["labour"].mapping("citizen_id").column == "raqam_qawmi"


def test_rows_fit_their_columns_and_keys_are_unique(small: Population) -> None:
    for source, table in EG_SOURCE_TABLES.items():
        key_index = table.column_names.index(table.key)
        keys = [row[key_index] for row in small.rows[source]]
        assert len(keys) == len(set(keys)), source
        for col_index, col in enumerate(table.columns):
            if col.sql.startswith(("varchar(", "char(")):
                limit = int(col.sql.split("(")[1].split(")")[0])
                longest = max(len(str(row[col_index] or "")) for row in small.rows[source])
                assert longest <= limit, (source, col.name, longest)


# -- the pieces, for any input ----------------------------------------------------------------

_names = st.builds(
    lambda sex, seed: egypt.full_name(sex, __import__("random").Random(seed)),
    st.sampled_from("MF"),
    st.integers(0, 2**32),
)


@given(name=_names, seed=st.integers(0, 2**32))
def test_a_benign_spelling_is_the_same_name_for_the_reconciler(name: str, seed: int) -> None:
    import random

    variant = egypt.benign_spelling(name, random.Random(seed))
    assert variant != name
    assert egypt.fold_arabic(variant) == egypt.fold_arabic(name)
    assert compare(variant, name).equal
    assert compare(egypt.plain(variant), name).equal


@given(name=_names, sex=st.sampled_from("MF"), seed=st.integers(0, 2**32))
def test_another_name_is_a_mismatch_for_the_reconciler(name: str, sex: str, seed: int) -> None:
    import random

    other = egypt.other_name(name, sex, random.Random(seed))
    assert egypt.fold_arabic(other) != egypt.fold_arabic(name)
    assert not compare(other, name).equal
    assert not compare(egypt.plain(other), name).equal


@given(
    birth=st.dates(min_value=datetime(1900, 1, 1).date(), max_value=datetime(2099, 12, 31).date()),
    governorate=st.sampled_from(sorted(GOVERNORATE_CODES)),
    sex=st.sampled_from("MF"),
    seed=st.integers(0, 2**32),
)
def test_ids_are_valid_and_their_mistyped_forms_invalid(birth, governorate, sex, seed) -> None:
    import random

    rng = random.Random(seed)
    cid = egypt.new_id(birth, governorate, sex, rng)
    info = SCHEME.parse(cid)
    assert (info.kind, info.birth_date, info.sex, info.region_code) == (
        "current",
        birth,
        sex,
        governorate,
    )
    assert SCHEME.normalize(egypt.arabic_indic(cid)) == cid
    bad = egypt.invalid_id(cid, rng)
    assert SCHEME.inspect(bad).kind == "invalid"
    assert SCHEME.inspect(egypt.arabic_indic(bad)).kind == "invalid"

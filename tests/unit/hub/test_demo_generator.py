"""The demo generator: deterministic, realistic, and a manifest that is exactly what is wrong."""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from datetime import date, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.config import RulesConfig, parse_config
from hub.db import psycopg_conninfo, sqlalchemy_url
from hub.demo.generator import MIN_PER_RULE, build
from hub.demo.manifest import Manifest, Population
from hub.demo.population import SECTORS, SOURCE_TABLES, demo_config
from hub.demo.records import FIRST_BIRTH_YEAR, LAST_BIRTH_YEAR
from hub.demo.vietnam import fold_name
from hub.idschemes.vn import VietnamPersonalId
from hub.vocabulary import RULE_CODES

SCHEME = VietnamPersonalId()
URLS = {s: f"postgresql://postgres@127.0.0.1:5432/demo_{s}" for s in SOURCE_TABLES}
CONFIG = demo_config(URLS)

# Rules that can fire in each sector given its columns and rule settings.
APPLICABLE = {
    "tax": set(RULE_CODES) - {"PROVINCE_MISMATCH"},
    "banking": set(RULE_CODES) - {"PROVINCE_MISMATCH", "DUPLICATE_ID"},
    "labour": set(RULE_CODES),
    "construction": set(RULE_CODES) - {"PROVINCE_MISMATCH", "DUPLICATE_ID", "SEX_MISMATCH"},
}


@pytest.fixture(scope="module")
def small() -> Population:
    return build(2000, seed=6)


@pytest.fixture(scope="module")
def large() -> tuple[Population, float]:
    started = time.perf_counter()
    population = build(100_000, seed=6)
    return population, time.perf_counter() - started


# -- reading the rows back through the hub config (as the connectors will) ---------------


def canonical(
    source: str, population: Population, config: dict = CONFIG, tables=SOURCE_TABLES
) -> list[tuple[str, SimpleNamespace]]:
    """(record key, canonical record) for every row, mapped with the demo's hub config
    (``config``/``tables``: another population's, such as the eg demo's)."""
    entry = config["registry"] if source == "registry" else config["sectors"][source]
    names = tables[source].column_names
    out = []
    for row in population.rows[source]:
        values = dict(zip(names, row, strict=True))
        record: dict[str, Any] = dict.fromkeys(
            ("citizen_id", "legacy_id", "full_name", "date_of_birth", "sex", "province_code")
            + ("date_of_death", "status", "last_activity_date")
        )
        for fld, spec in entry["columns"].items():
            if isinstance(spec, str):
                record[fld] = values[spec]
                continue
            value = values[spec["column"]]
            if value is not None and "map" in spec:
                value = spec["map"][value]
            if value is not None and "format" in spec:
                value = datetime.strptime(value, spec["format"]).date()
            record[fld] = value
        out.append((str(values[entry["key"]]), SimpleNamespace(**record)))
    return out


def registry_index(population: Population):
    by_id, by_legacy = {}, {}
    for _, c in canonical("registry", population):
        by_id[c.citizen_id] = c
        if c.legacy_id:
            by_legacy[c.legacy_id] = c
    return by_id, by_legacy


def manifest_set(manifest: Manifest) -> set[tuple[str, str, str, str]]:
    entries = [(m.sector, m.record_key, m.rule, m.field) for m in manifest.mismatches]
    assert len(entries) == len(set(entries)), "the manifest lists a mismatch twice"
    return set(entries)


def independent_check(population: Population) -> set[tuple[str, str, str, str]]:
    """SPEC §5 written out plainly, to check the manifest against."""
    by_id, by_legacy = registry_index(population)
    found: set[tuple[str, str, str, str]] = set()
    for sector in SECTORS:
        rules = RulesConfig.model_validate(CONFIG["sectors"][sector].get("rules", {}))
        active_by_id: dict[str, list[str]] = defaultdict(list)
        for key, r in canonical(sector, population):
            cid = SCHEME.normalize(r.citizen_id)
            if cid is not None and SCHEME.parse(cid).kind != "invalid" and r.status == "active":
                active_by_id[cid].append(key)
            for rule, fld in record_rules(r, by_id, by_legacy):
                if rule not in rules.disabled:
                    found.add((sector, key, rule, fld))
        if rules.unique_citizen:
            for keys in active_by_id.values():
                if len(keys) > 1:
                    found.update((sector, k, "DUPLICATE_ID", "citizen_id") for k in keys)
    return found


def record_rules(r: SimpleNamespace, by_id: dict, by_legacy: dict) -> list[tuple[str, str]]:
    """(rule, field) of every rule but DUPLICATE_ID that fails on one sector record."""
    cid = SCHEME.normalize(r.citizen_id)
    if cid is None:
        return [("ID_MISSING", "citizen_id")]
    info = SCHEME.parse(cid)
    if info.kind == "invalid":
        return [("ID_INVALID", "citizen_id")]
    hits = []
    if info.kind == "legacy":
        reg = by_legacy[cid]  # the generator never writes an unknown legacy number
        hits.append(("ID_LEGACY", "citizen_id"))
    else:
        reg = by_id.get(cid)
        wrong_year = info.birth_year != r.date_of_birth.year
        if wrong_year or (r.sex is not None and r.sex != info.sex):
            hits.append(("ID_ATTRIBUTES_INCONSISTENT", "citizen_id"))
        if reg is None:
            return [*hits, ("ID_NOT_IN_REGISTRY", "citizen_id")]
    if fold_name(r.full_name) != fold_name(reg.full_name):
        hits.append(("NAME_MISMATCH", "full_name"))
    if r.date_of_birth != reg.date_of_birth:
        hits.append(("DOB_MISMATCH", "date_of_birth"))
    if r.sex is not None and r.sex != reg.sex:
        hits.append(("SEX_MISMATCH", "sex"))
    if r.province_code is not None and r.province_code != reg.province_code:
        hits.append(("PROVINCE_MISMATCH", "province_code"))
    if reg.date_of_death and (r.status == "active" or r.last_activity_date > reg.date_of_death):
        hits.append(("DECEASED_ACTIVE", "status"))
    return hits


# -- determinism ----------------------------------------------------------------------------


def test_same_seed_gives_identical_rows_and_manifest(small: Population) -> None:
    again = build(2000, seed=6)
    assert again.rows == small.rows
    assert again.manifest.to_json() == small.manifest.to_json()


def test_different_seed_gives_a_different_population(small: Population) -> None:
    other = build(2000, seed=7)
    assert other.rows["registry"] != small.rows["registry"]
    assert manifest_set(other.manifest) != manifest_set(small.manifest)


def test_manifest_round_trips_through_json(small: Population, tmp_path) -> None:
    path = tmp_path / "manifest.json"
    small.manifest.write(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    assert {"seed", "citizens", "records", "mismatches", "rates"} <= set(data)
    assert data["seed"] == 6 and data["citizens"] == 2000
    assert data["mismatches"][0].keys() == {"sector", "record_key", "rule", "field"}
    assert Manifest.read(path) == small.manifest


# -- the manifest is exact ---------------------------------------------------------------


def test_manifest_is_exactly_what_an_independent_check_finds(small: Population) -> None:
    assert independent_check(small) == manifest_set(small.manifest)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(min_value=0, max_value=2**32), citizens=st.integers(1500, 3000))
def test_manifest_is_exact_for_any_seed(seed: int, citizens: int) -> None:
    population = build(citizens, seed)
    assert independent_check(population) == manifest_set(population.manifest)


# -- parts: a large population built in bounded memory ----------------------------------


@pytest.fixture(scope="module")
def parts() -> list[Population]:
    return [build(9001, seed=6, part=(i, 3)) for i in range(3)]


def test_parts_together_are_one_population_with_an_exact_manifest(
    parts: list[Population],
) -> None:
    """Keys, IDs and legacy numbers never collide across parts, and no injected unknown ID
    belongs to another part's citizen: the union of the parts' manifests is exactly what
    the independent check finds on all rows together."""
    combined = SimpleNamespace(
        rows={s: [row for p in parts for row in p.rows[s]] for s in SOURCE_TABLES}
    )
    for source, table in SOURCE_TABLES.items():
        rows = combined.rows[source]
        key_at = table.column_names.index(table.key)
        assert len({row[key_at] for row in rows}) == len(rows), source
    legacy = [c.legacy_id for _, c in canonical("registry", combined) if c.legacy_id]
    assert len(set(legacy)) == len(legacy)
    assert [p.manifest.citizens for p in parts] == [3001, 3000, 3000]
    assert sum(len(p.rows["registry"]) for p in parts) == 9001
    expected = set().union(*(manifest_set(p.manifest) for p in parts))
    assert independent_check(combined) == expected


def test_parts_differ_and_the_whole_is_part_0_of_1(parts: list[Population]) -> None:
    assert parts[0].rows["registry"] != parts[1].rows["registry"]
    assert build(2000, seed=6, part=(0, 1)).rows == build(2000, seed=6).rows


def test_only_the_sectors_asked_for_are_generated() -> None:
    population = build(2000, seed=6, sectors=("tax",), shares={"tax": 1.0})
    assert set(population.rows) == {"registry", "tax"}
    assert {m.sector for m in population.manifest.mismatches} == {"tax"}
    assert len(population.rows["tax"]) >= 2000  # everyone, plus duplicate-ID copies
    assert population.manifest.shares["sectors"] == {"tax": 1.0}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"part": (3, 3)}, "part 3 of 3"),
        ({"part": (0, 0)}, "part 0 of 0"),
        ({"sectors": ("tax", "police")}, "unknown sector 'police'"),
    ],
)
def test_impossible_parts_and_unknown_sectors_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build(100, seed=6, **kwargs)


def rules_found(
    population: Population, match, config: dict = CONFIG, tables=SOURCE_TABLES, scheme=SCHEME
) -> set[tuple[str, str, str, str]]:
    """What the reconciler's own rule engine finds in every sector of ``population``, fed as
    the reconciler feeds it: ``match(info, cid)`` is the registry record an ID finds, the
    duplicates the other active records with the same ID (``config``/``tables``/``scheme``:
    another population's)."""
    from reconciliation.rules import RuleSet, evaluate

    found = set()
    for sector in SECTORS:
        rules = RuleSet.from_config(
            RulesConfig.model_validate(config["sectors"][sector].get("rules", {}))
        )
        records = [
            (key, SimpleNamespace(citizen_id_raw=r.citizen_id, **vars(r)))
            for key, r in canonical(sector, population, config, tables)
        ]
        active_by_id: dict[str, list[str]] = defaultdict(list)
        for key, r in records:
            cid = scheme.normalize(r.citizen_id)
            if cid is not None and r.status == "active":
                active_by_id[cid].append(key)
        for key, r in records:
            cid = scheme.normalize(r.citizen_id)
            info = None if cid is None else scheme.parse(cid)
            others = [k for k in active_by_id.get(cid, ()) if k != key] if cid else []
            for f in evaluate(r, match(info, cid), info, rules, duplicates=others):
                found.add((sector, key, f.rule, f.field))
    return found


def test_reconciliation_rules_find_exactly_the_manifest(small: Population) -> None:
    """The reconciler's own rule engine, fed the demo rows, agrees with the manifest."""
    by_id, by_legacy = registry_index(small)

    def match(info, cid):
        if info is not None and info.kind == "current":
            return by_id.get(cid)
        if info is not None and info.kind == "legacy":
            return by_legacy.get(cid)
        return None

    found = rules_found(small, match)
    assert found == manifest_set(small.manifest)


def test_every_rule_appears_in_every_sector_it_applies_to(small: Population) -> None:
    counts = small.manifest.counts()
    for sector, rules in APPLICABLE.items():
        for rule in rules:
            assert counts.get((sector, rule), 0) >= MIN_PER_RULE, (sector, rule)
    assert {m.rule for m in small.manifest.mismatches} == set(RULE_CODES)
    assert set(small.manifest.rates) == set(RULE_CODES)


def test_rules_never_listed_where_they_cannot_fire(small: Population) -> None:
    for m in small.manifest.mismatches:
        assert m.rule in APPLICABLE[m.sector], m


def test_records_counts_match_rows(small: Population) -> None:
    assert small.manifest.records == {s: len(small.rows[s]) for s in SECTORS}
    assert len(small.rows["registry"]) == small.manifest.citizens == 2000


# -- realism --------------------------------------------------------------------------------


def test_registry_ids_are_current_and_encode_the_citizens_birth_year_and_sex(
    small: Population,
) -> None:
    anomalies = {a["citizen_id"]: a["field"] for a in small.manifest.registry_anomalies}
    assert "date_of_birth" in anomalies.values() and "sex" in anomalies.values()
    for _, c in canonical("registry", small):
        info = SCHEME.parse(c.citizen_id)
        assert info.kind == "current", c.citizen_id
        agrees = (info.birth_year, info.sex) == (c.date_of_birth.year, c.sex)
        if c.citizen_id in anomalies:
            assert not agrees
            field_wrong = "sex" if info.sex != c.sex else "date_of_birth"
            assert anomalies[c.citizen_id] == field_wrong
            assert info.region_code == c.province_code
        else:
            assert agrees, c
        assert FIRST_BIRTH_YEAR <= c.date_of_birth.year <= LAST_BIRTH_YEAR


def test_registry_has_legacy_numbers_deaths_and_vietnamese_names(small: Population) -> None:
    citizens = [c for _, c in canonical("registry", small)]
    legacy = [c.legacy_id for c in citizens if c.legacy_id]
    assert 0.15 < len(legacy) / len(citizens) < 0.27
    assert len(set(legacy)) == len(legacy)
    assert all(len(x) == 9 and x.isdigit() for x in legacy)
    assert all(SCHEME.parse(x).kind == "legacy" for x in legacy)
    dead = [c for c in citizens if c.date_of_death]
    assert 0.02 < len(dead) / len(citizens) < 0.045
    assert all(c.date_of_birth < c.date_of_death <= date(2025, 6, 30) for c in dead)
    assert len({c.citizen_id for c in citizens}) == len(citizens)
    families = Counter(c.full_name.split()[0] for c in citizens)
    assert families.most_common(1)[0][0] == "Nguyễn"
    assert any("Đ" in c.full_name or "đ" in c.full_name for c in citizens)
    assert all(len(c.full_name.split()) in (3, 4) for c in citizens)


def test_banking_names_are_unaccented_upper_case_ascii(small: Population) -> None:
    col = SOURCE_TABLES["banking"].column_names.index("ho_ten")
    names = [row[col] for row in small.rows["banking"]]
    assert all(n.isascii() and n == n.upper() and len(n) <= 60 for n in names)
    assert any(n.startswith("NGUYEN ") for n in names)


def test_deceased_citizens_clean_records_are_closed_before_death(small: Population) -> None:
    by_id, _ = registry_index(small)
    flagged = {(m.sector, m.record_key) for m in small.manifest.mismatches}
    checked = 0
    for sector in SECTORS:
        for key, r in canonical(sector, small):
            reg = by_id.get(SCHEME.normalize(r.citizen_id) or "")
            if reg and reg.date_of_death and (sector, key) not in flagged:
                assert r.status == "closed" and r.last_activity_date <= reg.date_of_death
                checked += 1
    assert checked > 0


def test_rows_fit_their_columns_and_keys_are_unique(small: Population) -> None:
    limits = {"varchar(12)": 12, "varchar(9)": 9, "varchar(13)": 13, "varchar(10)": 10}
    limits |= {"varchar(16)": 16, "varchar(20)": 20, "varchar(60)": 60, "char(3)": 3}
    limits |= {"char(1)": 1}
    for source, table in SOURCE_TABLES.items():
        rows = small.rows[source]
        key_at = table.column_names.index(table.key)
        assert len({row[key_at] for row in rows}) == len(rows), source
        for i, col in enumerate(table.columns):
            sql_type = col.sql.split()[0]
            values = [row[i] for row in rows]
            if "NOT NULL" in col.sql:
                assert None not in values, (source, col.name)
            if sql_type in limits:
                too_long = [v for v in values if v is not None and len(v) > limits[sql_type]]
                assert not too_long, (source, col.name, too_long[:3])
    permits = [row[0] for row in small.rows["construction"]]
    assert all(p.startswith("GP-") and len(p.split("-")) == 4 for p in permits)
    tax_keys = [row[0] for row in small.rows["tax"]]
    assert all(len(k) == 10 and k.isdigit() for k in tax_keys)


# -- config ---------------------------------------------------------------------------------


def test_demo_config_is_a_valid_hub_config_in_sqlalchemy_form() -> None:
    config = parse_config({**CONFIG, "id_scheme": "vn"}, env={})
    assert set(config.sectors) == set(SECTORS)
    for name, source in config.sources().items():
        assert source.url.startswith("postgresql+psycopg://"), name
        table = SOURCE_TABLES[name]
        assert source.table == table.table
        for fld in source.columns:
            assert source.mapping(fld).column in table.column_names
    assert config.sectors["banking"].capture == "poll"
    assert config.sectors["banking"].poll.incrementing_column == "id"
    assert config.sectors["construction"].capture == "snapshot"
    assert config.sectors["tax"].rules.unique_citizen
    assert "PROVINCE_MISMATCH" not in config.sectors["labour"].rules.disabled
    assert config.registry.mapping("sex").map == {"Nam": "M", "Nữ": "F"}
    assert config.sectors["tax"].mapping("date_of_birth").format == "%d/%m/%Y"


@pytest.mark.parametrize(
    ("given", "libpq", "sqlalchemy"),
    [
        ("postgresql://u@h:5/db", "postgresql://u@h:5/db", "postgresql+psycopg://u@h:5/db"),
        ("postgresql+psycopg://u@h/db", "postgresql://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgres://u:p@h/db", "postgresql://u:p@h/db", "postgresql+psycopg://u:p@h/db"),
        (
            "host=/tmp/pg port=5 dbname=d user=u",
            "postgresql://u@:5/d?host=%2Ftmp%2Fpg",
            "postgresql+psycopg://u@:5/d?host=%2Ftmp%2Fpg",
        ),
    ],
)
def test_urls_are_accepted_in_either_form(given: str, libpq: str, sqlalchemy: str) -> None:
    assert psycopg_conninfo(given) == libpq
    assert sqlalchemy_url(given) == sqlalchemy


def test_ddl_creates_every_column_the_config_reads() -> None:
    for source, table in SOURCE_TABLES.items():
        create = table.create_sql()
        assert all(f"{name} " in create for name in table.column_names)
        assert any("PRIMARY KEY" in s and table.key in s for s in table.after_load), source


# -- speed ----------------------------------------------------------------------------------


def test_100k_citizens_build_well_under_30_seconds(large: tuple[Population, float]) -> None:
    population, seconds = large
    print(f"\nbuild(100_000): {seconds:.2f}s, records {population.manifest.records}")
    assert len(population.rows["registry"]) == 100_000
    assert seconds < 15


def test_manifest_is_exact_at_100k(large: tuple[Population, float]) -> None:
    population, _ = large
    assert independent_check(population) == manifest_set(population.manifest)


def test_another_databases_sqlalchemy_url_is_left_as_it_is() -> None:
    assert sqlalchemy_url("mysql+pymysql://u@h/db") == "mysql+pymysql://u@h/db"

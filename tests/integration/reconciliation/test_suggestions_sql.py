"""The registry replica's candidate look-ups agree with the in-memory reference and use
their indexes (migration 0008's SQL name keys mirror reconciliation.suggestions')."""

from __future__ import annotations

import random
from datetime import date, timedelta

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.db import psycopg_conninfo
from reconciliation.names import fold
from reconciliation.store.registry import PgRegistryIndex
from reconciliation.suggestions import (
    Citizen,
    MemoryRegistryIndex,
    Probe,
    find_candidates,
    name_key,
    name_sorted,
)

FAMILY = ["Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Đặng"]
MIDDLE = ["Văn", "Thị", "Hữu", "Minh", "Ngọc"]
GIVEN = ["An", "Bình", "Cường", "Dũng", "Hoa", "Lan", "Mai", "Đức"]
ARABIC = ["محمد", "أحمد", "علي", "حسن", "فاطمة", "عبد الله", "مريم", "يوسف"]


def population(n: int, seed: int = 3) -> list[Citizen]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        if i % 4 == 3:
            name = " ".join(rnd.sample(ARABIC, rnd.randint(2, 4)))
        else:
            name = f"{rnd.choice(FAMILY)} {rnd.choice(MIDDLE)} {rnd.choice(GIVEN)}"
        dob = date(1980, 1, 1) + timedelta(days=rnd.randint(0, 3 * 365))
        sex, province = rnd.choice("MF"), rnd.choice(["001", "079", "048"])
        out.append(Citizen(f"{i:012d}", name, fold(name), dob, sex, province))
    return out


@pytest.fixture(scope="module")
def registry(servers):
    from hub.db.migrate import upgrade

    hub_db = servers.create_database("hub")
    upgrade(hub_db)
    citizens = population(3000)
    with psycopg.connect(psycopg_conninfo(hub_db)) as conn:
        conn.execute("TRUNCATE registry_citizens")
        with conn.cursor().copy(
            "COPY registry_citizens (citizen_id, full_name, name_folded, date_of_birth, sex,"
            " province_code) FROM STDIN"
        ) as copy:
            for c in citizens:
                copy.write_row(
                    (c.citizen_id, c.full_name, c.name_folded, c.date_of_birth, c.sex,
                     c.province_code)
                )  # fmt: skip
        conn.execute("ANALYZE registry_citizens")
    yield hub_db, citizens
    servers.drop_database(hub_db)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.sampled_from(FAMILY + MIDDLE + GIVEN + ARABIC), min_size=1, max_size=5))
def test_the_sql_name_keys_equal_the_python_ones(registry, parts):
    url, _ = registry
    folded = fold(" ".join(parts))
    with psycopg.connect(psycopg_conninfo(url)) as conn:
        got = conn.execute("SELECT hub_name_key(%s), hub_name_sorted(%s)", (folded, folded))
        assert got.fetchone() == (name_key(folded), name_sorted(folded))


def test_the_sql_index_finds_what_the_reference_finds(registry):
    url, citizens = registry
    rnd = random.Random(9)
    probes = []
    for c in rnd.sample(citizens, 200):
        dob = c.date_of_birth
        variant = rnd.choice(["exact", "year", "none", "swap"])
        if variant == "year":
            dob = dob.replace(year=dob.year + 1) if (dob.month, dob.day) != (2, 29) else dob
        elif variant == "none":
            dob = None
        elif variant == "swap" and dob.day <= 12:
            dob = date(dob.year, dob.day, dob.month)
        probes.append(Probe(c.name_folded, dob, c.sex, c.province_code, dob and dob.year))
    with psycopg.connect(psycopg_conninfo(url)) as conn:
        from_sql = find_candidates(PgRegistryIndex(conn), probes)
    reference = find_candidates(MemoryRegistryIndex(citizens), probes)
    assert [[s.as_dict() for s in found] for found in from_sql] == [
        [s.as_dict() for s in found] for found in reference
    ]
    assert sum(1 for found in from_sql if found) >= 190


@pytest.mark.parametrize(
    ("sql", "index"),
    [
        ("SELECT citizen_id FROM registry_citizens WHERE hub_name_key(name_folded) = 'an nguyen van'"
         " AND date_of_birth >= DATE '1980-01-01' AND date_of_birth < DATE '1983-01-01'",
         "ix_registry_citizens_name_key_dob"),
        ("SELECT citizen_id FROM registry_citizens WHERE hub_name_sorted(name_folded) ="
         " 'an nguyen van' AND province_code = '079'", "ix_registry_citizens_name_province"),
    ],
    ids=["name-key-year", "name-province"],
)  # fmt: skip
def test_each_look_up_reads_its_index(registry, sql, index):
    url, _ = registry
    with psycopg.connect(psycopg_conninfo(url)) as conn:
        conn.execute("SET enable_seqscan = off")  # a 3,000-row table would be read whole
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + sql))
    assert index in plan, plan

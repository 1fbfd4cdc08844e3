"""The demo generator loads 100k citizens and their sector records into PostgreSQL in < 30 s."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from hub.db import psycopg_conninfo
from hub.demo.generator import generate
from hub.demo.population import SECTORS, SOURCE_TABLES


def create_databases(admin_url: str, prefix: str) -> dict[str, str]:
    """One fresh empty database per demo source; returns source → URL."""
    urls = {}
    with psycopg.connect(psycopg_conninfo(admin_url), autocommit=True) as conn:
        for source in SOURCE_TABLES:
            name = f"{prefix}_{source}"
            conn.execute(f'CREATE DATABASE "{name}"')
            urls[source] = psycopg_conninfo(admin_url).rsplit("/", 1)[0] + "/" + name
    return urls


def drop_databases(admin_url: str, urls: dict[str, str]) -> None:
    with psycopg.connect(psycopg_conninfo(admin_url), autocommit=True) as conn:
        for url in urls.values():
            conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


@pytest.fixture
def demo_databases(servers) -> Iterator[dict[str, str]]:
    """Five fresh databases on the session's PostgreSQL, dropped afterwards."""
    urls = create_databases(servers.pg_url, f"demo_gen_{uuid.uuid4().hex[:8]}")
    try:
        yield urls
    finally:
        drop_databases(servers.pg_url, urls)


def test_100k_citizens_generate_and_load_in_under_30_seconds(demo_databases, tmp_path) -> None:
    manifest_path = tmp_path / "manifest.json"
    started = time.perf_counter()
    manifest = generate(demo_databases, citizens=100_000, seed=6, manifest_path=manifest_path)
    seconds = time.perf_counter() - started
    print(f"\ngenerate(100_000) into PostgreSQL: {seconds:.2f}s")
    assert seconds < 30
    assert manifest_path.exists()

    counts = {}
    for source, table in SOURCE_TABLES.items():
        with psycopg.connect(demo_databases[source]) as conn:
            counts[source] = conn.execute(f"SELECT count(*) FROM {table.table}").fetchone()[0]
            pk = conn.execute(
                "SELECT count(*) FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'p'",
                (table.table,),
            ).fetchone()[0]
            assert pk == 1, f"{source} has no primary key"
    assert counts["registry"] == manifest.citizens == 100_000
    assert {s: counts[s] for s in SECTORS} == manifest.records


def test_generate_replaces_existing_tables_and_new_bank_customers_get_the_next_id(
    demo_databases,
) -> None:
    generate(demo_databases, citizens=500, seed=1)
    manifest = generate(demo_databases, citizens=300, seed=2)
    with psycopg.connect(demo_databases["banking"]) as conn:
        rows = conn.execute("SELECT count(*), max(id) FROM public.khach_hang").fetchone()
        assert rows == (manifest.records["banking"], manifest.records["banking"])
        new_id = conn.execute(
            "INSERT INTO public.khach_hang (ma_khach_hang, so_giay_to, ho_ten)"
            " VALUES ('X1', '001099000001', 'NGUYEN VAN AN') RETURNING id"
        ).fetchone()[0]
        assert new_id == rows[1] + 1
    with psycopg.connect(demo_databases["tax"]) as conn:
        text_dob = conn.execute("SELECT ngay_sinh FROM public.nguoi_nop_thue LIMIT 1").fetchone()[0]
        assert len(text_dob) == 10 and text_dob[2] == "/" and text_dob[5] == "/"


def test_eg_population_loads_with_arabic_column_names_and_arabic_indic_ids(
    demo_databases,
) -> None:
    from hub.demo.population import EG_SOURCE_TABLES

    manifest = generate(demo_databases, citizens=800, seed=3, scheme="eg")
    for source, table in EG_SOURCE_TABLES.items():
        with psycopg.connect(demo_databases[source]) as conn:
            (count,) = conn.execute(f"SELECT count(*) FROM {table.table}").fetchone()
            assert count == (
                manifest.citizens if source == "registry" else manifest.records[source]
            )
    with psycopg.connect(demo_databases["registry"]) as conn:
        columns = {
            name
            for (name,) in conn.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = 'public.sijill_madani'::regclass"
                " AND attnum > 0"
            )
        }
        assert {"الرقم_القومي", "الاسم", "تاريخ_الوفاة"} <= columns
        ids = [r[0] for r in conn.execute('SELECT "الرقم_القومي" FROM public.sijill_madani')]
        assert all(len(i) == 14 and i.isascii() and i[0] in "23" for i in ids)
    with psycopg.connect(demo_databases["construction"]) as conn:
        ids = [
            r[0]
            for r in conn.execute(
                "SELECT raqam_qawmi_al_malek FROM public.tarakhis_al_bena2"
                " WHERE raqam_qawmi_al_malek <> ''"
            )
        ]
        assert ids and all(not i.isascii() for i in ids if i.strip())


@pytest.mark.parametrize("scheme", ["vn", "eg"])
def test_live_changes_touch_every_kind_in_either_population(demo_databases, scheme) -> None:
    """Filings, transactions, deaths and names fixed at source, in each scheme's own columns."""
    from hub.demo.live import LiveChanges
    from hub.demo.population import source_tables

    manifest = generate(demo_databases, citizens=600, seed=4, scheme=scheme)
    tables = source_tables(scheme)
    live = LiveChanges(demo_databases, manifest.to_dict(), seed=2, scheme=scheme)
    fixable = {m["record_key"]: m["sector"] for m in live._fixable}
    conns = {
        s: psycopg.connect(demo_databases[s], autocommit=True)
        for s in tables
        if s != "construction"
    }
    try:
        for _ in range(300):
            live.tick(conns)
        assert {k for k, n in live.counts.items() if n} == {
            "filing",
            "transaction",
            "death",
            "name_fixed",
        }
        reg = tables["registry"]
        death_col = reg.column_for("date_of_death").name
        (died,) = (
            conns["registry"]
            .execute(f'SELECT count(*) FROM {reg.table} WHERE "{death_col}" >= current_date - 1')
            .fetchone()
        )
        assert died >= 1
        fixed = [k for k in fixable if k not in {m["record_key"] for m in live._fixable}]
        assert fixed
        sector = fixable[fixed[0]]
        t = tables[sector]
        name_col, id_col = t.column_for("full_name").name, t.column_for("citizen_id").name
        name, cid = (
            conns[sector]
            .execute(
                f'SELECT "{name_col}", "{id_col}" FROM {t.table} WHERE "{t.key}" = %s', (fixed[0],)
            )
            .fetchone()
        )
        reg_name = (
            conns["registry"]
            .execute(
                f'SELECT "{reg.column_for("full_name").name}" FROM {reg.table}'
                f' WHERE "{reg.column_for("citizen_id").name}" = %s',
                (live.id_scheme.normalize(cid),),
            )
            .fetchone()
        )
        assert reg_name is not None and name == reg_name[0]
    finally:
        for conn in conns.values():
            conn.close()

"""`hub connector check` runs the statements the run needs (publication, slot, sample read
through the mapping) and leaves nothing behind: a check that passes means a run that starts.

One source database, hub database and topic prefix for the module; each test its own
table or config."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest

from hub.config import DatabaseConfig, HubConfig, KafkaConfig, MetricsConfig, SourceConfig
from hub.db import psycopg_conninfo
from tests.integration.connectors.conftest import SourceDb, run_once
from tests.integration.connectors.test_logical import TABLE, insert_rows, tax_source
from tests.integration.connectors.test_operations import cli

ROWS = 40


@pytest.fixture(scope="module")
def src(servers) -> Iterator[SourceDb]:
    db = SourceDb(servers.create_database("chk"))
    db.execute(TABLE)
    insert_rows(db, 1, ROWS)
    yield db
    with psycopg.connect(psycopg_conninfo(servers.pg_url), autocommit=True) as conn:
        for (slot,) in conn.execute(
            "SELECT slot_name FROM pg_replication_slots WHERE database = %s", (db.name,)
        ).fetchall():
            conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
    servers.drop_database(db.url)


@pytest.fixture(scope="module")
def config_of(servers) -> Iterator[Callable[..., HubConfig]]:
    from hub.db import engine_for
    from hub.db.migrate import upgrade

    hub_url = servers.create_database("hub")
    upgrade(hub_url)
    kafka = servers.kafka(partitions=3)

    def build(**sectors: dict) -> HubConfig:
        return HubConfig(
            kafka=KafkaConfig(**kafka.model_dump()),
            database=DatabaseConfig(url=hub_url),
            metrics=MetricsConfig(listen="127.0.0.1:0"),
            id_scheme="vn",
            sectors={k: SourceConfig.model_validate(v) for k, v in sectors.items()},
        )

    yield build
    engine_for(hub_url).dispose()
    servers.drop_database(hub_url)


def left_behind(db: SourceDb) -> list[tuple]:
    return db.execute(
        "SELECT 'publication', pubname FROM pg_publication UNION ALL"
        " SELECT 'slot', slot_name FROM pg_replication_slots WHERE database = current_database()"
    )


def fail_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("FAIL")]


def test_a_clean_source_passes_and_the_check_leaves_nothing_behind(src, config_of):
    out = cli(config_of(tax=tax_source(src)), "connector", "check", "tax")
    assert out.startswith("0\n") and not fail_lines(out), out
    assert f"{ROWS} sampled rows map, none would dead-letter" in out
    assert "CREATE PUBLICATION tried and rolled back" in out
    assert "a temporary pgoutput slot was created and dropped" in out
    assert left_behind(src) == []
    assert cli(config_of(tax=tax_source(src)), "connector", "check", "nope").startswith("2\n")


def test_a_text_date_column_without_a_format_is_an_error_with_the_count(src, config_of):
    source = tax_source(src)
    source["columns"]["date_of_birth"] = "ngay_sinh"  # dd/mm/yyyy text, no format:
    source["columns"]["date_of_death"] = "ten_nnt"  # names: the example must be masked
    out = cli(config_of(tax=source), "connector", "check", "tax")
    assert out.startswith("1\n"), out
    (dates,) = [line for line in fail_lines(out) if "column ngay_sinh" in line]
    assert f"{ROWS} of {ROWS} sampled rows would dead-letter" in dates
    assert "not an ISO date" in dates and "configure a format" in dates
    assert "'99/99/9999'" in dates and "03/1990" not in out
    (names,) = [line for line in fail_lines(out) if "column ten_nnt" in line]
    assert "'Nguy****" in names and "Nguyễn Văn" not in out
    assert not [line for line in out.splitlines() if line.startswith("warn") and "ISO" in line]


def test_an_incomplete_value_map_lists_the_values_it_lacks(src, config_of):
    source = tax_source(src)
    source["columns"]["sex"] = {"column": "gioi_tinh", "map": {"Nam": "M"}}
    out = cli(config_of(tax=source), "connector", "check", "tax")
    assert out.startswith("1\n"), out
    (line,) = fail_lines(out)
    assert "value map" in line and "sex (gioi_tinh): the map is incomplete" in line
    assert f"'Nữ' ×{ROWS // 2}" in line and "add them to columns.sex.map" in line


@pytest.fixture
def reader(src, servers) -> Iterator[tuple[str, SourceDb]]:
    """A role with REPLICATION that owns table ``owned`` (a copy of ``nnt``), and the source
    database as that role; dropped with what it owns afterwards."""
    role = f"chk_{uuid.uuid4().hex[:8]}"
    src.execute(f'CREATE ROLE "{role}" LOGIN REPLICATION')
    src.execute("CREATE TABLE owned (LIKE nnt INCLUDING ALL)")
    src.execute("INSERT INTO owned SELECT * FROM nnt")
    src.execute(f'ALTER TABLE owned OWNER TO "{role}"')
    user = servers.pg_url.split("://", 1)[1].split("@", 1)[0]
    yield role, SourceDb(src.url.replace(f"://{user}@", f"://{role}@", 1))
    src.execute(
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s",
        (f"hub_{role}",),
    )
    src.execute("DROP PUBLICATION IF EXISTS by_owner")
    src.execute(f'DROP OWNED BY "{role}"')
    src.execute(f'REVOKE ALL ON DATABASE "{src.name}" FROM "{role}"')
    src.execute(f'DROP ROLE "{role}"')


def test_a_publication_the_reader_cannot_alter_names_the_owners_statement(src, config_of, reader):
    role, as_role = reader
    src.execute("CREATE PUBLICATION by_owner FOR TABLE nnt")  # the DBA's, without owned
    source = tax_source(as_role, table="public.owned",
                        logical={"slot": f"hub_{role}", "publication": "by_owner"})  # fmt: skip
    out = cli(config_of(owned=source), "connector", "check", "owned")
    assert out.startswith("1\n"), out
    (line,) = fail_lines(out)
    assert "by_owner lacks public.owned" in line
    assert 'the owner runs ALTER PUBLICATION "by_owner" ADD TABLE "public"."owned";' in line
    assert src.execute("SELECT tablename FROM pg_publication_tables") == [("nnt",)]


def test_a_role_without_create_on_the_database_fails_the_check_until_granted(
    src, config_of, reader
):
    role, as_role = reader
    source = tax_source(as_role, table="public.owned",
                        logical={"slot": f"hub_{role}", "publication": f"pub_{role}",
                                 "heartbeat_s": 0.5})  # fmt: skip
    config = config_of(owned=source)

    out = cli(config, "connector", "check", "owned")
    assert out.startswith("1\n"), out
    (line,) = fail_lines(out)
    assert "publication" in line and "lacks the CREATE privilege on database" in line
    assert f'GRANT CREATE ON DATABASE "{src.name}" TO "{role}";' in line
    assert left_behind(src) == []

    src.execute(f'GRANT CREATE ON DATABASE "{src.name}" TO "{role}"')
    out = cli(config, "connector", "check", "owned")
    assert out.startswith("0\n") and not fail_lines(out), out
    assert left_behind(src) == []

    run_once(config, "owned")  # the run starts: publication, slot, snapshot
    assert sorted(left_behind(src)) == [("publication", f"pub_{role}"),
                                        ("slot", f"hub_{role}")]  # fmt: skip

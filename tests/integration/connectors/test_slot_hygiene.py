"""Slot and publication hygiene on a real PostgreSQL (wal_level=logical), as a hub role that is
not the tables' owner: drop whoever created the publication, drop twice, forget, and the slot
inventory (hub check, connector status, the hub_slot_retained_wal_bytes gauge)."""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
from prometheus_client import REGISTRY
from sqlalchemy.engine import make_url

from connectors.logical.inventory import SlotGauge, slot_inventory
from connectors.runner import run_connectors
from connectors.state import add_request, ensure_state, hub_engine, load_state, set_state
from hub.checks import check_targets
from hub.config import DatabaseConfig, HubConfig, KafkaConfig, MetricsConfig, SourceConfig
from hub.db import psycopg_conninfo
from tests.integration.connectors.conftest import SourceDb
from tests.integration.connectors.test_logical import TABLE, insert_rows, tax_source
from tests.integration.connectors.test_operations import cli, wait_for

GAUGE = "hub_slot_retained_wal_bytes"


def _as(url: str, role: str) -> str:
    return make_url(url).set(username=role, password=None).render_as_string(hide_password=False)


def all_gone(name: str) -> list[str]:
    """The exit status and lines of a drop that finds nothing left to do."""
    return ["0", f"replication slot hub_{name}: already gone",
            f"publication hub_{name}: already gone",
            f"hub database: nothing stored for connector {name} (already gone)"]  # fmt: skip


@dataclass
class Env:
    src: SourceDb  # as the superuser
    owner: SourceDb  # as the tables' owner
    hub_url: str  # the source as the hub's role: REPLICATION, not the owner
    owner_role: str
    config: HubConfig
    """tax (publication created by the owner) and health (the hub's own table) on one database."""

    def slot_exists(self, slot: str) -> bool:
        return bool(self.src.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s",
                                     (slot,)))  # fmt: skip

    def publication_exists(self, name: str) -> bool:
        return bool(self.src.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (name,)))


@pytest.fixture(scope="module")
def env(servers) -> Iterator[Env]:
    from hub.db.migrate import upgrade

    tag = uuid.uuid4().hex[:8]
    owner_role, hub_role = f"owner_{tag}", f"hubrole_{tag}"
    src_url, hub_db = servers.create_database("slots"), servers.create_database("hub")
    upgrade(hub_db)
    src = SourceDb(src_url)
    src.execute(f"CREATE ROLE {owner_role} LOGIN")
    src.execute(f"CREATE ROLE {hub_role} LOGIN REPLICATION")
    src.execute(f'GRANT CREATE ON DATABASE "{src.name}" TO {owner_role}, {hub_role}')
    src.execute(f"GRANT CREATE ON SCHEMA public TO {owner_role}, {hub_role}")
    src.execute(f"GRANT EXECUTE ON FUNCTION pg_log_standby_snapshot() TO {hub_role}")  # the guide's
    owner = SourceDb(_as(src_url, owner_role))
    owner.execute(TABLE)
    owner.execute(f"GRANT SELECT ON nnt TO {hub_role}")
    owner.execute("CREATE PUBLICATION hub_tax FOR TABLE nnt")  # as the guide tells the owner
    hub_side = SourceDb(_as(src_url, hub_role))
    hub_side.execute(TABLE.replace("nnt", "bhyt"))  # the hub role owns this one
    tax = tax_source(hub_side, logical={"heartbeat_s": 0.5})  # slot and publication: hub_tax
    health = {**tax, "table": "public.bhyt"}
    config = HubConfig(
        kafka=KafkaConfig(**servers.kafka(partitions=1).model_dump()),
        database=DatabaseConfig(url=hub_db),
        metrics=MetricsConfig(listen="127.0.0.1:0"),
        id_scheme="vn",
        sectors={"tax": SourceConfig.model_validate(tax),
                 "health": SourceConfig.model_validate(health)},
    )  # fmt: skip
    # A slot left by a connector removed from the config ("old"), with WAL written after it.
    hub_side.execute("SELECT pg_create_logical_replication_slot('hub_old', 'pgoutput')")
    insert_rows(owner, 1, 50)
    try:
        yield Env(src, owner, hub_side.url, owner_role, config)
    finally:
        hub_engine(hub_db).dispose()
        for (slot,) in src.execute(
            "SELECT slot_name FROM pg_replication_slots WHERE database = %s", (src.name,)
        ):
            src.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
        servers.drop_database(src_url)
        servers.drop_database(hub_db)
        with psycopg.connect(psycopg_conninfo(servers.pg_url), autocommit=True) as conn:
            for role in (owner_role, hub_role):
                conn.execute(f"DROP ROLE {role}")


def test_drop_of_an_owner_created_publication_names_the_statement_and_still_cleans_up(env):
    config = env.config
    engine = hub_engine(config.database.url)
    assert run_connectors(config, ["tax"], once=True) == 0  # the slot gauge runs meanwhile
    assert REGISTRY.get_sample_value(
        GAUGE, {"source": env.src.name, "slot": "hub_old", "configured": "false"}
    ) > 0  # fmt: skip
    add_request(engine, "tax", "pause", "test")
    assert env.slot_exists("hub_tax") and load_state(engine, "tax") is not None

    out = cli(config, "connector", "drop", "tax", "--yes")
    code, *lines = out.splitlines()
    assert code == "1", out
    assert "dropped replication slot hub_tax" in lines
    assert any(ln.startswith("removed connector tax's rows from the hub database: status (1),"
                             " requests (1)") for ln in lines), out  # fmt: skip
    (left,) = [ln for ln in lines if ln.startswith("left to do:")]
    assert "must be owner of publication hub_tax" in left and env.owner_role in left
    assert left.endswith(f"must run on database {env.src.name}: DROP PUBLICATION hub_tax;")
    assert "Traceback" not in out
    assert not env.slot_exists("hub_tax") and load_state(engine, "tax") is None
    assert env.publication_exists("hub_tax")

    again = cli(config, "connector", "drop", "tax", "--yes")  # the owner has not run it yet
    assert again.startswith("1\n") and "replication slot hub_tax: already gone" in again
    assert "DROP PUBLICATION hub_tax;" in again and "nothing stored for connector tax" in again

    env.owner.execute(left.rsplit(": ", 1)[1])  # the statement exactly as printed
    assert not env.publication_exists("hub_tax")
    assert cli(config, "connector", "drop", "tax", "--yes").splitlines() == all_gone("tax")


def test_drop_of_the_hubs_own_publication_drops_everything_and_twice_is_fine(env):
    config = env.config
    hub_side = SourceDb(env.hub_url)
    hub_side.execute("CREATE PUBLICATION hub_health FOR TABLE bhyt")
    hub_side.execute("SELECT pg_create_logical_replication_slot('hub_health', 'pgoutput')")
    ensure_state(hub_engine(config.database.url), "health", "logical")

    first = cli(config, "connector", "drop", "health", "--yes")
    assert first.splitlines() == [
        "0",
        "dropped replication slot hub_health",
        "dropped publication hub_health",
        "removed connector health's rows from the hub database: status (1)",
    ]
    assert not env.slot_exists("hub_health") and not env.publication_exists("hub_health")
    assert cli(config, "connector", "drop", "health", "--yes").splitlines() == all_gone("health")


def test_drop_of_a_source_that_cannot_be_reached_says_what_is_left_in_one_line(env):
    down = env.config.sectors["health"].model_copy(
        update={"url": "postgresql+psycopg://nobody@127.0.0.1:1/none"}
    )
    config = env.config.model_copy(update={"sectors": {"down": down}})
    ensure_state(hub_engine(config.database.url), "down", "logical")
    out = cli(config, "connector", "drop", "down", "--yes")
    code, *lines = out.splitlines()
    assert code == "1" and "Traceback" not in out
    assert lines[0].startswith("removed connector down's rows")
    assert lines[1].startswith("left to do: source of down (postgresql+psycopg://nobody@")
    assert lines[1].endswith("may still be there: run the drop again once it answers")


def test_forget_removes_a_removed_connectors_rows_and_names_its_slot(env):
    config = env.config
    engine = hub_engine(config.database.url)
    ensure_state(engine, "old", "logical")
    set_state(engine, "old", state="failed", error="gone")
    status = cli(config, "connector", "status")
    assert re.search(r"^old +logical +failed \(not in config\)", status, re.M), status
    (orphan,) = [ln for ln in status.splitlines() if ln.startswith("orphan slot")]
    assert orphan.startswith(f"orphan slot hub_old on database {env.src.name} retains ")
    assert orphan.endswith(
        "inactive: drop it there with SELECT pg_drop_replication_slot('hub_old');"
    )

    out = cli(config, "connector", "forget", "old")
    code, done, left = out.splitlines()
    assert code == "1" and done == "removed connector old's rows from the hub database: status (1)"
    assert left.startswith("left to do: slot hub_old on database") and "pg_drop_replication" in left
    assert load_state(engine, "old") is None
    assert "(not in config)" not in cli(config, "connector", "status")
    again = cli(config, "connector", "forget", "old")
    assert "nothing stored for connector old (already gone)" in again

    refused = cli(config, "connector", "forget", "tax")
    assert refused.splitlines() == [
        "2",
        "hub: connector tax is in the config: use `hub connector drop tax`, which also drops"
        " its slot and publication",
    ]


def test_the_inventory_finds_a_forgotten_slot_in_hub_check_and_in_the_gauge(env):
    inventory = slot_inventory(env.config)
    assert inventory.errors == []
    old = next(s for s in inventory.slots if s.slot == "hub_old")
    assert old.retained_bytes > 0 and not old.configured and not old.active
    assert old.source == env.src.name  # tax and health share the URL: listed once, by database
    assert [s.slot for s in inventory.slots].count("hub_old") == 1

    lines = [r.line() for r in check_targets(env.config) if not r.ok]
    (line,) = [ln for ln in lines if "hub_old" in ln]
    assert line.startswith("FAIL slot hub_old")
    assert re.search(r"retains [0-9.]+ [kMG]?B of WAL \([0-9]+ bytes\)", line)
    assert line.endswith("SELECT pg_drop_replication_slot('hub_old');")

    # One connector alone on the database: the series is labelled with its name.
    alone = env.config.model_copy(update={"sectors": {"tax": env.config.sectors["tax"]}})
    env.src.execute("SELECT pg_create_logical_replication_slot('hub_tmp', 'pgoutput')")
    stopping = threading.Event()
    gauge = SlotGauge(alone, stopping, interval_s=0.1).start()
    try:
        labels = {"source": "tax", "slot": "hub_tmp", "configured": "false"}
        wait_for(lambda: REGISTRY.get_sample_value(GAUGE, labels) is not None, what="the series")
        before = REGISTRY.get_sample_value(GAUGE, labels)
        insert_rows(env.owner, 1000, 200)
        wait_for(lambda: REGISTRY.get_sample_value(GAUGE, labels) > before, what="more WAL")
        env.src.execute("SELECT pg_drop_replication_slot('hub_tmp')")
        wait_for(lambda: REGISTRY.get_sample_value(GAUGE, labels) is None, what="series gone")
    finally:
        stopping.set()
        gauge.stop()

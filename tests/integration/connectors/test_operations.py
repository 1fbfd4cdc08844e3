"""Operating connectors: requests (pause, resume, resnapshot), check, status, drop, and the
dead-letter commands, through the real CLI groups."""

from __future__ import annotations

import threading
import time

import pytest
from click.testing import CliRunner

from connectors.cli import connector, dlq
from connectors.runner import ConnectorRunner
from connectors.state import hub_engine, load_state
from hub.errors import FatalError
from tests.integration.connectors.conftest import changes, dead_letters, run_once
from tests.integration.connectors.test_logical import TABLE, insert_rows, tax_source


@pytest.fixture
def nnt(source_db):
    source_db.execute(TABLE)
    return source_db


class _Obj:
    def __init__(self, config):
        self.config = config


def cli(config, *args: str) -> str:
    """Run a connector/dlq command as `hub` would, with ``config`` as the loaded config."""
    group = {"connector": connector, "dlq": dlq}[args[0]]
    result = CliRunner().invoke(group, list(args[1:]), obj=_Obj(config), catch_exceptions=False)
    return f"{result.exit_code}\n{result.output}"


def wait_for(predicate, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_pause_resume_and_resnapshot_requests_reach_a_running_connector(nnt, make_config):
    config = make_config(tax=tax_source(nnt))
    topic = changes(config, "tax")
    insert_rows(nnt, 1, 3)
    engine = hub_engine(config.database.url)
    stopping = threading.Event()
    runner = ConnectorRunner(config, "tax", stopping=stopping)
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: (load_state(engine, "tax") or {}).get("state") == "running",
                 what="streaming")  # fmt: skip
        assert len(topic.read()) == 3

        assert cli(config, "connector", "pause", "tax").startswith("0\npause of tax requested")
        wait_for(lambda: load_state(engine, "tax")["state"] == "paused", what="paused")
        insert_rows(nnt, 4, 1)
        time.sleep(1.0)
        assert topic.read() == []  # paused: the slot holds the change

        cli(config, "connector", "resume", "tax")
        wait_for(lambda: load_state(engine, "tax")["state"] == "running", what="resumed")
        got: list = []
        wait_for(lambda: got.extend(topic.read()) or got, what="the held change")
        assert [m.record_key for m in got] == ["MST4"]

        cli(config, "connector", "resnapshot", "tax")
        again: list = []
        wait_for(lambda: again.extend(topic.read()) or len(again) >= 4, what="re-snapshot")
        assert sorted(m.record_key for m in again) == ["MST1", "MST2", "MST3", "MST4"]
        assert {m.op for m in again} == {"r"}
        nnt.execute("UPDATE nnt SET trang_thai = 'closed' WHERE ma_so_thue = 'MST2'")
        after: list = []
        wait_for(lambda: after.extend(topic.read()) or after, what="streaming again")
        assert [(m.op, m.record_key) for m in after] == [("u", "MST2")]

        cli(config, "connector", "restart", "tax")  # reconnects, resumes at the slot
        wait_for(lambda: load_state(engine, "tax")["state"] == "running", what="restarted")
        nnt.execute("UPDATE nnt SET trang_thai = 'active' WHERE ma_so_thue = 'MST2'")
        restarted: list = []
        wait_for(lambda: restarted.extend(topic.read()) or restarted, what="after restart")
        assert [(m.op, m.record_key) for m in restarted] == [("u", "MST2")]
    finally:
        stopping.set()
        thread.join(30)
    assert load_state(engine, "tax")["state"] == "stopped"

    out = cli(config, "connector", "status")
    assert out.startswith("0\n") and "tax" in out and "logical" in out and "stopped" in out


def test_check_reports_each_problem_and_drop_removes_slot_and_publication(nnt, make_config):
    config = make_config(tax=tax_source(nnt))
    out = cli(config, "connector", "check", "tax")
    assert out.startswith("0\n"), out
    for what in ("reachable", "wal_level", "privileges", "publication", "slot", "columns"):
        assert what in out
    assert "deletes carry only the key" in out  # REPLICA IDENTITY DEFAULT, key ≠ citizen ID

    bad = make_config(
        tax=tax_source(nnt, columns={"citizen_id": "khong_co", "full_name": "ten_nnt"})
    )
    out = cli(bad, "connector", "check", "tax")
    assert out.startswith("1\n") and "FAIL" in out and "khong_co" in out

    run_once(config, "tax")
    slot, pub = f"hub_{nnt.name}", f"pub_{nnt.name}"
    assert nnt.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (slot,))
    out = cli(config, "connector", "drop", "tax", "--yes")
    assert "dropped replication slot" in out and "dropped publication" in out
    assert not nnt.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (slot,))
    assert not nnt.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (pub,))
    assert load_state(hub_engine(config.database.url), "tax") is None


def test_dead_letters_are_listed_and_replayed_after_the_mapping_is_fixed(nnt, make_config):
    config = make_config(tax=tax_source(nnt))
    run_once(config, "tax")
    nnt.execute("INSERT INTO nnt (ma_so_thue, so_cccd, ten_nnt, ngay_sinh, gioi_tinh)"
                " VALUES ('X1', '001090000001', 'X', '01/01/1990', 'Khác')")  # fmt: skip
    run_once(config, "tax")
    assert changes(config, "tax").read() == []
    assert len(dead_letters(config).read()) == 1

    out = cli(config, "dlq", "list")
    assert "gioi_tinh" in out and "value map" in out and "X1" not in out  # keys masked
    assert "X1" in cli(config, "dlq", "list", "--unmask")

    assert "0 change(s); 1 still failing" in cli(config, "dlq", "replay")
    fixed_source = tax_source(nnt)
    fixed_source["columns"]["sex"]["map"]["Khác"] = None  # operator accepts "other" as unknown
    fixed = make_config(tax=fixed_source).model_copy(
        update={"kafka": config.kafka, "database": config.database}
    )
    assert "published 1 change(s); 0 still failing" in cli(fixed, "dlq", "replay")
    (event,) = changes(config, "tax").read()
    assert event.record_key == "X1" and event.op == "c" and event.value["after"]["sex"] is None


def test_drop_refuses_while_the_connector_reports_itself_running(nnt, make_config):
    from connectors.state import set_state

    config = make_config(tax=tax_source(nnt))
    run_once(config, "tax")
    set_state(hub_engine(config.database.url), "tax", state="running")
    with pytest.raises(FatalError, match="tax is running .* stop it first"):
        cli(config, "connector", "drop", "tax", "--yes")
    slot = f"hub_{nnt.name}"
    assert nnt.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (slot,))
    # A killed runner: its state still says running, but the heartbeat stopped 60 s ago, so
    # the status shows it down and the drop goes ahead (no 120 s wait).
    with hub_engine(config.database.url).begin() as conn:
        conn.exec_driver_sql(
            "UPDATE connector_state SET heartbeat_at = now() - interval '60 seconds'"
            " WHERE name = 'tax'"
        )
    out = cli(config, "connector", "drop", "tax", "--yes")
    assert "dropped replication slot" in out

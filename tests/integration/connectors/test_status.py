"""Status that tells the truth: a killed connector process is shown ``down``, a second runner
of a connector is refused while the first keeps capturing, a snapshot reports its progress,
and a paused connector's lag keeps growing on the status timer."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from prometheus_client import REGISTRY

from connectors import runner as runner_module
from connectors.ops import status
from connectors.runner import ConnectorRunner
from connectors.state import RunnerLock, add_request, hub_engine
from tests.integration.connectors.conftest import run_once, running
from tests.integration.connectors.test_crash import write_config
from tests.integration.connectors.test_logical import TABLE, insert_rows, tax_source
from tests.integration.connectors.test_operations import cli
from tests.integration.connectors.test_snapshot import TABLE as SNAPSHOT_TABLE
from tests.integration.connectors.test_snapshot import permits_source
from tests.integration.hub.procs import stop
from tests.integration.hub.procs import wait_for as wait_every

pytestmark = pytest.mark.heavy(37)

ROWS = 3000


def wait_for(predicate, timeout: float, what: str, every: float = 0.1):
    """``procs.wait_for`` polling every 0.1 s by default: the SIGKILL-to-down time is measured."""
    return wait_every(predicate, timeout, what, every=every)


def tax_status(config) -> dict:
    return next(r for r in status(config) if r["name"] == "tax")


def connector_run(path, **popen) -> subprocess.Popen:
    """``hub connector run tax`` as its own process, with the config file at ``path``."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("HUB_DATABASE_URL", "HUB_KAFKA_BOOTSTRAP")}  # fmt: skip
    return subprocess.Popen(
        [sys.executable, "-m", "hub", "--config", str(path), "connector", "run", "tax",
         "--no-metrics"],
        env=env, **popen,
    )  # fmt: skip


def test_a_second_runner_is_refused_and_a_killed_one_is_shown_down(source_db, make_config,
                                                                   tmp_path):  # fmt: skip
    source_db.execute(TABLE)
    insert_rows(source_db, 1, ROWS)
    source_db.execute("ANALYZE nnt")
    config = make_config(tax=tax_source(source_db, snapshot={"chunk_size": 500}))
    path = write_config(config, tmp_path / "hub.yaml")
    first_log = tmp_path / "first.log"
    with open(first_log, "wb") as out:
        first = connector_run(path, stdout=out, stderr=subprocess.STDOUT)
    second = None
    try:
        # A second runner beside the first is refused with one line; the first goes on.
        wait_for(lambda: tax_status(config)["state"] != "never run", 60, "the first to start")
        second = connector_run(path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        seen = []
        row = wait_for(
            lambda: seen.append(r := tax_status(config)) or (r["state"] == "running" and r),
            60, "the snapshot to finish",
        )  # fmt: skip
        assert row["snapshot_done"] and row["rows_captured"] == ROWS
        progress = row["snapshot_progress"]
        assert progress["rows"] == ROWS and progress["estimated"] == ROWS
        log = first_log.read_text()
        assert "snapshot of public.nnt at" in log and f"started (~{ROWS:,} rows)" in log
        assert f"{ROWS // 2:,} rows (50% of ~{ROWS:,}), ETA" in log
        assert f"done: {ROWS:,} rows in " in log
        during = [
            r for r in seen if r["state"] == "snapshotting" and (r["snapshot"] or {}).get("rows")
        ]
        for r in during:  # whatever the status caught mid-snapshot had its figures
            assert r["snapshot"]["estimated"] == ROWS and r["snapshot"]["eta_s"] is not None

        _, stderr = second.communicate(timeout=120)
        assert second.returncode == 1, stderr
        refusals = [line for line in stderr.splitlines() if "refused" in line]
        assert len(refusals) == 1, stderr
        assert "connector tax is already running (hub runner tax pid " in (refusals[0])
        assert f"pid {first.pid}@" in refusals[0]
        assert "Traceback" not in stderr
        insert_rows(source_db, ROWS + 1, 5)
        wait_for(lambda: tax_status(config)["rows_captured"] == ROWS + 5, 30, "capture")
        assert first.poll() is None

        # SIGKILL: no clean stop writes a state, yet the status says down within 30 s.
        assert tax_status(config)["state"] == "running"
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        killed = time.monotonic()
        row = wait_for(lambda: (r := tax_status(config))["state"] == "down" and r, 30,
                       "down", every=0.25)  # fmt: skip
        took = time.monotonic() - killed
        assert took < 30 and row["reported_state"] == "running"
        assert row["heartbeat_age_s"] > 15
        out = cli(config, "connector", "status")
        assert out.startswith("0\n"), out
        line = next(x for x in out.splitlines() if x.startswith("tax"))
        assert " down " in line and " done " in line and " ago " in line
        lock = RunnerLock(config.database.url, "tax")  # the killed runner's lock is free
        lock.acquire()
        lock.release()
        print(f"SIGKILL → down in {took:.1f}s")
    finally:
        stop(first)
        if second is not None:
            stop(second)


def test_a_paused_connectors_lag_grows_on_the_timer(source_db, make_config, monkeypatch):
    monkeypatch.setattr(runner_module, "HEARTBEAT_S", 0.5)
    source_db.execute(TABLE)
    insert_rows(source_db, 1, 3)
    config = make_config(tax=tax_source(source_db))
    engine = hub_engine(config.database.url)
    with running(config, "tax"):
        wait_for(lambda: tax_status(config)["state"] == "running", 60, "streaming")
        # A second runner in the same process is refused as well, and leaves the state alone.
        assert ConnectorRunner(config, "tax", stopping=threading.Event()).run() == 1
        assert tax_status(config)["state"] == "running"

        def lag() -> float:
            return REGISTRY.get_sample_value("hub_connector_lag_seconds", {"connector": "tax"})

        def slot_lag() -> float:
            return REGISTRY.get_sample_value("hub_connector_slot_lag_bytes", {"connector": "tax"})

        wait_for(lambda: lag() == 0.0, 10, "caught up")
        add_request(engine, "tax", "pause", "test")
        wait_for(lambda: tax_status(config)["state"] == "paused", 10, "paused")
        retained = wait_for(lambda: slot_lag(), 10, "a slot lag")
        insert_rows(source_db, 4, 200)  # WAL the paused slot must keep
        wait_for(lambda: lag() > 2.0, 10, "lag to grow while paused")
        first = lag()
        wait_for(lambda: lag() >= first + 1.0, 10, "lag to keep growing")
        wait_for(lambda: slot_lag() > retained, 10, "the retained WAL to grow")
        row = tax_status(config)
        assert row["state"] == "paused" and row["lag_seconds"] > 2.0
        assert row["lag_bytes"] > retained and row["heartbeat_age_s"] < 5
    row = tax_status(config)
    assert row["state"] == "paused" and row["heartbeat_age_s"] is None  # stopped cleanly


def test_a_snapshot_source_reports_its_run_against_the_tables_row_count(source_db, make_config,
                                                                       caplog):  # fmt: skip
    source_db.execute(SNAPSHOT_TABLE)
    source_db.execute(
        "INSERT INTO giay_phep SELECT 'GP' || lpad(i::text, 4, '0'),"
        " '0011900' || lpad(i::text, 5, '0'), 'Chủ ' || i, DATE '2023-01-01' + i % 300"
        " FROM generate_series(1, 120) i"
    )  # never analyzed: the estimate is a count(*)
    config = make_config(construction=permits_source(source_db, chunk_size=50))
    caplog.set_level(logging.INFO, logger="connectors.progress")
    run_once(config, "construction")
    lines = [r.getMessage() for r in caplog.records if r.name == "connectors.progress"]
    assert lines[0] == "construction: snapshot of giay_phep run 1 (full) started (~120 rows)"
    assert lines[1].startswith("construction: snapshot of giay_phep run 1 (full): 50 rows "
                               "(42% of ~120), ETA ")  # fmt: skip
    assert lines[-1].startswith("construction: snapshot of giay_phep run 1 (full) done: "
                                "120 rows in ") and lines[-1].endswith("s, 0 deleted")  # fmt: skip
    row = next(r for r in status(config) if r["name"] == "construction")
    assert row["snapshot_progress"]["estimated"] == 120 and row["snapshot_progress"]["rows"] == 120

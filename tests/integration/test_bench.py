"""``hub bench`` end to end at smaller hidden scales: on Apache Kafka, for the reconciler group
and for signals (``--scale 100k`` with every figure is test_bench_100k.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import psycopg
import pytest

from hub.bench.baselines import fold_sql
from hub.bench.probes import PhaseProbe
from hub.db import psycopg_conninfo
from hub.testing import broker_line, session_broker
from reconciliation.names import fold
from tests.integration.benchrun import bench_env, run_bench

pytestmark = pytest.mark.heavy(160)


@pytest.mark.timeout(240)
def test_every_figure_the_bench_runs_also_runs_on_apache_kafka(tmp_path):
    # Kept small: figure 1 (capture, reconcile, the SQL baseline) and figure 2 (the raw
    # consumer) at 1k; a full `hub bench --broker kafka` runs the others on the same broker.
    if session_broker() != "kafka":
        pytest.skip(broker_line())
    started = time.monotonic()
    proc, result = run_bench(
        tmp_path, "--broker", "kafka", "--skip", "capture", "--skip", "latency",
        "--skip", "scaling", timeout=200, scale="1k", part_citizens=1000,
    )  # fmt: skip
    print(f"hub bench --scale 1k --broker kafka: {time.monotonic() - started:.1f}s")
    assert result["settings"]["broker"] == "kafka"
    full = result["figures"]["full_reconciliation"]
    assert full["agree"], full["agreement"]
    assert all(a["hub"] > 0 for a in full["agreement"].values())
    assert full["hub_phases"]["reconcile"]["servers"]["broker"] is not None
    stream = result["figures"]["streaming_reconcile"]
    records = result["settings"]["records"]
    assert stream["raw_messages"] == stream["messages"] == records["registry"] + records["tax"]
    assert "ECONNREFUSED" not in proc.stderr


@pytest.mark.parametrize(
    "name",
    ["Đặng  Thị Hoà", "NGUYỄN VĂN THỦY", " Trần   Minh\tQuân ", "O\u2019Brien Mary",
     "أحمد إبراهيم", "فاطمة آل عيسى", "مُحَمَّد", "\u0661\u0662 Ali", "\ufb01lip"],
)  # fmt: skip
def test_the_sql_baselines_name_folding_is_the_hubs(hub_db, name):
    import unicodedata

    with psycopg.connect(psycopg_conninfo(hub_db)) as conn:
        for form in (name, unicodedata.normalize("NFD", name)):
            (folded,) = conn.execute(f"SELECT {fold_sql('%s::text')}", (form,)).fetchone()
            assert folded == fold(form), form


def test_the_phase_probe_counts_what_the_hub_database_did_between_its_readings(hub_db):
    conninfo = psycopg_conninfo(hub_db)
    probe = PhaseProbe({"test": os.getpid(), "gone": None}, conninfo).start()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("CREATE TABLE probe_rows AS SELECT g, repeat('x', 100) AS pad"
                     " FROM generate_series(1, 20000) g")  # fmt: skip
        conn.execute("SELECT count(*) FROM probe_rows").fetchone()
        conn.execute("DROP TABLE probe_rows")
    phase = probe.stop()  # waits for the writing backend to end and count its statistics
    db = phase["hub_db"]
    assert set(db) == {"checkpoints", "checkpoint_s", "checkpoint_buffers", "autovacuums",
                       "autoanalyzes", "blocks_read", "blocks_hit", "temp_mb", "wal_mb"}  # fmt: skip
    assert db["wal_mb"] >= 2  # 20,000 rows of ~130 bytes
    assert db["blocks_hit"] > 0
    assert all(v >= 0 for v in db.values()), db
    assert phase["servers"]["test"] >= 0 and phase["servers"]["gone"] is None
    assert set(phase["machine"]) == {"user", "system", "iowait", "steal", "idle"}


def test_the_phase_probe_of_an_unreachable_database_reports_no_figures():
    probe = PhaseProbe({}, "host=127.0.0.1 port=1 user=nobody connect_timeout=2")
    assert probe.start().stop()["hub_db"] == {}


@pytest.mark.serial  # a bench with a time limit: in `make test`'s lane at normal priority
@pytest.mark.timeout(300)
def test_two_reconcilers_of_a_group_share_the_partitions_and_agree_with_the_sql(tmp_path):
    proc, result = run_bench(
        tmp_path,
        "--reconcilers",
        "2",
        "--skip",
        "capture",
        "--skip",
        "scaling",
        timeout=280,
    )
    assert result["settings"]["reconciler_processes"] == 2
    full = result["figures"]["full_reconciliation"]
    assert full["agree"], full["agreement"]
    per_process = full["hub_messages_per_reconciler"]
    assert len(per_process) == 2 and all(n > 0 for n in per_process), per_process
    stream = result["figures"]["streaming_reconcile"]
    assert sum(per_process) == stream["messages"]
    assert stream["reconciler_processes"] == 2
    assert stream["hub_events_per_s"] * 2 == pytest.approx(stream["hub_group_events_per_s"], abs=2)
    # Live, both members store mismatches, every change is timed once, by the one that stored it.
    latency = result["figures"]["latency"]
    assert latency["reconciler_processes"] == 2
    assert latency["mismatches_stored"] == latency["changes"]
    per_member = latency["samples_per_reconciler"]
    assert len(per_member) == 2 and all(n > 0 for n in per_member), per_member
    assert sum(per_member) == latency["samples"] >= latency["changes"]
    # Their group of its own starts where figure 1's group stopped, not at the beginning
    # (which would be figure 1's messages again, and then the changes).
    live_messages = sum(latency["messages_per_reconciler"])
    assert latency["changes"] <= live_messages < stream["messages"], live_messages
    assert "by 2 reconciler processes" in proc.stdout
    assert "latency: connectors + 2 reconcilers live" in proc.stdout
    assert "for 2)" in proc.stdout


def _cmdline(p: psutil.Process) -> str:
    try:
        return " ".join(p.cmdline())
    except psutil.Error:
        return ""


def _zombie(p: psutil.Process) -> bool:
    """Ended, waiting for init to reap it (an orphan's parent is gone)."""
    try:
        return p.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    ("parts", "phase", "sig"),  # 80 parts: ~30 s of generation
    [("80", "generating", signal.SIGTERM), ("3", "capturing", signal.SIGTERM),
     ("80", "generating", signal.SIGKILL)],
)  # fmt: skip
def test_a_signal_stops_the_bench_at_once_and_leaves_no_process(tmp_path, parts, phase, sig):
    """SIGTERM (or SIGKILL) in the middle of a phase: the bench stops within seconds, with
    its servers, its workers and the part generators it started (none goes on loading or
    retrying)."""
    citizens = str(20_000 // int(parts) + 1)
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub.bench", "--scale", "20k", "--part-citizens", citizens,
         "--out", str(tmp_path / "bench.json"), "--skip", "scaling"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=bench_env(),
    )  # fmt: skip
    try:
        for line in proc.stdout:
            if phase in line:
                break
        time.sleep(2)
        tree = psutil.Process(proc.pid).children(recursive=True)
        names = [_cmdline(p) for p in tree]
        busy = "spawn_main" if phase == "generating" else "hub.bench capture"
        assert any(busy in n for n in names), names  # the phase's own processes are at work
        tree += psutil.Process(proc.pid).children(recursive=True)  # parts come and go
        proc.send_signal(sig)
        started = time.monotonic()
        proc.wait(timeout=90)
        # Before, the bench first generated every part still queued (59 s here).
        assert time.monotonic() - started < 30
        assert not (tmp_path / "bench.json").exists()
        _, alive = psutil.wait_procs(set(tree), timeout=10)
        assert [_cmdline(p) for p in alive if not _zombie(p)] == []
    finally:
        if proc.poll() is None:
            proc.kill()

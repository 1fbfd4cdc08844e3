"""``hub bench`` end to end: ``--scale 100k`` within 5 minutes with every figure, its baseline
and ratio; smaller hidden scales for the reconciler group and for signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import psycopg
import pytest

from hub.bench.baselines import fold_sql
from hub.bench.cli import hub_server_settings
from hub.bench.probes import PhaseProbe
from hub.db import psycopg_conninfo
from hub.testing import broker_line, session_broker
from reconciliation.names import fold

FIGURES = {
    "full_reconciliation": ("hub_s", "sql_s", "ratio", "agreement"),
    "streaming_reconcile": ("hub_events_per_s", "raw_events_per_s", "ratio"),
    "capture": ("stream_rows_per_s", "raw_producer_per_s", "ratio", "snapshot_rows_per_s"),
    "latency": ("p50_ms", "p95_ms", "p99_ms", "offered_per_s", "achieved_per_s"),
    "scaling": ("runs", "time_ratio", "data_ratio", "rss_ratio"),
}


def bench_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}


def run_bench(
    tmp_path, *argv: str, timeout: float, scale: str = "20k", part_citizens: int = 8000
) -> tuple[subprocess.CompletedProcess, dict]:
    """``hub bench --scale 20k`` (or ``scale``) with ``argv``: the finished process and its
    JSON results."""
    out = tmp_path / "bench.json"
    # No HUB_DATABASE_URL / HUB_KAFKA_BOOTSTRAP: the bench starts its own embedded servers,
    # as `hub bench` does on a fresh machine — the hub's database on a PostgreSQL server of
    # its own, next to the sources' one.
    env = bench_env()
    # Small parts: the data is built and loaded as 3 parts (2 at a time), as larger scales are.
    base = ["--scale", scale, "--out", str(out), "--part-citizens", str(part_citizens)]
    proc = subprocess.run(
        [sys.executable, "-m", "hub.bench", *base, *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, json.loads(out.read_text())


@pytest.mark.timeout(360)
def test_bench_at_100k_prints_every_figure_with_baseline_and_ratio_within_5_minutes(tmp_path):
    # Issue #7's acceptance: `hub bench --scale 100k` completes in CI in under 5 minutes
    # (it does not fail on the ratios: the machine is shared).
    proc, result = run_bench(tmp_path, timeout=300, scale="100k", part_citizens=40_000)
    for figure, keys in FIGURES.items():
        data = result["figures"][figure]
        for key in keys:
            assert data[key] is not None, (figure, key)
    full = result["figures"]["full_reconciliation"]
    # The hub and the SQL baseline find the same records for every rule both express.
    assert full["agree"], full["agreement"]
    assert all(a["hub"] > 0 for a in full["agreement"].values())
    assert (
        result["figures"]["latency"]["mismatches_stored"] == result["figures"]["latency"]["changes"]
    )
    scaling = result["figures"]["scaling"]
    for run in scaling["runs"]:
        assert run["seconds"] > 0 and run["max_rss_mb"] > 0
    # The small scale ran twice; the faster run is the reference.
    assert len(scaling["small_runs_s"]) == 2
    assert scaling["runs"][0]["seconds"] == min(scaling["small_runs_s"])
    # Each phase says who used the CPU and what the hub database did meanwhile.
    for name, phase in full["hub_phases"].items():
        assert phase["workers_cpu_s"] > 0, name
        assert all(phase["servers"][s] is not None for s in ("hub_postgres", "broker")), phase
        assert phase["machine"]["steal"] >= 0 and phase["machine"]["user"] > 0, phase
        assert phase["hub_db"]["wal_mb"] is not None, phase
    reconcile = full["hub_phases"]["reconcile"]
    assert reconcile["servers"]["hub_postgres"] > 0 and reconcile["hub_db"]["wal_mb"] > 0
    assert "CPU s: workers" in proc.stdout
    for line in ("1 full reconciliation", "2 streaming reconcile", "3 capture", "4 latency",
                 "5 scaling time", "scaling peak RSS"):  # fmt: skip
        assert line in proc.stdout
    assert "only_hub" in proc.stdout
    assert "(3 parts)" in proc.stdout
    assert result["settings"]["records"]["registry"] == 100_000
    assert result["settings"]["hub_database_server"] == "its own embedded server"
    assert result["settings"]["hub_server_settings"] == hub_server_settings()
    for second in result["figures"]["latency"]["slow_seconds"]:
        assert second["max_ms"] > 500 and second["over"] >= 1


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

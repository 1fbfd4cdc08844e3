"""The bench's pure helpers: scales, parts, percentiles, the slow-seconds timeline and the
phase probe's CPU accounting."""

from __future__ import annotations

import multiprocessing
import operator
import os
import subprocess
import sys
import time

import click
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.bench.cli import hub_shared_buffers_mb
from hub.bench.figures import percentile, slow_seconds
from hub.bench.probes import phase_delta, phase_summary, tree_cpu_seconds
from hub.bench.runs import _in_processes
from hub.bench.scale import PART_CITIZENS, parse_scale, part_count
from hub.bench.workers import Worker
from hub.demo.generator import part_sizes


@pytest.mark.parametrize(
    ("text", "n"), [("100k", 100_000), ("1m", 1_000_000), ("10M", 10_000_000), ("2.5k", 2500)]
)
def test_scales(text: str, n: int) -> None:
    assert parse_scale(text) == n


@pytest.mark.parametrize("text", ["lots", "500", "0.1k"])
def test_scales_that_cannot_be_run_are_refused(text: str) -> None:
    with pytest.raises(click.BadParameter):
        parse_scale(text)


@given(n=st.integers(1, 30_000_000), per_part=st.integers(1000, 2_000_000))
def test_parts_cover_the_population_and_none_is_larger_than_asked(n: int, per_part: int) -> None:
    parts = part_count(n, per_part)
    sizes = part_sizes(n, parts)
    assert sum(sizes) == n
    assert max(sizes) <= per_part
    assert max(sizes) - min(sizes) <= 1


def test_10m_is_built_in_20_parts() -> None:
    assert part_count(10_000_000) == 20
    assert part_count(100_000) == 1
    assert PART_CITIZENS == 500_000


def test_percentile_picks_the_nearest_rank() -> None:
    values = [float(i) for i in range(1, 101)]
    assert percentile(values, 50) == 51.0
    assert percentile(values, 99) == 99.0
    assert percentile([], 99) is None


def test_slow_seconds_groups_the_changes_over_the_limit_by_their_commit_second() -> None:
    offsets = [0.1, 0.5, 1.2, 3.9, 3.95, 4.0]
    stored = [0.2, 0.7, 0.3, 1.4, 0.9, 0.51]
    to_kafka = [0.05, 0.6, 0.1, 1.1, 0.2, 0.1]
    assert slow_seconds(offsets, stored, to_kafka) == [
        {"at_s": 0, "over": 1, "max_ms": 700, "capture_max_ms": 600},
        {"at_s": 3, "over": 2, "max_ms": 1400, "capture_max_ms": 1100},
        {"at_s": 4, "over": 1, "max_ms": 510, "capture_max_ms": 100},
    ]
    assert slow_seconds(offsets, [0.1] * 6, [0.1] * 6) == []


def test_a_process_tree_keeps_the_cpu_of_children_it_has_reaped() -> None:
    # A postmaster's backends come and go within a phase: their time must still count.
    before = tree_cpu_seconds(os.getpid())
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass"
    subprocess.run([sys.executable, "-c", burn], check=True)
    after = tree_cpu_seconds(os.getpid())
    assert before is not None and after is not None
    assert after - before >= 0.3


def test_a_process_that_is_gone_has_no_cpu_reading() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert tree_cpu_seconds(proc.pid) is None


def test_phase_delta_is_unknown_where_either_reading_is() -> None:
    before = {"steal": 1.0, "iowait": None, "user": 10.0}
    after = {"steal": 4.25, "iowait": 2.0, "user": 10.0, "idle": 3.0}
    assert phase_delta(before, after) == {"steal": 3.2, "iowait": None, "user": 0.0, "idle": None}


def test_phase_summary_names_who_used_the_cpu_and_what_ran_in_the_background() -> None:
    phase = {
        "workers_cpu_s": 120.4,
        "servers": {"hub_postgres": 61.0, "source_postgres": None, "broker": 9.6},
        "machine": {"steal": 3.0, "iowait": 0.4, "user": 200.0},
        "hub_db": {"checkpoints": 2.0, "autovacuums": 5.0, "autoanalyzes": 7.0, "wal_mb": 9.0},
    }
    assert phase_summary(phase) == (
        "CPU s: workers 120, hub server 61, broker 10; steal 3, iowait 0;"
        " 2 checkpoints, 5 autovacuums, 7 autoanalyzes"
    )
    assert phase_summary({}) == "CPU s: workers -"


@pytest.mark.parametrize(("memory_gb", "mb"), [(0.5, 256), (2, 512), (24, 6144), (64, 8192)])
def test_the_bench_hub_server_gets_a_quarter_of_memory_within_bounds(memory_gb, mb) -> None:
    assert hub_shared_buffers_mb(int(memory_gb * 2**30)) == mb


def test_parts_run_in_processes_and_their_results_come_back():
    assert sorted(_in_processes(operator.add, [(1, 2), (3, 4), (5, 6)], 2)) == [3, 7, 11]


def test_a_failed_part_is_an_error_and_the_running_ones_are_killed():
    started = time.monotonic()
    with pytest.raises(click.ClickException, match=r"part 1 failed: ZeroDivisionError"):
        _in_processes(_sleep_or_divide, [(60,), (0,)], 2)
    assert time.monotonic() - started < 30  # the 60 s sleeper did not hold it up
    assert multiprocessing.active_children() == []


def test_a_part_that_dies_without_an_answer_is_an_error_not_a_hang():
    with pytest.raises(click.ClickException, match=r"part 0 died \(exit 3\)"):
        _in_processes(os._exit, [(3,)], 1)


def _sleep_or_divide(x: int) -> float:
    if x:
        time.sleep(x)
    return 1 / x


def test_a_worker_that_fails_is_an_error_naming_its_log_and_quoting_its_end(tmp_path):
    config = tmp_path / "hub.yaml"
    config.write_text("kafka: {partitions: 0}\n")
    worker = Worker("raw-consume", config, {})
    with pytest.raises(click.ClickException) as failed:
        worker.result(60)
    message = failed.value.message
    assert "bench worker raw-consume failed (exit 1)" in message
    assert "kafka.partitions: Input should be greater than or equal to 1" in message
    # The log is a file beside the config, not a pipe the worker could fill and block on.
    assert worker.log_path.parent == tmp_path and str(worker.log_path) in message
    assert "Traceback" in worker.log_path.read_text()

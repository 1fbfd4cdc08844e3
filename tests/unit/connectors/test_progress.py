"""Snapshot progress in words (status column, log lines), the lag the status timer reports,
and the runner lock's key."""

from __future__ import annotations

import logging

from connectors.progress import ProgressLog, progress_text
from connectors.runner import timer_lag
from connectors.state import runner_lock_key


class Clock:
    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_the_status_column_shows_rows_estimate_percent_and_eta():
    p = {"rows": 1200, "estimated": 4800, "started_at": 0.0, "at": 12.0}
    assert progress_text(p) == "1,200/4,800 25% ETA 36s"
    assert progress_text({"rows": 90, "estimated": 100, "started_at": 0.0, "at": 900.0}) == (
        "90/100 90% ETA 1m40s"
    )
    assert progress_text({"rows": 7}) == "7"  # an old progress without estimate or start


def test_a_snapshot_logs_its_start_each_tenth_and_its_end_with_rows_and_seconds(caplog):
    clock = Clock()
    plog = ProgressLog("tax", "public.nnt", 1000, started_at=clock.t, clock=clock)
    caplog.set_level(logging.INFO, logger="connectors.progress")
    plog.start()
    logged = []
    for rows in range(50, 1001, 50):  # 20 batches of 50 rows, one second each
        clock.t += 1
        logged.append(plog.update(rows))
    clock.t += 0.5
    plog.finish(1000)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "tax: snapshot of public.nnt started (~1,000 rows)"
    assert sum(logged) == 10  # at 10 %, 20 %, … 100 %
    assert lines[1] == "tax: snapshot of public.nnt: 100 rows (10% of ~1,000), ETA 18s"
    assert lines[-1] == "tax: snapshot of public.nnt done: 1,000 rows in 20.5s"


def test_without_an_estimate_progress_is_logged_on_time():
    clock = Clock()
    plog = ProgressLog("tax", "t", None, started_at=clock.t, clock=clock)
    plog.start()
    clock.t += 30
    assert not plog.update(10_000)
    clock.t += 31
    assert plog.update(20_000)
    assert not plog.update(20_001)


def test_timer_lag_grows_from_the_last_delivered_moment_and_is_zero_while_caught_up():
    assert timer_lag(100.0, None, 1.0) is None  # nothing delivered yet: unknown
    assert timer_lag(100.0, 99.5, 1.05) == 0.0  # caught up within one idle wait
    assert timer_lag(100.0, 40.0, 1.05) == 60.0  # paused or stuck for a minute
    assert timer_lag(100.0, 101.0, 1.05) == 0.0  # clocks a little apart


def test_the_runner_lock_key_is_a_stable_signed_64_bit_number_per_connector():
    key = runner_lock_key("tax")
    assert key == runner_lock_key("tax") != runner_lock_key("labour")
    assert -(2**63) <= key < 2**63
    # Pinned: a changed hash would let an old and a new release run the same connector
    # side by side during a rollout.
    assert key == 1540375493057250388

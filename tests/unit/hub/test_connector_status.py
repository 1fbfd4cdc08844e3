"""The shown connector state (heartbeat age → ``down``) and the snapshot ETA arithmetic."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.connector_status import (
    DOWN_AFTER_S,
    LIVE_STATES,
    eta_seconds,
    percent,
    progress_figures,
    shown_state,
    with_shown_state,
)


@pytest.mark.parametrize("state", LIVE_STATES)
def test_a_live_state_whose_heartbeat_stopped_is_down(state):
    assert shown_state(state, 2.0) == state
    assert shown_state(state, DOWN_AFTER_S) == state
    assert shown_state(state, DOWN_AFTER_S + 0.1) == "down"
    assert shown_state(state, None) == "down"  # a live state that never beat
    assert shown_state(state, None, report_age_s=3.0) == state  # a release without heartbeat
    assert shown_state(state, None, report_age_s=60.0) == "down"


@pytest.mark.parametrize("state", ["stopped", "failed", "never run"])
def test_a_state_left_by_a_stopped_process_stays_whatever_the_heartbeat_age(state):
    assert shown_state(state, 3600.0, 3600.0) == state
    assert shown_state(state, None, None) == state


def test_paused_is_down_only_while_a_stale_heartbeat_says_a_process_held_it():
    assert shown_state("paused", 3.0, 3.0) == "paused"  # a running, paused connector
    assert shown_state("paused", None, 3600.0) == "paused"  # stopped cleanly while paused
    assert shown_state("paused", 60.0, 60.0) == "down"  # killed while paused


def test_the_row_keeps_the_reported_state_and_gets_snapshot_figures_while_unfinished():
    row = {"state": "snapshotting", "heartbeat_age_s": 40.04, "report_age_s": 2,
           "snapshot_done": False,
           "snapshot_progress": {"rows": 500, "estimated": 2000, "started_at": 100.0,
                                 "at": 110.0}}  # fmt: skip
    shown = with_shown_state(row)
    assert shown["state"] == "down" and shown["reported_state"] == "snapshotting"
    assert shown["heartbeat_age_s"] == 40.0
    assert shown["snapshot"] == {"rows": 500, "estimated": 2000, "percent": 25.0, "eta_s": 30.0}
    done = with_shown_state({"state": "running", "heartbeat_age_s": 1, "snapshot_done": True,
                             "snapshot_progress": {"rows": 2000}})  # fmt: skip
    assert done["state"] == "running" and done["snapshot"] is None


def test_eta_is_the_rows_left_at_the_rate_so_far():
    assert eta_seconds(250, 1000, 10.0) == 30.0
    assert eta_seconds(1000, 1000, 10.0) == 0.0
    assert eta_seconds(1200, 1000, 10.0) == 0.0  # past an estimate that was low
    assert eta_seconds(0, 1000, 10.0) is None  # no rate yet
    assert eta_seconds(10, None, 10.0) is None and eta_seconds(10, 0, 10.0) is None
    assert eta_seconds(10, 100, 0.0) is None


def test_percent_is_capped_and_needs_an_estimate():
    assert percent(50, 200) == 25.0
    assert percent(300, 200) == 100.0
    assert percent(5, None) is None and percent(5, -1) is None


def test_progress_without_a_start_time_has_no_eta():
    assert progress_figures({"rows": 10, "estimated": 100})["eta_s"] is None
    assert progress_figures({}) == {"rows": 0, "estimated": None, "percent": None,
                                    "eta_s": None}  # fmt: skip


@given(
    rows=st.integers(1, 10**9),
    estimated=st.integers(1, 10**9),
    elapsed=st.floats(0.001, 10**6, allow_nan=False),
)
def test_eta_finishes_the_estimate_at_the_rate_so_far(rows, estimated, elapsed):
    eta = eta_seconds(rows, estimated, elapsed)
    assert eta is not None and eta >= 0
    rate = rows / elapsed
    assert rows + eta * rate == pytest.approx(max(rows, estimated), rel=1e-9)
    assert 0 <= percent(rows, estimated) <= 100

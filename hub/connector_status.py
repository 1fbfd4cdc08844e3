"""How a connector's status row is shown (CLI, REST, UI): the state derived from its
heartbeat, and snapshot progress as rows, percent and ETA. Pure, so every reader agrees."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func

from hub.db.models import ConnectorState

HEARTBEAT_S = 5.0
"""How often a running connector writes ``heartbeat_at`` (and refreshes its lag)."""
DOWN_AFTER_S = 15.0
"""A live state whose heartbeat is older than this is shown ``down``: the process is gone
(three heartbeats missed)."""
LIVE_STATES = ("running", "snapshotting", "idle", "retrying")
"""States only a live process reports; one that stops cleanly or fails leaves another."""
DOWN = "down"


def status_ages():
    """Two columns, in seconds on the hub database's clock (so the clocks of a connector
    and of the reader never meet): ``heartbeat_age_s`` since the last heartbeat (NULL when
    none: a process that ends cleanly clears it) and ``report_age_s`` since the last report."""
    cs = ConnectorState.__table__.c
    return (
        func.extract("epoch", func.now() - cs.heartbeat_at).label("heartbeat_age_s"),
        func.extract("epoch", func.now() - cs.updated_at).label("report_age_s"),
    )


def shown_state(
    state: str,
    heartbeat_age_s: float | None,
    report_age_s: float | None = None,
    down_after_s: float = DOWN_AFTER_S,
) -> str:
    """``down`` when the process behind a state is gone (SIGKILL, a lost host), else the
    state the connector reported.

    A live state is down once its heartbeat (or, from a release without one, its last
    report) is older than ``down_after_s``. ``paused`` is also left by a clean stop, which
    clears the heartbeat: it is down only while a stale heartbeat says a process held it.
    """
    if state in LIVE_STATES:
        age = heartbeat_age_s if heartbeat_age_s is not None else report_age_s
        return DOWN if age is None or age > down_after_s else state
    if state == "paused" and heartbeat_age_s is not None and heartbeat_age_s > down_after_s:
        return DOWN
    return state


def with_shown_state(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` (a status row with the :func:`status_ages`) with ``reported_state`` and the
    shown ``state``, and its snapshot figures while a snapshot is unfinished."""
    for key in ("heartbeat_age_s", "report_age_s"):
        age = row.get(key)
        row[key] = None if age is None else round(float(age), 1)
    row["reported_state"] = row["state"]
    row["state"] = shown_state(row["state"], row["heartbeat_age_s"], row["report_age_s"])
    progress = row.get("snapshot_progress")
    done = row.get("snapshot_done") or not progress
    row["snapshot"] = None if done else progress_figures(progress)
    return row


def percent(rows: int, estimated: int | None) -> float | None:
    """Share of the estimate done, 0–100 (an estimate is not exact: capped at 100)."""
    if not estimated or estimated <= 0:
        return None
    return min(100.0, 100.0 * rows / estimated)


def eta_seconds(rows: int, estimated: int | None, elapsed_s: float) -> float | None:
    """Seconds left at the rate so far; None before the first row or without an estimate."""
    if not estimated or estimated <= 0 or rows <= 0 or elapsed_s <= 0:
        return None
    return max(0, estimated - rows) * elapsed_s / rows


def progress_figures(progress: dict[str, Any]) -> dict[str, Any]:
    """``rows``, ``estimated``, ``percent`` and ``eta_s`` of a stored snapshot progress; the
    rate is measured between its ``started_at`` and ``at`` (both the connector's clock)."""
    rows = int(progress.get("rows") or 0)
    estimated = progress.get("estimated")
    started = progress.get("started_at")
    elapsed = float(progress.get("at") or 0) - float(started or 0)
    return {
        "rows": rows,
        "estimated": estimated,
        "percent": percent(rows, estimated),
        "eta_s": eta_seconds(rows, estimated, elapsed) if started is not None else None,
    }

"""Snapshot progress in words: the status column, and the log lines at start, every tenth
of the estimate and at the end (the figures: :mod:`hub.connector_status`)."""

from __future__ import annotations

import logging
import time
from typing import Any

from hub.connector_status import eta_seconds, percent, progress_figures

log = logging.getLogger(__name__)

LOG_EVERY_PERCENT = 10
LOG_EVERY_S = 60.0
"""Without an estimate (or between tenths of a slow snapshot), a progress line this often."""


def progress_text(progress: dict[str, Any] | None) -> str:
    """``1,200/5,000 24% ETA 12s`` for the text status."""
    f = progress_figures(progress or {})
    text = f"{f['rows']:,}"
    if f["estimated"]:
        text += f"/{f['estimated']:,} {f['percent']:.0f}%"
    if f["eta_s"] is not None:
        text += f" ETA {_duration(f['eta_s'])}"
    return text


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class ProgressLog:
    """Logs one snapshot run of connector ``name``: a line at :meth:`start`, one each time
    :meth:`update` crosses a tenth of the estimate (or ``LOG_EVERY_S`` passed), and one at
    :meth:`finish` with rows and seconds."""

    def __init__(self, name: str, what: str, estimated: int | None, started_at: float,
                 clock=time.time):  # fmt: skip
        self.name = name
        self.what = what
        self.estimated = estimated
        self.started_at = started_at
        self.clock = clock
        self._next_percent = LOG_EVERY_PERCENT
        self._next_at = clock() + LOG_EVERY_S

    def start(self, rows: int = 0) -> None:
        estimate = f"~{self.estimated:,} rows" if self.estimated else "row count unknown"
        resumed = f", resumed at {rows:,} rows" if rows else ""
        log.info("%s: snapshot of %s started (%s%s)", self.name, self.what, estimate, resumed)
        self._advance(rows)

    def update(self, rows: int) -> bool:
        """Log a progress line if one is due; True when it did."""
        now = self.clock()
        pct = percent(rows, self.estimated)
        due = (pct is not None and pct >= self._next_percent) or now >= self._next_at
        if not due:
            return False
        eta = eta_seconds(rows, self.estimated, now - self.started_at)
        shown = f" ({pct:.0f}% of ~{self.estimated:,})" if pct is not None else ""
        eta_text = f", ETA {_duration(eta)}" if eta is not None else ""
        log.info("%s: snapshot of %s: %s rows%s%s", self.name, self.what, f"{rows:,}", shown,
                 eta_text)  # fmt: skip
        self._advance(rows)
        return True

    def finish(self, rows: int, extra: str = "") -> None:
        took = max(0.0, self.clock() - self.started_at)
        log.info("%s: snapshot of %s done: %s rows in %.1fs%s", self.name, self.what,
                 f"{rows:,}", took, extra)  # fmt: skip

    def _advance(self, rows: int) -> None:
        pct = percent(rows, self.estimated) or 0.0
        self._next_percent = (int(pct) // LOG_EVERY_PERCENT + 1) * LOG_EVERY_PERCENT
        self._next_at = self.clock() + LOG_EVERY_S

"""Running ``hub bench`` as a user does, for the bench's tests: its figures and their keys."""

from __future__ import annotations

import json
import os
import subprocess
import sys

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

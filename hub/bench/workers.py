"""The hub's components as the bench runs them: each in a subprocess of its own
(``python -m hub.bench ROLE CONFIG ARGS_JSON``) printing one JSON line of what it measured,
and :class:`Worker`, the bench's handle on one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import click

from hub.bench.baselines import raw_consume, raw_produce
from hub.bench.probes import TreeSampler


class Worker:
    """One hub component in a subprocess; ``result()`` waits and parses its JSON line."""

    def __init__(self, role: str, config_path: Path, args: dict[str, Any]):
        self.role = role
        self.started = time.time()
        from hub.runtime import die_with_parent

        # The worker's log goes to a file beside its config, not to a pipe: a pipe nobody
        # reads until the worker ends blocks the worker once it holds 64 kB of log.
        fd, log_path = tempfile.mkstemp(prefix=f"{role}-", suffix=".log", dir=config_path.parent)
        self.log_path = Path(log_path)
        with os.fdopen(fd, "w") as log_file:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "hub.bench", role, str(config_path), json.dumps(args)],
                stdout=subprocess.PIPE,
                stderr=log_file,
                text=True,
                # A bench stopped by a signal (or killed) takes its workers with it: they
                # would go on retrying against the servers it stopped. Created on the main
                # thread only, since the kernel sends the signal when the creating thread ends.
                preexec_fn=lambda: die_with_parent(signal.SIGKILL),
            )
        self.sampler = TreeSampler(self.proc.pid)

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    def terminate(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def result(self, timeout: float | None = None) -> dict[str, Any]:
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            raise click.ClickException(
                f"bench worker {self.role} timed out (its log: {self.log_path})"
            ) from None
        finally:
            peak = self.sampler.stop()
        lines = [ln for ln in out.splitlines() if ln.startswith("{")]
        if self.proc.returncode != 0 or not lines:
            raise click.ClickException(
                f"bench worker {self.role} failed (exit {self.proc.returncode}):\n"
                f"{self.log_tail()}\n(its log: {self.log_path})"
            )
        data = json.loads(lines[-1])
        # Sampled, not ru_maxrss: Linux carries the parent's RSS at fork() into the child's
        # ru_maxrss across exec, so a worker started by a large bench process would inherit it.
        data["peak_rss_mb"] = round(peak / 2**20, 1)
        data["started"] = self.started
        return data


def _load(config_path: str):
    import yaml

    from hub.config import parse_config

    return parse_config(yaml.safe_load(Path(config_path).read_text()), env={})


def _maxrss_kb() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _cpu_seconds() -> float:
    """CPU seconds of this worker, its threads and its reaped children (producer processes)."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _worker_capture(config, args: dict) -> dict:
    """One connector to the end of its source (``once``): rows and seconds."""
    from connectors.runner import ConnectorRunner

    class BenchRunner(ConnectorRunner):
        """Records when the batch loop starts (connections, slot and producers are open:
        the producer processes too) and when the last batch with rows was committed."""

        loop_started: float | None = None
        last_commit: float | None = None

        def _loop(self):
            if self.loop_started is None:
                self.delivery.wait_warm()
                self.loop_started = time.time()
            super()._loop()

        def _record(self, batch):
            super()._record(batch)
            if len(batch):
                self.last_commit = time.time()

    runner = BenchRunner(config, args["name"], once=True)
    started = time.time()
    from connectors.state import ensure_state

    before = ensure_state(runner.engine, args["name"], runner.source.capture)["rows_captured"] or 0
    code = runner.run()
    ended = time.time()
    busy = None
    if runner.loop_started is not None and runner.last_commit is not None:
        busy = runner.last_commit - runner.loop_started
    return {
        "code": code,
        "rows": runner.rows_total - before,
        "seconds": ended - started,
        "busy_seconds": busy,
        "ended": ended,
    }


def _bench_reconciler(
    config,
    *,
    live: bool,
    ready_path: str | None = None,
    group: bool = False,
    group_id: str | None = None,
):
    from reconciliation.engine import Reconciler

    class BenchReconciler(Reconciler):
        """Records when batches start and end, and each change's commit → stored latency."""

        first_start: float | None = None
        last_end: float | None = None
        latencies: list[tuple[float, float, float]] = []  # (commit s, to Kafka s, stored s)
        ready_written = False

        def _decode(self, records):
            if self.first_start is None:  # the first batch's decoding is part of its work
                self.first_start = time.time()
            return super()._decode(records)

        def _apply(self, records, changes, dead):
            # Runs on the reconciler's database thread, once per batch, in batch order.
            result = super()._apply(records, changes, dead)
            self.last_end = time.time()
            if live:
                # Changes applied in this (now committed) batch: source commit → produced to
                # Kafka (the record's CreateTime) → mismatch stored.
                now_ms = self.last_end * 1000
                stamps = {(tp, m.offset): m.timestamp for tp, recs in records.items() for m in recs}
                self.latencies.extend(
                    (
                        c.commit_ms / 1000,
                        (stamps.get((c.tp, c.offset), c.commit_ms) - c.commit_ms) / 1000,
                        (now_ms - c.commit_ms) / 1000,
                    )
                    for c in changes
                    if c.commit_ms is not None and c.source != "registry"
                )
            return result

        def _gate(self):
            super()._gate()
            if ready_path and not self.ready_written and self._caught_up():
                Path(ready_path).write_text("ready")
                self.ready_written = True

    # One process takes every partition itself; several join the consumer group and share
    # the partitions as in a deployment (co-partitioned: partition p of every topic together).
    return BenchReconciler(config, group_id=group_id, assign_all=not group)


def _worker_reconcile(config, args: dict) -> dict:
    rec = _bench_reconciler(config, live=False, group=args.get("group", False))
    started = time.time()
    totals = rec.run(until_idle_s=args.get("idle_s", 2.0))
    return {
        "messages": totals.messages,
        "applied": totals.applied,
        "dead_letters": totals.dead_letters,
        "transitions": totals.transitions,
        "first_start": rec.first_start,
        "last_end": rec.last_end,
        "started": started,
    }


def _worker_live_reconcile(config, args: dict) -> dict:
    rec = _bench_reconciler(
        config,
        live=True,
        ready_path=args["ready"],
        group=args.get("group", False),
        group_id=args.get("group_id"),
    )
    signal.signal(signal.SIGTERM, lambda *_: rec.stop())
    totals = rec.run()
    since = args.get("since_path")
    t0 = float(Path(since).read_text()) if since and Path(since).exists() else 0.0
    kept = [row for row in rec.latencies if row[0] >= t0]
    return {
        "messages": totals.messages,
        "latencies": [stored for _, _, stored in kept],
        "to_kafka": [kafka for _, kafka, _ in kept],
        "commit_offsets": [commit_s - t0 for commit_s, _, _ in kept],
    }


def _worker_live_capture(config, args: dict) -> dict:
    from connectors.runner import ConnectorRunner

    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    runner = ConnectorRunner(config, args["name"], stopping=stopping)
    return {"code": runner.run(), "rows": runner.rows_total}


WORKERS = {
    "capture": _worker_capture,
    "reconcile": _worker_reconcile,
    "live-reconcile": _worker_live_reconcile,
    "live-capture": _worker_live_capture,
    "raw-consume": raw_consume,
    "raw-produce": raw_produce,
}


def worker_main(argv: list[str]) -> int:
    from hub.logs import setup_logging

    role, config_path, args = argv[0], argv[1], json.loads(argv[2])
    setup_logging("WARNING")
    result = WORKERS[role](_load(config_path), args)
    result["maxrss_kb"] = _maxrss_kb()
    result["cpu_s"] = _cpu_seconds()
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0

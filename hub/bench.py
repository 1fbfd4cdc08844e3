"""``hub bench``: throughput, latency and scaling of the real components, each figure measured
side by side with its baseline in the same run (issue #7, ``docs/benchmarks.md``).

Data: the demo generator (``hub.demo.generator``) with every citizen holding a tax record,
so N registry records face N sector records carrying the generator's injected mismatches.
Registry and tax table live in one source database, so the hand-written SQL baseline joins
exactly the tables the connectors read.

The hub's components run as subprocesses (``python -m hub.bench ROLE …``), one per
connector and one reconciler, as in production; their peak RSS (process tree, sampled) is
what figure 5 reports. Each worker prints one JSON line with what it measured.

Figures (``--skip`` takes these names):

1. ``full``      capture (logical connectors: snapshot) + reconcile vs one SQL statement
2. ``stream``    reconciler events/s on the pre-filled topics vs a raw poll-and-count loop
3. ``capture``   connector rows/s (snapshot, and streaming from the slot) vs a raw producer
4. ``latency``   source commit → mismatch stored, p50/p95/p99, at a fixed offered load
5. ``scaling``   time and peak RSS at N/10 and N
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import click

from hub.vocabulary import OPEN_STATUSES_SQL, RULE_CODES

log = logging.getLogger(__name__)

FIGURES = ("full", "stream", "capture", "latency", "scaling")
SCALES = {"100k": 100_000, "1m": 1_000_000, "10m": 10_000_000}
DEFAULT_RATE = 5000
LIVE_SHARE = 0.2
"""Share of the combined capture + reconcile rate offered by the latency figure when 5k/s
is out of reach: 1M runs at 50 % (1.4–1.5k/s) built a queue (p50 2–8 s); 20 % (~500/s)
does not."""
TAX_SOURCE = "tax"
SMALL_RUNS = 2
"""Runs at the scaling figure's small scale (N/10); the fastest is the reference."""

# ------------------------------------------------------------------------------ helpers


def parse_scale(text: str) -> int:
    """``100k``, ``1m``, ``10m`` (and any ``<n>k`` / ``<n>m`` / plain number)."""
    t = text.strip().lower().replace("_", "")
    mult = 1
    if t.endswith("k"):
        t, mult = t[:-1], 1000
    elif t.endswith("m"):
        t, mult = t[:-1], 1_000_000
    try:
        n = int(float(t) * mult)
    except ValueError:
        raise click.BadParameter(f"{text!r}: use 100k, 1m or 10m") from None
    if n < 1000:
        raise click.BadParameter("the scale must be at least 1k records")
    return n


def fmt_n(n: int) -> str:
    if n >= 1_000_000 and n % 100_000 == 0:
        return f"{n / 1_000_000:g}m"
    if n >= 1000 and n % 100 == 0:
        return f"{n / 1000:g}k"
    return str(n)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    idx = min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))
    return s[idx]


def slow_seconds(
    offsets: list[float], stored: list[float], to_kafka: list[float], limit_s: float = 0.5
) -> list[dict[str, Any]]:
    """The seconds of the live run (by source commit, from the start of the load) in which
    some change took longer than ``limit_s`` to be stored: when, how many, the worst, and
    the worst capture part — stalls show here, a queue shows as a run of seconds."""
    seconds: dict[int, list[float]] = {}
    for at, total, kafka in zip(offsets, stored, to_kafka, strict=True):
        if total > limit_s:
            row = seconds.setdefault(int(at), [0, 0.0, 0.0])
            row[0] += 1
            row[1] = max(row[1], total)
            row[2] = max(row[2], kafka)
    return [
        {"at_s": at, "over": n, "max_ms": round(worst * 1000), "capture_max_ms": round(k * 1000)}
        for at, (n, worst, k) in sorted(seconds.items())
    ]


def hub_server_settings() -> dict[str, str]:
    """The bench's own hub server, set up as docs/operations.md advises for the state tables:
    memory for them, and planner costs that expect their pages in memory.

    With the default ``random_page_cost`` (4, a disk seek), the first load's batch look-ups
    of 10,000 keys were planned as a hash of the whole registry or sector table, up to ~1M
    rows, instead of index probes: at 1M the registry phase wrote 1.6–1.9 GB of temporary
    files (hashes that did not fit ``work_mem``) and the hub server used ~15 % more CPU.

    ``max_wal_size`` 16 GB and ``checkpoint_timeout`` 30 min, as docs/operations.md advises
    for a first load: with the 2 GB default the 10M reconcile checkpointed 16 times, and the
    full-page images after each checkpoint grew its WAL 13.4× for 10× the data (10.2× with
    these settings).
    """
    return {
        "shared_buffers": f"{hub_shared_buffers_mb()}MB",
        "random_page_cost": "1.1",
        "max_wal_size": "16GB",
        "checkpoint_timeout": "30min",
    }


def hub_shared_buffers_mb(memory_bytes: int | None = None) -> int:
    """``shared_buffers`` of the bench's own hub server: a quarter of the machine's memory,
    as docs/operations.md advises for the state tables' indexes, between the embedded
    default (256 MB) and 8 GB. At 10M the registry look-up of every batch reads at random
    from tables of several GB, which 256 MB of buffers sent to the page cache."""
    import psutil

    memory = psutil.virtual_memory().total if memory_bytes is None else memory_bytes
    return max(256, min(8192, memory // 4 // 2**20))


def machine_info() -> dict[str, Any]:
    import psutil

    return {
        "nproc": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


class TreeSampler:
    """Peak RSS of a process and its children (the connector's producer processes)."""

    def __init__(self, pid: int, interval_s: float = 0.2):
        import psutil

        self.proc = psutil.Process(pid)
        self.peak = 0
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                procs = [self.proc, *self.proc.children(recursive=True)]
                total = 0
                for p in procs:
                    try:
                        total += p.memory_info().rss
                    except psutil.Error:
                        pass
                self.peak = max(self.peak, total)
            except psutil.Error:
                return
            self._stop.wait(self.interval_s)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(2)
        return self.peak


def tree_cpu_seconds(pid: int) -> float | None:
    """CPU seconds (user + system) of a process and its descendants, alive or reaped.

    A PostgreSQL postmaster reaps its backends, so their time is in its children's times;
    the live descendants' own time and that of the children they reaped are added. Across a
    phase, the difference of two readings is what the whole tree used in it, backends that
    came and went included (one reaped between the two reads of a reading is missed: the
    probe waits for a phase's backends to end before its last reading).
    """
    import psutil

    try:
        root = psutil.Process(pid)
        t = root.cpu_times()
        total = t.user + t.system + t.children_user + t.children_system
        for child in root.children(recursive=True):
            try:
                c = child.cpu_times()
                total += c.user + c.system + c.children_user + c.children_system
            except psutil.Error:
                pass  # exited between the listing and the reading
        return total
    except psutil.Error:
        return None


MACHINE_CPU = ("user", "system", "iowait", "steal", "idle")


def phase_delta(before: dict[str, float | None], after: dict[str, float | None]) -> dict:
    """Per-key ``after - before`` rounded to one decimal (seconds, counts or MB as read);
    ``None`` where either side is unknown."""
    return {
        k: (round(after[k] - before[k], 1) if after.get(k) is not None
            and before.get(k) is not None else None)
        for k in after
    }  # fmt: skip


class PhaseProbe:
    """What the machine and the servers did during one phase of the pipeline.

    CPU seconds of each server's process tree (the hub's PostgreSQL, the sources' one, the
    broker), the machine's CPU split summed over its CPUs (``steal``: time the hypervisor
    gave to other guests; ``iowait``: idle while waiting for the disk), and the hub
    database's autovacuum and autoanalyze runs, block reads and temporary files, with its
    server's checkpoints and WAL (the whole server's: with ``--shared-server`` the sources'
    too). The hub's run-to-run spread is told apart with it: the same work in more wall
    time shows where the time went.
    """

    SETTLE_S = 2.0
    """How long :meth:`stop` waits for the phase's client backends to end: a backend counts
    its statistics (blocks, WAL) when it exits, a little after its worker process."""

    def __init__(self, servers: dict[str, int | None], hub_conninfo: str | None):
        self.servers = servers
        self.hub_conninfo = hub_conninfo
        self.before: dict[str, Any] = {}

    def _read(self) -> dict[str, Any]:
        import psutil

        machine = psutil.cpu_times()
        out: dict[str, Any] = {
            "machine": {k: getattr(machine, k, None) for k in MACHINE_CPU},
            "servers": {
                name: (tree_cpu_seconds(pid) if pid else None) for name, pid in self.servers.items()
            },
            "hub_db": self._hub_stats(),
        }
        return out

    def _hub_stats(self) -> dict[str, float | None]:
        import psycopg

        if not self.hub_conninfo:
            return {}
        try:
            with psycopg.connect(self.hub_conninfo, autocommit=True) as conn:
                version = conn.info.server_version
                if version >= 180000:  # num_done: performed, not merely requested or skipped
                    ckpt = "SELECT num_done, write_time + sync_time, buffers_written" \
                           " FROM pg_stat_checkpointer"  # fmt: skip
                elif version >= 170000:
                    ckpt = "SELECT num_timed + num_requested, write_time + sync_time," \
                           " buffers_written FROM pg_stat_checkpointer"  # fmt: skip
                else:
                    ckpt = "SELECT checkpoints_timed + checkpoints_req," \
                           " checkpoint_write_time + checkpoint_sync_time," \
                           " buffers_checkpoint FROM pg_stat_bgwriter"  # fmt: skip
                checkpoints, ckpt_ms, ckpt_buffers = conn.execute(ckpt).fetchone()
                vacuums, analyzes = conn.execute(
                    "SELECT coalesce(sum(autovacuum_count), 0), coalesce(sum(autoanalyze_count), 0)"
                    " FROM pg_stat_user_tables"
                ).fetchone()
                blks_read, blks_hit, temp_bytes = conn.execute(
                    "SELECT blks_read, blks_hit, temp_bytes FROM pg_stat_database"
                    " WHERE datname = current_database()"
                ).fetchone()
                (wal_bytes,) = conn.execute("SELECT wal_bytes FROM pg_stat_wal").fetchone()
        except psycopg.Error as exc:
            log.warning("bench probe: %s", exc)
            return {}
        return {
            "checkpoints": float(checkpoints),
            "checkpoint_s": float(ckpt_ms) / 1000,
            "checkpoint_buffers": float(ckpt_buffers),
            "autovacuums": float(vacuums),
            "autoanalyzes": float(analyzes),
            "blocks_read": float(blks_read),
            "blocks_hit": float(blks_hit),
            "temp_mb": float(temp_bytes) / 2**20,
            "wal_mb": float(wal_bytes) / 2**20,
        }

    def start(self) -> PhaseProbe:
        self.before = self._read()
        return self

    def _settle(self) -> None:
        import psycopg

        if not self.hub_conninfo:
            return
        deadline = time.monotonic() + self.SETTLE_S
        try:
            with psycopg.connect(self.hub_conninfo, autocommit=True) as conn:
                while time.monotonic() < deadline:
                    (others,) = conn.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE backend_type ="
                        " 'client backend' AND pid <> pg_backend_pid()"
                    ).fetchone()
                    if not others:
                        return
                    time.sleep(0.05)
        except psycopg.Error as exc:
            log.warning("bench probe: %s", exc)

    def stop(self) -> dict[str, Any]:
        self._settle()
        after = self._read()
        return {
            part: phase_delta(self.before.get(part, {}), values) for part, values in after.items()
        }


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


# ------------------------------------------------------------------------------ workers
# Run as ``python -m hub.bench ROLE CONFIG ARGS_JSON``; print one JSON line.


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


def _worker_raw_consume(config, args: dict) -> dict:
    """Poll and count: no decoding, no database. Stops at ``expected`` messages or when quiet."""
    from kafka import TopicPartition

    from hub.kafka import make_consumer
    from hub.runtime import tune_gc

    tune_gc()  # the hub's processes run with these collector settings: so does the baseline
    consumer = make_consumer(config.kafka, group_id=None, enable_auto_commit=False)
    parts = [TopicPartition(t, p) for t in args["topics"] for p in consumer.partitions_for_topic(t)]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    expected = args.get("expected")
    count = 0
    size: Counter = Counter()
    per_topic: Counter = Counter()
    first = last = None
    quiet_since = time.monotonic()
    while True:
        batch = consumer.poll(timeout_ms=200)
        now = time.time()
        if batch:
            if first is None:
                first = now
            for tp, recs in batch.items():
                count += len(recs)
                per_topic[tp.topic] += len(recs)
                size[tp.topic] += sum(len(r.value or b"") for r in recs)
            last = time.time()
            quiet_since = time.monotonic()
            if expected and count >= expected:
                break
        elif time.monotonic() - quiet_since > args.get("quiet_s", 3.0):
            break
    consumer.close(autocommit=False)
    return {
        "messages": count,
        "first": first,
        "last": last,
        "per_topic": dict(per_topic),
        "bytes": dict(size),
    }


def _worker_raw_produce(config, args: dict) -> dict:
    """The same number of messages of the same size, one plain kafka-python producer with the
    connector's producer settings (acks=all, idempotent, 1 MiB batches)."""
    from hub.kafka import ensure_topics, make_producer
    from hub.runtime import tune_gc

    tune_gc()  # as in the connector's producer processes
    topic = args["topic"]
    ensure_topics(config.kafka, [topic])
    n, size = args["messages"], args["size"]
    rng = random.Random(7)
    values = [rng.randbytes(size) for _ in range(64)]
    keys = [f"{rng.randrange(10**11, 10**12)}".encode() for _ in range(4096)]
    producer = make_producer(config.kafka, linger_ms=1000, batch_size=1024 * 1024)
    started = time.time()
    send = producer.send
    for i in range(n):
        send(topic, key=keys[i & 4095], value=values[i & 63])
    producer.flush()
    seconds = time.time() - started
    producer.close(10)
    return {"messages": n, "seconds": seconds}


WORKERS = {
    "capture": _worker_capture,
    "reconcile": _worker_reconcile,
    "live-reconcile": _worker_live_reconcile,
    "live-capture": _worker_live_capture,
    "raw-consume": _worker_raw_consume,
    "raw-produce": _worker_raw_produce,
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


# ------------------------------------------------------------------------------ data


PART_CITIZENS = 500_000
"""Citizens per generated part. Parts are built and loaded by worker processes, two at a
time, each exiting after its part: generation memory stays bounded at any scale (building
10M citizens at once would take ~18 GB)."""


def part_count(n: int, per_part: int = PART_CITIZENS) -> int:
    return max(1, -(-n // per_part))


def generate_part(src_url: str, n: int, seed: int, index: int, parts: int) -> dict[str, int]:
    """Build part ``index`` of ``parts`` of N citizens, each with a tax record, and COPY it
    into the registry and tax tables (made by ``create_table``). Runs in a worker process."""
    from hub.demo import generator
    from hub.demo.population import REGISTRY, TAX

    population = generator.build(
        n, seed, sectors=(TAX_SOURCE,), shares={TAX_SOURCE: 1.0}, part=(index, parts)
    )
    _in_threads(
        (generator.append_rows, src_url, REGISTRY, population.rows["registry"]),
        (generator.append_rows, src_url, TAX, population.rows["tax"]),
    )
    return {"registry": len(population.rows["registry"]), "tax": len(population.rows["tax"])}


def _in_processes(fn, calls: list[tuple], at_once: int) -> list[Any]:
    """``fn(*args)`` for each of ``calls``, each in a spawned process of its own, ``at_once``
    at a time; their results, in the order they came. A call that raises, or a process that dies
    without an answer (killed, out of memory), raises here; on any exception, Ctrl-C or
    SIGTERM included, the processes still running are killed — none goes on loading."""
    from multiprocessing.connection import wait

    spawn = multiprocessing.get_context("spawn")
    queued = list(enumerate(calls))
    running: dict[Any, tuple[int, Any]] = {}  # answer pipe -> (call index, process)
    results = []
    try:
        while queued or running:
            while queued and len(running) < at_once:
                index, args = queued.pop(0)
                answer, send = spawn.Pipe(duplex=False)
                proc = spawn.Process(
                    target=_process_call, args=(send, os.getpid(), fn, args), daemon=True
                )
                proc.start()
                send.close()
                running[answer] = (index, proc)
            for answer in wait(list(running)):
                index, proc = running.pop(answer)
                try:
                    ok, value = answer.recv()
                except EOFError:  # ended without an answer
                    ok, value = None, None
                finally:
                    answer.close()
                proc.join()
                if ok is None:
                    raise click.ClickException(f"bench part {index} died (exit {proc.exitcode})")
                if not ok:
                    raise click.ClickException(f"bench part {index} failed: {value}")
                results.append(value)
        return results
    finally:
        for _, proc in running.values():
            proc.kill()
            proc.join()


def _process_call(send, parent: int, fn, args: tuple) -> None:
    from hub.runtime import die_with_parent

    die_with_parent(signal.SIGKILL)  # a killed bench takes its parts along
    if os.getppid() != parent:  # it died before that was asked
        os._exit(1)
    try:
        result = (True, fn(*args))
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises it
        result = (False, f"{type(exc).__name__}: {exc}")
    send.send(result)
    send.close()


def _in_threads(*calls: tuple) -> None:
    """Run each ``(fn, *args)`` in its own thread; re-raise the first failure."""
    with ThreadPoolExecutor(len(calls)) as pool:
        for future in [pool.submit(*call) for call in calls]:
            future.result()


def _fold_sql(expr: str) -> str:
    """What SQL can express of the hub's name folding: NFD, drop combining marks, đ→d,
    lower case, single spaces (no punctuation rules, Arabic letter variants or compounds)."""
    return (
        "lower(btrim(regexp_replace(regexp_replace(translate(normalize("
        + expr
        + r", NFD), 'đĐ', 'dD'), '[\u0300-\u036f]', '', 'g'), '\s+', ' ', 'g')))"
    )


def sql_baseline_statement() -> str:
    """One statement: tax records joined to the registry, every exact-comparison rule,
    materialized as (record_key, rule) rows — the work the hub's mismatch store does."""
    from hub.idschemes.vn import PROVINCE_CODES

    provinces = ", ".join(f"'{p}'" for p in sorted(PROVINCE_CODES))
    return f"""
CREATE UNLOGGED TABLE bench_sql_mismatches AS
WITH s AS (
    SELECT t.ma_so_thue AS record_key,
           nullif(translate(t.so_cccd, E' -.\\t', ''), '') AS cid,
           t.ten_nnt AS full_name,
           to_date(t.ngay_sinh, 'DD/MM/YYYY') AS dob,
           CASE t.gioi_tinh WHEN 'Nam' THEN 'M' WHEN 'Nữ' THEN 'F' END AS sex,
           t.ngay_nop_cuoi AS activity,
           CASE t.trang_thai WHEN 'hoat_dong' THEN 'active' WHEN 'ngung_hoat_dong' THEN 'closed'
                ELSE t.trang_thai END AS status
    FROM public.nguoi_nop_thue t
), k AS (
    SELECT s.*,
           CASE WHEN cid IS NULL THEN 'missing'
                WHEN cid !~ '^[0-9]+$' THEN 'invalid'
                WHEN length(cid) = 9 THEN 'legacy'
                WHEN length(cid) <> 12 THEN 'invalid'
                WHEN left(cid, 3) NOT IN ({provinces}) THEN 'invalid'
                ELSE 'current' END AS kind,
           status IS NOT NULL AND lower(btrim(status)) NOT IN ('closed', 'inactive') AS active
    FROM s
), j AS (
    SELECT k.*, coalesce(c1.so_dinh_danh, c2.so_dinh_danh) AS reg_id,
           coalesce(c1.ho_ten, c2.ho_ten) AS reg_name,
           coalesce(c1.ngay_sinh, c2.ngay_sinh) AS reg_dob,
           CASE coalesce(c1.gioi_tinh, c2.gioi_tinh) WHEN 'Nam' THEN 'M' WHEN 'Nữ' THEN 'F' END
               AS reg_sex,
           coalesce(c1.ngay_mat, c2.ngay_mat) AS reg_death,
           CASE WHEN k.kind IN ('current', 'legacy') AND k.active
                THEN count(*) FILTER (WHERE k.active) OVER (PARTITION BY k.cid) END AS dup
    FROM k
    LEFT JOIN public.citizens c1 ON k.kind = 'current' AND c1.so_dinh_danh = k.cid
    LEFT JOIN public.citizens c2 ON k.kind = 'legacy' AND c2.so_cmnd = k.cid
)
SELECT record_key, rule FROM j CROSS JOIN LATERAL (VALUES
    ('ID_MISSING', kind = 'missing'),
    ('ID_INVALID', kind = 'invalid'),
    ('ID_LEGACY', kind = 'legacy' AND reg_id IS NOT NULL),
    ('ID_NOT_IN_REGISTRY', kind IN ('current', 'legacy') AND reg_id IS NULL),
    ('ID_ATTRIBUTES_INCONSISTENT', kind = 'current' AND (
        (dob IS NOT NULL AND 1900 + 100 * (substr(cid, 4, 1)::int / 2) + substr(cid, 5, 2)::int
                             <> extract(year FROM dob))
        OR (sex IS NOT NULL AND sex <> CASE WHEN substr(cid, 4, 1)::int % 2 = 0
                                            THEN 'M' ELSE 'F' END))),
    ('NAME_MISMATCH', reg_id IS NOT NULL AND full_name IS NOT NULL AND reg_name IS NOT NULL
        AND {_fold_sql("full_name")} <> {_fold_sql("reg_name")}),
    ('DOB_MISMATCH', reg_id IS NOT NULL AND dob <> reg_dob),
    ('SEX_MISMATCH', reg_id IS NOT NULL AND sex <> reg_sex),
    ('DECEASED_ACTIVE', reg_id IS NOT NULL AND reg_death IS NOT NULL
        AND (active OR activity > reg_death)),
    ('DUPLICATE_ID', dup >= 2)
) AS r(rule, fires)
WHERE fires
"""


SQL_RULES = tuple(r for r in RULE_CODES if r != "PROVINCE_MISMATCH")
"""The rules the SQL baseline expresses exactly: all but ``PROVINCE_MISMATCH``. Severity
grading (similarity, swapped day/month) and candidate suggestions are hub-only and not
part of the comparison."""


# ------------------------------------------------------------------------------ one scale


class ScaleRun:
    """Generated data at one scale: a source database (registry + tax), a hub database,
    topics under their own prefix, slots under their own names."""

    def __init__(self, bench: Bench, n: int, attempt: int = 0):
        self.bench = bench
        self.n = n
        # Topics outlive a dropped run (the broker keeps them): a repeat gets names of its own.
        self.tag = f"{fmt_n(n)}_{bench.stamp}{f'_{attempt}' if attempt else ''}".replace(".", "_")
        self.src_db = f"bench_src_{self.tag}"
        self.hub_db = f"bench_hub_{self.tag}"
        self.slots = [f"bench_{self.tag}_registry", f"bench_{self.tag}_tax"]
        self.config_path = bench.data_dir / f"hub-{self.tag}.yaml"
        self.config = None
        self.records: dict[str, int] = {}
        self.src_url = ""
        self.raw_consume: dict[str, Any] | None = None
        self.stream_rate: float | None = None

    # -- set-up ----------------------------------------------------------------------------

    def prepare(self) -> dict[str, float]:
        import yaml

        from hub.config import parse_config
        from hub.db.migrate import upgrade
        from hub.demo.generator import create_table, finish_table
        from hub.demo.population import REGISTRY, TAX
        from hub.kafka import Topics, ensure_topics

        env = self.bench.env
        echo = self.bench.echo
        parts = part_count(self.n, self.bench.part_citizens)
        echo(
            f"[{fmt_n(self.n)}] generating {self.n:,} citizens, each with a tax record "
            f"({parts} part{'s' if parts > 1 else ''}) …"
        )
        t0 = time.monotonic()
        self.src_url = env.ensure_database(self.src_db, fresh=True)
        _in_threads((create_table, self.src_url, REGISTRY), (create_table, self.src_url, TAX))
        self.records = {"registry": 0, "tax": 0}
        calls = [(self.src_url, self.n, self.bench.seed, i, parts) for i in range(parts)]
        for counts in _in_processes(generate_part, calls, min(2, parts)):
            for table, count in counts.items():
                self.records[table] += count
        t_gen = time.monotonic() - t0
        t1 = time.monotonic()
        _in_threads((finish_table, self.src_url, REGISTRY), (finish_table, self.src_url, TAX))
        t_load = time.monotonic() - t1
        hub_env = self.bench.hub_env
        hub_url = hub_env.ensure_database(self.hub_db, fresh=True)
        upgrade(hub_url)
        reg = REGISTRY.config(self.src_url)
        reg["logical"] = {"slot": self.slots[0], "publication": f"bench_{self.tag}_registry"}
        tax = TAX.config(self.src_url)
        tax["logical"] = {"slot": self.slots[1], "publication": f"bench_{self.tag}_tax"}
        raw = {
            "kafka": {
                "bootstrap_servers": env.bootstrap,
                "topic_prefix": f"bench{self.tag.replace('_', '')}",
                "partitions": 12,
            },
            "database": {"url": hub_env.database_url(self.hub_db)},
            "id_scheme": "vn",
            "logging": {"level": "WARNING"},
            # A consumer group per run: on the embedded broker, a group whose members left
            # during a rebalance keeps a departed leader for a while (see live_group).
            "reconciler": {"group_id": f"bench-{self.tag}"},
            "registry": reg,
            "sectors": {TAX_SOURCE: tax},
        }
        self.config_path.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False))
        self.config = parse_config(raw, env={})
        ensure_topics(
            self.config.kafka, Topics(self.config.kafka.topic_prefix).all_for(self.config)
        )
        echo(f"[{fmt_n(self.n)}] generated and loaded in {t_gen:.1f}s, indexed in {t_load:.1f}s")
        return {"generate_s": t_gen, "load_s": t_load}

    def worker(self, role: str, **args: Any) -> Worker:
        return Worker(role, self.config_path, args)

    # -- the hub's pipeline ----------------------------------------------------------------

    def probe(self) -> PhaseProbe:
        from hub.db import psycopg_conninfo

        return PhaseProbe(self.bench.server_pids(), psycopg_conninfo(self.config.database.url))

    def capture_and_reconcile(self) -> dict[str, Any]:
        """Both connectors (one process each) to the end, then the reconciler until idle."""
        echo = self.bench.echo
        echo(f"[{fmt_n(self.n)}] capturing registry, then tax (one connector process each) …")
        probe = self.probe().start()
        started = time.time()
        results = {}
        for name in ("registry", TAX_SOURCE):
            results[name] = self.worker("capture", name=name).result()
            if results[name]["code"] != 0:
                raise click.ClickException(f"connector {name} failed")
        capture_s = max(r["ended"] for r in results.values()) - started
        capture_probe = probe.stop()
        capture_probe["workers_cpu_s"] = round(sum(r["cpu_s"] for r in results.values()), 1)
        echo(f"[{fmt_n(self.n)}] captured in {capture_s:.1f}s ({phase_summary(capture_probe)});"
             " reconciling …")  # fmt: skip
        probe = self.probe().start()
        n_rec = self.bench.reconcilers
        workers = [self.worker("reconcile", idle_s=2.0, group=n_rec > 1) for _ in range(n_rec)]
        try:
            recs = [w.result() for w in workers]
        except BaseException:
            for w in workers:  # one failed: the others would wait out their idle time
                w.terminate()
            raise
        started = min(w.started for w in workers)
        ends = [r["last_end"] for r in recs if r["last_end"]]
        firsts = [r["first_start"] for r in recs if r["first_start"]]
        reconcile_s = (max(ends) if ends else time.time()) - started
        rec = {
            "messages": sum(r["messages"] for r in recs),
            "dead_letters": sum(r["dead_letters"] for r in recs),
            "busy_s": (max(ends) - min(firsts)) if ends and firsts else 0.0,
            "peak_rss_mb": max(r["peak_rss_mb"] for r in recs),
            "processes": n_rec,
            "messages_per_process": [r["messages"] for r in recs],
        }
        reconcile_probe = probe.stop()
        reconcile_probe["workers_cpu_s"] = round(sum(r["cpu_s"] for r in recs), 1)
        procs = f" by {n_rec} reconciler processes" if n_rec > 1 else ""
        echo(f"[{fmt_n(self.n)}] reconciled {rec['messages']:,} messages{procs} in"
             f" {reconcile_s:.1f}s ({phase_summary(reconcile_probe)})")  # fmt: skip
        return {
            "phases": {"capture": capture_probe, "reconcile": reconcile_probe},
            "capture_s": capture_s,
            "reconcile_s": reconcile_s,
            "hub_s": capture_s + reconcile_s,
            "connectors": {
                name: {
                    "rows": r["rows"],
                    "seconds": r["seconds"],
                    "busy_seconds": r["busy_seconds"],
                    "rows_per_s": r["rows"] / r["busy_seconds"] if r["busy_seconds"] else None,
                    "peak_rss_mb": r["peak_rss_mb"],
                }
                for name, r in results.items()
            },
            "reconciler": rec,
            "peak_rss_mb": max([r["peak_rss_mb"] for r in results.values()] + [rec["peak_rss_mb"]]),
        }

    def hub_open_mismatches(self) -> set[tuple[str, str]]:
        import psycopg

        from hub.db import psycopg_conninfo

        with psycopg.connect(psycopg_conninfo(self.config.database.url)) as conn:
            rows = conn.execute(
                "SELECT record_key, rule FROM mismatches"
                f" WHERE sector = %s AND status IN {OPEN_STATUSES_SQL}",
                (TAX_SOURCE,),
            ).fetchall()
        return set(rows)

    # -- clean-up ----------------------------------------------------------------------------

    def drop(self) -> None:
        import psycopg

        from hub.db import psycopg_conninfo

        env, hub_env = self.bench.env, self.bench.hub_env
        try:
            with psycopg.connect(psycopg_conninfo(env.admin_url), autocommit=True) as c:
                for slot in self.slots:
                    c.execute(
                        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
                        " WHERE slot_name = %s AND NOT active",
                        (slot,),
                    )
                c.execute(f'DROP DATABASE IF EXISTS "{self.src_db}" WITH (FORCE)')
            with psycopg.connect(psycopg_conninfo(hub_env.admin_url), autocommit=True) as c:
                c.execute(f'DROP DATABASE IF EXISTS "{self.hub_db}" WITH (FORCE)')
        except psycopg.Error as exc:
            log.warning("bench clean-up of %s: %s", self.tag, exc)


# ------------------------------------------------------------------------------ the bench


class Bench:
    def __init__(self, *, n: int, data_dir: Path, skip: set[str], seed: int, rate: int | None,
                 part_citizens: int = PART_CITIZENS, shared_server: bool = False,
                 reconcilers: int = 1,
                 echo=click.echo):  # fmt: skip
        self.n = n
        self.shared_server = shared_server
        self.reconcilers = reconcilers
        self.hub_env = None
        self.hub_postgres = None
        self.part_citizens = part_citizens
        self.data_dir = data_dir
        self.skip = skip
        self.seed = seed
        self.rate = rate
        self.echo = echo
        self.stamp = uuid.uuid4().hex[:6]
        self.env = None
        self.results: dict[str, Any] = {}

    def run(self) -> dict[str, Any]:
        from hub.demo.runner import DemoEnvironment
        from hub.embedded import EmbeddedPostgres

        started = time.monotonic()
        self.env = self.hub_env = DemoEnvironment(self.data_dir).start()
        if self.env.stack is not None and not self.shared_server:
            # The hub's database on a server of its own, as in a deployment: the sources'
            # slots then decode only the sources' WAL, not the hub's.
            self.hub_postgres = EmbeddedPostgres(
                self.data_dir / "postgres-hub", settings=hub_server_settings()
            ).start()
            self.hub_env = DemoEnvironment(
                self.data_dir, admin_url=self.hub_postgres.url, bootstrap=self.env.bootstrap
            )
        figures: dict[str, Any] = {}
        out = {
            "scale": self.n,
            "machine": machine_info(),
            "settings": {
                "scale": self.n,
                "seed": self.seed,
                "skip": sorted(self.skip),
                "partitions": 12,
                "reconciler_processes": self.reconcilers,
                "external_servers": bool(
                    os.environ.get("HUB_DATABASE_URL") and os.environ.get("HUB_KAFKA_BOOTSTRAP")
                ),
                "connector_producer_processes": _producer_processes(),
                "hub_database_server": "shared with the sources"
                if self.hub_postgres is None
                else "its own embedded server",
                "hub_server_settings": None
                if self.hub_postgres is None
                else self.hub_postgres.settings,
            },
            "figures": figures,
        }
        runs: list[ScaleRun] = []
        try:
            smalls: list[tuple[ScaleRun, dict]] = []
            if "scaling" not in self.skip:
                # The small scale twice, the faster run counting: one slow N/10 run would
                # flatter the ratio (the hub's time varies more from run to run than the
                # SQL's; docs/benchmarks.md).
                for attempt in range(SMALL_RUNS):
                    small = ScaleRun(self, max(1000, self.n // 10), attempt)
                    runs.append(small)
                    small.prepare()
                    smalls.append((small, small.capture_and_reconcile()))
                    small.drop()
            main = ScaleRun(self, self.n)
            runs.append(main)
            prep = main.prepare()
            out["settings"]["generate_s"] = round(prep["generate_s"], 1)
            out["settings"]["load_s"] = round(prep["load_s"], 1)
            out["settings"]["records"] = main.records
            pipe = main.capture_and_reconcile()
            if "full" not in self.skip:
                figures["full_reconciliation"] = self.full_figure(main, pipe)
            if "stream" not in self.skip:
                figures["streaming_reconcile"] = self.stream_figure(main, pipe)
            if "capture" not in self.skip:
                figures["capture"] = self.capture_figure(main, pipe)
            if "latency" not in self.skip:
                figures["latency"] = self.latency_figure(main, figures)
            if "scaling" not in self.skip:
                figures["scaling"] = self.scaling_figure(smalls, main, pipe)
        finally:
            for r in runs:
                r.drop()
            if self.hub_postgres is not None:
                self.hub_postgres.stop()
            self.env.stop()
        out["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
        out["total_s"] = round(time.monotonic() - started, 1)
        return out

    def server_pids(self) -> dict[str, int | None]:
        """Process ids of the embedded servers (``None`` for external ones)."""
        stack = self.env.stack if self.env is not None else None
        if stack is None:
            return {"hub_postgres": None, "source_postgres": None, "broker": None}

        def pid(server) -> int | None:
            return server.proc.pid if server is not None and server.proc is not None else None

        # --shared-server: one server, reported once, as the hub's.
        own = self.hub_postgres is not None
        return {
            "hub_postgres": pid(self.hub_postgres if own else stack.postgres),
            "source_postgres": pid(stack.postgres) if own else None,
            "broker": pid(stack.broker),
        }

    # -- 1 -----------------------------------------------------------------------------------

    def full_figure(self, run: ScaleRun, pipe: dict) -> dict[str, Any]:
        import psycopg

        from hub.db import psycopg_conninfo

        self.echo(f"[{fmt_n(run.n)}] SQL baseline: one statement joining the same tables …")
        with psycopg.connect(psycopg_conninfo(run.src_url), autocommit=True) as conn:
            conn.execute("DROP TABLE IF EXISTS bench_sql_mismatches")
            t0 = time.monotonic()
            conn.execute(sql_baseline_statement())
            sql_s = time.monotonic() - t0
            sql_rows = set(conn.execute("SELECT record_key, rule FROM bench_sql_mismatches"))
        hub_rows = run.hub_open_mismatches()
        agreement: dict[str, dict[str, int]] = {}
        for rule in SQL_RULES:
            h = {k for k, r in hub_rows if r == rule}
            s = {k for k, r in sql_rows if r == rule}
            agreement[rule] = {
                "hub": len(h),
                "sql": len(s),
                "only_hub": len(h - s),
                "only_sql": len(s - h),
            }
        hub_only_rules = Counter(r for _, r in hub_rows if r not in SQL_RULES)
        ratio = pipe["hub_s"] / sql_s if sql_s else None
        return {
            "records": run.records,
            "hub_s": round(pipe["hub_s"], 2),
            "hub_capture_s": round(pipe["capture_s"], 2),
            "hub_reconcile_s": round(pipe["reconcile_s"], 2),
            "hub_phases": pipe["phases"],
            "hub_messages_per_reconciler": pipe["reconciler"]["messages_per_process"],
            "sql_s": round(sql_s, 2),
            "ratio": round(ratio, 2) if ratio else None,
            "target": "hub <= 2x SQL",
            "met": ratio is not None and ratio <= 2.0,
            "agreement": agreement,
            "agree": all(a["only_hub"] == 0 and a["only_sql"] == 0 for a in agreement.values()),
            "hub_only_rules": dict(hub_only_rules),
            "sql_expresses": (
                "exact comparisons: ID missing/invalid (structure + province table)/legacy/"
                "unknown, ID-encoded birth year and sex, name folded by NFD + dropping "
                "combining marks + đ→d + lower case + single spaces, birth date, sex, "
                "deceased-active, duplicate active IDs; not the similarity grading, "
                "Arabic folding, punctuation rules or candidate suggestions"
            ),
        }

    # -- 2 -----------------------------------------------------------------------------------

    @staticmethod
    def live_group(run: ScaleRun) -> str:
        """A consumer group for the live reconcilers, starting at the offsets figure 1's
        group stored in the hub database (the truth about what has been applied).

        Not figure 1's group itself: its members left one after the other as each went
        idle, and the embedded broker (tansu) can keep a member that left during the
        rebalance as the group's leader. New members then join, wait for the departed
        leader's assignment, get REBALANCE_IN_PROGRESS and join again: for tens of seconds,
        or for minutes (2 runs in 16 of the two-reconciler test). Kafka drops a member at
        its LeaveGroup."""
        import psycopg

        from hub.db import psycopg_conninfo
        from hub.kafka import Topics
        from reconciliation.store.offsets import read_offsets, store_offsets

        topics = Topics(run.config.kafka.topic_prefix)
        source = run.config.reconciler.group_id
        live = f"{source}-live"
        with psycopg.connect(psycopg_conninfo(run.config.database.url)) as hub:
            offsets = read_offsets(hub, source, [topics.registry, topics.sector(TAX_SOURCE)])
            if not store_offsets(hub, live, offsets, locked=()):
                raise click.ClickException(f"consumer group {live} already has offsets")
        return live

    def stream_figure(self, run: ScaleRun, pipe: dict) -> dict[str, Any]:
        from hub.kafka import Topics

        topics = Topics(run.config.kafka.topic_prefix)
        names = [topics.registry, topics.sector(TAX_SOURCE)]
        rec = pipe["reconciler"]
        self.echo(f"[{fmt_n(run.n)}] raw kafka-python poll-and-count on the same topics …")
        raw = run.worker("raw-consume", topics=names, expected=rec["messages"]).result()
        run.raw_consume = raw
        raw_s = (raw["last"] or 0) - (raw["first"] or 0)
        # Per reconciler process, as the target reads; the group's rate is reported too.
        total_rate = rec["messages"] / rec["busy_s"] if rec["busy_s"] > 0 else None
        hub_rate = total_rate / rec["processes"] if total_rate else None
        raw_rate = raw["messages"] / raw_s if raw_s > 0 else None
        ratio = hub_rate / raw_rate if hub_rate and raw_rate else None
        return {
            "messages": rec["messages"],
            "hub_events_per_s": round(hub_rate) if hub_rate else None,
            "reconciler_processes": rec["processes"],
            "hub_group_events_per_s": round(total_rate) if total_rate else None,
            "hub_busy_s": round(rec["busy_s"], 2),
            "raw_messages": raw["messages"],
            "raw_events_per_s": round(raw_rate) if raw_rate else None,
            "raw_s": round(raw_s, 2),
            "ratio": round(ratio, 3) if ratio else None,
            "target": ">= 0.60 of raw",
            "met": ratio is not None and ratio >= 0.6,
        }

    # -- 3 -----------------------------------------------------------------------------------

    def capture_figure(self, run: ScaleRun, pipe: dict) -> dict[str, Any]:
        import psycopg

        from hub.db import psycopg_conninfo
        from hub.kafka import Topics

        topics = Topics(run.config.kafka.topic_prefix)
        raw = run.raw_consume
        if raw is None:
            raw = run.worker(
                "raw-consume", topics=[topics.sector(TAX_SOURCE)], quiet_s=2.0
            ).result()
        tax_topic = topics.sector(TAX_SOURCE)
        size = round(raw["bytes"][tax_topic] / max(1, raw["per_topic"][tax_topic]))
        m = min(run.records["tax"], max(20_000, run.n // 5))
        self.echo(
            f"[{fmt_n(run.n)}] {m:,} updates on the tax table; streaming them from the slot …"
        )
        with psycopg.connect(psycopg_conninfo(run.src_url), autocommit=True) as conn:
            step = max(1, m // 20)
            keys = [
                k
                for (k,) in conn.execute(
                    "SELECT ma_so_thue FROM public.nguoi_nop_thue ORDER BY ma_so_thue LIMIT %s",
                    (m,),
                )
            ]
            for i in range(0, len(keys), step):
                conn.execute(
                    "UPDATE public.nguoi_nop_thue SET updated_at = now()"
                    " WHERE ma_so_thue = ANY(%s)",
                    (keys[i : i + step],),
                )
        cap = run.worker("capture", name=TAX_SOURCE).result()
        busy = cap["busy_seconds"]
        stream_rate = cap["rows"] / busy if busy else None
        run.stream_rate = stream_rate
        self.echo(f"[{fmt_n(run.n)}] raw kafka-python producer: {m:,} messages of {size} bytes …")
        prod = run.worker(
            "raw-produce", topic=f"{run.config.kafka.topic_prefix}.bench.raw", messages=m, size=size
        ).result()
        raw_rate = prod["messages"] / prod["seconds"] if prod["seconds"] else None
        snaps = {
            name: round(c["rows_per_s"]) if c["rows_per_s"] else None
            for name, c in pipe["connectors"].items()
        }
        ratio = stream_rate / raw_rate if stream_rate and raw_rate else None
        snap_min = min((v for v in snaps.values() if v), default=None)
        return {
            "stream_rows": cap["rows"],
            "stream_rows_per_s": round(stream_rate) if stream_rate else None,
            "stream_peak_rss_mb": cap["peak_rss_mb"],
            "snapshot_rows_per_s": snaps,
            "raw_producer_messages": prod["messages"],
            "raw_producer_message_bytes": size,
            "raw_producer_per_s": round(raw_rate) if raw_rate else None,
            "ratio": round(ratio, 3) if ratio else None,
            "snapshot_ratio": {
                name: round(v / raw_rate, 3) if v and raw_rate else None
                for name, v in snaps.items()
            },
            "target": ">= 0.80 of raw; snapshot >= 20k rows/s",
            "met": ratio is not None
            and ratio >= 0.8
            and snap_min is not None
            and snap_min >= 20_000,
        }

    # -- 4 -----------------------------------------------------------------------------------

    @staticmethod
    def _wait_for_slots(run: ScaleRun, caps: list[Worker]) -> None:
        """Wait until the live connectors' slots have caught up with the WAL: with
        ``--shared-server`` the hub's own writes since the capture phase are WAL the slots
        must decode past first, which is start-up, not latency."""
        import psycopg

        from hub.db import psycopg_conninfo

        time.sleep(2.0)
        deadline = time.monotonic() + 300
        with psycopg.connect(psycopg_conninfo(run.src_url), autocommit=True) as conn:
            while time.monotonic() < deadline:
                (behind,) = conn.execute(
                    "SELECT coalesce(max(pg_wal_lsn_diff(pg_current_wal_lsn(),"
                    " confirmed_flush_lsn)), 0) FROM pg_replication_slots"
                    " WHERE database = current_database()"
                ).fetchone()
                if behind < 1024 * 1024 or any(w.proc.poll() is not None for w in caps):
                    return
                time.sleep(0.5)

    def latency_figure(self, run: ScaleRun, figures: dict) -> dict[str, Any]:
        import psycopg

        from hub.db import psycopg_conninfo

        sustained = [
            v
            for v in (
                run.stream_rate,
                # What the reconcilers of the figure reach together (one: its own rate).
                (figures.get("streaming_reconcile") or {}).get("hub_group_events_per_s"),
            )
            if v
        ]
        if self.rate:
            rate, why = self.rate, "set by --rate"
        elif sustained and LIVE_SHARE / sum(1 / v for v in sustained) < DEFAULT_RATE:
            # Live, the connector and the reconciler share the CPUs: their combined rate is
            # the harmonic sum of what each reached alone. A change that opens a mismatch
            # costs the reconciler several times a clean one, so only a share is offered.
            rate = max(100, int(LIVE_SHARE / sum(1 / v for v in sustained) // 100 * 100))
            why = f"highest this machine sustains ({LIVE_SHARE:.0%} of the combined capture + reconcile rate)"
        else:
            rate, why = DEFAULT_RATE, "default"
        n_rec = self.reconcilers
        readies = [self.data_dir / f"ready-{run.tag}-{i}" for i in range(n_rec)]
        since = self.data_dir / f"since-{run.tag}"
        procs = f"{n_rec} reconcilers" if n_rec > 1 else "reconciler"
        self.echo(f"[{fmt_n(run.n)}] latency: connectors + {procs} live, {rate:,} changes/s …")
        with psycopg.connect(psycopg_conninfo(run.src_url), autocommit=True) as conn:
            # Records that carry no mismatch: a name change gives each a new NAME_MISMATCH.
            has_sql = conn.execute(
                "SELECT to_regclass('public.bench_sql_mismatches') IS NOT NULL"
            ).fetchone()[0]
            query = "SELECT ma_so_thue FROM public.nguoi_nop_thue t WHERE ten_nnt IS NOT NULL"
            if has_sql:
                query += (
                    " AND NOT EXISTS (SELECT 1 FROM bench_sql_mismatches b"
                    " WHERE b.record_key = t.ma_so_thue)"
                )
            clean = [k for (k,) in conn.execute(query + " ORDER BY random() LIMIT 400000")]
        with psycopg.connect(psycopg_conninfo(run.config.database.url)) as hub:
            flagged = {
                k
                for (k,) in hub.execute(
                    "SELECT record_key FROM mismatches WHERE sector = %s"
                    f" AND status IN {OPEN_STATUSES_SQL}",
                    (TAX_SOURCE,),
                )
            }
        clean = [k for k in clean if k not in flagged]
        duration = min(20.0 if run.n >= 1_000_000 else 10.0, 0.8 * len(clean) / rate)
        total = int(rate * duration)
        keys = clean[:total]
        group_id = self.live_group(run) if n_rec > 1 else None
        recs = [
            run.worker(
                "live-reconcile",
                ready=str(r),
                since_path=str(since),
                group=n_rec > 1,
                group_id=group_id,
            )
            for r in readies
        ]
        caps = [run.worker("live-capture", name=n) for n in ("registry", TAX_SOURCE)]
        deadline = time.monotonic() + 600
        # Each reconciler is ready once caught up on the partitions the group gave it.
        while not all(r.exists() for r in readies):
            failed = [w for w in recs if w.proc.poll() is not None]
            if failed or time.monotonic() > deadline:
                for w in (*recs, *caps):
                    w.terminate()
                for w in failed or recs:
                    w.result(30)  # raises with the worker's error, if it failed
                raise click.ClickException("the live reconciler did not catch up")
            time.sleep(0.2)
        self._wait_for_slots(run, caps)
        tick = 0.02
        per_tick = max(1, round(rate * tick))
        since.write_text(str(time.time()))
        sent = 0
        t0 = time.monotonic()
        with psycopg.connect(psycopg_conninfo(run.src_url), autocommit=True) as conn:
            while sent < len(keys):
                chunk = keys[sent : sent + per_tick]
                conn.execute(
                    "UPDATE public.nguoi_nop_thue SET ten_nnt = ten_nnt || ' Bench',"
                    " updated_at = now() WHERE ma_so_thue = ANY(%s)",
                    (chunk,),
                )
                sent += len(chunk)
                wait = t0 + (sent / per_tick) * tick - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
        offered_s = time.monotonic() - t0
        # Wait until every change is reconciled (a NAME_MISMATCH per changed record).
        with psycopg.connect(psycopg_conninfo(run.config.database.url), autocommit=True) as hub:
            deadline = time.monotonic() + 120
            seen = 0
            while time.monotonic() < deadline:
                seen = hub.execute(
                    "SELECT count(*) FROM mismatches WHERE sector = %s AND rule = 'NAME_MISMATCH'"
                    " AND record_key = ANY(%s)",
                    (TAX_SOURCE, keys),
                ).fetchone()[0]
                if seen >= len(keys):
                    break
                time.sleep(0.5)
        for w in (*recs, *caps):
            w.terminate()
        results = [w.result(120) for w in recs]
        for w in caps:
            w.result(120)
        lat = [x for r in results for x in r["latencies"]]
        to_kafka = [x for r in results for x in r["to_kafka"]]
        commit_offsets = [x for r in results for x in r["commit_offsets"]]
        achieved = sent / offered_s if offered_s else None
        p = {q: percentile(lat, q) for q in (50, 95, 99)}
        return {
            "offered_per_s": rate,
            "rate_choice": why,
            "achieved_per_s": round(achieved) if achieved else None,
            "changes": sent,
            "duration_s": round(offered_s, 1),
            "mismatches_stored": seen,
            "samples": len(lat),
            "p50_ms": round(p[50] * 1000, 1) if p[50] is not None else None,
            "p95_ms": round(p[95] * 1000, 1) if p[95] is not None else None,
            "p99_ms": round(p[99] * 1000, 1) if p[99] is not None else None,
            "max_ms": round(max(lat) * 1000, 1) if lat else None,
            "capture_part_ms": {
                f"p{q}": round(v * 1000, 1)
                for q in (50, 95, 99)
                if (v := percentile(to_kafka, q)) is not None
            },
            "slow_seconds": slow_seconds(commit_offsets, lat, to_kafka),
            "reconciler_processes": n_rec,
            "samples_per_reconciler": [len(r["latencies"]) for r in results],
            # What the live reconcilers consumed: they resume where figure 1 stopped.
            "messages_per_reconciler": [r["messages"] for r in results],
            "baseline": "the offered load (commit time of each source change)",
            "target": "p99 <= 500 ms",
            "met": p[99] is not None and p[99] <= 0.5 and seen >= len(keys),
        }

    # -- 5 -----------------------------------------------------------------------------------

    def scaling_figure(
        self, smalls: list[tuple[ScaleRun, dict]], big: ScaleRun, pb: dict
    ) -> dict[str, Any]:
        def point(run: ScaleRun, p: dict) -> dict[str, Any]:
            return {
                "records": run.records["registry"] + run.records["tax"],
                "scale": run.n,
                "seconds": round(p["hub_s"], 2),
                "capture_s": round(p["capture_s"], 2),
                "reconcile_s": round(p["reconcile_s"], 2),
                "peak_rss_mb": {
                    "connector_registry": p["connectors"]["registry"]["peak_rss_mb"],
                    "connector_tax": p["connectors"][TAX_SOURCE]["peak_rss_mb"],
                    "reconciler": p["reconciler"]["peak_rss_mb"],
                },
                "max_rss_mb": p["peak_rss_mb"],
                "phases": p["phases"],
            }

        tries = [point(run, p) for run, p in smalls]
        a, b = min(tries, key=lambda t: t["seconds"]), point(big, pb)
        data_ratio = b["records"] / a["records"]
        time_ratio = b["seconds"] / a["seconds"] if a["seconds"] else None
        rss_ratio = b["max_rss_mb"] / a["max_rss_mb"] if a["max_rss_mb"] else None
        return {
            "runs": [a, b],
            "small_runs_s": [t["seconds"] for t in tries],
            "data_ratio": round(data_ratio, 2),
            "time_ratio": round(time_ratio, 2) if time_ratio else None,
            "rss_ratio": round(rss_ratio, 2) if rss_ratio else None,
            "target": "time ratio <= 1.1x data ratio; memory flat",
            "met": time_ratio is not None
            and time_ratio <= 1.1 * data_ratio
            and rss_ratio is not None
            and rss_ratio <= 1.5,
        }


def phase_summary(phase: dict[str, Any]) -> str:
    """One line of a phase's probe: CPU seconds by whom, what the machine lost, what the hub
    database did in the background."""
    servers = phase.get("servers", {})
    machine = phase.get("machine", {})
    db = phase.get("hub_db", {})

    def secs(v: float | None) -> str:
        return "-" if v is None else f"{v:.0f}"

    cpu = [f"workers {secs(phase.get('workers_cpu_s'))}"]
    names = {"hub_postgres": "hub server", "source_postgres": "sources' server", "broker": "broker"}
    cpu += [f"{label} {secs(servers[key])}" for key, label in names.items()
            if servers.get(key) is not None]  # fmt: skip
    lost = [f"{key} {secs(machine[key])}" for key in ("steal", "iowait")
            if machine.get(key) is not None]  # fmt: skip
    background = [f"{db[key]:g} {key}" for key in ("checkpoints", "autovacuums", "autoanalyzes")
                  if db.get(key) is not None]  # fmt: skip
    return "; ".join(
        part
        for part in ("CPU s: " + ", ".join(cpu), ", ".join(lost), ", ".join(background))
        if part
    )


def _producer_processes() -> int:
    from connectors.delivery import producer_processes

    return producer_processes()


# ------------------------------------------------------------------------------ output


def _num(v: Any, unit: str = "") -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.2f}{unit}"
    if isinstance(v, int):
        return f"{v:,}{unit}"
    return f"{v}{unit}"


def table_rows(figures: dict[str, Any]) -> list[tuple[str, str, str, str, str, str]]:
    """(figure, hub, baseline, ratio, target, met) lines."""
    rows = []
    f = figures.get("full_reconciliation")
    if f:
        rows.append(("1 full reconciliation", _num(f["hub_s"], " s"), _num(f["sql_s"], " s (SQL)"),
                     _num(f["ratio"], "x"), f["target"], "yes" if f["met"] else "NO"))  # fmt: skip
        bad = {r: a for r, a in f["agreement"].items() if a["only_hub"] or a["only_sql"]}
        rows.append(("  agreement per rule", "all agree" if not bad else f"{len(bad)} rules differ",
                     "", "", "hub = SQL", "yes" if not bad else "NO"))  # fmt: skip
    s = figures.get("streaming_reconcile")
    if s:
        n_rec = s.get("reconciler_processes", 1)
        per = (
            f" ev/s per process ({_num(s['hub_group_events_per_s'])} for {n_rec})"
            if n_rec > 1
            else " ev/s"
        )
        rows.append(("2 streaming reconcile", _num(s["hub_events_per_s"], per),
                     _num(s["raw_events_per_s"], " ev/s (raw poll)"), _num(s["ratio"]),
                     s["target"], "yes" if s["met"] else "NO"))  # fmt: skip
    c = figures.get("capture")
    if c:
        rows.append(("3 capture (slot stream)", _num(c["stream_rows_per_s"], " rows/s"),
                     _num(c["raw_producer_per_s"], " msg/s (raw producer)"), _num(c["ratio"]),
                     ">= 0.80", "yes" if (c["ratio"] or 0) >= 0.8 else "NO"))  # fmt: skip
        for name, v in c["snapshot_rows_per_s"].items():
            rows.append((f"  snapshot {name}", _num(v, " rows/s"),
                         _num(c["raw_producer_per_s"], " msg/s (raw producer)"),
                         _num(c["snapshot_ratio"][name]), ">= 20k rows/s",
                         "yes" if (v or 0) >= 20_000 else "NO"))  # fmt: skip
    lat = figures.get("latency")
    if lat:
        rows.append(("4 latency p50/p95/p99",
                     f"{_num(lat['p50_ms'])}/{_num(lat['p95_ms'])}/{_num(lat['p99_ms'])} ms",
                     f"{_num(lat['offered_per_s'])} offered, {_num(lat['achieved_per_s'])} achieved/s",
                     _num(lat["p99_ms"] / 500 if lat["p99_ms"] else None, "x target"),
                     lat["target"], "yes" if lat["met"] else "NO"))  # fmt: skip
    sc = figures.get("scaling")
    if sc:
        a, b = sc["runs"]
        rows.append(("5 scaling time", _num(b["seconds"], f" s @{fmt_n(b['scale'])}"),
                     _num(a["seconds"], f" s @{fmt_n(a['scale'])}")
                     + (f" (fastest of {len(sc['small_runs_s'])})" if len(sc.get("small_runs_s", [])) > 1 else ""),
                     f"{_num(sc['time_ratio'])} for {_num(sc['data_ratio'])}x data",
                     "<= 1.1x data", "yes" if sc["time_ratio"] and sc["time_ratio"] <= 1.1 * sc["data_ratio"] else "NO"))  # fmt: skip
        rows.append(("  scaling peak RSS", _num(b["max_rss_mb"], " MB"), _num(a["max_rss_mb"], " MB"),
                     _num(sc["rss_ratio"]), "flat (<= 1.5x)",
                     "yes" if sc["rss_ratio"] and sc["rss_ratio"] <= 1.5 else "NO"))  # fmt: skip
    return rows


def print_table(result: dict[str, Any], echo=click.echo) -> None:
    rows = [("figure", "hub", "baseline", "ratio", "target", "met"), *table_rows(result["figures"])]
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    for i, r in enumerate(rows):
        echo("  ".join(cell.ljust(widths[j]) for j, cell in enumerate(r)).rstrip())
        if i == 0:
            echo("  ".join("-" * w for w in widths))
    f = result["figures"].get("full_reconciliation")
    if f:
        echo("rule agreement (hub vs SQL; only_hub / only_sql should be 0):")
        for rule, a in f["agreement"].items():
            echo(f"  {rule:<28} hub {a['hub']:>8,}  sql {a['sql']:>8,}  "
                 f"only_hub {a['only_hub']:>6,}  only_sql {a['only_sql']:>6,}")  # fmt: skip
    m = result["machine"]
    echo(f"machine: {m['nproc']} CPUs, {m['memory_gb']} GB, Python {m['python']}, "
         f"load average {m['load_average']} → {m.get('load_average_end')}; "
         f"total {result.get('total_s')} s")  # fmt: skip


# ------------------------------------------------------------------------------ command


@click.command("bench")
@click.option("--scale", default="1m", show_default=True, metavar="100k|1m|10m",
              help="N registry records against N sector records.")  # fmt: skip
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path, resolve_path=True),
              default=Path("bench.json"),
              show_default=True, help="JSON file of results.")  # fmt: skip
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path, resolve_path=True),
              default=None,
              help="Embedded servers' data (default: a temporary directory, removed after).")  # fmt: skip
@click.option("--skip", "skip", multiple=True, type=click.Choice(FIGURES),
              help="Leave out a figure (repeatable).")  # fmt: skip
@click.option("--seed", default=6, show_default=True, help="Generator seed.")
@click.option("--rate", type=int, default=None,
              help="Offered load of the latency figure (default 5000/s or what the machine sustains).")  # fmt: skip
@click.option("--shared-server", is_flag=True,
              help="Embedded servers: the hub's database on the sources' PostgreSQL server "
                   "(default: a server of its own).")  # fmt: skip
@click.option("--reconcilers", type=click.IntRange(1, 12), default=1, show_default=True,
              help="Reconciler processes of figures 1, 2, 4 and 5 (more than one: a consumer "
                   "group sharing the 12 partitions).")  # fmt: skip
@click.option("--part-citizens", type=click.IntRange(min=1), default=PART_CITIZENS, hidden=True,
              help="Citizens per generated part (tests use small parts).")  # fmt: skip
def bench(scale: str, out: Path, data_dir: Path | None, skip: tuple[str, ...], seed: int,
          rate: int | None, shared_server: bool, reconcilers: int,
          part_citizens: int) -> None:  # fmt: skip
    """Throughput, latency and scaling against the SQL-join and Kafka-client baselines."""
    from hub.embedded import install_signal_handlers
    from hub.logs import setup_logging

    n = parse_scale(scale)
    setup_logging("WARNING")
    install_signal_handlers()
    temp = data_dir is None
    data_dir = Path(tempfile.mkdtemp(prefix="hub-bench-")) if temp else data_dir
    try:
        result = Bench(
            n=n, data_dir=data_dir, skip=set(skip), seed=seed, rate=rate,
            part_citizens=part_citizens, shared_server=shared_server, reconcilers=reconcilers,
        ).run()  # fmt: skip
    finally:
        if temp:
            shutil.rmtree(data_dir, ignore_errors=True)
    click.echo("")
    print_table(result)
    out.write_text(json.dumps(result, indent=2, sort_keys=False))
    click.echo(f"results written to {out}")


if __name__ == "__main__":
    # ``python -m hub.bench ROLE CONFIG ARGS`` runs a worker; anything else is ``hub bench``.
    if len(sys.argv) > 1 and sys.argv[1] in WORKERS:
        sys.exit(worker_main(sys.argv[1:]))
    bench()

"""``hub bench``: the command, and :class:`Bench`, which starts the servers, runs each scale's
pipeline and measures the figures on it in order."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from hub.bench.figures import (
    FIGURES,
    SMALL_RUNS,
    capture_figure,
    full_figure,
    latency_figure,
    print_table,
    scaling_figure,
    stream_figure,
)
from hub.bench.probes import machine_info
from hub.bench.runs import ScaleRun
from hub.bench.scale import PART_CITIZENS, parse_scale


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


@dataclass(kw_only=True)
class Bench:
    """One ``hub bench`` run: its settings (the command's options), and once :meth:`run` has
    started them, its servers (``env`` the sources' and the broker, ``hub_env`` the hub's)."""

    n: int
    data_dir: Path
    skip: set[str]
    seed: int
    rate: int | None
    part_citizens: int = PART_CITIZENS
    shared_server: bool = False
    reconcilers: int = 1
    broker: str = "tansu"
    echo: Callable[..., Any] = click.echo
    stamp: str = field(default_factory=lambda: uuid.uuid4().hex[:6], init=False)
    env: Any = field(default=None, init=False)
    hub_env: Any = field(default=None, init=False)
    hub_postgres: Any = field(default=None, init=False)

    def run(self) -> dict[str, Any]:
        from hub.demo.runner import DemoEnvironment
        from hub.embedded import EmbeddedPostgres

        started = time.monotonic()
        with _quiet("kafka"):
            self.env = self.hub_env = DemoEnvironment(
                self.data_dir, broker=self.broker, quick_jit=False
            ).start()
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
                "broker": self.broker if self.env.stack is not None else "external",
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
                figures["full_reconciliation"] = full_figure(main, pipe)
            if "stream" not in self.skip:
                figures["streaming_reconcile"] = stream_figure(main, pipe)
            if "capture" not in self.skip:
                figures["capture"] = capture_figure(main, pipe)
            if "latency" not in self.skip:
                figures["latency"] = latency_figure(main, figures)
            if "scaling" not in self.skip:
                figures["scaling"] = scaling_figure(smalls, main, pipe)
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


def _producer_processes() -> int:
    from connectors.delivery import producer_processes

    return producer_processes()


@contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    """Only CRITICAL from ``logger_name`` meanwhile: kafka-python logs an ERROR for each
    refused connection while Apache Kafka starts (tens of seconds of them on a busy machine),
    which the start itself waits out."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


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
              help="Leave out a figure, or figure 3's Debezium baseline (debezium); repeatable.")  # fmt: skip
@click.option("--seed", default=6, show_default=True, help="Generator seed.")
@click.option("--rate", type=int, default=None,
              help="Offered load of the latency figure (default 5000/s or what the machine sustains).")  # fmt: skip
@click.option("--shared-server", is_flag=True,
              help="Embedded servers: the hub's database on the sources' PostgreSQL server "
                   "(default: a server of its own).")  # fmt: skip
@click.option("--reconcilers", type=click.IntRange(1, 12), default=1, show_default=True,
              help="Reconciler processes of figures 1, 2, 4 and 5 (more than one: a consumer "
                   "group sharing the 12 partitions).")  # fmt: skip
@click.option("--broker", type=click.Choice(["tansu", "kafka"]), default="tansu", show_default=True,
              help="Embedded broker of every figure: tansu (no Java) or Apache Kafka (Java 17+ "
                   "and tests/setup_machine.py's jars); not used with external servers.")  # fmt: skip
@click.option("--part-citizens", type=click.IntRange(min=1), default=PART_CITIZENS, hidden=True,
              help="Citizens per generated part (tests use small parts).")  # fmt: skip
def bench(scale: str, out: Path, data_dir: Path | None, skip: tuple[str, ...], seed: int,
          rate: int | None, shared_server: bool, reconcilers: int, broker: str,
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
            broker=broker,
        ).run()  # fmt: skip
    finally:
        if temp:
            shutil.rmtree(data_dir, ignore_errors=True)
    click.echo("")
    print_table(result)
    out.write_text(json.dumps(result, indent=2, sort_keys=False))
    click.echo(f"results written to {out}")

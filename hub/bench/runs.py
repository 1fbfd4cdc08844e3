"""One scale of the bench: its data generated and loaded in parts, its databases, topics and
slots, and the hub's pipeline over it (the capture and reconcile phases every figure reads)."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import click

from hub.bench.probes import PhaseProbe, phase_summary
from hub.bench.scale import fmt_n, part_count
from hub.bench.workers import Worker

if TYPE_CHECKING:
    from hub.bench.cli import Bench

log = logging.getLogger(__name__)

TAX_SOURCE = "tax"


def generate_part(src_url: str, n: int, seed: int, index: int, parts: int) -> dict[str, int]:
    """Build part ``index`` of ``parts`` of N citizens, each with a tax record, and COPY it
    into the registry and tax tables (made by ``create_table``). Runs in a worker process."""
    from hub.demo import generator
    from hub.demo.loading import append_rows
    from hub.demo.population import REGISTRY, TAX

    population = generator.build(
        n, seed, sectors=(TAX_SOURCE,), shares={TAX_SOURCE: 1.0}, part=(index, parts)
    )
    _in_threads(
        (append_rows, src_url, REGISTRY, population.rows["registry"]),
        (append_rows, src_url, TAX, population.rows["tax"]),
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
        from hub.demo.loading import create_table, finish_table
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
                    "cpu_s": r["cpu_s"],
                }
                for name, r in results.items()
            },
            "reconciler": rec,
            "peak_rss_mb": max([r["peak_rss_mb"] for r in results.values()] + [rec["peak_rss_mb"]]),
        }

    def hub_open_mismatches(self) -> set[tuple[str, str]]:
        """(record key, rule) of the tax sector's open mismatches in the hub's store."""
        import psycopg

        from hub.db import psycopg_conninfo
        from hub.vocabulary import OPEN_STATUSES

        with psycopg.connect(psycopg_conninfo(self.config.database.url)) as conn:
            rows = conn.execute(
                "SELECT record_key, rule FROM mismatches WHERE sector = %s AND status = ANY(%s)",
                (TAX_SOURCE, sorted(OPEN_STATUSES)),
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

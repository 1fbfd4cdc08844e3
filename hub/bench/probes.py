"""What the bench measures besides its figures: peak RSS of a process tree, CPU seconds of a
server's tree, and what the machine and the hub database did during one phase."""

from __future__ import annotations

import logging
import os
import platform
import threading
import time
from typing import Any

log = logging.getLogger(__name__)


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

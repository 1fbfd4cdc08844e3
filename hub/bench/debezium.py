"""Figure 3's second baseline: Debezium's PostgreSQL connector (``deploy/debezium/
postgres.properties``) on a Kafka Connect standalone worker, capturing the same tax table
from a pgoutput slot of its own into the same Apache Kafka, in the same run as the hub.

:class:`DebeziumPeer` first takes Debezium's initial snapshot of the table, then stops the
connector (its slot stays) while the figure makes its updates and the hub streams them, then
resumes it and times Debezium streaming the same updates. Rates come from the timestamps
Kafka Connect's producer gave the first and last record of each phase (the start of the task
is not counted, as the hub's busy seconds leave out its start); CPU seconds are the worker
JVM's user + system time over the phase (``/proc/<pid>/stat``), task start included.
"""

from __future__ import annotations

import time
from typing import Any

from hub.errors import FatalError

TABLE = "public.nguoi_nop_thue"


def debezium_absent(bench) -> str | None:
    """Why the Debezium baseline cannot run in this bench, or None."""
    from hub.embedded.connect import debezium_missing

    if "debezium" in bench.skip:
        return "left out (--skip debezium)"
    if bench.env is None or bench.env.stack is None or bench.broker != "kafka":
        return (
            "Debezium runs on Kafka Connect: only with the embedded Apache Kafka (--broker kafka)"
        )
    return debezium_missing()


class DebeziumPeer:
    """One Connect worker and one Debezium connector on the run's tax table."""

    def __init__(self, run, timeout: float = 900.0, table: str = TABLE, worker=None):
        """``worker``: a running :class:`ConnectWorker` to use (and leave running), else one
        of its own, started by :meth:`snapshot` and stopped by :meth:`close`."""
        from sqlalchemy.engine import make_url

        from hub.embedded.connect import ConnectWorker

        self.run = run
        self.timeout = timeout
        url = make_url(run.src_url)
        self.name = f"bench-{run.tag.replace('_', '-')}"
        prefix = f"{run.config.kafka.topic_prefix}dbz"
        self.topic = f"{prefix}.{table}"
        from hub.embedded.connect import postgres_connector

        self.config = postgres_connector(
            self.name, port=url.port, database=url.database, table=table, topic_prefix=prefix,
            schemas=False, snapshot="initial",
        )  # fmt: skip
        # The hub's slot streams the same table: its replica identity stays as it is.
        del self.config["replica.identity.autoset.values"]
        self.slot = self.config["slot.name"]
        self.own = worker is None
        self.worker = worker or ConnectWorker(
            run.bench.data_dir / f"connect-{run.tag}", run.bench.env.bootstrap, heap="1g"
        )
        self.consumer = None

    # -- phases ----------------------------------------------------------------------------

    def snapshot(self, rows: int) -> dict[str, Any]:
        """Start the worker, take the initial snapshot of ``rows`` rows, then stop the
        connector so its slot keeps what follows."""
        if self.own:
            self.worker.start(timeout=self.timeout)
        cpu0 = self._cpu()
        started = time.time()
        self.worker.create(self.config)
        self._wait_records(rows)
        cpu = self._cpu() - cpu0
        wall = time.time() - started
        self.worker.stop_connector(self.name)
        self._wait_state("STOPPED")
        return self._phase(0, rows, cpu, wall, ops=("r",))

    def stream(self, first: int, rows: int) -> dict[str, Any]:
        """Resume the connector and time it streaming ``rows`` updates after record ``first``."""
        cpu0 = self._cpu()
        started = time.time()
        self.worker.resume(self.name)
        self._wait_records(first + rows)
        return self._phase(first, rows, self._cpu() - cpu0, time.time() - started, ops=("u",))

    def close(self) -> None:
        import psycopg

        from hub.db import psycopg_conninfo

        if self.consumer is not None:
            self.consumer.close()
        try:
            if self.worker.proc is not None:
                self.worker.delete(self.name)
        except FatalError:
            pass  # the slot is dropped below, or with the run's database
        finally:
            if self.own:
                self.worker.stop()
        # The deleted connector's task lets go of its slot shortly after: then drop it.
        deadline = time.monotonic() + 30
        with psycopg.connect(psycopg_conninfo(self.run.bench.env.admin_url), autocommit=True) as c:
            while time.monotonic() < deadline:
                held = c.execute(
                    "SELECT active FROM pg_replication_slots WHERE slot_name = %s", (self.slot,)
                ).fetchone()
                if held is None:
                    return
                if not held[0]:
                    c.execute("SELECT pg_drop_replication_slot(%s)", (self.slot,))
                    return
                time.sleep(0.2)

    # -- measuring -------------------------------------------------------------------------

    def _cpu(self) -> float:
        from hub.bench.probes import tree_cpu_seconds

        return tree_cpu_seconds(self.worker.pid) or 0.0

    def _tp(self):
        from kafka import KafkaConsumer, TopicPartition

        if self.consumer is None:
            self.consumer = KafkaConsumer(
                bootstrap_servers=self.run.bench.env.bootstrap, enable_auto_commit=False
            )
        return TopicPartition(self.topic, 0)

    def _wait_records(self, count: int) -> None:
        """Until the topic holds ``count`` records; a failed task raises with its trace."""
        deadline = time.monotonic() + self.timeout
        while True:
            tp = self._tp()
            if self.consumer.partitions_for_topic(self.topic):
                if self.consumer.end_offsets([tp])[tp] >= count:
                    return
            else:
                self.consumer.topics()  # refresh the metadata until Connect has created it
            for task in self.worker.status(self.name).get("tasks") or []:
                if task.get("state") == "FAILED":
                    raise FatalError(f"Debezium failed: {(task.get('trace') or '')[:800]}")
            if time.monotonic() > deadline:
                raise FatalError(f"Debezium wrote fewer than {count:,} records to {self.topic}")
            time.sleep(0.2)

    def _wait_state(self, state: str) -> None:
        deadline = time.monotonic() + 60
        while self.worker.status(self.name)["connector"]["state"] != state:
            if time.monotonic() > deadline:
                raise FatalError(f"Debezium connector {self.name} not {state} after 60 s")
            time.sleep(0.2)

    def _record(self, offset: int):
        import json

        tp = self._tp()
        self.consumer.assign([tp])
        self.consumer.seek(tp, offset)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for records in self.consumer.poll(timeout_ms=500, max_records=1).values():
                r = records[0]
                return r.timestamp, json.loads(r.value)["op"] if r.value else None
        raise FatalError(f"record {offset} of {self.topic} not readable")

    def _phase(self, first: int, rows: int, cpu: float, wall: float, ops: tuple) -> dict:
        t0, op0 = self._record(first)
        t1, op1 = self._record(first + rows - 1)
        if op0 not in ops or op1 not in ops:
            raise FatalError(f"Debezium records {first:,}..{first + rows - 1:,} are {op0}/{op1}, "
                             f"not {'/'.join(ops)}: it did not capture what the hub did")  # fmt: skip
        busy = max((t1 - t0) / 1000, 0.001)
        return {
            "rows": rows,
            "rows_per_s": round(rows / busy),
            "busy_s": round(busy, 2),
            "seconds": round(wall, 2),
            "cpu_s": round(cpu, 2),
        }


def compare(hub_rows: int, hub_rate: float | None, hub_cpu: float | None, peer: dict) -> dict:
    """Hub vs Debezium for one phase: rows/s, CPU seconds, the ratio of rates and the ratio of
    rows per CPU second (per core used)."""
    ratio = hub_rate / peer["rows_per_s"] if hub_rate and peer["rows_per_s"] else None
    per_core = None
    if hub_cpu and peer["cpu_s"]:
        per_core = (hub_rows / hub_cpu) / (peer["rows"] / peer["cpu_s"])
    return {
        "hub_rows_per_s": round(hub_rate) if hub_rate else None,
        "hub_cpu_s": round(hub_cpu, 2) if hub_cpu else None,
        "debezium_rows_per_s": peer["rows_per_s"],
        "debezium_cpu_s": peer["cpu_s"],
        "debezium_busy_s": peer["busy_s"],
        "ratio": round(ratio, 3) if ratio else None,
        "ratio_per_core": round(per_core, 3) if per_core else None,
    }


def start_peer(run) -> tuple[DebeziumPeer | None, dict[str, Any]]:
    """The peer after its snapshot of the tax table, and the figure so far; no peer (and the
    reason in ``absent``) when it cannot run here or fails."""
    from hub.bench.scale import fmt_n
    from hub.embedded.connect import DEBEZIUM_VERSION

    absent = debezium_absent(run.bench)
    if absent:
        return None, {"absent": absent}
    run.bench.echo(f"[{fmt_n(run.n)}] Debezium {DEBEZIUM_VERSION} on Kafka Connect: its initial "
                   f"snapshot of {run.records['tax']:,} tax rows …")  # fmt: skip
    peer = DebeziumPeer(run)
    try:
        snap = peer.snapshot(run.records["tax"])
    except FatalError as exc:
        peer.close()
        return None, {"absent": f"Debezium failed: {exc}"}
    return peer, {
        "version": DEBEZIUM_VERSION,
        "connector": "io.debezium.connector.postgresql.PostgresConnector (pgoutput)",
        "converter": "JsonConverter, schemas.enable=false",
        "snapshot": snap,
    }


def finish_peer(
    run, peer: DebeziumPeer | None, figure: dict[str, Any], rows: int,
    hub_stream: tuple[int, float | None, float | None],
    hub_snapshot: tuple[int, float | None, float | None],
) -> dict[str, Any]:  # fmt: skip
    """Time the peer streaming the ``rows`` updates the hub streamed, and compare: each
    ``hub_*`` is (rows, rows/s, CPU seconds) of the hub's tax connector."""
    from hub.bench.scale import fmt_n

    if peer is None:
        return figure
    run.bench.echo(f"[{fmt_n(run.n)}] Debezium streaming the same {rows:,} updates from its slot …")
    try:
        figure["stream"] = peer.stream(run.records["tax"], rows)
    except FatalError as exc:
        return {"absent": f"Debezium failed: {exc}"}
    finally:
        peer.close()
    figure["stream_vs_hub"] = compare(*hub_stream, figure["stream"])
    figure["snapshot_vs_hub"] = compare(*hub_snapshot, figure["snapshot"])
    return figure

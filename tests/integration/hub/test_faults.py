"""Broker and hub-database faults under load: a logical connector, a reconciler and the web
server, as real processes, recover by themselves within seconds, lose no change and
duplicate no effect; ``/readyz`` says what is down while it is, and the metrics show the stall.

Two independent pipelines (lanes), each with one Apache Kafka broker (``keep_data``, so a
restart keeps its topics) and one hub PostgreSQL of its own, are faulted in turn at the same
time, each while a writer inserts rows into its source database (on the session's
PostgreSQL): the 60 s outage and the 30 s pause are mostly waiting, so the other lane's faults
run meanwhile. Every row is a sector record whose valid ID the (empty) registry does not hold,
so each must end as exactly one ``ID_NOT_IN_REGISTRY`` mismatch with exactly one history row.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
import yaml

from hub.db import psycopg_conninfo
from hub.db.migrate import upgrade
from hub.embedded import EmbeddedKafka, EmbeddedPostgres, free_port, kafka_missing
from hub.idschemes.vn import make_id
from hub.testing import server_dir
from tests.integration.faults import (
    fast_shutdown,
    kill,
    kill_postgres,
    pause,
    resume,
    stop_broker,
)

pytestmark = [
    pytest.mark.skipif(kafka_missing() is not None, reason=str(kafka_missing())),
    # Recovery is timed: run alone, not beside another worker's load (see docs/operations.md).
    pytest.mark.serial,
]

ROOT = Path(__file__).resolve().parents[3]
PAUSE_S = 30.0
OUTAGE_S = 60.0
RECOVERY_LIMIT_S = 10.0
"""A change committed once a fault is over is in the mismatch store within this long."""
REPORT_LIMIT_S = 16.0
"""A stopped or paused broker shows in the connector's ``hub_kafka_up`` within this long
(delivery timeout 12 s, plus a scrape). The reconciler's must show a stopped broker while it
is down; for a paused one it is printed, not required."""
SLOW_S = "5.0"
"""The latency bucket a stalled change lands above (``hub_reconcile_latency_seconds``)."""
WRITE_EVERY_S = 0.05


class Writer(threading.Thread):
    """Inserts one source row per transaction; remembers when each one committed."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url = url
        self.stop = threading.Event()
        self.committed: list[tuple[float, str]] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with psycopg.connect(psycopg_conninfo(self.url), autocommit=True) as conn:
                conn.execute("SET synchronous_commit = on")
                n = 0
                while not self.stop.wait(WRITE_EVERY_S):
                    key = f"F{n:06d}"
                    conn.execute(
                        "INSERT INTO nnt VALUES (%s, %s, %s)",
                        (key, make_id("001", 1990, "MF"[n % 2], n), f"Nguyễn Văn {n}"),
                    )
                    self.committed.append((time.monotonic(), key))
                    n += 1
        except BaseException as exc:  # reported by the test that reads committed
            self.error = exc

    def keys_before(self, moment: float) -> set[str]:
        assert self.error is None, f"the source writer failed: {self.error!r}"
        return {key for at, key in list(self.committed) if at < moment}

    def first_after(self, moment: float, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            assert self.error is None, f"the source writer failed: {self.error!r}"
            later = [key for at, key in list(self.committed)[-200:] if at >= moment]
            if later:
                return later[0]
            assert time.monotonic() < deadline, "the source writer stalled"
            time.sleep(0.01)


@dataclass
class Pipeline:
    """The servers, the hub processes and the load of this module."""

    kafka: EmbeddedKafka
    pg: EmbeddedPostgres
    hub_url: str
    config: dict
    writer: Writer
    logs: Path
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def store(self, query: str, params: tuple = ()) -> list[tuple] | None:
        """Rows from the hub database, or None while it is down."""
        try:
            with psycopg.connect(psycopg_conninfo(self.hub_url), connect_timeout=2) as conn:
                return conn.execute(query, params).fetchall()
        except psycopg.OperationalError:
            return None

    def stored(self, key: str) -> bool:
        rows = self.store("SELECT 1 FROM mismatches WHERE sector = 'tax' AND record_key = %s",
                          (key,))  # fmt: skip
        return bool(rows)

    def readyz(self) -> tuple[int, dict]:
        url = f"http://{self.config['api']['listen']}/readyz"
        try:
            with urllib.request.urlopen(url, timeout=15) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())
        except OSError as exc:
            return 0, {"error": str(exc)}

    def scrape(self, role: str) -> dict[str, float]:
        url = f"http://{self.config['metrics']['listen'][role]}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                text = resp.read().decode()
        except OSError:
            return {}
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def slow_changes(self) -> float:
        """Changes that took over SLOW_S from source commit to the mismatch store."""
        m = self.scrape("reconciler")

        def bucket(le: str) -> float:  # summed over the sectors
            name = "hub_reconcile_latency_seconds_bucket{"
            return sum(v for k, v in m.items() if k.startswith(name) and f'le="{le}"' in k)

        return bucket("+Inf") - bucket(str(SLOW_S))

    def log_tails(self, chars: int = 2500) -> str:
        """The end of each process's log, for a failure message."""
        return "\n".join(
            f"--- {name}.log\n" + (self.logs / f"{name}.log").read_text(errors="replace")[-chars:]
            for name in self.procs
        )

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                tail = (self.logs / f"{name}.log").read_text(errors="replace")[-3000:]
                raise AssertionError(f"{name} exited with {proc.returncode}:\n{tail}")


def wait_for(predicate: Callable[[], object], timeout: float, what: str, pipeline: Pipeline):
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        pipeline.check_alive()
        assert time.monotonic() < deadline, (
            f"timed out after {timeout:.0f}s waiting for {what}\n{pipeline.log_tails()}"
        )
        time.sleep(0.1)
    return result


def write_config(tmp: Path, source_url: str, hub_url: str, kafka: EmbeddedKafka) -> dict:
    name = source_url.rsplit("/", 1)[1]
    config = {
        "kafka": {"bootstrap_servers": kafka.bootstrap, "topic_prefix": "faults", "partitions": 4},
        "database": {"url": hub_url},
        "api": {"listen": f"127.0.0.1:{free_port()}"},
        "metrics": {"listen": {r: f"127.0.0.1:{free_port()}"
                               for r in ("connector", "reconciler", "serve", "run")}},
        "id_scheme": "vn",
        "reconciler": {"group_id": "faults"},
        "sectors": {"tax": {
            "url": source_url, "table": "public.nnt", "key": "ma_so_thue", "capture": "logical",
            "logical": {"slot": f"hub_{name}", "publication": f"pub_{name}", "heartbeat_s": 1},
            "columns": {"citizen_id": "so_cccd", "full_name": "ten_nnt"},
        }},
    }  # fmt: skip
    (tmp / "hub.yaml").write_text(yaml.safe_dump(config, allow_unicode=True))
    return config


_MIGRATING = threading.Lock()
"""Alembic keeps its migration context in module globals: one upgrade at a time."""


@contextmanager
def running_pipeline(servers) -> Iterator[Pipeline]:
    """A lane's servers, hub processes and writer, up and answering; stopped on exit.

    Call it on the thread that faults the lane and keep that thread alive until the exit:
    the servers' parent-death signal fires when the thread that started them ends, and a
    fault restarts them on that thread."""
    base = server_dir()
    kafka = EmbeddedKafka(base / "kafka", keep_data=True, quick_jit=True)
    pg = EmbeddedPostgres(base / "hubpg", durable=False)
    source_url = servers.create_database("faults_src")
    p: Pipeline | None = None
    try:
        kafka.start()
        pg.start()
        hub_url = pg.create_database("hub")
        with _MIGRATING:
            upgrade(hub_url)
        with psycopg.connect(psycopg_conninfo(source_url), autocommit=True) as conn:
            conn.execute("CREATE TABLE nnt (ma_so_thue text PRIMARY KEY, so_cccd text,"
                         " ten_nnt text)")  # fmt: skip
        config = write_config(base, source_url, hub_url, kafka)
        p = Pipeline(kafka, pg, hub_url, config, Writer(source_url), base)
        env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
        env["PYTHONUNBUFFERED"] = "1"
        for name, args in (("connector", ["connector", "run", "tax"]),
                           ("reconciler", ["reconcile"]), ("web", ["serve"])):  # fmt: skip
            with open(base / f"{name}.log", "wb") as out:
                p.procs[name] = subprocess.Popen(
                    [sys.executable, "-m", "hub", "--config", str(base / "hub.yaml"), *args],
                    cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                )  # fmt: skip
        p.writer.start()
        first = p.writer.first_after(time.monotonic())
        wait_for(lambda: p.stored(first), 120, "the first change in the mismatch store", p)
        wait_for(lambda: p.readyz()[0] == 200, 30, "/readyz to answer 200", p)
        yield p
    finally:
        if p is not None:
            p.writer.stop.set()
            if kafka.proc is not None and kafka.proc.poll() is None:
                resume(kafka)  # a test that failed mid-pause
            for proc in p.procs.values():
                proc.terminate()
            for proc in p.procs.values():
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
        kill(kafka)  # its data is thrown away: no controlled shutdown
        pg.stop()
        name = source_url.rsplit("/", 1)[1]
        with psycopg.connect(psycopg_conninfo(servers.pg_url), autocommit=True) as conn:
            conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
                         " WHERE database = %s", (name,))  # fmt: skip
        servers.drop_database(source_url)
        shutil.rmtree(base, ignore_errors=True)


# -------------------------------------------------------------------------- the faults
# Each injects its fault and holds it as long as the issue says, and at least until /readyz
# reports the dependency down (and, for the hub database, until the connector's
# hub_connector_up shows it; for the broker, until both processes' hub_kafka_up do, when the
# fault lasts long enough), so the fault was seen, not only made; then it lifts it and returns
# what /readyz and the metrics showed (Held).


@dataclass
class Held:
    reason: str = ""
    """What /readyz said of the dependency."""
    lowest_up: float = 1.0
    """The lowest hub_connector_up scraped."""
    kafka_down_s: dict[str, float] = field(default_factory=dict)
    """Per role, seconds from the fault until its hub_kafka_up read 0."""


KAFKA_ROLES = ("connector", "reconciler")


def _hold(p: Pipeline, dependency: str, until: float, *, connector_down: bool = False,
          kafka_down: tuple[str, ...] = ()) -> Held:  # fmt: skip
    held = Held()
    began = time.monotonic()
    deadline = began + 30
    while True:
        status, body = p.readyz()
        if status == 503 and body["checks"].get(dependency, "ok") != "ok":
            held.reason = held.reason or body["checks"][dependency]
        metrics = {role: p.scrape(role) for role in ("connector", "reconciler")}
        up = metrics["connector"].get('hub_connector_up{connector="tax"}', 1.0)
        held.lowest_up = min(held.lowest_up, up)
        for role in KAFKA_ROLES:
            if metrics[role].get(f'hub_kafka_up{{role="{role}"}}', 1.0) == 0:
                held.kafka_down_s.setdefault(role, time.monotonic() - began)
        seen = held.reason and (held.lowest_up == 0 or not connector_down)
        seen = seen and all(role in held.kafka_down_s for role in kafka_down)
        if seen and time.monotonic() >= until:
            return held
        assert seen or time.monotonic() < deadline, (
            f"in 30 s, /readyz said {held.reason or 'nothing'} of {dependency}, connector up "
            f"{held.lowest_up:.0f}, hub_kafka_up 0 after {held.kafka_down_s}"
        )
        time.sleep(0.1)


def broker_restart(p: Pipeline) -> Held:
    stop_broker(p.kafka)
    held = _hold(p, "kafka", 0)
    p.kafka.start()
    return held


def broker_pause(p: Pipeline) -> Held:
    pause(p.kafka)
    try:
        # Only the connector's report is required here; the reconciler's (its own check
        # thread, ~6 s in the runs so far) is printed with the figures.
        return _hold(p, "kafka", time.monotonic() + PAUSE_S, kafka_down=("connector",))
    finally:
        resume(p.kafka)


def broker_outage(p: Pipeline) -> Held:
    stop_broker(p.kafka)
    held = _hold(p, "kafka", time.monotonic() + OUTAGE_S, kafka_down=KAFKA_ROLES)
    p.kafka.start()
    return held


def postgres_kill(p: Pipeline) -> Held:
    kill_postgres(p.pg)
    held = _hold(p, "database", 0, connector_down=True)
    p.pg.start()
    return held


def postgres_fast_shutdown(p: Pipeline) -> Held:
    fast_shutdown(p.pg)
    held = _hold(p, "database", 0, connector_down=True)
    p.pg.start()
    return held


FAULTS = {
    "broker restart": broker_restart,
    "broker SIGSTOP 30 s": broker_pause,
    "broker down 60 s": broker_outage,
    "hub PostgreSQL SIGKILL": postgres_kill,
    "hub PostgreSQL fast shutdown": postgres_fast_shutdown,
}


@dataclass
class Outcome:
    """What one fault did to its lane: the figures its test asserts on."""

    fault: str
    held: Held
    down_s: float
    recovery_s: float
    ready_s: float
    written: int
    lost: int
    duplicated: int
    other: int
    exits: int
    mismatches: int
    opened: int
    history: int
    slow: float

    @property
    def figures(self) -> str:
        held = self.held
        reported = ", ".join(f"{r} {s:.1f} s" for r, s in held.kafka_down_s.items()) or "-"
        return (
            f"{self.fault}: down {self.down_s:.1f} s (/readyz: {held.reason[:80]!r}), recovered"
            f" in {self.recovery_s:.1f} s, ready in {self.ready_s:.1f} s; {self.written} changes,"
            f" lost {self.lost}, duplicated {self.duplicated}, process exits {self.exits};"
            f" {self.slow:.0f} changes over {SLOW_S} s, connector up {held.lowest_up:.0f} at the"
            f" lowest; hub_kafka_up 0 after: {reported}"
        )


def inflict(p: Pipeline, fault: str) -> Outcome:
    """Inject ``fault`` into the running lane ``p``, lift it, and measure the recovery."""
    p.check_alive()
    slow_before = p.slow_changes()
    began = time.monotonic()
    held = FAULTS[fault](p)
    lifted = time.monotonic()

    # Recovery: a change committed once the fault is over reaches the mismatch store.
    probe = p.writer.first_after(lifted)
    wait_for(lambda: p.stored(probe), 120, f"the first change after the {fault}", p)
    recovery_s = time.monotonic() - lifted
    wait_for(lambda: p.readyz()[0] == 200, 30, "/readyz to answer 200 again", p)
    ready_s = time.monotonic() - lifted

    # Nothing lost: every change committed so far is there (allowing in-flight ones time).
    cutoff = time.monotonic()
    written = p.writer.keys_before(cutoff)
    missing: set[str] = set()

    def complete() -> bool:
        rows = p.store("SELECT record_key FROM mismatches WHERE sector = 'tax'")
        missing.clear()
        missing.update(written - {k for (k,) in rows or ()})
        return rows is not None and not missing

    try:
        wait_for(complete, 30, "every change written before the check", p)
    except AssertionError:
        pass  # reported as lost by the test
    ((mismatches, distinct, history, opened, other),) = p.store(
        "SELECT (SELECT count(*) FROM mismatches),"
        " (SELECT count(DISTINCT (sector, record_key, rule, field)) FROM mismatches),"
        " (SELECT count(*) FROM mismatch_history),"
        " (SELECT count(DISTINCT mismatch_id) FROM mismatch_history WHERE action = 'opened'),"
        " (SELECT count(*) FROM mismatches WHERE rule <> 'ID_NOT_IN_REGISTRY' OR status <> 'open')"
    )
    slow = p.slow_changes() - slow_before
    p.check_alive()
    return Outcome(
        fault=fault,
        held=held,
        down_s=lifted - began,
        recovery_s=recovery_s,
        ready_s=ready_s,
        written=len(written),
        lost=len(missing),
        duplicated=(mismatches - distinct) + (history - opened),
        other=other,
        exits=sum(proc.poll() is not None for proc in p.procs.values()),
        mismatches=mismatches,
        opened=opened,
        history=history,
        slow=slow,
    )


LANES: tuple[tuple[str | None, tuple[str, ...]], ...] = (
    (None, ("broker down 60 s",)),
    ("broker down 60 s", ("broker SIGSTOP 30 s", "broker restart", "hub PostgreSQL SIGKILL",
                          "hub PostgreSQL fast shutdown")),
)  # fmt: skip
"""Each lane's faults, in order, and the fault (of the other lane) its first one waits for.
The second lane's faults run while the first lane's broker is down for 60 s, when that lane
only waits: neither lane's recovery is timed beside the other's broker start-up, and the
module takes the outage's time, not the sum of the faults'."""
assert sorted(f for _, lane in LANES for f in lane) == sorted(FAULTS)


@pytest.fixture(scope="module")
def outcomes(servers) -> Iterator[dict[str, Future[Outcome]]]:
    """Each fault's :class:`Outcome`, as its lane's thread measures it; both lanes run at once."""
    futures: dict[str, Future[Outcome]] = {fault: Future() for fault in FAULTS}
    begun = {fault: threading.Event() for fault in FAULTS}
    release = threading.Event()

    def run(after: str | None, lane: tuple[str, ...]) -> None:
        try:
            with running_pipeline(servers) as p:
                if after is not None:
                    begun[after].wait(180)  # the other lane's set-up failed: go on regardless
                for fault in lane:
                    begun[fault].set()
                    try:
                        futures[fault].set_result(inflict(p, fault))
                    except BaseException as exc:  # this fault's test reports it
                        futures[fault].set_exception(exc)
                release.wait()  # the servers live as long as this thread
        except BaseException as exc:  # set-up failed: every fault of the lane reports it
            for fault in lane:
                begun[fault].set()
                if not futures[fault].done():
                    futures[fault].set_exception(exc)

    threads = [threading.Thread(target=run, args=lane, daemon=True) for lane in LANES]
    for thread in threads:
        thread.start()
    try:
        yield futures
    finally:
        release.set()
        for thread in threads:
            thread.join(180)


@pytest.mark.parametrize("fault", list(FAULTS))
def test_fault_under_load_recovers_in_seconds_losing_and_duplicating_nothing(outcomes, fault):
    o = outcomes[fault].result()  # bounded by the test's timeout (pytest-timeout)
    held, figures = o.held, o.figures
    print(figures)
    assert (o.lost, o.duplicated, o.other, o.exits) == (0, 0, 0, 0), figures
    assert o.mismatches == o.opened == o.history >= o.written, figures
    assert o.recovery_s <= RECOVERY_LIMIT_S, figures
    assert held.reason.startswith("unreachable"), figures
    if fault in ("broker SIGSTOP 30 s", "broker down 60 s"):
        late = {r: s for r, s in held.kafka_down_s.items() if s > REPORT_LIMIT_S}
        late = {r: s for r, s in late.items() if r == "connector"}
        assert not late, f"hub_kafka_up showed the outage late: {figures}"
    if fault.startswith("broker"):
        assert o.slow > 0, f"the stall does not show in hub_reconcile_latency_seconds: {figures}"
    else:
        assert held.lowest_up == 0, f"hub_connector_up never showed the outage: {figures}"

"""Config reloads in a real ``hub connector run`` process (restart and re-snapshot requests,
SIGHUP) and an idempotent ``hub dlq replay``, on the real servers. One source database, hub
database and connector process serve every case of the module, in order."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
import yaml
from click.testing import CliRunner

from connectors.state import add_request, hub_engine, load_state, request_result
from hub.cli import cli as hub_cli
from hub.config import load_config
from hub.db import engine_for, psycopg_conninfo
from tests.integration.connectors.conftest import SourceDb, changes, dead_letters
from tests.integration.connectors.test_logical import TABLE, tax_source
from tests.integration.connectors.test_operations import wait_for


class Deployment:
    """The config file on disk, the running connector process and its log."""

    def __init__(self, path: Path, raw: dict, db: SourceDb):
        self.path, self.raw, self.db = path, raw, db
        self.write(raw)
        self.config = load_config(path)
        self.log = path.with_suffix(".log")
        self.engine = hub_engine(self.config.database.url)
        self.proc: subprocess.Popen | None = None
        self.changes = changes(self.config, "tax")
        self.dead_letters = dead_letters(self.config)

    def write(self, raw: dict) -> None:
        self.path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")

    def with_sex_map(self, **extra: str | None) -> dict:
        raw = copy.deepcopy(self.raw)
        raw["sectors"]["tax"]["columns"]["sex"]["map"].update(extra)
        return raw

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items()
               if k not in ("HUB_DATABASE_URL", "HUB_KAFKA_BOOTSTRAP")}  # fmt: skip
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "hub", "--config", str(self.path), "connector", "run",
                 "tax", "--no-metrics"],
                stdout=out, stderr=subprocess.STDOUT, env=env,
            )  # fmt: skip

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8")

    def hub(self, *args: str) -> tuple[int, str]:
        result = CliRunner().invoke(hub_cli, ["--config", str(self.path), *args])
        return result.exit_code, result.output

    def insert(self, key: str, sex: str) -> None:
        self.db.execute(
            "INSERT INTO nnt (ma_so_thue, so_cccd, ten_nnt, ngay_sinh, gioi_tinh)"
            " VALUES (%s, '001090000001', 'Nguyen Van A', '01/01/1990', %s)",
            (key, sex),
        )

    def wait_changes(self, n: int = 1) -> list:
        got: list = []
        wait_for(lambda: got.extend(self.changes.read()) or len(got) >= n, what="changes")
        return got

    def wait_letters(self, n: int = 1) -> list:
        got: list = []
        wait_for(lambda: got.extend(self.dead_letters.read()) or len(got) >= n, what="letters")
        return got

    def wait_log(self, text: str) -> None:
        wait_for(lambda: text in self.output(), what=repr(text))


@pytest.fixture(scope="module")
def deployment(servers, tmp_path_factory):
    from hub.db.migrate import upgrade

    hub_url = servers.create_database("hub")
    upgrade(hub_url)
    db = SourceDb(servers.create_database("src"))
    db.execute(TABLE)
    kafka = servers.kafka(partitions=3)
    raw = {
        "kafka": {"bootstrap_servers": kafka.bootstrap_servers,
                  "topic_prefix": kafka.topic_prefix, "partitions": 3},
        "database": {"url": hub_url},
        "logging": {"level": "INFO"},
        "sectors": {"tax": tax_source(db)},
    }  # fmt: skip
    d = Deployment(tmp_path_factory.mktemp("reload") / "hub.yaml", raw, db)
    d.start()
    try:
        wait_for(lambda: (load_state(d.engine, "tax") or {}).get("state") == "running",
                 timeout=60, what="the connector streaming")  # fmt: skip
        yield d
    finally:
        assert d.proc is not None
        d.proc.kill()  # the graceful stop is tested elsewhere; here it only costs time
        d.proc.wait(10)
        engine_for(hub_url).dispose()
        with psycopg.connect(psycopg_conninfo(servers.pg_url), autocommit=True) as conn:
            conn.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
                " WHERE database = %s AND NOT active",
                (db.name,),
            )
        servers.drop_database(db.url)
        servers.drop_database(hub_url)


def test_a_restart_applies_a_changed_value_map(deployment):
    d = deployment
    d.insert("X1", "Khác")  # not in the value map: a dead letter
    (letter,) = d.wait_letters()
    assert letter.value["column"] == "gioi_tinh"

    d.write(d.with_sex_map(**{"Khác": None}))  # the operator accepts "other" as unknown
    code, out = d.hub("connector", "restart", "tax", "--wait", "30")
    assert code == 0, out
    assert "restart of tax: applied: columns.sex.map changed" in out
    d.wait_log("tax: restart: config applied: columns.sex.map changed")

    d.insert("X2", "Khác")
    (event,) = d.wait_changes()
    assert event.record_key == "X2" and event.value["after"]["sex"] is None
    d.raw = d.with_sex_map(**{"Khác": None})


def test_dlq_replay_twice_sends_each_letter_once(deployment):
    d = deployment  # X1's letter is still in the topic; the file's map now accepts it
    code, out = d.hub("dlq", "replay", "--dry-run")
    assert code == 0 and "would publish 1 change(s)" in out
    assert "1 letter(s) to replay, 0 skipped as already replayed" in out
    code, out = d.hub("dlq", "replay")
    assert code == 0 and "published 1 change(s); 0 still failing" in out, out
    assert "1 letter(s) replayed now, 0 skipped as already replayed" in out
    code, out = d.hub("dlq", "replay")
    assert code == 0 and "published 0 change(s)" in out, out
    assert "0 letter(s) replayed now, 1 skipped as already replayed" in out
    (event,) = d.wait_changes()

    assert event.record_key == "X1" and d.changes.read() == []


def test_an_invalid_config_is_refused_and_the_process_keeps_the_old_one(deployment):
    d = deployment
    bad = copy.deepcopy(d.raw)
    bad["sectors"]["tax"]["columns"]["sex"]["map"] = ["M", "F"]
    d.write(bad)  # `hub connector …` itself now refuses to start: request as the REST API does
    rid = add_request(d.engine, "tax", "restart", "test")
    wait_for(lambda: request_result(d.engine, rid)[0] is not None, what="the request handled")
    result = request_result(d.engine, rid)[1]
    assert result.startswith(f"refused: invalid config {d.path.absolute()}: ")
    assert "sectors.tax.columns.sex.map" in result
    d.wait_log("tax: restart: config refused: invalid config")

    missing = copy.deepcopy(d.raw)
    missing["sectors"]["tax"]["columns"]["full_name"] = "khong_co"  # valid, but cannot start
    missing["kafka"]["partitions"] = 6  # a process setting: named, not applied
    d.write(missing)
    code, out = d.hub("connector", "resnapshot", "tax", "--wait", "30")
    assert code == 1, out
    assert "refused: the new config does not start: tax: column khong_co not in" in out
    assert "kafka changed: needs a process restart" in d.output()
    assert d.proc.poll() is None

    d.insert("X3", "Khác")  # mapped with the config the process kept
    (event,) = d.wait_changes()
    assert event.record_key == "X3" and event.value["after"]["full_name"] == "Nguyen Van A"
    assert d.changes.read() == []  # the refused re-snapshot read nothing again (X1, X2)
    d.write(d.raw)


def test_sighup_reloads_the_mapping_of_the_running_process(deployment):
    d = deployment
    d.write(d.with_sex_map(**{"Không rõ": None}))
    d.proc.send_signal(signal.SIGHUP)
    d.wait_log("tax: SIGHUP: applied: columns.sex.map changed")
    d.insert("X5", "Không rõ")
    (event,) = d.wait_changes()
    assert event.record_key == "X5" and event.value["after"]["sex"] is None
    d.raw = d.with_sex_map(**{"Không rõ": None})

    moved = copy.deepcopy(d.raw)
    moved["sectors"]["tax"]["table"] = "public.nnt_moi"
    d.write(moved)
    d.proc.send_signal(signal.SIGHUP)
    d.wait_log("tax: SIGHUP: refused: table changed: SIGHUP applies mappings only")
    d.write(d.raw)
    d.proc.send_signal(signal.SIGHUP)
    d.wait_log("tax: SIGHUP: unchanged")
    assert d.proc.poll() is None
    assert "Traceback" not in d.output()


def test_a_resnapshot_reads_the_table_again_with_the_new_columns(deployment):
    d = deployment
    renamed = copy.deepcopy(d.raw)
    renamed["sectors"]["tax"]["columns"]["full_name"] = "ma_so_thue"
    d.write(renamed)
    code, out = d.hub("connector", "resnapshot", "tax", "--wait", "30")
    assert code == 0 and "resnapshot of tax: applied: columns.full_name.column changed" in out
    rows = d.db.execute("SELECT ma_so_thue FROM nnt ORDER BY 1")
    events = d.wait_changes(len(rows))
    assert sorted(e.record_key for e in events) == [key for (key,) in rows]
    assert {e.op for e in events} == {"r"}
    assert all(e.value["after"]["full_name"] == e.record_key for e in events)

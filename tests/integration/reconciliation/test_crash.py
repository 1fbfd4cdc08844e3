"""Exactly-once effect: a reconciler killed with SIGKILL at random moments while consuming,
restarted each time, ends with the mismatches and history of an uninterrupted run."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import psycopg
import pytest
import yaml

from hub.db import psycopg_conninfo
from hub.db.migrate import upgrade
from hub.idschemes.vn import PROVINCE_CODES, make_id
from reconciliation.engine import Reconciler
from tests.integration.reconciliation.feed import Feed, config_data, hub_config

ROOT = Path(__file__).resolve().parents[3]
FAMILY = ("Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Đặng", "Bùi", "Đỗ")
MIDDLE = ("Văn", "Thị", "Minh", "Ngọc", "Đức", "Thu")
GIVEN = ("An", "Bình", "Cường", "Dung", "Hà", "Hùng", "Lan", "Mai", "Nam", "Thảo", "Tuấn")
PROVINCES = sorted(PROVINCE_CODES)[:12]


def fold_bank(name: str) -> str:
    import unicodedata

    plain = unicodedata.normalize("NFD", name.replace("đ", "d").replace("Đ", "D"))
    return "".join(c for c in plain if not unicodedata.combining(c)).upper()


def build_workload(feed: Feed, seed: int = 11, citizens: int = 1200, records: int = 2200) -> int:
    """Send registry then sector changes exercising every lifecycle path; returns the count.

    A record keeps its citizen ID (so its Kafka key and partition) for its whole life:
    changes of one record in two partitions have no order, and neither would the history.
    """
    rng = random.Random(seed)
    messages = []
    people = []
    for i in range(citizens):
        year, sex = rng.randint(1940, 2002), rng.choice("MF")
        person = {
            "citizen_id": make_id(rng.choice(PROVINCES), year, sex, i),
            "legacy_id": f"{100_000_000 + i:09d}" if rng.random() < 0.2 else None,
            "full_name": f"{rng.choice(FAMILY)} {rng.choice(MIDDLE)} {rng.choice(GIVEN)}",
            "date_of_birth": date(year, rng.randint(1, 12), rng.randint(1, 28)),
            "sex": sex,
            "province_code": rng.choice(PROVINCES),
            "date_of_death": date(2019, 1, 1) + timedelta(days=rng.randrange(1500))
            if rng.random() < 0.06
            else None,
        }
        people.append(person)
        messages.append(feed.event("registry", "r", person["citizen_id"], person))
    for person in rng.sample(people, citizens // 10):  # registry corrections and deaths
        if rng.random() < 0.5:
            person["full_name"] = f"{rng.choice(FAMILY)} {rng.choice(MIDDLE)} {rng.choice(GIVEN)}"
        else:
            person["date_of_death"] = date(2024, 1, 1) + timedelta(days=rng.randrange(300))
        messages.append(feed.event("registry", "u", person["citizen_id"], person))

    state: dict[tuple[str, str], dict | None] = {}

    def copy_of(person: dict, sector: str) -> dict:
        name = person["full_name"]
        return {
            "citizen_id": person["citizen_id"],
            "full_name": fold_bank(name) if sector == "bank" else name,
            "date_of_birth": person["date_of_birth"],
            "sex": person["sex"],
            "province_code": person["province_code"],
            "status": rng.choice(("active", "active", "closed")),
            "last_activity_date": date(2018, 1, 1) + timedelta(days=rng.randrange(2500)),
        }

    def spoil(after: dict, person: dict, *, ids: bool) -> None:
        kind = rng.randrange(9)
        if kind == 0:
            after["full_name"] = f"{rng.choice(FAMILY)} {rng.choice(MIDDLE)} {rng.choice(GIVEN)}"
        elif kind == 1:
            after["date_of_birth"] = after["date_of_birth"] + timedelta(days=rng.choice((-40, 400)))
        elif kind == 2:
            after["sex"] = "F" if after["sex"] == "M" else "M"
        elif kind == 3 and ids:
            after["citizen_id"] = None
        elif kind == 4 and ids:
            after["citizen_id"] = after["citizen_id"][:-1]  # fails the structure check
        elif kind == 5 and ids and person["legacy_id"]:
            after["citizen_id"] = person["legacy_id"]
        elif kind == 6:
            after["province_code"] = rng.choice(PROVINCES)
        elif kind == 7:
            after["status"] = "active"
            after["last_activity_date"] = date(2025, 1, 1)
        # otherwise: a faithful record

    kafka_key: dict[tuple[str, str], str] = {}
    first_id: dict[tuple[str, str], str | None] = {}
    owners: dict[tuple[str, str], dict] = {}

    def send(sector: str, key: str, op: str, after: dict | None, *, lsn: int | None = None):
        topic, _key, value = feed.event(sector, op, key, after, lsn=lsn)
        messages.append((topic, kafka_key[(sector, key)].encode(), value))

    def create(sector: str, key: str, person: dict, after: dict) -> None:
        k = (sector, key)
        kafka_key[k] = feed.key(sector, key, after["citizen_id"])
        first_id[k], owners[k], state[k] = after["citizen_id"], person, after
        send(sector, key, "r", after)

    for n in range(records):
        sector = "tax" if n % 2 else "bank"
        person = rng.choice(people)
        after = copy_of(person, sector)
        if rng.random() < 0.35:
            spoil(after, person, ids=True)
        create(sector, f"{sector[0].upper()}{n}", person, after)
        if sector == "tax" and rng.random() < 0.06:  # a second active tax file: DUPLICATE_ID
            create("tax", f"T{n}b", person, dict(after, status="active"))

    earlier = list(messages)
    keys = sorted(state)
    for _ in range(records * 2):
        k = rng.choice(keys)
        sector, key = k
        person, after = owners[k], state[k]
        roll = rng.random()
        if after is None or roll < 0.3:  # fixed at the source, or created again
            new = dict(copy_of(person, sector), citizen_id=first_id[k])
        elif roll < 0.6:
            new = dict(after)
            spoil(new, person, ids=False)
        elif roll < 0.75:
            new = dict(after, status="closed" if after["status"] == "active" else "active")
        elif roll < 0.85:
            state[k] = None
            send(sector, key, "d", None)
            continue
        elif roll < 0.95:  # a connector restarted: an earlier message again, same bytes
            messages.append(rng.choice(earlier))
            continue
        else:  # a change older than what was applied: ignored
            send(sector, key, "u", dict(after, full_name="Stale Name"), lsn=rng.randint(1, 999))
            continue
        state[k] = new
        send(sector, key, "u", new)
        if rng.random() < 0.05:
            messages.append(messages[-1])  # delivered twice in a row
    feed.send(*messages)
    return len(messages)


def applied(url: str) -> int:
    with psycopg.connect(psycopg_conninfo(url)) as conn:
        return conn.execute(
            "SELECT coalesce(sum(next_offset), 0) FROM consumer_offsets"
        ).fetchone()[0]


def snapshot(url: str) -> dict[str, list[tuple]]:
    """The store's content, ignoring ids, timestamps and the consumer group's name."""
    queries = {
        "mismatches": """
            SELECT sector, record_key, rule, field, severity, status, resolution, citizen_id,
                   province_code, sector_value, registry_value, score, suggestions::text,
                   values_hash, assignee
            FROM mismatches ORDER BY sector, record_key, rule, field""",
        "history": """
            SELECT m.sector, m.record_key, m.rule, m.field, h.actor, h.action, h.from_status,
                   h.to_status, h.note
            FROM mismatch_history h JOIN mismatches m ON m.id = h.mismatch_id
            ORDER BY m.sector, m.record_key, m.rule, m.field, h.id""",
        "sector_records": """
            SELECT sector, record_key, citizen_id_raw, citizen_id, full_name, date_of_birth, sex,
                   province_code, status, last_activity_date, verified, source_lsn
            FROM sector_records ORDER BY sector, record_key""",
        "registry": """
            SELECT citizen_id, record_key, legacy_id, full_name, date_of_birth, sex,
                   province_code, date_of_death, source_lsn
            FROM registry_citizens ORDER BY citizen_id""",
        "offsets": "SELECT topic, partition, next_offset FROM consumer_offsets ORDER BY 1, 2",
    }
    with psycopg.connect(psycopg_conninfo(url)) as conn:
        return {name: conn.execute(sql).fetchall() for name, sql in queries.items()}


# In `make test`'s timed lane, at normal priority: in the parallel lane (nice 10, beside the
# timed lane's benches) a fresh reconciler process once made no progress in 90 s (CI, stop 35).
@pytest.mark.serial
def test_reconciler_killed_at_random_moments_ends_as_an_uninterrupted_run(servers, tmp_path):
    kafka = servers.kafka()
    crash_db, reference_db = servers.create_database("hub"), servers.create_database("hub")
    try:
        for url in (crash_db, reference_db):
            upgrade(url)
        settings = {"partitions": 4, "max_poll_records": 150}
        crash_config = config_data(crash_db, kafka, **settings)
        feed = Feed(hub_config(crash_db, kafka, **settings))
        total = build_workload(feed)
        feed.close()

        reference = Reconciler(
            hub_config(reference_db, kafka, **settings),
            group_id="reference",
            assign_all=True,
            stats_interval_s=3600,
        )
        reference.run(until_idle_s=1.0)
        assert applied(reference_db) == total

        path = tmp_path / "hub.yaml"
        path.write_text(yaml.safe_dump(crash_config, allow_unicode=True))
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("HUB_DATABASE_URL", "HUB_KAFKA_BOOTSTRAP", "HUB_CONFIG")
        }
        command = [
            sys.executable,
            "-m",
            "reconciliation.cli",
            "--config",
            str(path),
            "reconcile",
            "--no-metrics",
            "--until-idle",
            "1",
        ]
        rng = random.Random()
        kills, runs = 0, 0
        while True:
            runs += 1
            # The first run joins the consumer group; restarts take all partitions directly
            # so the test does not wait out the killed member's session timeout each time.
            args = command if runs == 1 else [*command, "--assign-all"]
            proc = subprocess.Popen(
                args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
            )
            if kills >= 5:
                out, _ = proc.communicate(timeout=180)
                assert proc.returncode == 0, out.decode()
                break
            before = applied(crash_db)
            deadline = time.monotonic() + 90
            while proc.poll() is None and applied(crash_db) == before:
                if time.monotonic() > deadline:
                    proc.kill()
                    out, _ = proc.communicate()
                    pytest.fail(f"run {runs} made no progress in 90 s:\n{out.decode()}")
                time.sleep(0.01)
            if proc.poll() is not None:  # it finished before it could be killed
                break
            time.sleep(rng.uniform(0, 0.25))  # a random moment of a batch
            proc.kill()
            proc.wait()
            kills += 1
        assert kills >= 5, f"only {kills} kills before the input was consumed"
        assert applied(crash_db) == total

        crashed, uninterrupted = snapshot(crash_db), snapshot(reference_db)
        assert uninterrupted["offsets"] == crashed["offsets"]
        for table in ("registry", "sector_records", "mismatches", "history"):
            assert crashed[table] == uninterrupted[table], table
        actions = {row[5] for row in uninterrupted["history"]}
        assert {"opened", "resolved", "reopened"} <= actions
        resolutions = {row[6] for row in uninterrupted["mismatches"]}
        assert {"fixed_at_source", "record_deleted"} <= resolutions
        assert reference.totals.stale > 0
        print(
            f"{total} messages, {kills} kills, {len(crashed['mismatches'])} mismatches, "
            f"{len(crashed['history'])} history rows: identical"
        )
    finally:
        servers.drop_database(crash_db)
        servers.drop_database(reference_db)


def test_sigterm_finishes_the_batch_in_progress_and_exits_cleanly(hub_db, kafka_config, tmp_path):
    settings = {"partitions": 2, "max_poll_records": 50}
    feed = Feed(hub_config(hub_db, kafka_config, **settings))
    total = build_workload(feed, citizens=300, records=600)
    feed.close()
    path = tmp_path / "hub.yaml"
    path.write_text(yaml.safe_dump(config_data(hub_db, kafka_config, **settings)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "reconciliation.cli", "--config", str(path), "reconcile"]
        + ["--no-metrics", "--assign-all"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while applied(hub_db) == 0:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out.decode()
    assert "reconciler stopped" in out.decode()
    assert 0 < applied(hub_db) <= total

"""A second `hub demo --once` in the same data dir keeps the steward's work; `--reset` starts over.

The demo runs on its own embedded PostgreSQL and tansu broker (the broker loses its topics
between runs). Between runs the test starts the data dir's PostgreSQL itself and works the
queue through the real REST API: a token, an assignment, a comment, a resolution.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from collections import Counter
from pathlib import Path

import psycopg
import pytest
import yaml

from hub.api.app import create_app
from hub.api.users import authenticate_password, create_user
from hub.config import parse_config
from hub.db import engine_for, psycopg_conninfo
from hub.demo.population import SOURCE_TABLES
from hub.demo.runner import HUB_DB, DemoEnvironment
from hub.embedded import EmbeddedPostgres
from tests.integration.hub.procs import run_demo
from tests.integration.hub.test_demo_cli import parse_table

pytestmark = pytest.mark.heavy(85)

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

CITIZENS = "1000"


def demo(data_dir: Path, *extra: str) -> str:
    res = run_demo("--citizens", CITIZENS, "--data-dir", str(data_dir), *extra)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    assert "Traceback" not in res.stderr
    return res.stdout


def assert_figures_match_the_manifest(data_dir: Path, stdout: str) -> None:
    manifest = json.loads((data_dir / "manifest.json").read_text())
    expected = Counter((m["sector"], m["rule"]) for m in manifest["mismatches"])
    _, printed = parse_table(stdout)
    assert {k: v for k, v in printed.items() if v} == dict(expected)
    assert "against the manifest: precision 1.0000, recall 1.0000" in stdout


class HubDb:
    """The data dir's PostgreSQL, started while no demo runs, and the API on its hub database."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.pg = EmbeddedPostgres(data_dir / "postgres")

    def __enter__(self) -> HubDb:
        self.pg.start()
        raw = yaml.safe_load((self.data_dir / "hub.yaml").read_text())
        raw["database"]["url"] = self.pg.database_url("demo_hub")
        self.config = parse_config(raw, env={})
        self.engine = engine_for(self.config.database.url)
        return self

    def __exit__(self, *exc: object) -> None:
        self.engine.dispose()
        self.pg.stop()

    def client(self) -> TestClient:
        return TestClient(create_app(self.config, engine=self.engine))

    def rows(self, query: str, *args: object) -> list[tuple]:
        with psycopg.connect(self.pg.conninfo("demo_hub")) as conn:
            return conn.execute(query, args).fetchall()

    def mismatch_ids(self) -> dict[tuple[str, str, str, str], int]:
        return {
            (s, k, r, f): i
            for i, s, k, r, f in self.rows(
                "SELECT id, sector, record_key, rule, field FROM mismatches"
            )
        }


def test_second_run_keeps_tokens_mismatch_ids_and_history_and_reset_starts_over(scratch_dir):
    data_dir = scratch_dir / "demo-restart"
    first = demo(data_dir)
    assert "generating 1,000 citizens" in first
    assert_figures_match_the_manifest(data_dir, first)

    with HubDb(data_dir) as hub:
        before = hub.mismatch_ids()
        assert before
        _, token = create_user(hub.engine, "amal", "steward")
        (assigned, resolved) = (
            i
            for (i,) in hub.rows(
                "SELECT id FROM mismatches WHERE status = 'open' ORDER BY id LIMIT 2"
            )
        )
        auth = {"Authorization": f"Bearer {token}"}
        with hub.client() as api:
            assert (
                api.post(f"/api/v1/mismatches/{assigned}/assign", headers=auth, json={}).status_code
                == 200
            )
            r = api.post(f"/api/v1/mismatches/{assigned}/comment", headers=auth,
                         json={"note": "asked the tax office"})  # fmt: skip
            assert r.status_code == 200, r.text
            r = api.post(f"/api/v1/mismatches/{resolved}/resolve", headers=auth,
                         json={"note": "corrected by phone"})  # fmt: skip
            assert r.status_code == 200 and r.json()["status"] == "resolved", r.text

    second = demo(data_dir)
    assert "reusing" in second and "keeping users, mismatches and history" in second
    assert "generating" not in second
    # Counts are the manifest's again: the assigned one is in review (still counted), the one
    # resolved by hand while the source still shows it was reopened by the reconciler.
    assert_figures_match_the_manifest(data_dir, second)

    with HubDb(data_dir) as hub:
        assert hub.mismatch_ids() == before, "mismatch ids were reassigned or duplicated"
        with hub.client() as api:
            me = api.get("/api/v1/me", headers=auth)
            assert me.status_code == 200 and me.json()["name"] == "amal", me.text
            detail = api.get(f"/api/v1/mismatches/{assigned}", headers=auth).json()
        assert (detail["mismatch"]["status"], detail["mismatch"]["assignee"]) == (
            "in_review",
            "amal",
        )
        assert "asked the tax office" in [h["note"] for h in detail["history"]]
        history = hub.rows(
            "SELECT mismatch_id, actor, action, note FROM mismatch_history"
            " WHERE mismatch_id IN (%s, %s) ORDER BY id",
            assigned,
            resolved,
        )
        assert [(a, act) for m, a, act, _ in history if m == assigned] == [
            ("reconciler", "opened"),
            ("amal", "assign"),
            ("amal", "comment"),
        ]
        assert [(a, act) for m, a, act, _ in history if m == resolved] == [
            ("reconciler", "opened"),
            ("amal", "resolve"),
            ("reconciler", "reopened"),
        ]
        assert authenticate_password(hub.engine, "steward", "steward-demo-pw") is not None
        assert authenticate_password(hub.engine, "admin", "admin-demo-password") is not None
        users_before = {n for (n,) in hub.rows("SELECT name FROM users")}
        assert users_before == {"admin", "steward", "amal"}

    third = demo(data_dir, "--reset")
    assert "--reset: starting over" in third and "generating 1,000 citizens" in third
    assert_figures_match_the_manifest(data_dir, third)
    with HubDb(data_dir) as hub:
        assert {n for (n,) in hub.rows("SELECT name FROM users")} == {"admin", "steward"}
        assert not hub.rows("SELECT 1 FROM mismatch_history WHERE actor = 'amal'")
        with hub.client() as api:
            assert api.get("/api/v1/me", headers=auth).status_code == 401


def test_other_population_in_a_used_data_dir_is_refused_with_the_option_named(scratch_dir):
    """Changing --citizens/--seed/--scheme without --reset would silently drop the steward's
    work, so it is refused with a clear line (no traceback)."""
    data_dir = scratch_dir / "demo-refuse"
    data_dir.mkdir(parents=True)
    (data_dir / "demo-state.json").write_text(
        json.dumps({"population": {"citizens": 5000, "seed": 6}})
    )
    (data_dir / "manifest.json").write_text("{}")
    res = run_demo("--citizens", "100", "--scheme", "eg", "--data-dir", str(data_dir), timeout=300)
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    assert "holds a demo of 5,000 citizens (--seed 6, --scheme vn)" in res.stderr
    assert "--reset" in res.stderr


def test_with_a_broker_that_keeps_its_topics_the_second_run_carries_on_from_stored_offsets(
    servers, scratch_dir
):
    """On external servers (HUB_DATABASE_URL, HUB_KAFKA_BOOTSTRAP: the session's) the topics
    survive, so nothing is read again: connectors resume at their positions, the reconciler
    at its stored offsets, and the figures are still exactly the manifest's."""
    data_dir = scratch_dir / "demo-external"
    env = {
        **os.environ,
        "HUB_DATABASE_URL": servers.pg_url,
        "HUB_KAFKA_BOOTSTRAP": servers.bootstrap,
    }
    args = [sys.executable, "-m", "hub", "demo", "--once", "--citizens", "500",
            "--seed", "9", "--data-dir", str(data_dir)]  # fmt: skip
    try:
        runs = [
            subprocess.run(args, capture_output=True, text=True, timeout=600, env=env)
            for _ in range(2)
        ]
        for res in runs:
            assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
            assert "Traceback" not in res.stderr
            assert_figures_match_the_manifest(data_dir, res.stdout)
        assert "reusing" in runs[1].stdout
        assert "reading every source again" not in runs[1].stdout
        with psycopg.connect(psycopg_conninfo(servers.database_url(HUB_DB))) as conn:
            (offsets,) = conn.execute("SELECT count(*) FROM consumer_offsets").fetchone()
            (opened_twice,) = conn.execute(
                "SELECT count(*) FROM (SELECT mismatch_id FROM mismatch_history"
                " WHERE action = 'opened' GROUP BY mismatch_id HAVING count(*) > 1) x"
            ).fetchone()
        assert offsets > 0 and opened_twice == 0
    finally:
        DemoEnvironment(
            data_dir, admin_url=servers.pg_url, bootstrap=servers.bootstrap
        ).drop_databases([f"demo_{s}" for s in SOURCE_TABLES] + [HUB_DB])

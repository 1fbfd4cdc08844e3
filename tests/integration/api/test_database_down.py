"""While the hub database is unreachable the API answers 503 with Retry-After (like
/readyz), not 500, and it recovers by itself once the database is back. The test runs its
own embedded PostgreSQL, so stopping it leaves the session's shared server alone."""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import create_engine

from hub.api.app import create_app
from hub.config import HubConfig
from hub.db import engine_for, sqlalchemy_url
from hub.db.migrate import upgrade
from hub.embedded import EmbeddedPostgres
from hub.testing import Servers
from tests.integration.api.conftest import hub_config
from tests.integration.api.seed import Seeded, seed
from tests.integration.api.test_ui_forms import log_in

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


@dataclass
class Own:
    pg: EmbeddedPostgres
    url: str
    config: HubConfig
    seeded: Seeded

    def headers(self, role: str = "admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.seeded.tokens[role]}"}


@pytest.fixture
def own_db(servers: Servers, scratch_dir) -> Iterator[Own]:
    pg = EmbeddedPostgres(scratch_dir / "pg", durable=False).start()
    try:
        url = pg.create_database("hub")
        upgrade(url)
        engine = engine_for(url)
        seeded = seed(engine)
        engine.dispose()
        yield Own(pg, url, hub_config(url, servers.bootstrap), seeded)
    finally:
        pg.stop()


def assert_unavailable(resp, *, html: bool = False) -> None:
    assert resp.status_code == 503, resp.text
    assert int(resp.headers["retry-after"]) > 0
    if html:
        assert resp.headers["content-type"].startswith("text/html")
        assert "database is unreachable" in resp.text
    else:
        assert "database is unreachable" in resp.json()["detail"]


def test_api_answers_503_while_the_database_is_down_and_recovers(own_db):
    with TestClient(create_app(own_db.config), follow_redirects=False) as client:
        h = own_db.headers()
        assert client.get("/api/v1/mismatches", headers=h).status_code == 200
        log_in(client, "steward")
        assert client.get("/queue").status_code == 200

        own_db.pg.stop()
        assert_unavailable(client.get("/api/v1/mismatches", headers=h))
        assert_unavailable(client.get("/api/v1/stats", headers=h))
        assert_unavailable(
            client.post(f"/api/v1/mismatches/{own_db.seeded.ids['name']}/resolve", headers=h)
        )
        assert_unavailable(client.get("/api/v1/mismatches/export", headers=h))
        assert_unavailable(client.get("/queue"), html=True)
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["database"] != "ok"
        assert client.get("/healthz").status_code == 200  # the process itself is fine

        own_db.pg.start()  # same data directory and port
        deadline = time.monotonic() + 30
        while (resp := client.get("/api/v1/mismatches", headers=h)).status_code != 200:
            assert resp.status_code == 503 and time.monotonic() < deadline
            time.sleep(0.2)
        assert resp.json()["total"] == len(own_db.seeded.ids)
        assert client.get("/queue").status_code == 200  # the session survived


def test_an_exhausted_connection_pool_is_a_503_too(own_db):
    engine = create_engine(
        sqlalchemy_url(own_db.url), pool_size=1, max_overflow=0, pool_timeout=0.5
    )
    try:
        with TestClient(create_app(own_db.config, engine=engine)) as client:
            h = own_db.headers()
            assert client.get("/api/v1/me", headers=h).status_code == 200
            with engine.connect():  # the only connection, held
                assert_unavailable(client.get("/api/v1/me", headers=h))
            assert client.get("/api/v1/me", headers=h).status_code == 200
    finally:
        engine.dispose()


def test_a_query_the_database_refuses_is_not_mistaken_for_an_outage(own_db, monkeypatch):
    # An OperationalError the server raises for one statement (here: a statement timeout)
    # is not "unreachable": it stays a 500 with nothing of the error's text in the answer.
    from hub.api.queue import pages as mismatches

    def slow(conn, *a, **kw):
        conn.exec_driver_sql("SET LOCAL statement_timeout = '10ms'")
        conn.exec_driver_sql("SELECT pg_sleep(1)")

    monkeypatch.setattr(mismatches, "list_page", slow)
    with TestClient(create_app(own_db.config), raise_server_exceptions=False) as client:
        resp = client.get("/api/v1/mismatches", headers=own_db.headers())
    assert resp.status_code == 500 and resp.json() == {"detail": "internal error"}

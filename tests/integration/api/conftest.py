"""API fixtures: a seeded hub database per test (cloned from a template migrated and seeded
once per session), the app for it, and an HTTP client per role."""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import psycopg
import pytest
from sqlalchemy import Engine, update

from hub.config import HubConfig, parse_config
from hub.db import engine_for, psycopg_conninfo
from hub.db.migrate import upgrade
from hub.db.models import Mismatch
from hub.testing import Servers
from tests.integration.api.seed import Seeded, seed

with warnings.catch_warnings():
    # Starlette suggests httpx2; the httpx it is installed with works the same here.
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

SECTORS = ("tax", "banking", "labour")


def hub_config(db_url: str, bootstrap: str, **api: object) -> HubConfig:
    source = {
        "url": "postgresql://reader@localhost/src",
        "table": "public.t",
        "key": "id",
        "columns": {"citizen_id": "cccd", "full_name": "ten"},
    }
    return parse_config(
        {
            "database": {"url": db_url},
            "kafka": {"bootstrap_servers": bootstrap},
            "api": {"listen": "127.0.0.1:0", **api},
            "registry": source,
            "sectors": {s: source for s in SECTORS},
        },
        env={},
    )


@dataclass
class Template:
    name: str
    seeded: Seeded


@pytest.fixture(scope="session")
def api_template(servers: Servers) -> Iterator[Template]:
    url = servers.create_database("apitpl")
    upgrade(url)
    seeded = seed(engine_for(url))
    engine_for(url).dispose()
    yield Template(url.rsplit("/", 1)[1], seeded)
    servers.drop_database(url)


@dataclass
class Api:
    """One test's world: its database, config, app client and the seeded ids/tokens."""

    url: str
    engine: Engine
    config: HubConfig
    client: TestClient
    seeded: Seeded

    @property
    def ids(self) -> dict[str, int]:
        return self.seeded.ids

    def headers(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.seeded.tokens[role]}"}

    def get(self, path: str, role: str = "admin", **kw):
        kw["headers"] = {**self.headers(role), **kw.get("headers", {})}
        return self.client.get(path, **kw)

    def post(self, path: str, role: str = "admin", **kw):
        kw["headers"] = {**self.headers(role), **kw.get("headers", {})}
        return self.client.post(path, **kw)

    def set_mismatch(self, key: str, **values: object) -> None:
        """Overwrite columns of the seeded mismatch ``ids[key]``, committed."""
        with self.engine.begin() as conn:
            conn.execute(update(Mismatch).where(Mismatch.id == self.ids[key]).values(**values))


def clone_database(servers: Servers, template: str) -> str:
    name = f"api_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(psycopg_conninfo(servers.pg_url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return servers.database_url(name)


def _api(
    servers: Servers,
    template: Template,
    make_config: Callable[[str, str], HubConfig] = hub_config,
) -> Iterator[Api]:
    """A clone of the seeded template, the app on ``make_config(url, bootstrap)``, its
    client; the clone is dropped after."""
    from hub.api.app import create_app

    url = clone_database(servers, template.name)
    config = make_config(url, servers.bootstrap)
    engine = engine_for(url)
    with TestClient(create_app(config), follow_redirects=False) as client:
        yield Api(url, engine, config, client, template.seeded)
    engine.dispose()
    servers.drop_database(url)


@pytest.fixture
def api(servers: Servers, api_template: Template) -> Iterator[Api]:
    """A fresh seeded database for a test that changes something."""
    yield from _api(servers, api_template)


@pytest.fixture(scope="module")
def api_ro(servers: Servers, api_template: Template) -> Iterator[Api]:
    """One seeded database shared by a module's read-only tests (audit rows may pile up)."""
    yield from _api(servers, api_template)

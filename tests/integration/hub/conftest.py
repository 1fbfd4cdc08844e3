"""Fixtures for tests that run hub processes against demo sources on the session's servers."""

from __future__ import annotations

import pytest
import yaml

from hub.config import parse_config
from hub.db.migrate import upgrade
from hub.demo.generator import generate
from hub.demo.population import SOURCE_TABLES, demo_config
from hub.embedded import free_port


@pytest.fixture
def deployment(servers, tmp_path):
    """Demo sources + a hub database on the session's servers, and a config file for them."""
    urls = {s: servers.create_database(f"run_{s}") for s in SOURCE_TABLES}
    hub_url = servers.create_database("run_hub")
    manifest = generate(urls, citizens=3000, seed=11)
    upgrade(hub_url)
    raw = {
        "kafka": {
            "bootstrap_servers": servers.bootstrap,
            "topic_prefix": servers.kafka().topic_prefix,
        },
        "database": {"url": hub_url},
        "api": {"listen": f"127.0.0.1:{free_port()}"},
        "metrics": {"listen": f"127.0.0.1:{free_port()}"},
        **demo_config(urls),
    }
    path = tmp_path / "hub.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    yield path, parse_config(raw, env={}), urls, manifest
    for url in [*urls.values(), hub_url]:
        servers.drop_database(url)

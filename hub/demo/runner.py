"""``hub demo``: embedded servers, generated population, the hub's processes, on one machine."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import Counter
from pathlib import Path

import click
import psycopg
import yaml

from hub.config import HubConfig, parse_config
from hub.db import psycopg_conninfo
from hub.demo.generator import generate
from hub.demo.population import SOURCE_TABLES, demo_config
from hub.embedded import EmbeddedStack, install_signal_handlers
from hub.kafka import Topics, ensure_topics
from hub.logs import setup_logging

log = logging.getLogger(__name__)

HUB_DB = "hub"


class DemoEnvironment:
    """Servers (embedded, or external via HUB_DATABASE_URL/HUB_KAFKA_BOOTSTRAP) + databases."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.stack: EmbeddedStack | None = None
        self.admin_url = os.environ.get("HUB_DATABASE_URL")
        self.bootstrap = os.environ.get("HUB_KAFKA_BOOTSTRAP")

    def start(self) -> DemoEnvironment:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not (self.admin_url and self.bootstrap):
            self.stack = EmbeddedStack(self.data_dir).start()
            self.admin_url = self.admin_url or self.stack.postgres.url
            self.bootstrap = self.bootstrap or self.stack.broker.bootstrap
        return self

    def stop(self) -> None:
        if self.stack is not None:
            self.stack.stop()

    def database_url(self, name: str) -> str:
        assert self.admin_url
        return self.admin_url.rsplit("/", 1)[0] + "/" + name

    def ensure_database(self, name: str, *, fresh: bool = False) -> str:
        with psycopg.connect(psycopg_conninfo(self.admin_url), autocommit=True) as conn:
            if fresh:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                conn.execute(f'CREATE DATABASE "{name}"')
        return self.database_url(name)


def demo_hub_config(env: DemoEnvironment, source_urls: dict[str, str]) -> dict:
    """The hub.yaml the demo runs with (written to the data directory for inspection)."""
    return {
        "kafka": {"bootstrap_servers": env.bootstrap, "topic_prefix": "demo", "partitions": 12},
        "database": {"url": env.database_url(HUB_DB)},
        "id_scheme": "vn",
        "api": {"listen": "127.0.0.1:8080"},
        "metrics": {"listen": "127.0.0.1:9464"},
        **demo_config(source_urls),
    }


def prepare(env: DemoEnvironment, *, citizens: int, seed: int) -> tuple[HubConfig, dict]:
    """Generate the population once per (citizens, seed); reset the hub's state for this broker.

    The embedded broker keeps topics in memory, so a second run starts the hub's own store
    afresh while reusing the generated source databases.
    """
    from hub.db.migrate import upgrade

    state_path = env.data_dir / "demo-state.json"
    manifest_path = env.data_dir / "manifest.json"
    wanted = {"citizens": citizens, "seed": seed}
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    fresh_sources = state.get("population") != wanted or not manifest_path.exists()
    source_urls = {s: env.ensure_database(f"demo_{s}") for s in SOURCE_TABLES}
    if fresh_sources:
        click.echo(f"generating {citizens:,} citizens (seed {seed}) …")
        started = time.monotonic()
        generate(source_urls, citizens=citizens, seed=seed, manifest_path=manifest_path)
        click.echo(f"generated in {time.monotonic() - started:.1f}s")
        state_path.write_text(json.dumps({"population": wanted}))
    else:
        click.echo(f"reusing the generated population in {env.data_dir}")
    hub_url = env.ensure_database(HUB_DB, fresh=True)
    upgrade(hub_url)
    raw = demo_hub_config(env, source_urls)
    (env.data_dir / "hub.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False))
    config = parse_config(raw, env={})
    ensure_topics(config.kafka, Topics(config.kafka.topic_prefix).all_for(config))
    manifest = json.loads(manifest_path.read_text())
    return config, manifest


def print_manifest_table(manifest: dict) -> None:
    counts = Counter((m["sector"], m["rule"]) for m in manifest["mismatches"])
    sectors = sorted({s for s, _ in counts})
    rules = sorted({r for _, r in counts})
    width = max(len(r) for r in rules) + 2
    click.echo("injected mismatches (ground truth):")
    click.echo("  " + "rule".ljust(width) + "".join(s.rjust(14) for s in sectors))
    for rule in rules:
        click.echo(
            "  "
            + rule.ljust(width)
            + "".join(str(counts.get((s, rule), 0)).rjust(14) for s in sectors)
        )


def run_demo(*, data_dir: Path, citizens: int, seed: int, once: bool) -> None:
    """Start everything; with ``once`` print the figures and exit, else run until Ctrl-C."""
    setup_logging("WARNING")
    install_signal_handlers()
    env = DemoEnvironment(data_dir).start()
    try:
        config, manifest = prepare(env, citizens=citizens, seed=seed)
        click.echo(f"hub database   {config.database.url}")
        click.echo(
            f"kafka          {config.kafka.bootstrap_servers} (topics {config.kafka.topic_prefix}.*)"
        )
        click.echo(f"config         {data_dir / 'hub.yaml'}")
        click.echo(f"manifest       {data_dir / 'manifest.json'}")
        print_manifest_table(manifest)
        click.echo(
            "note: connectors (issue #3), reconciler (#4) and web UI (#5) are not wired into "
            "the demo yet"
        )
        if once:
            return
        click.echo("servers running; Ctrl-C stops them")
        threading.Event().wait()
    except KeyboardInterrupt:
        click.echo("stopping …")
    finally:
        env.stop()

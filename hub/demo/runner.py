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

from hub.config import HubConfig, parse_config, redact_url
from hub.db import psycopg_conninfo
from hub.demo.generator import generate
from hub.demo.population import SOURCE_TABLES, demo_config
from hub.embedded import EmbeddedStack, free_port, install_signal_handlers
from hub.errors import FatalError
from hub.kafka import Topics, ensure_topics
from hub.logs import setup_logging

log = logging.getLogger(__name__)

HUB_DB = "demo_hub"  # demo-only: the demo recreates it on every run


class DemoEnvironment:
    """Servers (embedded, or external via HUB_DATABASE_URL/HUB_KAFKA_BOOTSTRAP) + databases."""

    def __init__(
        self, data_dir: Path, *, admin_url: str | None = None, bootstrap: str | None = None,
        broker: str = "tansu",
    ):  # fmt: skip
        self.data_dir, self.broker = data_dir, broker
        self.stack: EmbeddedStack | None = None
        self.admin_url = admin_url or os.environ.get("HUB_DATABASE_URL")
        self.bootstrap = bootstrap or os.environ.get("HUB_KAFKA_BOOTSTRAP")

    def start(self) -> DemoEnvironment:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not (self.admin_url and self.bootstrap):
            self.stack = EmbeddedStack(self.data_dir, broker=self.broker).start()
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


def _listen(preferred: int) -> str:
    """``127.0.0.1:preferred`` if that port is free, else any free port."""
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
            return f"127.0.0.1:{preferred}"
        except OSError:
            pass
    return f"127.0.0.1:{free_port()}"


def demo_hub_config(env: DemoEnvironment, source_urls: dict[str, str]) -> dict:
    """The hub.yaml the demo runs with (written to the data directory for inspection)."""
    return {
        "kafka": {"bootstrap_servers": env.bootstrap, "topic_prefix": "demo", "partitions": 12},
        "database": {"url": env.database_url(HUB_DB)},
        "id_scheme": "vn",
        "api": {"listen": _listen(8080)},
        "metrics": {"listen": _listen(9464)},
        "logging": {"level": "WARNING"},
        **demo_config(source_urls),
    }


def prepare(
    env: DemoEnvironment, *, citizens: int, seed: int
) -> tuple[HubConfig, dict, dict[str, str]]:
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
    return config, manifest, source_urls


def read_figures(config: HubConfig) -> tuple[Counter, dict[str, tuple[int, int]], set]:
    """Open mismatches by (sector, rule), (records, verified) per sector, open (sector, key, rule)."""
    with psycopg.connect(psycopg_conninfo(config.database.url)) as conn:
        open_rows = conn.execute(
            "SELECT sector, record_key, rule FROM mismatches WHERE status IN ('open', 'in_review')"
        ).fetchall()
        verified = {
            sector: (seen, ok)
            for sector, seen, ok in conn.execute(
                "SELECT sector, count(*), count(*) FILTER (WHERE verified) FROM sector_records"
                " GROUP BY sector ORDER BY sector"
            )
        }
    return Counter((s, r) for s, _, r in open_rows), verified, set(open_rows)


def print_figures(config: HubConfig, manifest: dict) -> None:
    """The table ``hub demo --once`` ends with, plus precision and recall against the manifest."""
    counts, verified, found = read_figures(config)
    sectors = sorted(config.sectors)
    rules = sorted({r for _, r in counts} | {m["rule"] for m in manifest["mismatches"]})
    width = max(len(r) for r in rules) + 2
    click.echo("open mismatches by sector and rule:")
    click.echo("  " + "rule".ljust(width) + "".join(s.rjust(14) for s in sectors))
    for rule in rules:
        cells = "".join(str(counts.get((s, rule), 0)).rjust(14) for s in sectors)
        click.echo("  " + rule.ljust(width) + cells)
    click.echo("  " + "total".ljust(width) + "".join(
        str(sum(n for (s, _), n in counts.items() if s == sector)).rjust(14) for sector in sectors
    ))  # fmt: skip
    click.echo("verified share:")
    for sector in sectors:
        seen, ok = verified.get(sector, (0, 0))
        share = ok / seen if seen else 0.0
        click.echo(f"  {sector.ljust(width)}{share:>13.1%}  ({ok:,} of {seen:,} records)")
    truth = {(m["sector"], m["record_key"], m["rule"]) for m in manifest["mismatches"]}
    hits = len(found & truth)
    precision = hits / len(found) if found else 1.0
    recall = hits / len(truth) if truth else 1.0
    click.echo(f"against the manifest: precision {precision:.4f}, recall {recall:.4f}")


def capture_with_progress(config: HubConfig, manifest: dict) -> None:
    """Capture every source to its end (snapshots first), drawing a progress bar per source."""
    from connectors.runner import run_connectors

    result: dict[str, int] = {}
    worker = threading.Thread(
        target=lambda: result.update(
            code=run_connectors(config, list(config.sources()), once=True)
        ),
        name="initial-capture",
        daemon=True,
    )
    worker.start()
    shown: dict[str, tuple[bool, int]] = {}
    while True:
        worker.join(1.0)
        for name, (done, rows) in sorted(_snapshot_progress(config).items()):
            if shown.get(name) != (done, rows):
                total = max(1, manifest_rows(manifest, name))
                bar = "#" * min(30, rows * 30 // total)
                tail = " done" if done else ""
                click.echo(f"  {name:<13} [{bar:<30}] {rows:>9,} / {total:,} rows{tail}")
                shown[name] = (done, rows)
        if not worker.is_alive():
            break
    if result.get("code", 1) != 0:
        raise FatalError("a connector failed: see `hub connector status`")


def run_once(config: HubConfig, manifest: dict) -> None:
    """Capture every source to its end, reconcile until idle, print the figures."""
    from reconciliation.engine import Reconciler

    started = time.monotonic()
    click.echo("capturing the registry and the four sectors …")
    capture_with_progress(config, manifest)
    click.echo(f"captured in {time.monotonic() - started:.1f}s; reconciling …")
    Reconciler(config, assign_all=True).run(until_idle_s=2.0)
    click.echo(f"steady state after {time.monotonic() - started:.1f}s")
    print_figures(config, manifest)


def _snapshot_progress(config: HubConfig) -> dict[str, tuple[bool, int]]:
    with psycopg.connect(psycopg_conninfo(config.database.url)) as conn:
        return {
            name: (done, rows)
            for name, done, rows in conn.execute(
                "SELECT name, snapshot_done, rows_captured FROM connector_state"
            )
        }


DEMO_LOGINS = {"admin": ("admin", "admin-demo-password"), "steward": ("steward", "steward-demo-pw")}


def run_live(config: HubConfig, manifest: dict, source_urls: dict[str, str]) -> None:
    """Capture and reconcile the initial state, then stream live changes until Ctrl-C/SIGTERM.

    The registry is in place before streaming starts, so no sector record is judged
    against a half-loaded registry.
    """
    from hub.allinone import AllInOne
    from hub.api.users import create_user
    from hub.db import engine_for
    from hub.demo.live import LiveChanges

    engine = engine_for(config.database.url)
    for role, (name, password) in DEMO_LOGINS.items():
        create_user(engine, name, role, password)
    run_once(config, manifest)
    app = AllInOne(config).start()
    live = LiveChanges(source_urls, manifest)
    threading.Thread(target=live.run, name="live-changes", daemon=True).start()
    try:
        click.echo("")
        click.echo(f"steward UI     http://{config.api.listen}/")
        for role, (name, password) in DEMO_LOGINS.items():
            click.echo(f"  {role:<8} login {name} / {password}")
        click.echo(f"metrics        http://{config.metrics.listen}{config.metrics.path}")
        click.echo(
            "live changes: filings, transactions, deaths, names fixed at source; Ctrl-C stops"
        )
        while not app.stopping.wait(0.5):
            pass
    finally:
        live.stop()
        app.stop()


def manifest_rows(manifest: dict, source: str) -> int:
    if source == "registry":
        return int(manifest.get("citizens", 1))
    return int(manifest.get("records", {}).get(source, 1))


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


def run_demo(
    *, data_dir: Path, citizens: int, seed: int, once: bool, broker: str = "tansu"
) -> None:
    """Start everything; with ``once`` print the figures and exit, else run until Ctrl-C."""
    setup_logging("WARNING")
    install_signal_handlers()
    env = DemoEnvironment(data_dir, broker=broker).start()
    try:
        config, manifest, source_urls = prepare(env, citizens=citizens, seed=seed)
        click.echo(f"hub database   {redact_url(config.database.url)}")
        click.echo(
            f"kafka          {config.kafka.bootstrap_servers} (topics {config.kafka.topic_prefix}.*)"
        )
        click.echo(f"config         {data_dir / 'hub.yaml'}")
        click.echo(f"manifest       {data_dir / 'manifest.json'}")
        if once:
            run_once(config, manifest)
        else:
            run_live(config, manifest, source_urls)
    except KeyboardInterrupt:
        click.echo("stopping …")
    finally:
        env.stop()

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
from hub.demo.population import demo_config, source_tables
from hub.embedded import EmbeddedStack, free_port, install_signal_handlers
from hub.errors import FatalError
from hub.kafka import Topics, ensure_topics
from hub.logs import setup_logging
from hub.vocabulary import OPEN_STATUSES_SQL

log = logging.getLogger(__name__)

HUB_DB = "demo_hub"
"""The hub's own database: upgraded on every run, dropped only by ``--reset``."""

DEMO_LOGINS = {"admin": ("admin", "admin-demo-password"), "steward": ("steward", "steward-demo-pw")}
"""Demo users (role → name, password), created when missing."""


class DemoEnvironment:
    """Servers (embedded, or external via HUB_DATABASE_URL/HUB_KAFKA_BOOTSTRAP) + databases.
    An embedded Apache Kafka starts with the JVM's quick compiler only, unless ``quick_jit``
    is false (the bench's figures)."""

    def __init__(
        self, data_dir: Path, *, admin_url: str | None = None, bootstrap: str | None = None,
        broker: str = "tansu", quick_jit: bool = True,
    ):  # fmt: skip
        self.data_dir, self.broker, self.quick_jit = data_dir, broker, quick_jit
        self.stack: EmbeddedStack | None = None
        self.admin_url = admin_url or os.environ.get("HUB_DATABASE_URL")
        self.bootstrap = bootstrap or os.environ.get("HUB_KAFKA_BOOTSTRAP")

    def start(self) -> DemoEnvironment:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not (self.admin_url and self.bootstrap):
            self.stack = EmbeddedStack(
                self.data_dir, broker=self.broker, quick_jit=self.quick_jit
            ).start()
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
        """Create database ``name`` if missing (``fresh``: drop it first); return its URL."""
        with psycopg.connect(psycopg_conninfo(self.admin_url), autocommit=True) as conn:
            if fresh:
                self._drop(conn, name)
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                conn.execute(f'CREATE DATABASE "{name}"')
        return self.database_url(name)

    def drop_databases(self, names: list[str]) -> None:
        """Drop each database that exists, with the replication slots that pin it."""
        with psycopg.connect(psycopg_conninfo(self.admin_url), autocommit=True) as conn:
            for name in names:
                self._drop(conn, name)

    @staticmethod
    def _drop(conn: psycopg.Connection, name: str) -> None:
        # PostgreSQL refuses to drop a database a logical slot (the connectors') points into.
        conn.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
            " WHERE database = %s AND NOT active",
            (name,),
        )
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


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


def demo_hub_config(env: DemoEnvironment, source_urls: dict[str, str], scheme: str = "vn") -> dict:
    """The hub.yaml the demo runs with (written to the data directory for inspection)."""
    return {
        "kafka": {"bootstrap_servers": env.bootstrap, "topic_prefix": "demo", "partitions": 12},
        "database": {"url": env.database_url(HUB_DB)},
        "id_scheme": scheme,
        "api": {"listen": _listen(8080)},
        "metrics": {"listen": _listen(9464)},
        "logging": {"level": "WARNING"},
        **demo_config(source_urls, scheme),
    }


def prepare(
    env: DemoEnvironment, *, citizens: int, seed: int, scheme: str = "vn", reset: bool = False
) -> tuple[HubConfig, dict, dict[str, str]]:
    """Generate the population on the first run (or with ``reset``), else reuse everything.

    A reused data directory keeps the hub database (upgraded, never recreated): users,
    tokens, mismatches and their history survive. When the broker no longer holds what
    the hub's stored positions point into (the embedded broker keeps topics in memory),
    every source is read again from the start: the reconciler re-judges each record, so
    mismatches keep their ids and history while the state converges to the sources.
    A data directory generated with other ``--citizens``/``--seed``/``--scheme`` is refused
    (``click.UsageError``) unless ``reset``.
    """
    from hub.db.migrate import upgrade

    state_path = env.data_dir / "demo-state.json"
    manifest_path = env.data_dir / "manifest.json"
    wanted = {"citizens": citizens, "seed": seed, "scheme": scheme}
    had = check_population(env.data_dir, citizens=citizens, seed=seed, scheme=scheme, reset=reset)
    databases = [f"demo_{s}" for s in source_tables(scheme)] + [HUB_DB]
    if reset:
        click.echo("--reset: starting over (dropping the generated data and the hub database)")
    fresh = reset or had is None or not manifest_path.exists()
    if fresh:
        env.drop_databases(databases)
        state_path.unlink(missing_ok=True)
        manifest_path.unlink(missing_ok=True)
    source_urls = {s: env.ensure_database(f"demo_{s}") for s in source_tables(scheme)}
    if fresh:
        click.echo(f"generating {citizens:,} citizens (seed {seed}) …")
        started = time.monotonic()
        generate(
            source_urls, citizens=citizens, seed=seed, manifest_path=manifest_path, scheme=scheme
        )
        click.echo(f"generated in {time.monotonic() - started:.1f}s")
        state_path.write_text(json.dumps({"population": wanted}))
    else:
        click.echo(f"reusing {env.data_dir}, keeping users, mismatches and history")
    hub_url = env.ensure_database(HUB_DB)
    upgrade(hub_url)
    ensure_demo_users(hub_url)
    raw = demo_hub_config(env, source_urls, scheme)
    (env.data_dir / "hub.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False))
    config = parse_config(raw, env={})
    # Topics missing while the hub database holds positions into them: the broker lost them
    # (tansu keeps topics in memory). Its own end offsets cannot tell: tansu 0.6 answers
    # ListOffsets with 1 for a partition holding many records.
    lost = not fresh and bool(missing_change_topics(config)) and hub_has_positions(config)
    ensure_topics(config.kafka, Topics(config.kafka.topic_prefix).all_for(config))
    if lost:
        click.echo(
            "the broker's topics are new (the embedded broker keeps them in memory): "
            "reading every source again"
        )
        reread_sources(config)
    manifest = json.loads(manifest_path.read_text())
    if json.loads(state_path.read_text()).get("live_changes"):
        manifest["sources_changed"] = True  # in memory only: see print_figures
    return config, manifest, source_urls


def mark_live_changes(data_dir: Path) -> None:
    """Remember that live changes altered the sources since they were generated."""
    state_path = data_dir / "demo-state.json"
    state = json.loads(state_path.read_text())
    state_path.write_text(json.dumps({**state, "live_changes": True}))


def check_population(
    data_dir: Path, *, citizens: int, seed: int, scheme: str, reset: bool
) -> dict | None:
    """The population ``data_dir`` was generated with (``None``: none yet). Raises
    ``click.UsageError`` naming the options when it is another one and ``reset`` is not set:
    reusing it would mix two populations, regenerating would drop the steward's work."""
    state_path = data_dir / "demo-state.json"
    try:
        state = json.loads(state_path.read_text()) if state_path.exists() else {}
    except (OSError, ValueError) as exc:
        raise click.UsageError(
            f"--data-dir {data_dir}: unreadable {state_path.name} ({exc}); add --reset"
        ) from None
    had = state.get("population") if isinstance(state, dict) else None
    if not isinstance(had, dict):
        return None
    had = {"scheme": "vn", **had}  # data dirs from before --scheme are vn
    wanted = {"citizens": citizens, "seed": seed, "scheme": scheme}
    if not reset and had != wanted:
        raise click.UsageError(
            f"--data-dir {data_dir} holds a demo of {had.get('citizens', 0):,} citizens "
            f"(--seed {had.get('seed')}, --scheme {had.get('scheme')}); add --reset to start "
            f"over with {citizens:,} citizens (--seed {seed}, --scheme {scheme}), "
            "or choose another --data-dir"
        )
    return None if reset else had


def ensure_demo_users(hub_url: str) -> list[str]:
    """Create the demo users that are missing (an existing one keeps its password and
    tokens); returns the names created."""
    from hub.api.users import create_user
    from hub.db import engine_for

    engine = engine_for(hub_url)
    with psycopg.connect(psycopg_conninfo(hub_url)) as conn:
        existing = {name for (name,) in conn.execute("SELECT name FROM users")}
    created = []
    for role, (name, password) in DEMO_LOGINS.items():
        if name not in existing:
            create_user(engine, name, role, password)
            created.append(name)
    return created


def missing_change_topics(config: HubConfig) -> list[str]:
    """The change topics the broker does not have (yet)."""
    from hub.kafka import make_admin

    topics = Topics(config.kafka.topic_prefix)
    admin = make_admin(config.kafka)
    try:
        existing = set(admin.list_topics())
    finally:
        admin.close()
    return [topics.changes(s) for s in config.sources() if topics.changes(s) not in existing]


def hub_has_positions(config: HubConfig) -> bool:
    """Whether the hub database holds consumer offsets or captured rows: positions that
    point into the broker's topics."""
    with psycopg.connect(psycopg_conninfo(config.database.url)) as conn:
        (stored,) = conn.execute("SELECT count(*) FROM consumer_offsets").fetchone()
        (captured,) = conn.execute(
            "SELECT coalesce(sum(rows_captured), 0) FROM connector_state"
        ).fetchone()
    return bool(stored or captured)


def reread_sources(config: HubConfig) -> None:
    """Forget every connector's position and the reconciler's offsets (not its state):
    the next capture snapshots each source again into the new topics, from offset 0."""
    from connectors.state import delete_connector_data, hub_engine

    engine = hub_engine(config.database.url)
    for name in config.sources():
        delete_connector_data(engine, name)
    with psycopg.connect(psycopg_conninfo(config.database.url)) as conn:
        conn.execute("DELETE FROM consumer_offsets")


def read_figures(config: HubConfig) -> tuple[Counter, dict[str, tuple[int, int]], set]:
    """Open mismatches by (sector, rule), (records, verified) per sector, open (sector, key, rule)."""
    with psycopg.connect(psycopg_conninfo(config.database.url)) as conn:
        open_rows = conn.execute(
            f"SELECT sector, record_key, rule FROM mismatches WHERE status IN {OPEN_STATUSES_SQL}"
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
    precision, recall = _precision_recall(found, truth)
    click.echo(f"against the manifest: precision {precision:.4f}, recall {recall:.4f}")
    if manifest.get("sources_changed"):
        click.echo(
            "  (live changes of an earlier run altered the sources since they were generated,"
            " so they no longer equal the manifest; --reset regenerates them)"
        )
    click.echo("  " + "by rule".ljust(width) + "precision".rjust(11) + "recall".rjust(9))
    for rule in rules:
        p, r = _precision_recall(
            {f for f in found if f[2] == rule}, {t for t in truth if t[2] == rule}
        )
        click.echo("  " + rule.ljust(width) + f"{p:>11.4f}{r:>9.4f}")
    noise = manifest.get("noise") or {}
    if noise.get("names") or noise.get("ids"):
        click.echo("noise injected, not mismatches (SPEC §5):")
        for what, kinds in (("names", noise.get("names", {})), ("IDs", noise.get("ids", {}))):
            if kinds:
                detail = ", ".join(f"{k.replace('_', ' ')} {n:,}" for k, n in kinds.items())
                click.echo(f"  {what.ljust(width)}{detail}")


def _precision_recall(found: set, truth: set) -> tuple[float, float]:
    hits = len(found & truth)
    return (hits / len(found) if found else 1.0, hits / len(truth) if truth else 1.0)


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


def run_live(
    config: HubConfig, manifest: dict, source_urls: dict[str, str], data_dir: Path | None = None
) -> None:
    """Capture and reconcile the initial state, then stream live changes until Ctrl-C/SIGTERM.

    The registry is in place before streaming starts, so no sector record is judged
    against a half-loaded registry.
    """
    from hub.allinone import AllInOne
    from hub.demo.live import LiveChanges

    run_once(config, manifest)
    app = AllInOne(config).start()
    live = LiveChanges(source_urls, manifest, scheme=config.id_scheme)
    if data_dir is not None:
        mark_live_changes(data_dir)
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
    *,
    data_dir: Path,
    citizens: int,
    seed: int,
    once: bool,
    scheme: str = "vn",
    reset: bool = False,
    broker: str = "tansu",
) -> None:
    """Start everything; with ``once`` print the figures and exit, else run until Ctrl-C.

    A second run in ``data_dir`` keeps the hub's state (see :func:`prepare`); ``reset``
    starts over. ``broker``: the embedded tansu (no Java) or Apache Kafka."""
    setup_logging("WARNING")
    install_signal_handlers()
    # Refuse a mismatched data dir before starting any server.
    check_population(data_dir, citizens=citizens, seed=seed, scheme=scheme, reset=reset)
    env = DemoEnvironment(data_dir, broker=broker).start()
    try:
        config, manifest, source_urls = prepare(
            env, citizens=citizens, seed=seed, scheme=scheme, reset=reset
        )
        click.echo(f"hub database   {redact_url(config.database.url)}")
        click.echo(
            f"kafka          {config.kafka.bootstrap_servers} (topics {config.kafka.topic_prefix}.*)"
        )
        click.echo(f"config         {data_dir / 'hub.yaml'}")
        click.echo(f"manifest       {data_dir / 'manifest.json'}")
        if once:
            run_once(config, manifest)
        else:
            run_live(config, manifest, source_urls, data_dir)
    except KeyboardInterrupt:
        click.echo("stopping …")
    finally:
        env.stop()

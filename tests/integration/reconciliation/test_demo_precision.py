"""End to end on the demo generator's data: registry and four sectors through the real
connectors, the broker and the reconciler find exactly the manifest's mismatches."""

from __future__ import annotations

import os
import uuid

import psycopg

from connectors.runner import run_connectors
from hub.config import parse_config
from hub.db import psycopg_conninfo
from hub.db.migrate import upgrade
from hub.demo.generator import generate
from hub.demo.population import SOURCE_TABLES, demo_config
from hub.kafka import Topics, ensure_topics
from reconciliation.engine import Reconciler

CITIZENS = int(os.environ.get("HUB_E2E_CITIZENS", "3000"))


def test_demo_mismatches_are_found_with_precision_and_recall_1(servers):
    prefix = f"demo_e2e_{uuid.uuid4().hex[:8]}"
    urls: dict[str, str] = {}
    with psycopg.connect(psycopg_conninfo(servers.pg_url), autocommit=True) as conn:
        for source in [*SOURCE_TABLES, "hub"]:
            conn.execute(f'CREATE DATABASE "{prefix}_{source}"')
            urls[source] = servers.database_url(f"{prefix}_{source}")
    try:
        manifest = generate({s: urls[s] for s in SOURCE_TABLES}, citizens=CITIZENS, seed=6)
        upgrade(urls["hub"])
        kafka = servers.kafka(partitions=4)
        config = parse_config(
            {
                "kafka": kafka.model_dump(mode="json"),
                "database": {"url": urls["hub"]},
                "id_scheme": "vn",
                **demo_config({s: urls[s] for s in SOURCE_TABLES}),
            },
            env={},
        )
        ensure_topics(config.kafka, Topics(config.kafka.topic_prefix).all_for(config))
        assert run_connectors(config, list(config.sources()), once=True) == 0

        reconciler = Reconciler(config, assign_all=True, stats_interval_s=3600)
        reconciler.run(until_idle_s=1.0)
        assert reconciler.totals.dead_letters == 0

        with psycopg.connect(psycopg_conninfo(urls["hub"])) as conn:
            found = set(
                conn.execute(
                    "SELECT sector, record_key, rule, field FROM mismatches WHERE status = 'open'"
                ).fetchall()
            )
            records = conn.execute("SELECT count(*) FROM sector_records").fetchone()[0]
        expected = {(m.sector, m.record_key, m.rule, m.field) for m in manifest.mismatches}
        assert records == sum(manifest.records.values())
        true_positives = len(found & expected)
        precision = true_positives / len(found) if found else 1.0
        recall = true_positives / len(expected) if expected else 1.0
        print(
            f"\n{CITIZENS} citizens, {records} sector records, {len(expected)} expected "
            f"mismatches: precision {precision:.4f}, recall {recall:.4f}"
        )
        assert sorted(found - expected)[:20] == [], "reported but not injected"
        assert sorted(expected - found)[:20] == [], "injected but not found"
        assert precision == 1.0 and recall == 1.0
        found_rules = {(s, r) for s, _k, r, _f in found}
        assert {r for _s, r in found_rules} == {m.rule for m in manifest.mismatches}
    finally:
        with psycopg.connect(psycopg_conninfo(servers.pg_url), autocommit=True) as conn:
            for url in urls.values():
                conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')

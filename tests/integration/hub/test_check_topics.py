"""``hub check`` on Apache Kafka: every hub topic's partitions and configs against the advice.

Runs on the session broker when it is Apache Kafka (tansu does not keep topic configs).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic

from hub.checks import check_topics
from hub.config import parse_config
from hub.demo.population import SOURCE_TABLES, demo_config
from hub.kafka import LONG_RETENTION_MS, RETENTION_MS, Topics, retention_ms


@pytest.fixture
def config(servers):
    if servers.broker != "kafka":
        pytest.skip(
            f"topic configs are checked on Apache Kafka; the session broker is {servers.broker}"
        )
    urls = {s: servers.database_url(f"unused_{s}") for s in SOURCE_TABLES}
    raw = {
        "kafka": {"bootstrap_servers": servers.bootstrap, "topic_prefix": servers.kafka().topic_prefix,
                  "partitions": 4},
        "database": {"url": servers.database_url("unused_hub")},
        **demo_config(urls),
    }  # fmt: skip
    return parse_config(raw, env={})


def test_check_creates_missing_topics_with_the_advised_settings_then_finds_them_right(config):
    names = Topics(config.kafka.topic_prefix).all_for(config)
    first = check_topics(config)
    assert [r.address for r in first] == names
    assert all(r.ok for r in first), [r.line() for r in first]

    def advised(name):
        retention = retention_ms(config.kafka.topic_prefix, name)
        return (
            f"4 partitions, cleanup.policy=delete, retention.ms={retention}, min.insync.replicas=1"
        )

    assert [r.detail for r in first] == ["created: " + advised(n) for n in names]
    assert {retention_ms(config.kafka.topic_prefix, n) for n in names} == {
        RETENTION_MS,
        LONG_RETENTION_MS,
    }
    again = check_topics(config)
    assert all(r.ok for r in again) and [r.detail for r in again] == [advised(n) for n in names]
    assert again[0].line().startswith("ok   topic")


def test_check_names_each_wrong_setting_of_each_wrong_topic(config):
    topics = Topics(config.kafka.topic_prefix)
    admin = KafkaAdminClient(bootstrap_servers=config.kafka.bootstrap_servers)
    try:
        admin.create_topics([
            NewTopic(topics.sector("tax"), 3, 1,
                     topic_configs={"cleanup.policy": "compact", "retention.ms": "3600000"}),
            NewTopic(topics.mismatches, 4, 1, topic_configs={"min.insync.replicas": "2", "retention.ms": "-1"}),
        ])  # fmt: skip
    finally:
        admin.close()
    results = {r.address: r for r in check_topics(config)}
    tax = results[topics.sector("tax")]
    assert not tax.ok
    assert "3 partitions, kafka.partitions is 4" in tax.problem
    assert "cleanup.policy=compact" in tax.problem
    assert "retention.ms=3600000" in tax.problem
    assert tax.line().startswith(
        f"FAIL topic                    {topics.sector('tax')} (3 partitions"
    )
    mismatches = results[topics.mismatches]
    assert mismatches.problem == "min.insync.replicas=2 with 1 replica(s): every write fails"
    others = [
        r for name, r in results.items() if name not in (topics.sector("tax"), topics.mismatches)
    ]
    assert others and all(r.ok and r.detail.startswith("created: ") for r in others)


def test_hub_check_prints_a_line_per_topic_and_fails_on_a_wrong_one(servers, config, tmp_path):
    urls = {s: servers.create_database(f"chk_{s}") for s in SOURCE_TABLES}
    hub_url = servers.create_database("chk_hub")
    prefix = config.kafka.topic_prefix
    raw = {
        "kafka": {"bootstrap_servers": servers.bootstrap, "topic_prefix": prefix, "partitions": 4},
        "database": {"url": hub_url},
        **demo_config(urls),
    }
    path = tmp_path / "hub.yaml"
    path.write_text(yaml.safe_dump(raw))
    hub = [str(Path(sys.executable).with_name("hub")), "--config", str(path), "check"]
    try:
        first = subprocess.run(hub, capture_output=True, text=True, timeout=120)
        assert first.returncode == 0, first.stdout + first.stderr
        lines = [ln for ln in first.stdout.splitlines() if ln.startswith("ok   topic")]
        assert len(lines) == len(Topics(prefix).all_for(config))
        assert all("(created: 4 partitions, cleanup.policy=delete" in ln for ln in lines)
        admin = KafkaAdminClient(bootstrap_servers=servers.bootstrap)
        try:
            admin.alter_configs(
                [
                    ConfigResource(
                        ConfigResourceType.TOPIC, f"{prefix}.dlq", {"retention.ms": "60000"}
                    )
                ]
            )
        finally:
            admin.close()
        second = subprocess.run(hub, capture_output=True, text=True, timeout=120)
        assert second.returncode == 1
        (bad,) = [ln for ln in second.stdout.splitlines() if ln.startswith("FAIL")]
        assert bad.startswith(f"FAIL topic                    {prefix}.dlq (4 partitions")
        assert bad.endswith(f"retention.ms=60000: advised at least {LONG_RETENTION_MS} (30 days)")
    finally:
        for url in [*urls.values(), hub_url]:
            servers.drop_database(url)

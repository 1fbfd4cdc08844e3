"""The topic settings the hub creates and ``hub check`` expects, judged without a broker."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from hub.checks import CheckResult, topic_problems
from hub.config import KafkaConfig
from hub.kafka import (
    LONG_RETENTION_MS,
    RETENTION_MS,
    min_insync_replicas,
    new_topics,
    retention_ms,
    topic_settings,
)

K8S_TOPICS = Path(__file__).resolve().parents[3] / "deploy" / "k8s" / "kafka-topics.yaml"
GOOD = {"cleanup.policy": "delete", "retention.ms": str(RETENTION_MS), "min.insync.replicas": "1"}


def test_the_settings_are_those_of_the_kubernetes_topics():
    for doc in yaml.safe_load_all(K8S_TOPICS.read_text()):
        if doc and doc.get("kind") == "KafkaTopic":
            spec = doc["spec"]
            config = KafkaConfig(bootstrap_servers="k:9092", replication_factor=spec["replicas"])
            want = topic_settings(config, spec["topicName"])
            assert {k: str(v) for k, v in spec["config"].items()} == want


def test_new_topics_carry_partitions_replication_and_settings():
    config = KafkaConfig(bootstrap_servers="k:9092", partitions=6, replication_factor=3)
    changes, dlq = new_topics(config, ["hub.registry.changes", "hub.dlq"])
    assert (changes.num_partitions, changes.replication_factor) == (6, 3)
    assert changes.topic_configs["min.insync.replicas"] == "2"
    assert changes.topic_configs["retention.ms"] == str(RETENTION_MS)
    assert dlq.topic_configs["retention.ms"] == str(LONG_RETENTION_MS)
    assert retention_ms("hub", "hub.corrections.tax") == LONG_RETENTION_MS
    assert retention_ms("hub", "hub.sector.tax.changes") == RETENTION_MS


@given(st.integers(min_value=1, max_value=16))
def test_advised_min_insync_replicas_never_blocks_writes(rf):
    isr = min_insync_replicas(rf)
    assert 1 <= isr <= min(2, rf)
    assert rf == 1 or isr < rf  # one replica may be down without stopping writes


def test_a_topic_as_advised_has_no_problem():
    assert topic_problems(12, 1, GOOD, want_partitions=12, want_isr=1) == []
    assert (
        topic_problems(12, 1, GOOD | {"retention.ms": "-1"}, want_partitions=12, want_isr=1) == []
    )


@given(
    partitions=st.integers(1, 64),
    want=st.integers(1, 64),
    replicas=st.integers(1, 5),
    policy=st.sampled_from(["delete", "compact", "compact,delete", "delete,compact"]),
    retention=st.one_of(st.integers(-1, 2 * RETENTION_MS).map(str), st.text(max_size=5)),
    isr=st.one_of(st.integers(0, 6).map(str), st.text(max_size=3)),
)
@example(partitions=1, want=1, replicas=1, policy="delete", retention="²", isr=" 1")
def test_each_wrong_setting_is_named_and_only_then(
    partitions, want, replicas, policy, retention, isr
):
    configs = {"cleanup.policy": policy, "retention.ms": retention, "min.insync.replicas": isr}
    want_isr = min_insync_replicas(replicas)
    text = " | ".join(
        topic_problems(partitions, replicas, configs, want_partitions=want, want_isr=want_isr)
    )
    assert ("kafka.partitions is" in text) == (partitions != want)
    assert ("cleanup.policy=" in text) == ("compact" in policy)
    bad_retention = not re.fullmatch("-?[0-9]+", retention) or 0 <= int(retention) < RETENTION_MS
    assert ("retention.ms=" in text) == bad_retention
    bad_isr = not re.fullmatch("-?[0-9]+", isr) or int(isr) > replicas or int(isr) < want_isr
    assert ("min.insync.replicas=" in text) == bad_isr


def test_a_check_line_shows_what_was_found_and_what_is_wrong():
    line = CheckResult("topic", "hub.dlq", "retention.ms=1: too short", "1 partitions").line()
    assert line == "FAIL topic                    hub.dlq (1 partitions): retention.ms=1: too short"
    assert CheckResult("kafka", "k:9092", None).line() == "ok   kafka                    k:9092"

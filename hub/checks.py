"""``hub check``: can every server the config names be reached, and are the hub's topics right?

For Kafka, every topic of :meth:`hub.kafka.Topics.all_for` is checked against what
``deploy/k8s/kafka-topics.yaml`` and docs/operations.md advise (:func:`hub.kafka.topic_settings`):
the same partition count everywhere (``kafka.partitions``: co-partitioning), ``cleanup.policy``
without compaction, at least a week's retention (30 days: dead letters and corrections), and ``min.insync.replicas`` at least the advised
value but no more than the topic's replicas. Missing topics are created with those settings.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from kafka import errors as Errors
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.errors import KafkaError

from hub.config import HubConfig, redact_url
from hub.db import psycopg_conninfo
from hub.kafka import (
    RETENTION_MS,
    KafkaSecurityError,
    Topics,
    check_kafka,
    make_admin,
    min_insync_replicas,
    new_topics,
    retention_ms,
)
from hub.logs import error_summary


@dataclass(frozen=True)
class CheckResult:
    target: str
    address: str
    problem: str | None
    detail: str = ""
    """What was found, shown after the address (topics: partitions and configs)."""

    @property
    def ok(self) -> bool:
        return self.problem is None

    def line(self) -> str:
        status = "ok  " if self.ok else "FAIL"
        tail = f" ({self.detail})" if self.detail else ""
        tail += "" if self.ok else f": {self.problem}"
        return f"{status} {self.target:<24} {self.address}{tail}"


def check_database(url: str, timeout_s: int = 5) -> str | None:
    """None when ``url`` accepts a connection and a query, else the reason."""
    try:
        with psycopg.connect(psycopg_conninfo(url), connect_timeout=timeout_s) as conn:
            conn.execute("SELECT 1")
        return None
    except psycopg.Error as exc:
        return " ".join(str(exc).split()) or type(exc).__name__


def _guarded(check: Callable[[], str | None]) -> str | None:
    """A check's answer; a client library that fails in an unforeseen way is a FAIL line with
    the reason (masked), never a traceback. A config key at fault (``KafkaSecurityError``:
    refused credentials, untrusted certificate) propagates: the CLI names it and exits 2."""
    try:
        return check()
    except KafkaSecurityError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of a check is that target's result
        return error_summary(exc)


def check_targets(config: HubConfig) -> list[CheckResult]:
    """One result per database and for the Kafka bootstrap servers; never raises."""
    db_url = config.database.url
    results = [
        CheckResult("database (hub)", redact_url(db_url), _guarded(lambda: check_database(db_url)))
    ]
    for name, src in config.sources().items():
        url = src.url
        if url is None:
            continue  # a mode that reads topics (debezium): `hub connector check` checks them
        results.append(
            CheckResult(
                f"source {name}", redact_url(url), _guarded(lambda u=url: check_database(u))
            )
        )
    results += check_slots(config)
    problem = _guarded(lambda: check_kafka(config.kafka, raise_config_errors=True))
    results.append(CheckResult("kafka", config.kafka.bootstrap_servers, problem))
    if problem is None:
        results += check_topics(config)
    return results


def check_slots(config: HubConfig) -> list[CheckResult]:
    """A FAIL line per ``hub_*`` replication slot on a source database that no configured
    connector reads (it retains WAL until the disk is full), with the statement that drops it;
    one ok line when there is none. A database that cannot be reached has its own line above."""
    from connectors.logical.inventory import slot_inventory  # the one place slots are listed

    if not config.sources():
        return []
    try:
        inventory = slot_inventory(config)
    except Exception as exc:  # noqa: BLE001 - any failure of a check is that target's result
        return [CheckResult("replication slots", "source databases", error_summary(exc))]
    results = [CheckResult(f"slot {s.slot}", s.address, s.orphan_line()) for s in inventory.orphans]
    if not results:
        detail = f"{len(inventory.slots)} hub slot(s), each read by a configured connector"
        if inventory.errors:
            detail += f"; {len(inventory.errors)} database(s) not listed"
        results.append(CheckResult("replication slots", "source databases", None, detail))
    return results


TOPIC_KEYS = ("cleanup.policy", "retention.ms", "min.insync.replicas")


_CONFIG_INT = re.compile(r"-?[0-9]+")


def _config_int(value: str | None) -> int | None:
    """A topic config's integer, as the broker writes it (ASCII digits, an optional minus);
    None for anything else (``int()`` alone would also take ``" 5"``, ``"1_0"`` or ``"٣"``)."""
    return int(value) if value is not None and _CONFIG_INT.fullmatch(value) else None


def topic_problems(
    partitions: int,
    replicas: int,
    configs: dict[str, str],
    *,
    want_partitions: int,
    want_isr: int,
    want_retention: int = RETENTION_MS,
) -> list[str]:
    """What is wrong with one topic's partition count, replicas and configs (empty: nothing)."""
    problems = []
    if partitions != want_partitions:
        problems.append(
            f"{partitions} partitions, kafka.partitions is {want_partitions} (every topic needs "
            "the same count: co-partitioning)"
        )
    policy = configs.get("cleanup.policy", "delete")
    if "compact" in policy.split(","):
        problems.append(
            f"cleanup.policy={policy}: compaction drops records sharing an ID; use delete"
        )
    retention = _config_int(configs.get("retention.ms", "-1"))
    if retention is None or 0 <= retention < want_retention:
        days = want_retention // 86_400_000
        problems.append(
            f"retention.ms={configs.get('retention.ms')}: advised at least {want_retention} "
            f"({days} days)"
        )
    isr = _config_int(configs.get("min.insync.replicas", "1"))
    if isr is None or isr > replicas:
        problems.append(
            f"min.insync.replicas={configs.get('min.insync.replicas')} with {replicas} "
            "replica(s): every write fails"
        )
    elif isr < want_isr:
        problems.append(f"min.insync.replicas={isr}: advised {want_isr} with {replicas} replicas")
    return problems


def _describe_topics(admin, names: list[str], wait_s: float = 15.0) -> dict[str, dict]:
    """Topic descriptions by name; a topic created a moment ago is described once it has leaders."""
    deadline = time.monotonic() + wait_s
    while True:
        described = {d["name"]: d for d in admin.describe_topics(names)}
        pending = [n for n in names if n not in described or described[n].get("error_code")]
        if not pending or time.monotonic() > deadline:
            return described
        time.sleep(0.2)


def check_topics(config: HubConfig) -> list[CheckResult]:
    """One result per hub topic; missing topics are created first (with the advised settings)."""
    kafka = config.kafka
    names = Topics(kafka.topic_prefix).all_for(config)
    try:
        admin = make_admin(kafka)
    except KafkaError as exc:
        return [CheckResult("kafka topics", kafka.bootstrap_servers, str(exc))]
    results: list[CheckResult] = []
    try:
        missing = [n for n in names if n not in set(admin.list_topics())]
        created: dict[str, str | None] = {}  # name -> why it could not be created, or None
        if missing:
            answer = admin.create_topics(new_topics(kafka, missing), raise_errors=False)
            for topic in answer.get("topics", []):
                error = Errors.for_code(topic.get("error_code", 0))
                if error is Errors.TopicAlreadyExistsError:
                    continue  # listed a moment ago as missing, but it already exists
                problem = None
                if error is not Errors.NoError:
                    message = topic.get("error_message")
                    problem = f"cannot create: {error.__name__}" + (
                        f" ({message})" if message else ""
                    )
                created[topic["name"]] = problem
        described = _describe_topics(admin, names)
        resources = [ConfigResource(ConfigResourceType.TOPIC, n) for n in names]
        configs = admin.describe_configs(resources, config_filter="all").get("topic", {})
    except KafkaError as exc:
        return [CheckResult("kafka topics", kafka.bootstrap_servers, f"cannot describe: {exc}")]
    finally:
        admin.close()
    for name in names:
        if created.get(name):
            results.append(CheckResult("topic", name, created[name]))
            continue
        desc = described.get(name)
        if desc is None or desc.get("error_code"):
            results.append(CheckResult("topic", name, "not described by the broker"))
            continue
        parts = desc["partitions"]
        replicas = min((len(p["replica_nodes"]) for p in parts), default=0)
        values = {k: v["value"] for k, v in configs.get(name, {}).items() if k in TOPIC_KEYS}
        problems = topic_problems(
            len(parts), replicas, values,
            want_partitions=kafka.partitions, want_isr=min_insync_replicas(replicas),
            want_retention=retention_ms(kafka.topic_prefix, name),
        )  # fmt: skip
        summary = f"{len(parts)} partitions, " + ", ".join(
            f"{k}={values.get(k)}" for k in TOPIC_KEYS
        )
        if name in created:
            summary = "created: " + summary
        results.append(CheckResult("topic", name, "; ".join(problems) or None, summary))
    return results

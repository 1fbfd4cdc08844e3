"""The hub through a SASL_SSL listener: SCRAM-SHA-512 users over TLS with a test-made CA.

One Apache Kafka broker for the module (:class:`hub.embedded.KafkaSecurity`), its client
listener SASL_SSL only; PostgreSQL is the session's. Proves that the ``kafka.security_protocol``,
``sasl_*`` and ``ssl_cafile`` keys carry a poll connector, the reconciler and ``hub check``
end to end, and that a wrong password or CA is one line naming the key, exit 2, no traceback.
Skipped where Java or the Kafka jars are missing (``tests/setup_machine.py``).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from hub.config import KafkaConfig, parse_config
from hub.db import psycopg_conninfo
from hub.embedded import EmbeddedKafka, KafkaSecurity, kafka_missing
from hub.idschemes.vn import make_id
from hub.kafka import KafkaSecurityError, check_kafka, make_producer
from hub.testing import server_dir
from tests.integration.connectors.conftest import SourceDb, changes, reconcile_until_idle, run_once
from tests.integration.hub.tls import TlsFiles, make_tls

pytestmark = [
    pytest.mark.skipif(kafka_missing() is not None, reason=str(kafka_missing())),
    pytest.mark.heavy(60),
]

USER, PASSWORD = "hub", "s3cret-Pw_42"
HUB = Path(sys.executable).with_name("hub")
A = make_id("079", 1985, "M", 1)
B = make_id("001", 1990, "F", 2)


class SecureBroker:
    """The module's broker and the TLS files: ``tls`` signed its certificate, ``other`` not."""

    def __init__(self, kafka: EmbeddedKafka, tls: TlsFiles, other: TlsFiles):
        self.kafka, self.tls, self.other = kafka, tls, other

    def settings(self, **overrides: Any) -> dict[str, Any]:
        """The config file's ``kafka:`` section for this broker (the right password and CA)."""
        return {
            "bootstrap_servers": self.kafka.bootstrap,
            "topic_prefix": f"s{uuid.uuid4().hex[:8]}",
            "partitions": 3,
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_plain_username": USER,
            "sasl_plain_password": PASSWORD,
            "ssl_cafile": str(self.tls.ca),
            **overrides,
        }


@pytest.fixture(scope="module")
def secure() -> Iterator[SecureBroker]:
    base = server_dir()
    tls, other = make_tls(base / "tls"), make_tls(base / "other", "stranger")
    security = KafkaSecurity(certfile=tls.cert, keyfile=tls.key, users={USER: PASSWORD})
    kafka = EmbeddedKafka(base / "kafka", security=security, quick_jit=True).start()
    try:
        yield SecureBroker(kafka, tls, other)
    finally:
        kafka.stop()
        shutil.rmtree(base, ignore_errors=True)


PEOPLE = """
CREATE TABLE people (
    id bigserial PRIMARY KEY,
    cccd text,
    ho_ten text,
    ngay_sinh date,
    gioi_tinh text,
    updated_at timestamptz NOT NULL DEFAULT now()
)"""


def _people(servers, rows: list[tuple[str, str, str, str]]) -> SourceDb:
    db = SourceDb(servers.create_database("sec"))
    db.execute(PEOPLE)
    for row in rows:
        db.execute(
            "INSERT INTO people (cccd, ho_ten, ngay_sinh, gioi_tinh) VALUES (%s, %s, %s, %s)", row
        )
    return db


def _source(db: SourceDb) -> dict[str, Any]:
    return {
        "url": db.url,
        "table": "people",
        "key": "id",
        "capture": "poll",
        "poll": {"timestamp_column": "updated_at", "incrementing_column": "id",
                 "interval_s": 0.2, "margin_s": 5, "batch_size": 100},
        "columns": {"citizen_id": "cccd", "full_name": "ho_ten", "date_of_birth": "ngay_sinh",
                    "sex": "gioi_tinh"},
    }  # fmt: skip


@pytest.fixture
def deployment(secure, servers, hub_db, tmp_path) -> Iterator[tuple[Path, dict[str, Any]]]:
    """A registry and a tax source (tax spells A's name differently), a config file over them."""
    registry = _people(servers, [(A, "Nguyen Van An", "1985-03-04", "M"),
                                 (B, "Le Thi Binh", "1990-07-08", "F")])  # fmt: skip
    tax = _people(servers, [(A, "Nguyen Van Anh", "1985-03-04", "M"),
                            (B, "Le Thi Binh", "1990-07-08", "F")])  # fmt: skip
    raw = {
        "kafka": secure.settings(),
        "database": {"url": hub_db},
        "metrics": {"listen": "127.0.0.1:0"},
        "id_scheme": "vn",
        "reconciler": {"group_id": "rec-secure"},
        "registry": _source(registry),
        "sectors": {"tax": _source(tax)},
    }
    path = tmp_path / "hub.yaml"
    path.write_text(yaml.safe_dump(raw))
    yield path, raw
    for db in (registry, tax):
        servers.drop_database(db.url)


def _hub(*args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(HUB), *args], capture_output=True, text=True, timeout=timeout,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def _with_kafka(path: Path, raw: dict[str, Any], **kafka: Any) -> Path:
    changed = path.with_name("changed.yaml")
    changed.write_text(yaml.safe_dump({**raw, "kafka": {**raw["kafka"], **kafka}}))
    return changed


def test_connectors_and_the_reconciler_work_through_sasl_ssl(deployment):
    path, raw = deployment
    config = parse_config(raw, env={})
    run_once(config, "registry")
    run_once(config, "tax")
    # What the connector wrote is readable through the same listener, every row of the table.
    read = changes(config, "tax").read()
    assert sorted(m.value["after"]["citizen_id"] for m in read) == sorted([A, B])

    assert reconcile_until_idle(config).messages == 4
    with psycopg.connect(psycopg_conninfo(raw["database"]["url"])) as conn:
        open_ = conn.execute(
            "SELECT sector, rule, sector_value, registry_value FROM mismatches WHERE status = 'open'"
        ).fetchall()
    assert open_ == [("tax", "NAME_MISMATCH", "Nguyen Van Anh", "Nguyen Van An")]


def test_hub_check_passes_through_sasl_ssl(deployment):
    path, _raw = deployment
    res = _hub("check", "--config", str(path))
    assert res.returncode == 0, res.stdout + res.stderr
    assert any(line.startswith("ok   kafka ") for line in res.stdout.splitlines()), res.stdout
    assert "FAIL" not in res.stdout


def _one_line(res: subprocess.CompletedProcess, key: str) -> str:
    """The single error line of a refused start; fails on a traceback or extra lines."""
    assert res.returncode == 2, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith(f"hub: {key}: "), lines[0]
    return lines[0]


def test_a_wrong_password_is_one_line_naming_the_key_from_check_and_reconcile(deployment):
    path, raw = deployment
    wrong = _with_kafka(path, raw, sasl_plain_password="not-the-password")
    line = _one_line(_hub("check", "--config", str(wrong)), "kafka.sasl_plain_password")
    assert "'hub'" in line and "not-the-password" not in line
    start = _hub("reconcile", "--config", str(wrong), "--no-metrics", "--until-idle", "1")
    line = _one_line(start, "kafka.sasl_plain_password")
    assert "not-the-password" not in start.stdout + start.stderr
    # A connector stops with the same reason in its log (exit 1, as for any fatal error).
    run = _hub("connector", "run", "tax", "--once", "--no-metrics", "--config", str(wrong))
    assert run.returncode == 1, run.stdout + run.stderr
    assert "Traceback" not in run.stderr and "not-the-password" not in run.stderr
    named = [x for x in run.stderr.splitlines() if "kafka.sasl_plain_password" in x]
    assert len(named) == 1 and "tax: stopped: kafka.sasl_plain_password: " in named[0], run.stderr


def test_an_untrusted_certificate_names_ssl_cafile(secure, deployment):
    path, raw = deployment
    wrong = _with_kafka(path, raw, ssl_cafile=str(secure.other.ca))
    line = _one_line(_hub("check", "--config", str(wrong)), "kafka.ssl_cafile")
    assert str(secure.other.ca) in line and "verif" in line


def test_clients_made_in_process_raise_the_config_error_quickly(secure):
    wrong_user = KafkaConfig(**secure.settings(sasl_plain_username="nobody"))
    started = time.monotonic()
    with pytest.raises(KafkaSecurityError) as err:
        make_producer(wrong_user)
    assert err.value.key == "kafka.sasl_plain_password"
    assert time.monotonic() - started < 15  # not kafka-python's 30 s bootstrap timeout
    assert check_kafka(KafkaConfig(**secure.settings())) is None
    # /readyz's check reports the key as its reason (503) rather than raising.
    reason = check_kafka(KafkaConfig(**secure.settings(sasl_plain_password="nope")))
    assert reason is not None and reason.startswith("kafka.sasl_plain_password: ")

"""The Kafka Connect worker's set-up and the bench's Debezium comparison, without a JVM."""

from __future__ import annotations

import re
import types
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.bench.debezium import compare, debezium_absent
from hub.bench.figures import debezium_rows
from hub.embedded import KAFKA_VERSION
from hub.embedded import connect as embedded
from hub.embedded.connect import (
    DEBEZIUM_VERSION,
    ConnectWorker,
    debezium_libs_dir,
    debezium_missing,
    postgres_connector,
    read_properties,
)
from tests import setup_machine

POM = Path(__file__).resolve().parents[4] / "deploy" / "debezium" / "pom.xml"


def test_the_pom_names_the_hubs_debezium_and_the_brokers_kafka_version():
    text = POM.read_text()
    assert f"<debezium.version>{DEBEZIUM_VERSION}</debezium.version>" in text
    assert setup_machine.kafka_version(POM) == KAFKA_VERSION
    # Every Debezium module at the one release: none names a version of its own.
    blocks = re.findall(r"<dependency>(.*?)</dependency>", text, re.S)
    debezium = [b for b in blocks if "<groupId>io.debezium</groupId>" in b]
    assert debezium and all("${debezium.version}" in b for b in debezium)
    assert any("<artifactId>connect-runtime</artifactId>" in b for b in blocks)


def test_hub_and_setup_agree_on_the_cache_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("HUB_DEBEZIUM_LIBS", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    expected = tmp_path / "registry-hub" / f"debezium-{DEBEZIUM_VERSION}-kafka-{KAFKA_VERSION}"
    assert debezium_libs_dir() == setup_machine.debezium_libs_dir(POM) == expected
    monkeypatch.setenv("HUB_DEBEZIUM_LIBS", "libs")
    monkeypatch.chdir(tmp_path)
    assert debezium_libs_dir() == setup_machine.debezium_libs_dir(POM) == tmp_path / "libs"
    assert setup_machine.KAFKA_STAMP == embedded.DEBEZIUM_STAMP


def test_without_the_jars_it_says_where_they_come_from(monkeypatch, tmp_path):
    monkeypatch.setenv("HUB_DEBEZIUM_LIBS", str(tmp_path))
    if debezium_missing() and "java" in debezium_missing():
        pytest.skip("no java here")
    assert "tests/setup_machine.py" in debezium_missing()
    (tmp_path / ".resolved").write_text("x\n")
    (tmp_path / "connect-runtime-4.2.0.jar").write_bytes(b"")
    assert debezium_missing() is None


def test_the_worker_is_loopback_with_an_offset_file_and_json(tmp_path):
    worker = ConnectWorker(tmp_path / "c", "127.0.0.1:9092", port=18083)
    props = worker.properties()
    assert props["listeners"] == "http://127.0.0.1:18083"
    assert props["offset.storage.file.filename"] == str(tmp_path / "c" / "connect.offsets")
    assert props["bootstrap.servers"] == "127.0.0.1:9092"
    assert props["value.converter"] == "org.apache.kafka.connect.json.JsonConverter"
    assert worker.url == "http://127.0.0.1:18083"


def test_the_shipped_postgres_config_is_what_the_tests_run_with_their_own_names():
    shipped = read_properties(embedded.DEPLOY_DIR / "postgres.properties")
    assert shipped["plugin.name"] == "pgoutput"
    cfg = postgres_connector("Bench-1k", port=5433, database="src", table="public.t",
                             topic_prefix="p", schemas=False)  # fmt: skip
    assert cfg["connector.class"] == shipped["connector.class"]
    assert cfg["slot.name"] == cfg["publication.name"] == "dbz_bench_1k"
    assert cfg["value.converter.schemas.enable"] == "false"
    assert cfg["replica.identity.autoset.values"] == "public.t:FULL"
    assert (cfg["database.port"], cfg["database.dbname"]) == ("5433", "src")
    assert set(shipped) <= set(cfg)


def test_read_properties_skips_comments_and_keeps_equals_in_values(tmp_path):
    path = tmp_path / "x.properties"
    path.write_text("# c\n! c\n\na = b=c\nempty=\n")
    assert read_properties(path) == {"a": "b=c", "empty": ""}


def test_the_baseline_is_absent_saying_why_on_tansu_or_when_skipped():
    stack = types.SimpleNamespace(stack=object())
    bench = types.SimpleNamespace(skip={"debezium"}, env=stack, broker="kafka")
    assert "--skip debezium" in debezium_absent(bench)
    bench.skip = set()
    bench.broker = "tansu"
    assert "--broker kafka" in debezium_absent(bench)
    rows = debezium_rows({"absent": debezium_absent(bench)})
    assert len(rows) == 1 and "absent: Debezium runs on Kafka Connect" in rows[0][2]


@given(
    rows=st.integers(1, 10**7),
    hub_rate=st.floats(1, 1e6),
    hub_cpu=st.floats(0.01, 1e4),
    dbz_rate=st.integers(1, 10**6),
    dbz_cpu=st.floats(0.01, 1e4),
)
def test_compare_is_the_ratio_of_rates_and_of_rows_per_cpu_second(
    rows, hub_rate, hub_cpu, dbz_rate, dbz_cpu
):
    peer = {"rows": rows, "rows_per_s": dbz_rate, "cpu_s": dbz_cpu, "busy_s": 1.0}
    c = compare(rows, hub_rate, hub_cpu, peer)
    assert c["ratio"] == pytest.approx(hub_rate / dbz_rate, rel=1e-2, abs=1e-3)
    # The same rows on both sides: per core is the inverse ratio of CPU seconds.
    assert c["ratio_per_core"] == pytest.approx(dbz_cpu / hub_cpu, rel=1e-2, abs=1e-3)
    figure = {"version": DEBEZIUM_VERSION, "stream_vs_hub": c, "snapshot_vs_hub": c}
    stream, snapshot = debezium_rows(figure)
    assert "per core" in stream[3] and DEBEZIUM_VERSION in stream[2]


def test_compare_without_cpu_figures_leaves_the_per_core_ratio_out():
    peer = {"rows": 10, "rows_per_s": 5, "cpu_s": 0.0, "busy_s": 2.0}
    assert compare(10, 10.0, None, peer)["ratio_per_core"] is None
    assert compare(10, None, 1.0, peer)["ratio"] is None


def test_a_worker_that_is_not_up_is_a_fatal_error_naming_the_call(tmp_path):
    from hub.embedded import free_port
    from hub.errors import FatalError

    worker = ConnectWorker(tmp_path / "c", "127.0.0.1:9092", port=free_port())
    with pytest.raises(FatalError, match="Kafka Connect GET /connectors: "):
        worker.request("GET", "/connectors", timeout=2)

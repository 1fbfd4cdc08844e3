"""The Apache Kafka test broker's configuration, cache folder and Maven step, without a JVM."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.embedded import KAFKA_VERSION, EmbeddedKafka, EmbeddedStack, kafka_libs_dir, kafka_missing
from hub.embedded import kafka as embedded
from hub.errors import FatalError
from tests import setup_machine

POM = Path(__file__).resolve().parents[4] / "deploy" / "kafka" / "pom.xml"


def test_the_pom_and_the_hub_name_the_same_kafka_version():
    assert setup_machine.kafka_version(POM) == KAFKA_VERSION
    assert f"<version>{KAFKA_VERSION}</version>" in POM.read_text()


def test_hub_and_setup_agree_on_the_cache_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("HUB_KAFKA_LIBS", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert kafka_libs_dir() == tmp_path / "registry-hub" / f"kafka-{KAFKA_VERSION}"
    assert setup_machine.kafka_libs_dir(KAFKA_VERSION) == kafka_libs_dir()
    monkeypatch.setenv("HUB_KAFKA_LIBS", "libs")
    monkeypatch.chdir(tmp_path)
    assert kafka_libs_dir() == setup_machine.kafka_libs_dir(KAFKA_VERSION) == tmp_path / "libs"
    assert setup_machine.KAFKA_STAMP == embedded.KAFKA_STAMP


def test_server_properties_are_a_loopback_single_node_kraft_broker(tmp_path):
    props = EmbeddedKafka(tmp_path / "k", port=9101, controller_port=9102).properties()
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:9102"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:9101,CONTROLLER://127.0.0.1:9102"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:9101"
    assert props["log.dirs"] == str(tmp_path / "k" / "logs")
    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
        "share.coordinator.state.topic.replication.factor",
        "default.replication.factor",
    ):
        assert props[key] == "1", key
    assert props["group.initial.rebalance.delay.ms"] == "0"
    # Every hub message (the producer's max_request_size) fits the broker's limit.
    assert int(props["message.max.bytes"]) >= 8 * 1024 * 1024


def test_settings_override_the_defaults(tmp_path):
    kafka = EmbeddedKafka(tmp_path, settings={"num.partitions": "7"})
    assert kafka.properties()["num.partitions"] == "7"


def test_the_data_dir_is_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert EmbeddedKafka(Path("k")).data_dir == tmp_path / "k"
    assert EmbeddedStack("d", broker="kafka").broker.data_dir == tmp_path / "d" / "kafka"


@settings(max_examples=200)
@given(st.integers(min_value=0))
def test_cluster_ids_are_16_byte_uuids_that_never_read_as_an_option(_):
    cid = embedded._cluster_id()
    assert len(cid) == 22 and not cid.startswith("-")
    assert len(base64.urlsafe_b64decode(cid + "==")) == 16


def test_missing_jars_or_java_are_named(monkeypatch, tmp_path):
    monkeypatch.setenv("HUB_KAFKA_LIBS", str(tmp_path))
    monkeypatch.setattr(embedded.shutil, "which", lambda cmd: "/usr/bin/" + cmd)
    assert f"no Kafka jars in {tmp_path}" in kafka_missing()
    (tmp_path / "kafka_2.13-4.2.0.jar").write_bytes(b"")
    assert "no Kafka jars" in kafka_missing()  # no stamp: Maven did not finish
    (tmp_path / embedded.KAFKA_STAMP).write_text("x\n")
    assert kafka_missing() is None
    assert embedded.default_broker() == "kafka"
    monkeypatch.setattr(embedded.shutil, "which", lambda cmd: None)
    assert "no java on PATH" in kafka_missing()
    assert embedded.default_broker() == "tansu"
    with pytest.raises(FatalError, match="Apache Kafka cannot start: no java"):
        EmbeddedKafka(tmp_path / "k").start()


def test_setup_skips_maven_when_the_stamp_matches_the_pom(monkeypatch, tmp_path):
    pom = tmp_path / "pom.xml"
    pom.write_text("<project><kafka.version>9.9.9</kafka.version></project>")
    monkeypatch.setenv("HUB_KAFKA_LIBS", str(tmp_path / "libs"))
    (tmp_path / "libs").mkdir()
    (tmp_path / "libs" / ".resolved").write_text(hashlib.sha256(pom.read_bytes()).hexdigest())
    monkeypatch.setattr(setup_machine.subprocess, "run", _no_subprocess)
    assert setup_machine.setup_kafka(pom) is True


def test_setup_without_java_or_maven_says_the_suite_falls_back_to_tansu(
    monkeypatch, tmp_path, capsys
):
    pom = tmp_path / "pom.xml"
    pom.write_text("<project><kafka.version>9.9.9</kafka.version></project>")
    monkeypatch.setenv("HUB_KAFKA_LIBS", str(tmp_path / "libs"))
    monkeypatch.setattr(setup_machine.shutil, "which", lambda cmd: None)
    monkeypatch.setattr(setup_machine.os, "geteuid", lambda: 1000)  # not root: never apt-get
    monkeypatch.setattr(setup_machine.subprocess, "run", _no_subprocess)
    assert setup_machine.setup_kafka(pom) is False
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "no java and no mvn" in err[0] and "falls back to the tansu broker" in err[0]
    assert "default-jre-headless maven" in err[0]


def _no_subprocess(*args, **kwargs):
    raise AssertionError(f"unexpected subprocess {args}")


def test_quick_jit_keeps_the_jvm_to_its_quick_compiler_and_the_bench_keeps_the_full_one(
    monkeypatch, tmp_path
):
    monkeypatch.setattr(embedded.shutil, "which", lambda name: "/usr/bin/java")
    flag = "-XX:TieredStopAtLevel=1"
    assert flag not in EmbeddedKafka(tmp_path / "k")._java("kafka.Kafka")
    quick = EmbeddedKafka(tmp_path / "k", quick_jit=True)._java("kafka.Kafka", "x")
    assert (
        flag in quick
        and quick.index(flag) < quick.index("-cp")
        and quick[-2:] == ["kafka.Kafka", "x"]
    )
    assert EmbeddedStack(tmp_path / "s", broker="kafka", quick_jit=True).broker.quick_jit
    assert not EmbeddedStack(tmp_path / "s", broker="kafka").broker.quick_jit

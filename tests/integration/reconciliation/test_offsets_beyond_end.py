"""The broker lost a topic (deleted and created again, as after a wiped log directory): the
offsets stored in the hub database are past the new log ends. The reconciler does not guess:
it holds those partitions, says so in one ERROR line per partition, exports
``hub_reconciler_offsets_beyond_end``; ``hub reconcile --reset-offsets earliest --yes``
rewrites the offsets and the running reconciler then applies the new topic's changes."""

from __future__ import annotations

import logging
import time

import pytest
import yaml
from click.testing import CliRunner
from kafka.errors import KafkaError

from hub.idschemes.vn import make_id
from hub.kafka import ensure_topics, make_admin
from hub.metrics import OFFSETS_BEYOND_END
from reconciliation.cli import main as hub_main
from tests.integration.reconciliation.conftest import start
from tests.integration.reconciliation.feed import Feed, config_data, hub_config, person


def _recreate(config, topic: str) -> None:
    """Delete ``topic`` and create it again, empty (KRaft deletes asynchronously)."""
    admin = make_admin(config.kafka)
    try:
        admin.delete_topics([topic])
    finally:
        admin.close()
    deadline = time.monotonic() + 20
    while True:
        try:
            admin = make_admin(config.kafka)
            try:
                if topic not in admin.list_topics():
                    break
            finally:
                admin.close()
        except KafkaError:
            pass
        assert time.monotonic() < deadline, f"{topic} was not deleted"
        time.sleep(0.1)
    ensure_topics(config.kafka, [topic])


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return result


def test_offsets_past_a_recreated_topics_end_are_held_reported_and_reset(
    hub_db, kafka_config, tmp_path, caplog
):
    data = config_data(hub_db, kafka_config, sectors={"tax": {}}, partitions=2)
    config = hub_config(hub_db, kafka_config, sectors={"tax": {}}, partitions=2)
    topic = f"{kafka_config.topic_prefix}.sector.tax.changes"
    feed = Feed(config)
    for i in range(40):
        feed.put("tax", f"old-{i}", **person(make_id("079", 1980, "M", 100 + i)))
    env = start(config, feed, assign_all=True)
    env.settle()
    env.reconciler.stop()
    env.thread.join(30)

    _recreate(config, topic)
    new_keys = [f"new-{i}" for i in range(4)]
    for i, key in enumerate(new_keys):
        feed.put("tax", key, **person(make_id("079", 1981, "F", 500 + i)))

    def applied() -> set[str]:
        rows = env.query("SELECT record_key FROM mismatches WHERE record_key LIKE 'new-%%'")
        return {k for (k,) in rows}

    with caplog.at_level(logging.INFO, "reconciliation.logends"):
        env = start(config, feed, assign_all=True)
        try:
            _wait(lambda: env.reconciler.log_ends.held, 20, "partitions held")
            held = set(env.reconciler.log_ends.held)
            assert {tp.topic for tp in held} == {topic}
            assert OFFSETS_BEYOND_END._value.get() == len(held) > 0
            errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
            assert len(errors) == len(held), errors
            assert all("past the partition's log end" in e and "--reset-offsets" in e
                       for e in errors)  # fmt: skip
            assert len(held) == 2  # 40 old changes: both partitions' offsets exceed ≤ 4 new
            # Several 2 s checks later, nothing is applied and the partitions are still held.
            time.sleep(3.0)
            assert applied() == set() and env.reconciler.log_ends.held == held

            (tmp_path / "hub.yaml").write_text(yaml.safe_dump(data, allow_unicode=True))
            result = CliRunner().invoke(
                hub_main,
                ["--config", str(tmp_path / "hub.yaml"), "reconcile", "--reset-offsets",
                 "earliest", "--topic", topic, "--yes"],
            )  # fmt: skip
            assert result.exit_code == 0, result.output
            assert "earliest: every change still on the topics is applied again" in result.output
            assert f"rewrote 2 stored offsets of group {config.reconciler.group_id}" in (
                result.output
            )
            _wait(lambda: applied() == set(new_keys), 20, "the new topic's changes applied")
            assert not env.reconciler.log_ends.held
            assert OFFSETS_BEYOND_END._value.get() == 0
        finally:
            env.reconciler.stop()
            env.thread.join(30)
            feed.close()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--topic", "nope"], "--topic only goes with --reset-offsets"),
        (["--reset-offsets", "earliest", "--topic", "nope", "--yes"], "not a change topic"),
    ],
)
def test_reset_offsets_usage_errors_exit_2(hub_db, kafka_config, tmp_path, args, message):
    data = config_data(hub_db, kafka_config, sectors={"tax": {}}, partitions=2)
    (tmp_path / "hub.yaml").write_text(yaml.safe_dump(data, allow_unicode=True))
    result = CliRunner().invoke(
        hub_main, ["--config", str(tmp_path / "hub.yaml"), "reconcile", *args]
    )
    assert result.exit_code == 2, result.output
    assert message in result.output

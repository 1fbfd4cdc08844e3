"""kafka-python's outage chatter becomes one line per state change: the library's records at
DEBUG (kept as the latest problem), "Kafka unreachable …" once, "reachable again" once."""

from __future__ import annotations

import io
import logging

import pytest
from kafka.errors import KafkaConnectionError, KafkaTimeoutError

from hub.kafka import KafkaReachability
from hub.logs import KAFKA_NOISE, LibraryNoise, setup_logging
from hub.metrics import KAFKA_UP


@pytest.fixture
def lines(monkeypatch):
    """What the process's handler (as setup_logging makes it) writes, line by line."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level, logging.getLogger("kafka").level
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    setup_logging("INFO")
    yield lambda: stream.getvalue().splitlines()
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    logging.getLogger("kafka").setLevel(saved[2])


def _outage_chatter(n: int) -> None:
    manager = logging.getLogger("kafka.net.manager")
    cluster = logging.getLogger("kafka.cluster")
    for _ in range(n):
        manager.error("Connection failed: %s", KafkaConnectionError("111 ECONNREFUSED"))
        cluster.warning("No node available for metadata refresh - backoff/retry")


def test_a_three_minute_outage_is_two_lines_not_six_hundred(lines):
    reach = KafkaReachability()
    _outage_chatter(300)
    reach.failed("connector", "tax", KafkaTimeoutError("Expiring 3 record(s)"))
    _outage_chatter(300)
    reach.failed("connector", "tax", KafkaTimeoutError("Expiring 3 record(s)"))
    reach.ok("connector", "tax")
    reach.ok("connector", "tax")
    out = lines()
    assert len(out) == 2, out
    assert "WARNING" in out[0] and "Kafka unreachable from connector tax" in out[0]
    assert "KafkaTimeoutError: Expiring 3 record(s)" in out[0]
    assert "last client error: KafkaConnectionError: 111 ECONNREFUSED" in out[0]
    assert "INFO" in out[1] and "Kafka reachable again from connector tax after" in out[1]


def test_the_gauge_is_zero_while_any_client_of_the_role_is_down(lines):
    reach = KafkaReachability()
    gauge = KAFKA_UP.labels("connector")
    reach.ok("connector", "tax")
    assert gauge._value.get() == 1
    reach.failed("connector", "tax", "no answer")
    reach.failed("connector", "labour", "no answer")
    reach.ok("connector", "tax")
    assert gauge._value.get() == 0 and not reach.is_up("connector")
    reach.ok("connector", "labour")
    assert gauge._value.get() == 1 and reach.is_up("connector")


def test_library_records_show_at_debug_when_the_process_logs_at_debug(monkeypatch):
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    try:
        setup_logging("DEBUG")
        logging.getLogger("kafka.net.connection").error(
            "Connection lost: %s", "socket disconnected"
        )
        logging.getLogger("hub.other").warning("not a library record")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        setup_logging_level_reset()
    out = stream.getvalue().splitlines()
    assert "DEBUG   kafka.net.connection: Connection lost: socket disconnected" in out[0]
    assert "WARNING hub.other: not a library record" in out[1]


def setup_logging_level_reset() -> None:
    KAFKA_NOISE.debug = False
    logging.getLogger("kafka").setLevel(logging.WARNING)


def test_last_problem_names_the_error_kind_and_masks_ids():
    noise = LibraryNoise("kafka")
    record = logging.LogRecord(
        "kafka.client", logging.WARNING, "f", 1, "bad key %s", ("001234567890",), None
    )
    assert noise.filter(record) is False and record.levelname == "DEBUG"
    assert noise.last_problem() == "bad key 0012******90"
    other = logging.LogRecord("kafkaesque", logging.WARNING, "f", 1, "x", (), None)
    assert noise.filter(other) is True and other.levelname == "WARNING"
    assert noise.last_problem(within_s=-1) is None

"""kafka-python's read-after-close race prints no traceback; its other errors still do."""

from __future__ import annotations

import logging

import pytest

import hub.kafka  # noqa: F401 - installs the filter


class _Transport:
    _sock = None

    def read(self) -> None:
        self._sock.recv(4096)


@pytest.fixture
def records():
    got: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            got.append(record)

    handler = Keep()
    logger = logging.getLogger("kafka.net.transport")
    logger.addHandler(handler)
    yield got
    logger.removeHandler(handler)


def test_a_read_on_a_closed_transport_logs_no_traceback(records):
    log = logging.getLogger("kafka.net.transport")
    try:
        _Transport().read()
    except AttributeError:
        log.exception("<BrokerConnection>: Error receiving network data closing socket")
    assert records == []


def test_other_transport_errors_are_still_logged(records):
    log = logging.getLogger("kafka.net.transport")
    try:
        raise ConnectionResetError(104, "Connection reset by peer")
    except ConnectionResetError:
        log.exception("<BrokerConnection>: Error receiving network data closing socket")
    log.error("<BrokerConnection>: socket disconnected")
    assert [r.getMessage() for r in records] == [
        "<BrokerConnection>: Error receiving network data closing socket",
        "<BrokerConnection>: socket disconnected",
    ]

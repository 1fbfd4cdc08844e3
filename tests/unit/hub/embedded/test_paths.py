"""Embedded servers take their paths as absolute paths, wherever they were started from."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.embedded import EmbeddedBroker, EmbeddedPostgres, EmbeddedStack


@pytest.fixture
def tmp_path() -> Iterator[Path]:
    """A short temporary folder: pytest's own (longer under pytest-xdist, which adds
    ``popen-gwN/``) can push a socket path in it past the ~100-byte limit the first test
    relies on staying under."""
    path = Path(tempfile.mkdtemp(prefix="hub-paths-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_embedded_postgres_takes_its_data_dir_as_an_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    pg = EmbeddedPostgres(Path("hub-data/postgres"), port=5432)
    assert pg.data_dir == tmp_path / "hub-data" / "postgres"
    assert pg._socket_dir() == str(tmp_path / "hub-data" / "postgres")


def test_embedded_postgres_gets_no_unix_socket_when_its_path_is_too_long(tmp_path):
    pg = EmbeddedPostgres(tmp_path / ("d" * 120), port=5432)
    assert pg._socket_dir() == ""


def test_the_stack_and_the_broker_log_are_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    stack = EmbeddedStack("data")
    assert stack.data_dir == tmp_path / "data"
    assert stack.postgres.data_dir == tmp_path / "data" / "postgres"
    assert EmbeddedBroker(log_path=Path("b.log")).log_path == tmp_path / "b.log"

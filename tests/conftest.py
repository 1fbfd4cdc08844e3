"""Test session fixtures live in hub.testing (servers started once per session).

A test that needs a machine-level tool says so with ``@pytest.mark.requires("promtool")``;
it is skipped, naming what to install, where the tool is missing (``tests/setup_machine.py``
installs them as root and is run by ``make test``).
"""

import logging
import shutil
import socket

import pytest

from tests.setup_machine import TOOLS

pytest_plugins = ["hub.testing"]

_PACKAGES = {t.command: t.package for t in TOOLS}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "requires(command): needs a machine-level tool (see tests/setup_machine.py)"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The heaviest files first (``pytest.mark.heavy(seconds)`` on the module), the rest in
    collection order. `make test` hands whole files to two xdist workers (``--dist loadfile``)
    in this order, so a file of minutes no longer starts when the other worker has little
    left to do (longest-first keeps the two workers' shares within a few files' time)."""
    first: dict[str, int] = {}
    weight: dict[str, float] = {}
    for n, item in enumerate(items):
        path = str(item.path)
        first.setdefault(path, n)
        if path not in weight:
            marker = item.get_closest_marker("heavy")
            weight[path] = float(marker.args[0]) if marker else 0.0
    items.sort(key=lambda item: (-weight[str(item.path)], first[str(item.path)]))


def pytest_runtest_setup(item: pytest.Item) -> None:
    for marker in item.iter_markers("requires"):
        for command in marker.args:
            if command not in _PACKAGES:
                raise pytest.UsageError(f"requires({command!r}): not in tests/setup_machine.TOOLS")
            if shutil.which(command) is None:
                pytest.skip(f"needs {command}: apt-get install {_PACKAGES[command]}")


_LOGGERS_SET_UP = ("kafka", "alembic.runtime.migration", "kafka.net.selector")
"""Loggers whose level hub.logs.setup_logging sets (beside the root's)."""


@pytest.fixture(autouse=True)
def _logging_as_it_was():
    """A test that runs a command in-process (click's CliRunner) lets it configure logging for
    a process: root level, a stderr handler bound to that test's captured stream, quieter
    kafka loggers. Undone after the test, so the next test's logs do not depend on the order
    the tests ran in (under pytest-xdist the order differs from one run to the next)."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    levels = {name: logging.getLogger(name).level for name in _LOGGERS_SET_UP}
    yield
    root.setLevel(level)
    for handler in list(root.handlers):
        if handler not in handlers and type(handler) is logging.StreamHandler:
            root.removeHandler(handler)
    for name, was in levels.items():
        logging.getLogger(name).setLevel(was)


@pytest.fixture
def taken_port():
    """A port some other process listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]

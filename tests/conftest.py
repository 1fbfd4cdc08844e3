"""Test session fixtures live in hub.testing (servers started once per session).

A test that needs a machine-level tool says so with ``@pytest.mark.requires("promtool")``;
it is skipped, naming what to install, where the tool is missing (``tests/setup_machine.py``
installs them as root and is run by ``make test``).
"""

import shutil

import pytest

from tests.setup_machine import TOOLS

pytest_plugins = ["hub.testing"]

_PACKAGES = {t.command: t.package for t in TOOLS}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "requires(command): needs a machine-level tool (see tests/setup_machine.py)"
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    for marker in item.iter_markers("requires"):
        for command in marker.args:
            if command not in _PACKAGES:
                raise pytest.UsageError(f"requires({command!r}): not in tests/setup_machine.TOOLS")
            if shutil.which(command) is None:
                pytest.skip(f"needs {command}: apt-get install {_PACKAGES[command]}")

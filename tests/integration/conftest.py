from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from hub.testing import server_dir

if TYPE_CHECKING:
    from tests.integration.mariadb import MariaDB


def pytest_collection_modifyitems(items):
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def mariadb() -> Iterator[MariaDB]:
    """A MariaDB server for the session (tests/integration/mariadb.py): binlog ROW, server_id 1,
    UTC, utf8mb4; ``.url`` the ``hub`` user on database ``hub``, ``.admin_url`` the admin.
    Skipped, naming the package, where mariadb-server is not installed."""
    from tests.integration.mariadb import MariaDB, mariadb_missing  # PyMySQL: the test extra

    if why := mariadb_missing():
        pytest.skip(why)
    base = server_dir()
    server = MariaDB(base).start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)

"""A throwaway MariaDB server for the tests: Debian's ``mariadb-server`` (``tests/setup_machine.py``
installs it), started on loopback in a temp directory, stopped with the session.

Binary logging is on in ROW format with ``server_id=1`` (what a binlog reader such as Debezium
needs), the server time zone is UTC, the default character set utf8mb4. Access is by a user with
a password (no ``--skip-grant-tables``): ``admin_url`` is a user with every privilege and
``GRANT OPTION``, ``url`` the application user ``hub`` with every privilege on the ``hub``
database, both as SQLAlchemy ``mysql+pymysql://`` URLs with ``charset=utf8mb4``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

import pymysql

from hub.embedded.process import ChildServer, free_port, own_session_killed_with_parent
from hub.errors import FatalError

SERVER = "mariadbd"
INSTALL_DB = ("mariadb-install-db", "mysql_install_db")
DATABASE = "hub"
APP_USER = "hub"
ADMIN_USER = "hubadmin"


def mariadb_missing() -> str | None:
    """Why no MariaDB server can start here, or None."""
    if shutil.which(SERVER) is None and not Path("/usr/sbin", SERVER).exists():
        return f"needs {SERVER}: apt-get install mariadb-server (tests/setup_machine.py)"
    if not any(shutil.which(cmd) for cmd in INSTALL_DB):
        return "needs mariadb-install-db: apt-get install mariadb-server"
    return None


def _binary(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


def mysql_url(user: str, password: str, host: str, port: int, database: str = "") -> str:
    """A SQLAlchemy URL for PyMySQL with utf8mb4, the user and password quoted."""
    return (
        f"mysql+pymysql://{quote(user, safe='')}:{quote(password, safe='')}@{host}:{port}"
        f"/{database}?charset=utf8mb4"
    )


class MariaDB(ChildServer):
    """One ``mariadbd`` on 127.0.0.1:``port`` with its data in ``base``."""

    stop_timeout = 20

    def __init__(self, base: Path) -> None:
        self.base = Path(base)
        self.data_dir = self.base / "data"
        self.socket = self.base / "mariadb.sock"
        self.port = 0
        self.proc = None
        self.admin_password = secrets.token_urlsafe(12)
        self.password = secrets.token_urlsafe(12)

    @property
    def admin_url(self) -> str:
        """SQLAlchemy URL of the admin user (all privileges, GRANT OPTION), no default database."""
        return mysql_url(ADMIN_USER, self.admin_password, "127.0.0.1", self.port)

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the application user on the ``hub`` database."""
        return mysql_url(APP_USER, self.password, "127.0.0.1", self.port, DATABASE)

    def _user_args(self) -> list[str]:
        return ["--user=root"] if os.geteuid() == 0 else []

    def start(self, timeout: float = 60.0) -> MariaDB:
        """Install the system tables, start the server, wait until it answers, create users."""
        if why := mariadb_missing():
            raise FatalError(why)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        install = next(shutil.which(cmd) for cmd in INSTALL_DB if shutil.which(cmd))
        res = subprocess.run(
            [install, "--no-defaults", f"--datadir={self.data_dir}", "--skip-test-db",
             "--auth-root-authentication-method=normal", *self._user_args()],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if res.returncode != 0:
            raise FatalError(f"mariadb-install-db failed: {(res.stdout + res.stderr)[-2000:]}")
        self.port = free_port()
        args = [
            _binary(SERVER), "--no-defaults", f"--datadir={self.data_dir}",
            f"--socket={self.socket}", f"--port={self.port}", "--bind-address=127.0.0.1",
            f"--pid-file={self.base / 'mariadb.pid'}", "--log-bin=binlog", "--binlog-format=ROW",
            "--binlog-row-image=FULL", "--server-id=1", "--default-time-zone=+00:00",
            "--character-set-server=utf8mb4", "--collation-server=utf8mb4_unicode_ci",
            "--skip-name-resolve", "--innodb-buffer-pool-size=64M", "--innodb-log-file-size=16M",
            "--innodb-flush-log-at-trx-commit=2", "--sync-binlog=0", "--max-connections=200",
            f"--log-error={self.base / 'error.log'}", *self._user_args(),
        ]  # fmt: skip
        self._launch(
            args, log_path=self.base / "stdout.log", preexec_fn=own_session_killed_with_parent,
            ready=self._answers_on_socket, timeout=timeout, interval=0.1,
            exited=lambda code: f"mariadbd exited ({code}) at start:\n{self._log_tail()}",
            not_ready=f"mariadbd not ready after {timeout:.0f}s:\n{self._log_tail()}",
        )  # fmt: skip
        self._create_users()
        self._wait_tcp(timeout)
        return self

    def _root(self) -> pymysql.Connection:
        """root over the Unix socket only (no password; ``root@localhost`` matches no TCP client)."""
        return pymysql.connect(
            unix_socket=str(self.socket), user="root", charset="utf8mb4", autocommit=True
        )

    def _answers_on_socket(self) -> bool:
        try:
            self._root().close()
            return True
        except pymysql.err.OperationalError:
            return False

    def _create_users(self) -> None:
        conn = self._root()
        try:
            with conn.cursor() as cur:
                cur.execute(f"CREATE DATABASE IF NOT EXISTS `{DATABASE}` CHARACTER SET utf8mb4")
                cur.execute(
                    f"CREATE USER '{ADMIN_USER}'@'127.0.0.1' IDENTIFIED BY %s",
                    (self.admin_password,),
                )
                cur.execute(
                    f"GRANT ALL PRIVILEGES ON *.* TO '{ADMIN_USER}'@'127.0.0.1' WITH GRANT OPTION"
                )
                cur.execute(
                    f"CREATE USER '{APP_USER}'@'127.0.0.1' IDENTIFIED BY %s", (self.password,)
                )
                cur.execute(f"GRANT ALL PRIVILEGES ON `{DATABASE}`.* TO '{APP_USER}'@'127.0.0.1'")
        finally:
            conn.close()

    def _wait_tcp(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.connect().close()
                return
            except pymysql.err.OperationalError as exc:
                if time.monotonic() > deadline:
                    self.stop()
                    raise FatalError(f"mariadbd does not accept the hub user: {exc}") from exc
                time.sleep(0.1)

    def connect(self, database: str = DATABASE, admin: bool = False) -> pymysql.Connection:
        """A PyMySQL connection over TCP (autocommit), as the admin or the application user."""
        user, password = (ADMIN_USER, self.admin_password) if admin else (APP_USER, self.password)
        return pymysql.connect(
            host="127.0.0.1", port=self.port, user=user, password=password,
            database=database or None, charset="utf8mb4", autocommit=True,
        )  # fmt: skip

    def create_user(self, name: str, password: str, grants: list[str]) -> str:
        """A further user on 127.0.0.1 with exactly ``grants`` (``GRANT … TO`` clauses' left
        halves, e.g. ``"SELECT ON hub.people"``); returns its URL on the ``hub`` database."""
        conn = self.connect(admin=True)
        try:
            with conn.cursor() as cur:
                cur.execute(f"CREATE USER '{name}'@'127.0.0.1' IDENTIFIED BY %s", (password,))
                for grant in grants:
                    cur.execute(f"GRANT {grant} TO '{name}'@'127.0.0.1'")
        finally:
            conn.close()
        return mysql_url(name, password, "127.0.0.1", self.port, DATABASE)

    def _log_tail(self) -> str:
        path = self.base / "error.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""


class Table:
    """A table of its own in the server's ``hub`` database: ``{table}`` in a statement is
    its name. Statements run as the application user, autocommit."""

    def __init__(self, server: MariaDB, ddl: str, prefix: str = "t"):
        self.server = server
        self.name = f"{prefix}_{secrets.token_hex(4)}"
        self.execute(ddl)

    @property
    def url(self) -> str:
        return self.server.url

    def connect(self, autocommit: bool = True) -> pymysql.Connection:
        conn = self.server.connect()
        conn.autocommit(autocommit)
        return conn

    def execute(self, query: str, params=None, many: bool = False) -> list[tuple]:
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                run = cur.executemany if many else cur.execute
                run(query.format(table=self.name), params)
                return list(cur.fetchall() or [])
        finally:
            conn.close()

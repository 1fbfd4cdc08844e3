"""A Kafka Connect standalone worker with Debezium's connectors on loopback: the capture peer
the tests and ``hub bench`` run beside the hub. It needs ``java`` (17+) and the jars
``tests/setup_machine.py`` resolves with Maven from ``deploy/debezium/pom.xml`` into
:func:`debezium_libs_dir`; the tested connector configs are ``deploy/debezium/*.properties``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hub.embedded.kafka import _KAFKA_LOG4J, KAFKA_VERSION
from hub.embedded.process import ChildServer, free_port, own_session_killed_with_parent
from hub.errors import FatalError

DEBEZIUM_VERSION = "3.6.1.Final"
"""The Debezium release of ``deploy/debezium/pom.xml`` (a unit test keeps the two equal)."""

DEBEZIUM_STAMP = ".resolved"
"""File in :func:`debezium_libs_dir` written once Maven has copied every jar (the pom's hash)."""

DEPLOY_DIR = Path(__file__).resolve().parent.parent.parent / "deploy" / "debezium"
"""The tested connector configs (``postgres.properties``) and the pom."""


def debezium_libs_dir() -> Path:
    """``$HUB_DEBEZIUM_LIBS``, else ``~/.cache/registry-hub/debezium-<version>-kafka-<version>``."""
    env = os.environ.get("HUB_DEBEZIUM_LIBS")
    if env:
        return Path(env).absolute()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "registry-hub" / f"debezium-{DEBEZIUM_VERSION}-kafka-{KAFKA_VERSION}"


def debezium_missing() -> str | None:
    """None when a Connect worker with Debezium can run here, else what is missing (one line)."""
    if shutil.which("java") is None:
        return "no java on PATH (Java 17+ runs Kafka Connect)"
    libs = debezium_libs_dir()
    if not (libs / DEBEZIUM_STAMP).exists() or not list(libs.glob("connect-runtime-*.jar")):
        return (
            f"no Kafka Connect / Debezium jars in {libs} "
            "(python3 tests/setup_machine.py resolves them with Maven)"
        )
    return None


def read_properties(path: Path) -> dict[str, str]:
    """A Java ``.properties`` file of ``key=value`` lines (``#`` comments, no continuations)."""
    out: dict[str, str] = {}
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "!")):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def postgres_connector(
    name: str, *, port: int, database: str, table: str, topic_prefix: str,
    schemas: bool = True, snapshot: str = "initial", **overrides: str,
) -> dict[str, str]:  # fmt: skip
    """``deploy/debezium/postgres.properties`` for one table of an embedded PostgreSQL: the
    connector ``name`` with a slot and a publication of its own, JSON converter with or
    without ``schemas.enable``."""
    config = read_properties(DEPLOY_DIR / "postgres.properties")
    slot = "dbz_" + "".join(c if c.isalnum() else "_" for c in name.lower())
    config |= {
        "name": name,
        "database.hostname": "127.0.0.1",
        "database.port": str(port),
        "database.user": "postgres",
        "database.dbname": database,
        "topic.prefix": topic_prefix,
        "table.include.list": table,
        "replica.identity.autoset.values": f"{table}:FULL",
        "slot.name": slot,
        "publication.name": slot,
        "snapshot.mode": snapshot,
        "key.converter.schemas.enable": str(schemas).lower(),
        "value.converter.schemas.enable": str(schemas).lower(),
    }
    return config | overrides


@dataclass
class ConnectWorker(ChildServer):
    """A Kafka Connect standalone worker in ``data_dir``: offsets in a file there, the REST API
    on a loopback ``port``, Debezium's connectors on the class path.

    ``start()`` writes ``worker.properties``, starts ``ConnectStandalone`` and returns once
    ``GET /connectors`` answers; connectors are added with :meth:`create` (REST) and
    followed with :meth:`status`/:meth:`wait_running`. Topics are created by the worker
    (``topic.creation``: one partition each, replication factor 1).
    """

    data_dir: Path
    bootstrap: str
    port: int = 0
    heap: str = "512m"
    settings: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = field(default=None, init=False, repr=False)

    stop_timeout = 20

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).absolute()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "connect.log"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def properties(self) -> dict[str, str]:
        return {
            "bootstrap.servers": self.bootstrap,
            "listeners": f"http://127.0.0.1:{self.port}",
            "rest.advertised.host.name": "127.0.0.1",
            "key.converter": "org.apache.kafka.connect.json.JsonConverter",
            "value.converter": "org.apache.kafka.connect.json.JsonConverter",
            "offset.storage.file.filename": str(self.data_dir / "connect.offsets"),
            "offset.flush.interval.ms": "1000",
            # Debezium is on the class path: nothing to scan on a plugin path.
            "plugin.discovery": "only_scan",
            "topic.creation.enable": "true",
        } | self.settings

    def _java(self) -> list[str]:
        java = shutil.which("java")
        if java is None:
            raise FatalError("no java on PATH: Kafka Connect needs Java 17+")
        return [
            java, f"-Xms{self.heap}", f"-Xmx{self.heap}", "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
            "-cp", str(debezium_libs_dir() / "*"),
            "org.apache.kafka.connect.cli.ConnectStandalone", str(self.data_dir / "worker.properties"),
        ]  # fmt: skip

    def request(self, method: str, path: str, body: Any = None, timeout: float = 10) -> Any:
        """One REST call; the decoded JSON answer (None when empty). An HTTP error raises
        :class:`FatalError` with Connect's own message, an unreachable worker one saying so."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            detail = e.read().decode(errors="replace")[:1000]
            raise FatalError(f"Kafka Connect {method} {path}: HTTP {e.code} {detail}") from None
        except OSError as e:  # refused, reset, timed out: the worker is not (or no longer) up
            raise FatalError(f"Kafka Connect {method} {path}: {e}") from None
        return json.loads(raw) if raw else None

    def _answers(self) -> bool:
        try:
            return isinstance(self.request("GET", "/connectors", timeout=2), list)
        except (OSError, FatalError):
            return False

    def start(self, timeout: float = 120.0) -> ConnectWorker:
        missing = debezium_missing()
        if missing:
            raise FatalError(f"Kafka Connect cannot start: {missing}")
        self.port = self.port or free_port()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        props = self.properties()
        (self.data_dir / "worker.properties").write_text(
            "".join(f"{k}={v}\n" for k, v in props.items())
        )
        (self.data_dir / "log4j2.properties").write_text(_KAFKA_LOG4J.format(level="INFO"))
        self._launch(
            self._java(), log_path=self.log_path, preexec_fn=own_session_killed_with_parent,
            ready=self._answers, timeout=timeout, interval=0.2,
            exited=lambda code: f"Kafka Connect exited at start (code {code}):\n" + self.log_tail(),
            not_ready=f"Kafka Connect REST API not answering after {timeout:.0f}s",
        )  # fmt: skip
        return self

    def log_tail(self, chars: int = 2000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    # -- connectors ------------------------------------------------------------------------

    def validate(self, config: dict[str, str]) -> list[str]:
        """What the connector class says is wrong with ``config`` ("key: message" lines; it
        connects to the database to check it), empty when nothing is."""
        plugin = config["connector.class"]
        answer = self.request(
            "PUT", f"/connector-plugins/{plugin}/config/validate", config, timeout=60
        )
        return [
            f"{value['name']}: {error}"
            for item in answer.get("configs", [])
            if (value := item.get("value") or {})
            for error in value.get("errors") or []
        ]

    def create(self, config: dict[str, str]) -> None:
        """Validate, then add the connector ``config["name"]`` (POST /connectors). A config
        its class refuses raises :class:`FatalError` with the class's own reasons (Connect's
        POST answers some of them with an HTTP 500 that names none)."""
        if errors := self.validate(config):
            raise FatalError(f"Debezium connector {config['name']}: " + "; ".join(errors))
        cfg = {k: v for k, v in config.items() if k != "name"}
        self.request("POST", "/connectors", {"name": config["name"], "config": cfg})

    def status(self, name: str) -> dict[str, Any]:
        return self.request("GET", f"/connectors/{name}/status")

    def wait_running(self, name: str, timeout: float = 60.0) -> None:
        """Until the connector and its task run; a FAILED task raises with its trace."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                st = self.status(name)
            except FatalError:
                st = {}
            tasks = st.get("tasks") or []
            failed = [t for t in tasks if t.get("state") == "FAILED"]
            if failed:
                trace = (failed[0].get("trace") or "")[:1500]
                raise FatalError(f"Debezium connector {name} failed: {trace}")
            if tasks and all(t.get("state") == "RUNNING" for t in tasks):
                return
            if time.monotonic() > deadline:
                raise FatalError(f"Debezium connector {name} not running after {timeout:.0f}s")
            time.sleep(0.2)

    def stop_connector(self, name: str) -> None:
        """PUT /connectors/<name>/stop: its tasks shut down, its offsets and slot stay."""
        self.request("PUT", f"/connectors/{name}/stop")

    def resume(self, name: str) -> None:
        self.request("PUT", f"/connectors/{name}/resume")

    def delete(self, name: str) -> None:
        self.request("DELETE", f"/connectors/{name}")

"""PostgreSQL and a broker (tansu or Apache Kafka) started and stopped together under one
data directory: what ``hub demo`` and the test session run on."""

from __future__ import annotations

import os
from pathlib import Path

from hub.embedded.kafka import EmbeddedKafka
from hub.embedded.postgres import EmbeddedPostgres
from hub.embedded.tansu import EmbeddedBroker
from hub.errors import FatalError

BROKERS = ("tansu", "kafka")


class EmbeddedStack:
    """PostgreSQL + broker under ``data_dir``; a context manager that always stops both.

    ``broker`` is ``tansu`` (the default: no Java needed) or ``kafka`` (Apache Kafka, with
    only the JVM's quick compiler when ``quick_jit``: :attr:`EmbeddedKafka.quick_jit`).
    """

    def __init__(
        self, data_dir: str | os.PathLike[str], *, durable: bool = True, broker: str = "tansu",
        quick_jit: bool = False,
    ):  # fmt: skip
        if broker not in BROKERS:
            raise FatalError(f"broker {broker!r}: choose one of {', '.join(BROKERS)}")
        self.data_dir = Path(data_dir).absolute()
        self.postgres = EmbeddedPostgres(self.data_dir / "postgres", durable=durable)
        self.broker: EmbeddedBroker | EmbeddedKafka
        if broker == "kafka":
            self.broker = EmbeddedKafka(self.data_dir / "kafka", quick_jit=quick_jit)
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

"""``hub check``: can every server the config names be reached?"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import psycopg

from hub.config import HubConfig, redact_url
from hub.db import psycopg_conninfo
from hub.kafka import check_kafka
from hub.logs import error_summary


@dataclass(frozen=True)
class CheckResult:
    target: str
    address: str
    problem: str | None

    @property
    def ok(self) -> bool:
        return self.problem is None

    def line(self) -> str:
        status = "ok  " if self.ok else "FAIL"
        tail = "" if self.ok else f": {self.problem}"
        return f"{status} {self.target:<24} {self.address}{tail}"


def check_database(url: str, timeout_s: int = 5) -> str | None:
    """None when ``url`` accepts a connection and a query, else the reason."""
    try:
        with psycopg.connect(psycopg_conninfo(url), connect_timeout=timeout_s) as conn:
            conn.execute("SELECT 1")
        return None
    except psycopg.Error as exc:
        return " ".join(str(exc).split()) or type(exc).__name__


def _guarded(check: Callable[[], str | None]) -> str | None:
    """A check's answer; a client library that fails in an unforeseen way is a FAIL line with
    the reason (masked), never a traceback."""
    try:
        return check()
    except Exception as exc:  # noqa: BLE001 - any failure of a check is that target's result
        return error_summary(exc)


def check_targets(config: HubConfig) -> list[CheckResult]:
    """One result per database and for the Kafka bootstrap servers; never raises."""
    db_url = config.database.url
    results = [
        CheckResult("database (hub)", redact_url(db_url), _guarded(lambda: check_database(db_url)))
    ]
    for name, src in config.sources().items():
        url = src.url
        results.append(
            CheckResult(
                f"source {name}", redact_url(url), _guarded(lambda u=url: check_database(u))
            )
        )
    results.append(
        CheckResult(
            "kafka", config.kafka.bootstrap_servers, _guarded(lambda: check_kafka(config.kafka))
        )
    )
    return results

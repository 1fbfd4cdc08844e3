"""``hub_kafka_up{role}`` from a thread of its own: whether the broker answers a short check,
so a paused or hung broker shows within seconds even while the process's own Kafka client
waits out its longer timeouts (a producer's flush, a consumer's fetch)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from hub.kafka import KAFKA, check_kafka

CHECK_EVERY_S = 3.0
CHECK_TIMEOUT_S = 5.0
"""A check of the broker not answered within this long counts as Kafka unreachable."""


class KafkaWatch:
    """Every :data:`CHECK_EVERY_S` a check (``check(kafka)``: None when the broker answers,
    else the reason) runs in a short-lived thread; no answer within :data:`CHECK_TIMEOUT_S`
    is an outage too. The caller's loop is never held up by it, nor it by a hung client call.

    ``needed`` (default: always) says whether a check is worth its connection now: a
    connector checks only while a delivery has been waiting on the broker, so an idle or a
    healthy one opens no extra connection."""

    def __init__(
        self,
        kafka,
        role: str,
        client: str,
        check: Callable[[object], str | None] | None = None,
        needed: Callable[[], bool] | None = None,
    ):
        self.kafka = kafka
        self.role = role
        self.client = client
        self.check = check or (lambda k: check_kafka(k, timeout_s=CHECK_TIMEOUT_S - 1))
        self.needed = needed or (lambda: True)
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        self.stopping.clear()
        self.thread = threading.Thread(target=self._run, name="hub-kafka-watch", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()

    def once(self) -> bool:
        """One check; reports the outcome; True when the broker answered."""
        outcome: list[str | None] = []

        def run() -> None:
            try:
                outcome.append(self.check(self.kafka))
            except Exception as exc:  # noqa: BLE001 - any failure of a check is a reason
                outcome.append(f"{type(exc).__name__}: {exc}")

        worker = threading.Thread(target=run, name="hub-kafka-check", daemon=True)
        worker.start()
        worker.join(CHECK_TIMEOUT_S)
        if outcome and outcome[0] is None:
            KAFKA.ok(self.role, self.client)
            return True
        reason = outcome[0] if outcome else f"no answer within {CHECK_TIMEOUT_S:.0f} s"
        KAFKA.failed(self.role, self.client, reason)
        return False

    def _run(self) -> None:
        while not self.stopping.wait(CHECK_EVERY_S):
            if self.needed():
                self.once()

"""Registry first: sector partitions wait while the assigned registry partitions have a
backlog, so a registry being loaded is in place before sector records are judged against
it (a record judged early would open mismatches that the registry's next batch closes)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection

from kafka import TopicPartition

from reconciliation.decode import REGISTRY

log = logging.getLogger(__name__)


class RegistryGate:
    """Pauses and resumes the consumer's sector partitions: closed (sectors paused) until
    the registry partitions are caught up, closed again when their backlog grows past
    ``max_lag`` messages. ``ready`` is the live set of partitions held, ``position`` tells
    a partition's position (None while unknown). Use it on the consumer's thread."""

    def __init__(
        self,
        source_of: dict[str, str],
        max_lag: int,
        ready: Collection[TopicPartition],
        position: Callable[[TopicPartition], int | None],
    ):
        self.source_of = source_of
        self.max_lag = max_lag
        self.ready = ready
        self.position = position
        self.closed = True

    def lag(self, consumer) -> int | None:
        """Messages the assigned registry partitions are behind; None while unknown."""
        lag = 0
        for tp in self.ready:
            if self.source_of[tp.topic] != REGISTRY:
                continue
            high = consumer.highwater(tp)
            pos = self.position(tp)
            if high is None or pos is None:
                return None
            lag += max(0, high - pos)
        return lag

    def close(self, consumer) -> None:
        """Pause every sector partition held."""
        sectors = self._sectors()
        if sectors:
            consumer.pause(*sectors)
        self.closed = True

    def update(self, consumer) -> None:
        """Open the gate once the registry is caught up; close it on a backlog."""
        lag = self.lag(consumer)
        if self.closed:
            if lag == 0:
                sectors = self._sectors()
                if sectors:
                    consumer.resume(*sectors)
                self.closed = False
                log.debug("registry caught up: sector partitions resumed")
        elif lag is not None and lag > self.max_lag:
            log.info("registry backlog of %d messages: sector partitions wait", lag)
            self.close(consumer)

    def _sectors(self) -> list[TopicPartition]:
        return [tp for tp in self.ready if self.source_of[tp.topic] != REGISTRY]

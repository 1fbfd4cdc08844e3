"""One batch's transaction, all or nothing: fence the batch's partitions by their stored
offsets, run the :class:`~reconciliation.batch.Batch`, queue its messages in the outbox
and store the next offsets.

The stored offsets are the truth about what has been applied (SPEC §5): a message below a
partition's stored offset was applied by another process (a rebalance race) and is
skipped; when another process stored a partition's first offset meanwhile, the store
refuses the offsets and the transaction is rolled back (:class:`Fenced`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Protocol

from reconciliation.batch import Batch, BatchSettings, Store
from reconciliation.decode import REGISTRY, Change, DeadLetter

Partition = tuple[str, int]
"""(topic, partition)."""
Message = tuple[str, bytes | None, bytes]
"""(topic, key, value)."""


class Fenced(Exception):
    """Another process stored offsets for this batch's partitions first: roll back."""


class DeliveryStore(Store, Protocol):
    """A batch's :class:`~reconciliation.batch.Store`, with its transaction, the stored
    offsets and the outbox queue."""

    def transaction(self) -> AbstractContextManager:
        """Everything inside commits together, or nothing does (on an exception)."""

    def lock_offsets(self, group_id: str, partitions: Iterable[Partition]) -> dict[Partition, int]:
        """The stored next offsets of ``partitions``, locked until the transaction ends."""

    def store_offsets(
        self, group_id: str, offsets: dict[Partition, int], locked: Iterable[Partition]
    ) -> bool:
        """Store the next offsets; False when another process stored one of the partitions
        not in ``locked`` first."""

    def outbox_add(self, messages: Sequence[Message]) -> list[int]:
        """Queue messages in this transaction; their ids, in order."""


@dataclass
class BatchResult:
    """What one batch did (for metrics, logs and tests)."""

    messages: int = 0
    applied: int = 0
    stale: int = 0
    skipped: int = 0
    dead_letters: int = 0
    transitions: int = 0
    events: int = 0
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    """The next offsets the batch stored, ``{(topic, partition): offset}`` (not totalled)."""


@dataclass
class Applied:
    """A committed batch: its result, its working set (for the metrics), the dead letters it
    kept and the outbox messages to produce now, as (outbox id, message)."""

    result: BatchResult
    batch: Batch
    dead: list[DeadLetter]
    queued: list[tuple[int, Message]]


def apply_batch(
    store: DeliveryStore,
    settings: BatchSettings,
    group_id: str,
    ends: dict[Partition, tuple[int, int]],
    changes: list[Change],
    dead: list[DeadLetter],
    event_message: Callable[[dict], Message],
) -> Applied:
    """Apply a polled batch in one transaction. ``ends`` is each partition's (first offset,
    next offset) in the batch; ``event_message`` makes a mismatch event into its message.
    Raises :class:`Fenced` (nothing stored) when another process applied it first."""
    result = BatchResult()
    with store.transaction():
        stored = store.lock_offsets(group_id, ends)
        fresh = [c for c in changes if c.offset >= stored.get((c.tp.topic, c.tp.partition), -1)]
        dead = [d for d in dead if d[1] >= stored.get(d[0], -1)]
        result.skipped = len(changes) - len(fresh)
        batch = Batch(store, settings)
        batch.apply_registry([c for c in fresh if c.source == REGISTRY])
        batch.apply_sectors([c for c in fresh if c.source != REGISTRY])
        events = batch.finish()
        outbox = [event_message(e) for e in events]
        outbox += [m for _, _, m in dead]
        ids = store.outbox_add(outbox)
        next_offsets = {
            part: end for part, (_first, end) in ends.items() if end > stored.get(part, -1)
        }
        if not store.store_offsets(group_id, next_offsets, stored):
            raise Fenced()
    result.offsets = next_offsets
    result.applied = batch.applied
    result.stale = batch.stale
    result.dead_letters = len(dead)
    result.transitions = batch.transitions
    result.events = len(events)
    return Applied(result, batch, dead, list(zip(ids, outbox, strict=True)))

"""``PgStore``: the store a batch works against (:class:`reconciliation.transaction.DeliveryStore`)
over one psycopg connection."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime

import psycopg

from hub.db import psycopg_conninfo
from reconciliation.lifecycle import Ledger, MismatchRow, load_mismatches
from reconciliation.store import offsets, outbox, records, registry
from reconciliation.store.rows import RegistryRow, SectorKey, SectorRow
from reconciliation.store.staging import prepare_session
from reconciliation.suggestions import RegistryIndex


def connect(url: str) -> psycopg.Connection:
    """The reconciler's batch connection, with the session's staging tables created."""
    conn = psycopg.connect(
        psycopg_conninfo(url),
        autocommit=True,
        application_name="hub-reconciler",
        connect_timeout=10,
        # No server-side prepared statements: a batch query joins a staging table whose
        # size varies from one key to ten thousand, and a prepared statement keeps the
        # generic plan made for the sizes of its first runs until the next ANALYZE of a
        # table it reads. Live batches after a 10k-key catch-up then read every mismatch
        # (~200 ms for 50 keys at 1M, instead of ~5 ms).
        prepare_threshold=None,
    )
    try:
        prepare_session(conn)
    except BaseException:
        conn.close()
        raise
    return conn


class PgStore:
    """The reconciler's state in the hub database, as one batch reads and writes it: each
    method is one statement per table for the whole batch (see :mod:`.staging`)."""

    def __init__(self, conn: psycopg.Connection):
        self.conn = conn

    def registry_by_record_keys(
        self, keys: Iterable[str]
    ) -> tuple[dict[str, RegistryRow], dict[str, tuple[int | None, datetime | None]]]:
        return registry.registry_by_record_keys(self.conn, keys)

    def replace_registry(self, cleared_keys: Sequence[str], rows: Sequence[RegistryRow]) -> None:
        registry.replace_registry(self.conn, cleared_keys, rows)

    def registry_for_ids(
        self, citizen_ids: Iterable[str], legacy_ids: Iterable[str]
    ) -> tuple[dict[str, RegistryRow], dict[str, RegistryRow]]:
        return registry.registry_for_ids(self.conn, citizen_ids, legacy_ids)

    def registry_index(self) -> RegistryIndex:
        return registry.PgRegistryIndex(self.conn)

    def sector_records_for(
        self,
        keys: Iterable[SectorKey],
        citizen_ids: Iterable[str],
        groups: Iterable[SectorKey],
        unique_sectors: Iterable[str],
    ) -> tuple[dict[SectorKey, SectorRow], dict[SectorKey, tuple[int | None, datetime | None]]]:
        return records.sector_records_for(self.conn, keys, citizen_ids, groups, unique_sectors)

    def write_sector_records(self, rows: Sequence[SectorRow], deleted: Sequence[SectorKey]) -> None:
        records.write_sector_records(self.conn, rows, deleted)

    def write_verified(self, flags: Sequence[tuple[str, str, bool]]) -> None:
        records.write_verified(self.conn, flags)

    def write_tombstones(
        self,
        put: Sequence[tuple[str, str, int | None, datetime | None]],
        dropped: Sequence[SectorKey],
    ) -> None:
        records.write_tombstones(self.conn, put, dropped)

    def lock_legacy_ids(self, legacy_ids: Iterable[str]) -> None:
        records.lock_legacy_ids(self.conn, legacy_ids)

    def load_mismatches(self, keys: Iterable[SectorKey]) -> list[MismatchRow]:
        return load_mismatches(self.conn, keys)

    def write_mismatches(self, ledger: Ledger) -> list[dict]:
        return ledger.flush(self.conn)

    def transaction(self) -> AbstractContextManager:
        return self.conn.transaction()

    def lock_offsets(
        self, group_id: str, partitions: Iterable[tuple[str, int]]
    ) -> dict[tuple[str, int], int]:
        return offsets.lock_offsets(self.conn, group_id, partitions)

    def store_offsets(
        self,
        group_id: str,
        next_offsets: dict[tuple[str, int], int],
        locked: Iterable[tuple[str, int]],
    ) -> bool:
        return offsets.store_offsets(self.conn, group_id, next_offsets, locked)

    def outbox_add(self, messages: Sequence[tuple[str, bytes | None, bytes]]) -> list[int]:
        return outbox.outbox_add(self.conn, messages)

"""``PgStore``: the store a batch works against (:class:`reconciliation.transaction.DeliveryStore`)
over one psycopg connection."""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextlib import AbstractContextManager

import psycopg

from hub.db import psycopg_conninfo
from reconciliation.lifecycle import Ledger, load_mismatches
from reconciliation.store import corrections, offsets, outbox, records, registry
from reconciliation.store.staging import prepare_session


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


def _on_conn(fn: Callable) -> Callable:
    """A store method that calls ``fn`` with the store's connection first."""

    @functools.wraps(fn)
    def method(self: PgStore, *args):
        return fn(self.conn, *args)

    return method


class PgStore:
    """The reconciler's state in the hub database, as one batch reads and writes it: each
    method is the store function of the same name over this connection, one statement per
    table for the whole batch (see :mod:`.staging`)."""

    def __init__(self, conn: psycopg.Connection):
        self.conn = conn

    registry_by_record_keys = _on_conn(registry.registry_by_record_keys)
    replace_registry = _on_conn(registry.replace_registry)
    registry_for_ids = _on_conn(registry.registry_for_ids)
    registry_index = _on_conn(registry.PgRegistryIndex)
    sector_records_for = _on_conn(records.sector_records_for)
    write_sector_records = _on_conn(records.write_sector_records)
    write_verified = _on_conn(records.write_verified)
    write_tombstones = _on_conn(records.write_tombstones)
    lock_legacy_ids = _on_conn(records.lock_legacy_ids)
    load_mismatches = _on_conn(load_mismatches)
    lock_offsets = _on_conn(offsets.lock_offsets)
    store_offsets = _on_conn(offsets.store_offsets)
    outbox_add = _on_conn(outbox.outbox_add)
    confirmable_corrections = _on_conn(corrections.confirmable_corrections)
    confirm_corrections = _on_conn(corrections.confirm_corrections)

    def write_mismatches(self, ledger: Ledger) -> list[dict]:
        return ledger.flush(self.conn)

    def transaction(self) -> AbstractContextManager:
        return self.conn.transaction()

"""The outbox table (``reconciler_outbox``): messages queued in a batch's transaction,
deleted once Kafka acknowledged them."""

from __future__ import annotations

from collections.abc import Sequence

import psycopg

from reconciliation.store.staging import stage


def outbox_add(
    conn: psycopg.Connection, messages: Sequence[tuple[str, bytes | None, bytes]]
) -> list[int]:
    """Queue (topic, key, value) messages in this transaction; returns their ids in order."""
    if not messages:
        return []
    stage(conn, "_hub_outbox_rows", ((n, t, k, v) for n, (t, k, v) in enumerate(messages)))
    rows = conn.execute(
        """
        INSERT INTO reconciler_outbox (topic, key, value)
        SELECT topic, key, value FROM _hub_outbox_rows ORDER BY n
        RETURNING id
        """
    ).fetchall()
    return sorted(r[0] for r in rows)


def outbox_pending(
    conn: psycopg.Connection, after_id: int = 0, limit: int = 10_000
) -> list[tuple[int, str, bytes | None, bytes]]:
    """Queued messages in id order (left by a process that stopped before producing them)."""
    return conn.execute(
        "SELECT id, topic, key, value FROM reconciler_outbox WHERE id > %s ORDER BY id LIMIT %s",
        (after_id, limit),
    ).fetchall()


def outbox_delete(conn: psycopg.Connection, ids: Sequence[int]) -> None:
    """Forget messages Kafka acknowledged (ids in ascending order)."""
    if not ids:
        return
    if ids[-1] - ids[0] + 1 == len(ids):  # the usual case: one contiguous range
        conn.execute("DELETE FROM reconciler_outbox WHERE id BETWEEN %s AND %s", (ids[0], ids[-1]))
    else:
        conn.execute("DELETE FROM reconciler_outbox WHERE id = ANY(%s::bigint[])", (list(ids),))

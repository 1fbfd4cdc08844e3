"""The consumer offsets stored with the state they produced (``consumer_offsets``): the
truth about what has been applied, read on assignment and written in each batch's
transaction."""

from __future__ import annotations

from collections.abc import Iterable

import psycopg


def read_offsets(
    conn: psycopg.Connection, group_id: str, topics: Iterable[str]
) -> dict[tuple[str, int], int]:
    """Next offset to consume per (topic, partition) of ``topics``."""
    rows = conn.execute(
        "SELECT topic, partition, next_offset FROM consumer_offsets "
        "WHERE group_id = %s AND topic = ANY(%s::text[])",
        (group_id, sorted(set(topics))),
    ).fetchall()
    return {(t, p): o for t, p, o in rows}


def lock_offsets(
    conn: psycopg.Connection, group_id: str, partitions: Iterable[tuple[str, int]]
) -> dict[tuple[str, int], int]:
    """Lock and return the stored next offsets of ``partitions`` (in this transaction), so a
    second process handed the same partitions waits, then sees what this one applied."""
    parts = sorted(set(partitions))
    if not parts:
        return {}
    rows = conn.execute(
        """
        SELECT o.topic, o.partition, o.next_offset FROM consumer_offsets o
        JOIN unnest(%s::text[], %s::int[]) AS k(topic, partition)
          ON o.topic = k.topic AND o.partition = k.partition
        WHERE o.group_id = %s
        ORDER BY o.topic, o.partition
        FOR UPDATE OF o
        """,
        ([p[0] for p in parts], [p[1] for p in parts], group_id),
    ).fetchall()
    return {(t, p): o for t, p, o in rows}


def store_offsets(
    conn: psycopg.Connection,
    group_id: str,
    offsets: dict[tuple[str, int], int],
    locked: Iterable[tuple[str, int]],
) -> bool:
    """Store the next offset of each (topic, partition) in ``offsets``.

    ``locked`` are the partitions whose rows :func:`lock_offsets` found (and locked); the
    others are inserted. Returns False when another process inserted one of those first:
    the caller must roll back, as that process applied the same messages.
    """
    if not offsets:
        return True
    locked = set(locked)
    update = sorted((k, v) for k, v in offsets.items() if k in locked)
    insert = sorted((k, v) for k, v in offsets.items() if k not in locked)
    if update:
        conn.execute(
            """
            UPDATE consumer_offsets o SET next_offset = u.next_offset, updated_at = now()
            FROM unnest(%s::text[], %s::int[], %s::bigint[]) AS u(topic, partition, next_offset)
            WHERE o.group_id = %s AND o.topic = u.topic AND o.partition = u.partition
            """,
            (
                [k[0] for k, _ in update],
                [k[1] for k, _ in update],
                [v for _, v in update],
                group_id,
            ),
        )
    if insert:
        cur = conn.execute(
            """
            INSERT INTO consumer_offsets (group_id, topic, partition, next_offset)
            SELECT %s, * FROM unnest(%s::text[], %s::int[], %s::bigint[])
            ON CONFLICT (group_id, topic, partition) DO NOTHING
            """,
            (
                group_id,
                [k[0] for k, _ in insert],
                [k[1] for k, _ in insert],
                [v for _, v in insert],
            ),
        )
        if cur.rowcount != len(insert):
            return False
    return True


def write_offsets(
    conn: psycopg.Connection, group_id: str, offsets: dict[tuple[str, int], int]
) -> dict[tuple[str, int], int | None]:
    """Set the stored next offset of each (topic, partition) in ``offsets``, in one transaction
    (an operator's reset, ``hub reconcile --reset-offsets``); returns the offsets they replaced
    (None where none was stored)."""
    keys = sorted(offsets)
    with conn.transaction():
        before = read_offsets(conn, group_id, {t for t, _ in keys})
        conn.execute(
            """
            INSERT INTO consumer_offsets (group_id, topic, partition, next_offset)
            SELECT %s, * FROM unnest(%s::text[], %s::int[], %s::bigint[])
            ON CONFLICT (group_id, topic, partition)
            DO UPDATE SET next_offset = EXCLUDED.next_offset, updated_at = now()
            """,
            (group_id, [t for t, _ in keys], [p for _, p in keys], [offsets[k] for k in keys]),
        )
    return {k: before.get(k) for k in keys}

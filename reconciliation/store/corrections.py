"""The corrections a batch may confirm, read and confirmed set-wise (one statement each)."""

from __future__ import annotations

from collections.abc import Sequence

import psycopg

from reconciliation.corrections import CONFIRMABLE_STATUSES, OpenCorrection
from reconciliation.lifecycle import ACTOR
from reconciliation.store.rows import SectorKey
from reconciliation.store.staging import stage

_CONFIRMABLE_SQL = "(" + ", ".join(f"'{s}'" for s in CONFIRMABLE_STATUSES) + ")"


def confirmable_corrections(
    conn: psycopg.Connection, keys: Sequence[SectorKey]
) -> list[OpenCorrection]:
    """The sent and acknowledged corrections of the given records, by id."""
    stage(conn, "_hub_corr_keys", keys)
    rows = conn.execute(
        f"""
        SELECT c.id, c.mismatch_id, c.sector, c.record_key, c.kind, c.field, c.proposed_value,
               c.status
        FROM corrections c JOIN _hub_corr_keys k ON c.sector = k.a AND c.record_key = k.b
        WHERE c.status IN {_CONFIRMABLE_SQL}
        ORDER BY c.id
        """
    ).fetchall()
    return [OpenCorrection(*r) for r in rows]


def confirm_corrections(conn: psycopg.Connection, confirmed: Sequence[OpenCorrection]) -> None:
    """Confirm them (status, ``closed_at``, a history row by the reconciler) and point their
    mismatches to them, in one statement; a correction a steward moved meanwhile is left."""
    stage(conn, "_hub_corr_done", ((c.id, c.mismatch_id) for c in confirmed))
    conn.execute(
        f"""
        WITH done AS (
            UPDATE corrections c SET status = 'confirmed', closed_at = now(), updated_at = now()
            FROM _hub_corr_done d
            WHERE c.id = d.id AND c.status IN {_CONFIRMABLE_SQL}
            RETURNING c.id, c.mismatch_id,
                      (SELECT status FROM corrections o WHERE o.id = c.id) AS from_status
        ), hist AS (
            INSERT INTO correction_history (correction_id, actor, action, from_status,
                                            to_status, note)
            SELECT id, %s, 'confirm', from_status, 'confirmed',
                   'the source now carries the proposed value'
            FROM done
        )
        UPDATE mismatches m SET correction_id = done.id
        FROM done WHERE m.id = done.mismatch_id
        """,
        (ACTOR,),
    )

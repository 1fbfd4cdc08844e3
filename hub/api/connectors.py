"""Connector status as connectors report it, and operators' control requests to them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert, select

from hub.api import audit
from hub.api.errors import NotFound
from hub.config import HubConfig
from hub.connector_status import status_ages, with_shown_state
from hub.db.models import ConnectorRequest, ConnectorState

ACTIONS = ("pause", "resume", "restart", "resnapshot")
_STATE_FIELDS = (
    "name",
    "capture",
    "state",
    "position",
    "snapshot_done",
    "snapshot_progress",
    "rows_captured",
    "lag_bytes",
    "lag_seconds",
    "last_event_at",
    "heartbeat_at",
    "error",
    "updated_at",
)


def status(conn: Connection, config: HubConfig) -> list[dict[str, Any]]:
    """Every configured connector and every one that has reported, with its pending
    requests. A configured connector that never reported has state ``not_reported``; a
    live state whose heartbeat stopped is shown ``down`` (``reported_state`` keeps what the
    connector last said), and an unfinished snapshot comes with its figures (``snapshot``)."""
    cs = ConnectorState
    rows = {
        r.name: with_shown_state(dict(r._mapping))
        for r in conn.execute(select(*(getattr(cs, f) for f in _STATE_FIELDS), *status_ages()))
    }
    for name, src in config.sources().items():
        rows.setdefault(
            name,
            {f: None for f in _STATE_FIELDS}
            | {
                "name": name,
                "capture": src.capture,
                "state": "not_reported",
                "reported_state": None,
                "heartbeat_age_s": None,
                "report_age_s": None,
                "snapshot": None,
                "snapshot_done": False,
                "rows_captured": 0,
            },
        )
    cr = ConnectorRequest
    pending: dict[str, list[dict[str, Any]]] = {}
    for r in conn.execute(
        select(cr.id, cr.connector, cr.action, cr.requested_by, cr.requested_at)
        .where(cr.handled_at.is_(None))
        .order_by(cr.id)
    ):
        pending.setdefault(r.connector, []).append(
            {
                "id": r.id,
                "action": r.action,
                "requested_by": r.requested_by,
                "requested_at": r.requested_at,
            }
        )
    out = []
    for name in sorted(rows):
        row = rows[name]
        row["configured"] = name in config.sources()
        row["pending_requests"] = pending.get(name, [])
        out.append(row)
    return out


def request(
    conn: Connection, config: HubConfig, name: str, action: str, actor: str
) -> dict[str, Any]:
    """Queue ``action`` for connector ``name`` (it picks the request up and marks it
    handled); audited. NotFound if the connector is neither configured nor known."""
    if action not in ACTIONS:
        raise NotFound(f"unknown connector action {action!r} (known: {', '.join(ACTIONS)})")
    known = name in config.sources() or (
        conn.scalar(select(ConnectorState.name).where(ConnectorState.name == name)) is not None
    )
    if not known:
        raise NotFound(f"no connector {name!r}")
    cr = ConnectorRequest
    row = conn.execute(
        insert(cr)
        .values(connector=name, action=action, requested_by=actor)
        .returning(cr.id, cr.connector, cr.action, cr.requested_by, cr.requested_at)
    ).one()
    audit.record(
        conn,
        actor,
        f"connector_{action}",
        target_type="connector",
        target_id=name,
        detail={"request_id": row.id},
    )
    return dict(row._mapping)

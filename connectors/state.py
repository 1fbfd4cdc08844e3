"""What connectors keep in the hub database: state and status with its heartbeat, resume
offsets, operator requests (``connector_state``, ``connector_offsets``,
``connector_requests``), and the advisory lock that admits one runner per connector."""

from __future__ import annotations

import hashlib
import os
import socket
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from sqlalchemy import Connection, Engine, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import OperationalError

from hub.connector_status import status_ages, with_shown_state
from hub.db import engine_for, psycopg_conninfo
from hub.db.models import ConnectorOffset, ConnectorRequest, ConnectorState
from hub.errors import FatalError, RetriableError

ACTIONS = ("pause", "resume", "restart", "resnapshot")

_state = ConnectorState.__table__
_offsets = ConnectorOffset.__table__
_requests = ConnectorRequest.__table__


def hub_engine(url: str) -> Engine:
    return engine_for(url)


class HubDbUnavailable(RetriableError):
    """The hub database did not answer."""


def _retriable(exc: Exception) -> RetriableError:
    return HubDbUnavailable(f"hub database: {type(exc).__name__}: {str(exc).splitlines()[0]}")


def ensure_state(engine: Engine, name: str, capture: str) -> dict[str, Any]:
    """The connector's state row, created when missing; returned as a dict."""
    try:
        with engine.begin() as conn:
            conn.execute(
                insert(_state)
                .values(name=name, capture=capture)
                .on_conflict_do_update(index_elements=["name"], set_={"capture": capture})
            )
            return dict(conn.execute(select(_state).where(_state.c.name == name)).one()._mapping)
    except OperationalError as exc:
        raise _retriable(exc) from exc


def load_state(engine: Engine, name: str) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(select(_state).where(_state.c.name == name)).first()
    return None if row is None else dict(row._mapping)


def all_states(engine: Engine) -> list[dict[str, Any]]:
    """Every state row as shown (:func:`hub.connector_status.with_shown_state`): ``state``
    is ``down`` for a live state whose heartbeat stopped."""
    with engine.connect() as conn:
        rows = conn.execute(select(_state, *status_ages()).order_by(_state.c.name))
        return [with_shown_state(dict(r._mapping)) for r in rows]


def set_state(engine_or_conn: Engine | Connection, name: str, **values: Any) -> None:
    """Update columns of the connector's state row (``updated_at`` set to now)."""
    values["updated_at"] = func.now()
    stmt = update(_state).where(_state.c.name == name).values(**values)
    try:
        if isinstance(engine_or_conn, Connection):
            engine_or_conn.execute(stmt)
        else:
            with engine_or_conn.begin() as conn:
                conn.execute(stmt)
    except OperationalError as exc:
        raise _retriable(exc) from exc


def load_offset(engine: Engine, name: str) -> dict[str, Any] | None:
    try:
        with engine.connect() as conn:
            return conn.execute(
                select(_offsets.c.offset).where(_offsets.c.connector == name)
            ).scalar()
    except OperationalError as exc:
        raise _retriable(exc) from exc


def save_offset(conn: Connection, name: str, offset: dict[str, Any]) -> None:
    conn.execute(
        insert(_offsets)
        .values(connector=name, offset=offset)
        .on_conflict_do_update(
            index_elements=["connector"], set_={"offset": offset, "updated_at": func.now()}
        )
    )


def delete_connector_data(engine: Engine, name: str) -> None:
    """Forget everything the hub database holds about the connector (``connector drop``)."""
    from hub.db.models import ConnectorRecordId, ConnectorSnapshotKey

    keys = ConnectorSnapshotKey.__table__
    ids = ConnectorRecordId.__table__
    with engine.begin() as conn:
        conn.execute(keys.delete().where(keys.c.connector == name))
        conn.execute(ids.delete().where(ids.c.connector == name))
        conn.execute(_offsets.delete().where(_offsets.c.connector == name))
        conn.execute(_state.delete().where(_state.c.name == name))
        conn.execute(_requests.delete().where(_requests.c.connector == name))


# ------------------------------------------------------------------ operator requests


@dataclass(frozen=True)
class Request:
    id: int
    connector: str
    action: str
    requested_by: str
    requested_at: datetime


def add_request(engine: Engine, name: str, action: str, requested_by: str) -> int:
    """Store an operator request; the running connector handles it within a second or two."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r} (known: {', '.join(ACTIONS)})")
    with engine.begin() as conn:
        return conn.execute(
            insert(_requests)
            .values(connector=name, action=action, requested_by=requested_by)
            .returning(_requests.c.id)
        ).scalar_one()


def pending_requests(engine: Engine, name: str) -> list[Request]:
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(_requests)
                .where(_requests.c.connector == name, _requests.c.handled_at.is_(None))
                .order_by(_requests.c.id)
            ).all()
    except OperationalError as exc:
        raise _retriable(exc) from exc
    return [Request(r.id, r.connector, r.action, r.requested_by, r.requested_at) for r in rows]


def mark_handled(
    engine: Engine, ids: Iterable[int], results: Mapping[int, str] | None = None
) -> None:
    """Mark requests handled, each with its ``result`` line when given."""
    ids = list(ids)
    if not ids:
        return
    with engine.begin() as conn:
        conn.execute(update(_requests).where(_requests.c.id.in_(ids)).values(handled_at=func.now()))
        for rid, result in (results or {}).items():
            set_request_result(conn, rid, result)


def set_request_result(engine_or_conn: Engine | Connection, rid: int, result: str) -> None:
    """Store how request ``rid`` was handled (``applied: …``, ``refused: <why>``, …)."""
    stmt = update(_requests).where(_requests.c.id == rid).values(result=result[:2000])
    if isinstance(engine_or_conn, Connection):
        engine_or_conn.execute(stmt)
        return
    with engine_or_conn.begin() as conn:
        conn.execute(stmt)


def request_result(engine: Engine, rid: int) -> tuple[datetime | None, str | None]:
    """When request ``rid`` was handled and how (``(None, None)`` while pending)."""
    with engine.connect() as conn:
        row = conn.execute(
            select(_requests.c.handled_at, _requests.c.result).where(_requests.c.id == rid)
        ).first()
    return (None, None) if row is None else (row.handled_at, row.result)


# ------------------------------------------------------------------ one runner per connector


def runner_lock_key(name: str) -> int:
    """The advisory lock key of connector ``name``: a stable signed 64-bit hash (the same in
    every process and release, unlike ``hash()``)."""
    digest = hashlib.blake2b(f"hub.connector:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


BUSY_TRIES = 4
BUSY_WAIT_S = 0.5


class ConnectorBusy(FatalError):
    """Another process already runs this connector."""


class RunnerLock:
    """``pg_try_advisory_lock`` on the hub database, held on a session of its own for the
    runner's life: a second runner of the same connector is refused while the first one
    lives, whichever process (``hub run``, ``hub connector run``) and host it runs in.

    The session ends with the process, so a killed runner's lock is released at once.
    """

    def __init__(self, url: str, name: str):
        self.url = url
        self.name = name
        self.key = runner_lock_key(name)
        self._conn: psycopg.Connection | None = None

    def acquire(self) -> None:
        """Take the lock; ConnectorBusy naming the holder when another runner has it,
        RetriableError when the hub database does not answer."""
        label = f"hub runner {self.name} pid {os.getpid()}@{socket.gethostname()}"[:63]
        try:
            # Keepalives: a hub database gone silent must not hang the timer's check.
            conn = psycopg.connect(psycopg_conninfo(self.url), autocommit=True,
                                   connect_timeout=10, application_name=label, keepalives=1,
                                   keepalives_idle=10, keepalives_interval=5,
                                   keepalives_count=3)  # fmt: skip
        except psycopg.OperationalError as exc:
            raise HubDbUnavailable(f"hub database: {str(exc).strip().splitlines()[0]}") from exc
        try:
            for attempt in range(BUSY_TRIES):
                got = conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()[0]
                if got or attempt == BUSY_TRIES - 1:
                    break
                time.sleep(BUSY_WAIT_S)  # a runner killed a moment ago: its session is ending
            holder = None if got else self._holder(conn)
        except psycopg.Error as exc:
            conn.close()
            raise HubDbUnavailable(f"hub database: {str(exc).strip().splitlines()[0]}") from exc
        if not got:
            conn.close()
            who = f" ({holder})" if holder else ""
            raise ConnectorBusy(
                f"connector {self.name} is already running{who}; refusing to run it twice "
                "(stop that one first)"
            )
        self._conn = conn

    def _holder(self, conn: psycopg.Connection) -> str | None:
        row = conn.execute(
            "SELECT a.application_name, a.client_addr::text FROM pg_locks l"
            " JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted AND l.database = ("
            "   SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND ((l.classid::bigint << 32) | l.objid::bigint) = %s",
            (self.key,),
        ).fetchone()
        if row is None:
            return None
        app, addr = row
        return f"{app or 'unnamed client'}{f' from {addr}' if addr else ''}"

    @property
    def held(self) -> bool:
        """The lock's session is still open (a hub-database restart ends it)."""
        conn = self._conn
        if conn is None or conn.closed:
            return False
        try:
            conn.execute("SELECT 1")
        except psycopg.Error:
            return False
        return True

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            try:
                conn.close()  # ending the session releases the lock
            except psycopg.Error:
                pass


# ------------------------------------------------------------------ record keys


class RecordIdStore:
    """``connector_record_ids`` of one connector: the Kafka key each record last carried
    (see :class:`connectors.events.RecordIds`), read and written one statement per batch."""

    def __init__(self, engine: Engine, name: str):
        self.engine = engine
        self.name = name

    def load(self, record_keys: Iterable[str]) -> dict[str, str]:
        keys = list(record_keys)
        if not keys:
            return {}
        try:
            with self.engine.connect() as conn:
                rows = conn.connection.driver_connection.execute(
                    "SELECT record_key, kafka_key FROM connector_record_ids"
                    " WHERE connector = %s AND record_key = ANY(%s)",
                    (self.name, keys),
                ).fetchall()
        except (OperationalError, psycopg.OperationalError) as exc:
            raise _retriable(exc) from exc
        return dict(rows)

    def save(self, changed: Mapping[str, str | None]) -> None:
        """Store each record's key; forget those mapped to None (deleted records)."""
        if not changed:
            return
        put = [(k, v) for k, v in changed.items() if v is not None]
        gone = [k for k, v in changed.items() if v is None]
        try:
            with self.engine.begin() as conn:
                if put:
                    self._upsert(conn, put)
                if gone:
                    conn.connection.driver_connection.execute(
                        "DELETE FROM connector_record_ids"
                        " WHERE connector = %s AND record_key = ANY(%s)",
                        (self.name, gone),
                    )
        except (OperationalError, psycopg.OperationalError) as exc:
            raise _retriable(exc) from exc

    def _upsert(self, conn: Connection, rows: list[tuple[str, str]]) -> None:
        """COPY into a temp table, then one upsert: a snapshot batch of 10,000 records
        costs a few milliseconds, not a 30,000-parameter INSERT."""
        raw = conn.connection.driver_connection
        raw.execute(
            "CREATE TEMP TABLE IF NOT EXISTS _hub_record_ids"
            " (record_key text, kafka_key text) ON COMMIT DELETE ROWS"
        )
        with raw.cursor().copy("COPY _hub_record_ids (record_key, kafka_key) FROM STDIN") as cp:
            for row in rows:
                cp.write_row(row)
        raw.execute(
            "INSERT INTO connector_record_ids (connector, record_key, kafka_key)"
            " SELECT %s, record_key, kafka_key FROM _hub_record_ids"
            " ON CONFLICT (connector, record_key) DO UPDATE SET kafka_key = EXCLUDED.kafka_key",
            (self.name,),
        )

"""A logical connector's replication slot and publication at the source: created when
missing, advanced once Kafka acknowledged, kept moving by heartbeats, measured, dropped."""

from __future__ import annotations

import contextlib
import logging
import time

import psycopg
from psycopg import sql

from connectors.base import LagProbe, SourceLag
from connectors.logical.connections import SourceConnections
from connectors.logical.pgoutput.messages import int_to_lsn
from connectors.pgtable import TableInfo
from hub.config import SourceConfig
from hub.db import psycopg_conninfo
from hub.errors import FatalError

log = logging.getLogger(__name__)

HEARTBEAT_PREFIX = "hub.heartbeat"
ADVANCE_EVERY_S = 1.0
"""While a peek's rows are being read, the slot advances at most this often (and always
before the next peek): each advance decodes from ``restart_lsn`` too."""
LOG_SNAPSHOT_EVERY_S = 0.5
"""How often an advance also logs a running-xacts record (``pg_log_standby_snapshot()``)."""
LOGICAL_WAL_LEVEL = "logical"


def slot_names(name: str, source: SourceConfig) -> tuple[str, str]:
    """(slot, publication) of a logical connector: ``hub_<name>`` unless configured."""
    return source.logical.slot or f"hub_{name}", source.logical.publication or f"hub_{name}"


def wal_level(conn: psycopg.Connection) -> str:
    """The server's ``wal_level``; logical decoding needs :data:`LOGICAL_WAL_LEVEL`."""
    return conn.execute("SHOW wal_level").fetchone()[0]


class Slot:
    """The slot and publication of one connector, through its source connections.

    :meth:`acknowledge` records a commit Kafka acknowledged; :meth:`advance` moves the slot
    there (the stream calls it before every peek, since a peek starts at the slot's
    confirmed position).
    """

    def __init__(self, link: SourceConnections, slot: str, publication: str):
        self.link = link
        self.slot = slot
        self.publication = publication
        self.advanced_at = 0.0
        self._snapshot_logged_at = 0.0
        self._unadvanced: int | None = None  # acknowledged LSN the slot has not moved to yet
        self._log_snapshots = True  # pg_log_standby_snapshot(): see advance()

    def row(self, conn: psycopg.Connection) -> tuple[str, str, str] | None:
        """(plugin, database, confirmed_flush_lsn) of the slot, None when it does not exist."""
        return conn.execute(
            "SELECT plugin, database, confirmed_flush_lsn::text FROM pg_replication_slots"
            " WHERE slot_name = %s",
            (self.slot,),
        ).fetchone()

    def create(self, conn: psycopg.Connection) -> str:
        """Create the slot; its consistent point (where the stream starts)."""
        (start,) = conn.execute(
            "SELECT lsn::text FROM pg_create_logical_replication_slot(%s, 'pgoutput')",
            (self.slot,),
        ).fetchone()
        log.info("%s: created replication slot %s at %s", self.link.name, self.slot, start)
        return start

    def ensure_publication(self, conn: psycopg.Connection, table: TableInfo) -> None:
        """Create the publication, or add the table to it, when missing."""
        exists = conn.execute(
            "SELECT puballtables FROM pg_publication WHERE pubname = %s", (self.publication,)
        ).fetchone()
        if exists is None:
            conn.execute(
                sql.SQL("CREATE PUBLICATION {} FOR TABLE {}").format(
                    sql.Identifier(self.publication), table.ident()
                )
            )
            log.info("%s: created publication %s", self.link.name, self.publication)
            return
        if exists[0]:
            return
        has = conn.execute(
            "SELECT 1 FROM pg_publication_tables"
            " WHERE pubname = %s AND schemaname = %s AND tablename = %s",
            (self.publication, table.schema, table.name),
        ).fetchone()
        if has is None:
            conn.execute(
                sql.SQL("ALTER PUBLICATION {} ADD TABLE {}").format(
                    sql.Identifier(self.publication), table.ident()
                )
            )
            log.info("%s: added %s to publication %s", self.link.name, table, self.publication)

    # -------------------------------------------------------------- acknowledged position

    def acknowledge(self, lsn: int) -> None:
        """Kafka acknowledged everything up to the commit ending at ``lsn``."""
        self._unadvanced = lsn

    @property
    def pending(self) -> bool:
        """An acknowledged position the slot has not moved to yet."""
        return self._unadvanced is not None

    def advance_due(self) -> bool:
        return time.monotonic() - self.advanced_at >= ADVANCE_EVERY_S

    def advance(self) -> None:
        """Move the slot to the last acknowledged commit (before any new peek: a peek
        starts at the slot's confirmed position)."""
        lsn, self._unadvanced = self._unadvanced, None
        if lsn is None:
            return
        with self.link.errors():
            conn = self.link.control()
            conn.execute(
                "SELECT pg_replication_slot_advance(%s, %s::pg_lsn)", (self.slot, int_to_lsn(lsn))
            )
            now = time.monotonic()
            if self._log_snapshots and now - self._snapshot_logged_at >= LOG_SNAPSHOT_EVERY_S:
                self._snapshot_logged_at = now
                # Decoding restarts at the slot's restart_lsn, which only moves past a
                # running-xacts record (logged every ~15 s): log one now, so the next advance
                # moves it and peeks stop re-decoding the last seconds of WAL every time.
                try:
                    conn.execute("SELECT pg_log_standby_snapshot()")
                except (psycopg.errors.InsufficientPrivilege, psycopg.errors.UndefinedFunction):
                    self._log_snapshots = False
                    log.info(
                        "%s: pg_log_standby_snapshot() is not available to this user;"
                        " the slot's restart point moves every ~15 s instead",
                        self.link.name,
                    )
            self.advanced_at = now

    # -------------------------------------------------------------- heartbeat

    def heartbeat(self) -> None:
        """Write a transactional logical message: decoding it gives the slot a commit to
        advance past even when the published tables are idle."""
        with self.link.errors():
            self.link.control().execute(
                "SELECT pg_logical_emit_message(true, %s, now()::text)", (HEARTBEAT_PREFIX,)
            )


class RetainedWal(LagProbe):
    """Bytes of WAL the slot retains at the source (``pg_current_wal_lsn() - restart_lsn``):
    what the source must keep on disk for it, whether the connector runs or not."""

    def __init__(self, name: str, url: str, slot: str):
        self.name = name
        self.conninfo = psycopg_conninfo(url)
        self.slot = slot
        self._conn: psycopg.Connection | None = None

    def measure(self) -> SourceLag:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(
                self.conninfo, autocommit=True, connect_timeout=5,
                application_name=f"hub-connector-{self.name}-lag",
                options="-c statement_timeout=5000",
            )  # fmt: skip
        try:
            row = self._conn.execute(
                "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint"
                " FROM pg_replication_slots WHERE slot_name = %s",
                (self.slot,),
            ).fetchone()
        except psycopg.Error:
            self.close()
            raise
        return SourceLag(bytes=max(0, row[0]) if row and row[0] is not None else None)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()


class DropIncomplete(FatalError):
    """A drop did part of its work; ``done`` and ``left`` (what someone must still do, with
    the statement to run) say which, one line each."""

    def __init__(self, done: list[str], left: list[str]):
        self.done = done
        self.left = left
        super().__init__("; ".join(left))


def drop(conn: psycopg.Connection, name: str, slot: str, publication: str) -> list[str]:
    """Drop the slot and the publication (each when it exists); what was done, one line each,
    what is already gone included. Refuses (FatalError, nothing done) while the slot is in use.

    Raises :class:`DropIncomplete` when a part is not the connector's to drop, e.g. a
    publication the table owner created: the line names the statement the owner must run.
    """
    row = conn.execute(
        "SELECT active, active_pid FROM pg_replication_slots WHERE slot_name = %s", (slot,)
    ).fetchone()
    if row is not None and row[0]:
        raise FatalError(
            f"replication slot {slot} is in use (pid {row[1]}): stop connector {name} first"
        )
    done: list[str] = []
    left: list[str] = []
    if row is None:
        done.append(f"replication slot {slot}: already gone")
    else:
        try:
            conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
            done.append(f"dropped replication slot {slot}")
        except psycopg.errors.UndefinedObject:
            done.append(f"replication slot {slot}: already gone")
        except psycopg.Error as exc:
            left.append(
                f"replication slot {slot} not dropped ({_reason(exc)}): a role with REPLICATION"
                f" must run on database {conn.info.dbname}: {drop_slot_statement(slot)}"
            )
    owner = conn.execute(
        "SELECT pg_get_userbyid(pubowner) FROM pg_publication WHERE pubname = %s",
        (publication,),
    ).fetchone()
    if owner is None:
        done.append(f"publication {publication}: already gone")
        return _finish(done, left)
    try:
        conn.execute(sql.SQL("DROP PUBLICATION {}").format(sql.Identifier(publication)))
        done.append(f"dropped publication {publication}")
    except psycopg.errors.UndefinedObject:
        done.append(f"publication {publication}: already gone")
    except psycopg.Error as exc:
        (ident,) = conn.execute("SELECT quote_ident(%s)", (publication,)).fetchone()
        who = "its owner" if isinstance(exc, psycopg.errors.InsufficientPrivilege) else "someone"
        left.append(
            f"publication {publication} not dropped ({_reason(exc)}): {who} ({owner[0]}, or a"
            f" superuser) must run on database {conn.info.dbname}: DROP PUBLICATION {ident};"
        )
    return _finish(done, left)


def drop_slot_statement(slot: str) -> str:
    """The statement that drops ``slot``, for pasting into psql (slot names are only ever
    lower-case letters, digits and ``_``: nothing to quote)."""
    return f"SELECT pg_drop_replication_slot('{slot}');"


def _finish(done: list[str], left: list[str]) -> list[str]:
    if left:
        raise DropIncomplete(done, left)
    return done


def _reason(exc: psycopg.Error) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]

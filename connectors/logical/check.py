"""The lines of ``hub connector check`` that only logical capture needs: wal_level,
replication privilege, replica identity, key, publication and slot. The statements the
run will need are run and undone: the publication's create or alter in a transaction
rolled back, a temporary slot with the run's plugin created and dropped at once."""

from __future__ import annotations

import os
import secrets
from types import SimpleNamespace

import psycopg
from psycopg import sql

from connectors.base import FAIL, OK, WARN, CheckResult, byte_size
from connectors.logical.slot import LOGICAL_WAL_LEVEL, Slot, slot_names, wal_level
from connectors.pgtable import TableInfo
from hub.config import SourceConfig


def check_logical(
    conn: psycopg.Connection, name: str, source: SourceConfig, info: TableInfo
) -> list[CheckResult]:
    """Lines of ``hub connector check`` only logical capture needs: wal_level, replication
    privilege, replica identity, key, publication and slot."""
    results: list[CheckResult] = []
    level = wal_level(conn)
    results.append(
        CheckResult(OK, "wal_level", LOGICAL_WAL_LEVEL)
        if level == LOGICAL_WAL_LEVEL
        else CheckResult(FAIL, "wal_level", f"{level}: set wal_level=logical and restart")
    )
    superuser, replication = conn.execute(
        "SELECT rolsuper, rolreplication FROM pg_roles WHERE rolname = current_user"
    ).fetchone()
    if superuser or replication:
        results.append(
            CheckResult(OK, "privileges", "superuser" if superuser else "REPLICATION attribute")
        )
    else:
        results.append(
            CheckResult(FAIL, "privileges",
                        f"role {conn.info.user} needs the REPLICATION attribute (or superuser)")
        )  # fmt: skip
    identity = {"d": "DEFAULT", "f": "FULL", "i": "USING INDEX", "n": "NOTHING"}[
        info.replica_identity
    ]
    citizen_col = source.mapping("citizen_id").column
    if info.replica_identity == "n" or (info.replica_identity == "d" and not info.primary_key):
        results.append(
            CheckResult(FAIL, "replica identity",
                        f"{identity} without a key: updates and deletes cannot be captured; "
                        f"ALTER TABLE {info.qualified} REPLICA IDENTITY FULL")
        )  # fmt: skip
    elif info.replica_identity == "f" or citizen_col in info.primary_key:
        results.append(CheckResult(OK, "replica identity", identity))
    else:
        results.append(
            CheckResult(WARN, "replica identity",
                        f"{identity}: deletes carry only the key (updates too), so the "
                        f"connector keeps each record's citizen ID in the hub database to "
                        f"key them; ALTER TABLE {info.qualified} REPLICA IDENTITY FULL "
                        f"makes that unnecessary")
        )  # fmt: skip
    if info.primary_key and tuple(info.primary_key) != tuple(source.key_columns):
        results.append(
            CheckResult(WARN, "key",
                        f"config key {', '.join(source.key_columns)} differs from the primary "
                        f"key {', '.join(info.primary_key)}")
        )  # fmt: skip
    slot, publication = slot_names(name, source)
    results.append(_check_publication(conn, name, publication, info))
    row = conn.execute(
        "SELECT plugin, database, active, confirmed_flush_lsn::text,"
        " pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint,"
        " wal_status FROM pg_replication_slots WHERE slot_name = %s",
        (slot,),
    ).fetchone()
    if row is None:
        results.append(_check_slot_creation(conn, slot) if level == LOGICAL_WAL_LEVEL else
                       CheckResult(FAIL, "slot", f"{slot}: missing; needs wal_level=logical"))  # fmt: skip
    else:
        plugin, database, active, confirmed, lag, wal_status = row
        if plugin != "pgoutput" or database != conn.info.dbname:
            results.append(
                CheckResult(FAIL, "slot", f"{slot} belongs to {plugin} on database {database}")
            )
        elif wal_status == "lost":
            results.append(
                CheckResult(FAIL, "slot",
                            f"{slot} lost its WAL (max_slot_wal_keep_size): drop the connector "
                            "and run it again to re-snapshot")
            )  # fmt: skip
        else:
            results.append(
                CheckResult(OK, "slot",
                            f"{slot} at {confirmed}, {byte_size(lag)} behind"
                            f"{', in use' if active else ''}")
            )  # fmt: skip
    return results


SLOT_CREATE_TIMEOUT_S = 20
"""How long the trial slot may wait for the transactions open at the source (a slot's
consistent point waits for them, at the run's creation too)."""


def _check_publication(
    conn: psycopg.Connection, name: str, publication: str, info: TableInfo
) -> CheckResult:
    """Run what the run's :meth:`Slot.ensure_publication` runs (create, or add the table),
    in a transaction rolled back; a refusal names the privilege and the statement to run."""
    pub = conn.execute(
        "SELECT puballtables, pubinsert AND pubupdate AND pubdelete FROM pg_publication"
        " WHERE pubname = %s",
        (publication,),
    ).fetchone()
    if pub is not None and not pub[1]:
        return CheckResult(FAIL, "publication",
                           f"{publication} does not publish inserts, updates and deletes")  # fmt: skip
    # The run's own code; it uses its link only to name the connector in its log lines.
    trial = Slot(SimpleNamespace(name=f"{name} (check)"), "", publication)
    try:
        with conn.transaction():
            trial.ensure_publication(conn, info)
            raise psycopg.Rollback
    except psycopg.errors.InsufficientPrivilege as exc:
        return CheckResult(FAIL, "publication", _publication_refused(conn, publication, info,
                                                                     exists=pub is not None,
                                                                     error=exc))  # fmt: skip
    except psycopg.Error as exc:
        return CheckResult(FAIL, "publication", f"{publication}: {_first_line(exc)}")
    if pub is None:
        return CheckResult(OK, "publication",
                           f"{publication}: missing; CREATE PUBLICATION tried and rolled back, "
                           "the first run creates it")  # fmt: skip
    included = (
        pub[0]
        or conn.execute(
            "SELECT 1 FROM pg_publication_tables WHERE pubname = %s AND schemaname = %s"
            " AND tablename = %s",
            (publication, info.schema, info.name),
        ).fetchone()
    )
    if included:
        return CheckResult(OK, "publication", f"{publication} includes the table")
    return CheckResult(OK, "publication",
                       f"{publication} lacks {info.qualified}; ALTER PUBLICATION tried and "
                       "rolled back, the first run adds it")  # fmt: skip


def _publication_refused(
    conn: psycopg.Connection, publication: str, info: TableInfo, *, exists: bool, error: Exception
) -> str:
    """Why the publication statement was refused, with the statement that fixes it."""
    user = sql.Identifier(conn.info.user).as_string(conn)
    pub = sql.Identifier(publication).as_string(conn)
    table = info.ident().as_string(conn)
    db_create, owns_table, owns_pub = conn.execute(
        "SELECT has_database_privilege(current_database(), 'CREATE'),"
        " (SELECT pg_has_role(current_user, relowner, 'USAGE') FROM pg_class WHERE oid = %s),"
        " (SELECT pg_has_role(current_user, pubowner, 'USAGE') FROM pg_publication"
        "  WHERE pubname = %s)",
        (info.oid, publication),
    ).fetchone()
    if not exists and not db_create:
        database = sql.Identifier(conn.info.dbname).as_string(conn)
        fix = f"GRANT CREATE ON DATABASE {database} TO {user};"
        if not owns_table:
            fix += (f" and the owner of {info.qualified} must create it: "
                    f"CREATE PUBLICATION {pub} FOR TABLE {table};")  # fmt: skip
        return (f"{publication}: role {conn.info.user} lacks the CREATE privilege on database "
                f"{conn.info.dbname}, which CREATE PUBLICATION needs: {fix}")  # fmt: skip
    if not exists:
        return (f"{publication}: role {conn.info.user} does not own {info.qualified}; the owner "
                f"creates it: CREATE PUBLICATION {pub} FOR TABLE {table}; (the config names "
                "it in logical.publication)")  # fmt: skip
    if not owns_pub or not owns_table:
        return (f"{publication} lacks {info.qualified} and role {conn.info.user} cannot add it "
                f"(it must own both): the owner runs ALTER PUBLICATION {pub} ADD TABLE {table};")  # fmt: skip
    return f"{publication}: {_first_line(error)}"


def _check_slot_creation(conn: psycopg.Connection, slot: str) -> CheckResult:
    """Create a temporary slot with the run's plugin and drop it at once: proves the
    REPLICATION privilege, the plugin and a free slot, and leaves nothing behind."""
    trial = f"hub_check_{os.getpid()}_{secrets.token_hex(4)}"
    used, limit = conn.execute(
        "SELECT (SELECT count(*) FROM pg_replication_slots),"
        " current_setting('max_replication_slots')::int"
    ).fetchone()
    try:
        conn.execute(f"SET statement_timeout = '{SLOT_CREATE_TIMEOUT_S}s'")
        conn.execute(
            "SELECT 1 FROM pg_create_logical_replication_slot(%s, 'pgoutput', true)", (trial,)
        )
        conn.execute("SELECT pg_drop_replication_slot(%s)", (trial,))
    except psycopg.errors.InsufficientPrivilege:
        user = sql.Identifier(conn.info.user).as_string(conn)
        return CheckResult(FAIL, "slot",
                           f"{slot}: missing, and role {conn.info.user} may not create "
                           f"replication slots: ALTER ROLE {user} REPLICATION;")  # fmt: skip
    except psycopg.errors.QueryCanceled:
        return CheckResult(FAIL, "slot",
                           f"{slot}: creating a slot waited over {SLOT_CREATE_TIMEOUT_S}s for "
                           "the transactions open at the source (pg_stat_activity); the run's "
                           "would wait for them too")  # fmt: skip
    except psycopg.Error as exc:
        return CheckResult(FAIL, "slot",
                           f"{slot}: missing, and a slot cannot be created: {_first_line(exc)} "
                           f"({used} of {limit} replication slots in use)")  # fmt: skip
    finally:
        conn.execute("RESET statement_timeout")
    return CheckResult(OK, "slot",
                       f"{slot}: missing; a temporary pgoutput slot was created and dropped, "
                       f"the first run creates it ({used} of {limit} replication slots in use)")  # fmt: skip


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]

"""The lines of ``hub connector check`` that only logical capture needs: wal_level,
replication privilege, replica identity, key, publication and slot."""

from __future__ import annotations

import psycopg

from connectors.base import FAIL, OK, WARN, CheckResult, byte_size
from connectors.logical.slot import LOGICAL_WAL_LEVEL, slot_names, wal_level
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
                        f"{identity}: deletes carry only the key, so they are keyed "
                        f"'{name}:<record key>' instead of the citizen ID; "
                        f"ALTER TABLE {info.qualified} REPLICA IDENTITY FULL to fix")
        )  # fmt: skip
    if info.primary_key and tuple(info.primary_key) != tuple(source.key_columns):
        results.append(
            CheckResult(WARN, "key",
                        f"config key {', '.join(source.key_columns)} differs from the primary "
                        f"key {', '.join(info.primary_key)}")
        )  # fmt: skip
    slot, publication = slot_names(name, source)
    pub = conn.execute(
        "SELECT puballtables, pubinsert AND pubupdate AND pubdelete FROM pg_publication"
        " WHERE pubname = %s",
        (publication,),
    ).fetchone()
    owner = conn.execute(
        "SELECT pg_has_role(current_user, c.relowner, 'USAGE') FROM pg_class c WHERE c.oid = %s",
        (info.oid,),
    ).fetchone()[0]
    if pub is None:
        status = OK if owner or superuser else FAIL
        detail = "missing; created on the first run" if status == OK else (
            f"missing, and role {conn.info.user} does not own {info.qualified} to create it"
        )  # fmt: skip
        results.append(CheckResult(status, "publication", f"{publication}: {detail}"))
    else:
        included = (
            pub[0]
            or conn.execute(
                "SELECT 1 FROM pg_publication_tables WHERE pubname = %s AND schemaname = %s"
                " AND tablename = %s",
                (publication, info.schema, info.name),
            ).fetchone()
        )
        if not pub[1]:
            results.append(
                CheckResult(FAIL, "publication",
                            f"{publication} does not publish inserts, updates and deletes")
            )  # fmt: skip
        elif included:
            results.append(CheckResult(OK, "publication", f"{publication} includes the table"))
        else:
            results.append(
                CheckResult(WARN, "publication",
                            f"{publication} lacks {info.qualified}; added on the first run")
            )  # fmt: skip
    row = conn.execute(
        "SELECT plugin, database, active, confirmed_flush_lsn::text,"
        " pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint,"
        " wal_status FROM pg_replication_slots WHERE slot_name = %s",
        (slot,),
    ).fetchone()
    if row is None:
        used, limit = conn.execute(
            "SELECT (SELECT count(*) FROM pg_replication_slots),"
            " current_setting('max_replication_slots')::int"
        ).fetchone()
        status = OK if used < limit else FAIL
        results.append(
            CheckResult(status, "slot",
                        f"{slot}: missing; created on the first run ({used} of {limit} "
                        "replication slots in use)")
        )  # fmt: skip
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

"""Operator tasks on connectors: check a source before running it, report status, drop a
connector's slot and publication (SPEC §4)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from connectors.logical import table_info
from connectors.state import all_states, delete_connector_data, hub_engine
from hub.config import HubConfig, SourceConfig
from hub.db import psycopg_conninfo, sqlalchemy_url
from hub.errors import FatalError
from hub.vocabulary import DATE_FIELDS

OK, WARN, FAIL = "ok", "warn", "FAIL"

_TEXT_TYPES = ("text", "character varying", "character", "varchar", "char", "bpchar", "citext")
_DATE_TYPES = ("date", "timestamp without time zone", "timestamp with time zone")
_NUMERIC_TYPES = ("smallint", "integer", "bigint", "numeric")


@dataclass(frozen=True)
class CheckResult:
    status: str  # ok, warn, FAIL
    what: str
    detail: str

    @property
    def ok(self) -> bool:
        return self.status != FAIL

    def line(self) -> str:
        return f"{self.status:<5}{self.what:<22} {self.detail}"


def source_of(config: HubConfig, name: str) -> SourceConfig:
    sources = config.sources()
    if name not in sources:
        known = ", ".join(sources) or "none configured"
        raise FatalError(f"no connector named {name!r} in the config (known: {known})")
    return sources[name]


def slot_names(name: str, source: SourceConfig) -> tuple[str, str]:
    """(slot, publication) of a logical connector."""
    return source.logical.slot or f"hub_{name}", source.logical.publication or f"hub_{name}"


def is_postgres(url: str) -> bool:
    return sqlalchemy_url(url).startswith(("postgresql", "postgres"))


# ------------------------------------------------------------------ check


def check(config: HubConfig, name: str) -> list[CheckResult]:
    """Everything that would stop the connector, one line each (SPEC §4)."""
    source = source_of(config, name)
    if source.capture == "logical" or is_postgres(source.url):
        return _check_postgres(name, source)
    return _check_sqlalchemy(name, source)


def _check_postgres(name: str, source: SourceConfig) -> list[CheckResult]:
    results: list[CheckResult] = []
    try:
        conn = psycopg.connect(psycopg_conninfo(source.url), autocommit=True, connect_timeout=5)
    except psycopg.Error as exc:
        return [CheckResult(FAIL, "reachable", _first_line(exc))]
    with conn:
        version = conn.execute("SHOW server_version").fetchone()[0]
        results.append(CheckResult(OK, "reachable", f"PostgreSQL {version}, {conn.info.dbname}"))
        try:
            info = table_info(conn, source.table, source.key_columns)
        except FatalError as exc:
            results.append(CheckResult(FAIL, "table", str(exc)))
            return results
        results.append(CheckResult(OK, "table", info.qualified))
        results += _check_columns(source, info.columns)
        if source.capture == "logical":
            results += _check_logical(conn, name, source, info)
        elif source.capture == "poll":
            results += _check_poll(source, info.columns)
        grant = conn.execute(
            "SELECT has_table_privilege(%s::regclass, 'SELECT')", (info.oid,)
        ).fetchone()[0]
        results.append(
            CheckResult(OK if grant else FAIL, "select privilege",
                        "granted" if grant else f"cannot SELECT from {info.qualified}")
        )  # fmt: skip
    return results


def _check_logical(conn: psycopg.Connection, name: str, source: SourceConfig, info) -> list:
    results: list[CheckResult] = []
    wal_level = conn.execute("SHOW wal_level").fetchone()[0]
    results.append(
        CheckResult(OK, "wal_level", "logical")
        if wal_level == "logical"
        else CheckResult(FAIL, "wal_level", f"{wal_level}: set wal_level=logical and restart")
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
                            f"{slot} at {confirmed}, {_bytes(lag)} behind"
                            f"{', in use' if active else ''}")
            )  # fmt: skip
    return results


def _check_columns(source: SourceConfig, columns: dict[str, str]) -> list[CheckResult]:
    results = []
    missing = [c for c in source.key_columns if c not in columns]
    problems = [f"key column {c} missing" for c in missing]
    warnings = []
    for field in source.columns:
        mapping = source.mapping(field)
        assert mapping is not None
        col_type = columns.get(mapping.column)
        if col_type is None:
            problems.append(f"{field}: column {mapping.column} missing")
            continue
        base = col_type.split("(")[0].strip()
        if base in ("bytea",):
            problems.append(f"{field}: column {mapping.column} is {col_type}, not text")
        elif field in DATE_FIELDS and base not in _DATE_TYPES:
            if base in _TEXT_TYPES or (base in _NUMERIC_TYPES and mapping.format):
                if not mapping.format:
                    warnings.append(
                        f"{field}: {mapping.column} is {col_type}; values must be ISO dates "
                        "(or set format:)"
                    )
            else:
                problems.append(f"{field}: column {mapping.column} is {col_type}, not a date")
    if problems:
        results.append(CheckResult(FAIL, "columns", "; ".join(problems)))
    else:
        results.append(CheckResult(OK, "columns", f"{len(source.columns)} mapped columns found"))
    for w in warnings:
        results.append(CheckResult(WARN, "columns", w))
    return results


def _check_poll(source: SourceConfig, columns: dict[str, str]) -> list[CheckResult]:
    assert source.poll is not None
    results = []
    for role, col in (("timestamp column", source.poll.timestamp_column),
                      ("incrementing column", source.poll.incrementing_column)):  # fmt: skip
        col_type = columns.get(col)
        if col_type is None:
            results.append(CheckResult(FAIL, role, f"{col} missing"))
            continue
        base = col_type.split("(")[0].strip()
        good = _DATE_TYPES + _NUMERIC_TYPES if role.startswith("timestamp") else _NUMERIC_TYPES
        results.append(CheckResult(OK if base in good else WARN, role, f"{col} ({col_type})"))
    results.append(
        CheckResult(WARN, "deletes", "poll capture cannot see hard deletes (use logical)")
    )
    return results


def _check_sqlalchemy(name: str, source: SourceConfig) -> list[CheckResult]:
    from connectors.sqlsource import SqlSource

    columns = [source.mapping(f).column for f in source.columns] + list(source.key_columns)
    if source.poll is not None:
        columns += [source.poll.timestamp_column, source.poll.incrementing_column]
    src = SqlSource(name, source.url, source.table, columns)
    try:
        try:
            types = src.column_types()
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            return [CheckResult(FAIL, "reachable", str(exc))]
        results = [CheckResult(OK, "reachable", f"{src.system} {src.database}")]
        missing = [c for c in src.columns if c not in types]
        results.append(
            CheckResult(FAIL, "columns", f"missing: {', '.join(missing)}")
            if missing
            else CheckResult(OK, "columns", f"{len(src.columns)} columns found")
        )
        if source.capture == "poll":
            results.append(CheckResult(WARN, "deletes", "poll capture cannot see hard deletes"))
        return results
    finally:
        src.close()


# ------------------------------------------------------------------ status and drop


def status(config: HubConfig) -> list[dict[str, Any]]:
    """One row per configured (or previously run) connector, from ``connector_state``."""
    states = {s["name"]: s for s in all_states(hub_engine(config.database.url))}
    rows = []
    for name, source in config.sources().items():
        row = states.pop(name, None) or {"name": name, "state": "never run"}
        row.setdefault("capture", source.capture)
        rows.append(row)
    for row in states.values():
        row["state"] = f"{row['state']} (not in config)"
        rows.append(row)
    return rows


ALIVE_WINDOW_S = 120


def _refuse_if_running(config: HubConfig, name: str) -> None:
    """A logical slot is ``active`` only during each peek, so ask the connector's own reports:
    a running state updated within ``ALIVE_WINDOW_S`` means the connector is still running."""
    engine = hub_engine(config.database.url)
    with engine.connect() as conn:
        row = conn.exec_driver_sql(
            "SELECT state, extract(epoch FROM now() - updated_at) FROM connector_state"
            " WHERE name = %(name)s",
            {"name": name},
        ).fetchone()
    if (
        row
        and row[0] in ("running", "snapshotting", "idle", "retrying")
        and row[1] < ALIVE_WINDOW_S
    ):
        raise FatalError(
            f"connector {name} is {row[0]} (last report {row[1]:.0f}s ago): stop it first, "
            f"or wait {ALIVE_WINDOW_S}s if it was killed"
        )


def drop(config: HubConfig, name: str) -> list[str]:
    """Drop a logical connector's slot and publication and forget its hub-side state.

    Refuses while the slot is in use (the connector still runs). Returns what was done.
    """
    source = source_of(config, name)
    _refuse_if_running(config, name)
    done: list[str] = []
    if source.capture == "logical":
        slot, publication = slot_names(name, source)
        with psycopg.connect(psycopg_conninfo(source.url), autocommit=True) as conn:
            row = conn.execute(
                "SELECT active FROM pg_replication_slots WHERE slot_name = %s", (slot,)
            ).fetchone()
            if row is not None:
                if row[0]:
                    raise FatalError(
                        f"replication slot {slot} is in use: stop connector {name} first"
                    )
                conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
                done.append(f"dropped replication slot {slot}")
            exists = conn.execute(
                "SELECT 1 FROM pg_publication WHERE pubname = %s", (publication,)
            ).fetchone()
            if exists:
                conn.execute(sql.SQL("DROP PUBLICATION {}").format(sql.Identifier(publication)))
                done.append(f"dropped publication {publication}")
    try:
        delete_connector_data(hub_engine(config.database.url), name)
        done.append("removed the connector's state from the hub database")
    except Exception as exc:  # noqa: BLE001 - the source side is done; say what is left
        done.append(f"could not remove the connector's state from the hub database: {exc}")
    return done


def _bytes(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]

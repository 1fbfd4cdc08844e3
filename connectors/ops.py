"""Operator tasks on connectors: check a source before running it, report status, drop a
connector's slot and publication (SPEC §4)."""

from __future__ import annotations

from typing import Any

import psycopg

from connectors.base import FAIL, OK, WARN, CaptureMode, CheckResult
from connectors.modes import mode_class
from connectors.pgtable import DATE_TYPES, NUMERIC_TYPES, TEXT_TYPES, table_info
from connectors.state import all_states, delete_connector_data, hub_engine
from hub.config import HubConfig, SourceConfig
from hub.db import psycopg_conninfo, sqlalchemy_url
from hub.errors import FatalError
from hub.vocabulary import DATE_FIELDS


def source_of(config: HubConfig, name: str) -> SourceConfig:
    sources = config.sources()
    if name not in sources:
        known = ", ".join(sources) or "none configured"
        raise FatalError(f"no connector named {name!r} in the config (known: {known})")
    return sources[name]


def is_postgres(url: str) -> bool:
    return sqlalchemy_url(url).startswith(("postgresql", "postgres"))


# ------------------------------------------------------------------ check


def check(config: HubConfig, name: str) -> list[CheckResult]:
    """Everything that would stop the connector, one line each (SPEC §4)."""
    source = source_of(config, name)
    mode = mode_class(source)
    if mode.needs_postgres or is_postgres(source.url):
        return _check_postgres(mode, name, source)
    return _check_sqlalchemy(mode, name, source)


def _check_postgres(mode: type[CaptureMode], name: str, source: SourceConfig) -> list[CheckResult]:
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
        results += mode.check_postgres(conn, name, source, info)
        grant = conn.execute(
            "SELECT has_table_privilege(%s::regclass, 'SELECT')", (info.oid,)
        ).fetchone()[0]
        results.append(
            CheckResult(OK if grant else FAIL, "select privilege",
                        "granted" if grant else f"cannot SELECT from {info.qualified}")
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
        elif field in DATE_FIELDS and base not in DATE_TYPES:
            if base in TEXT_TYPES or (base in NUMERIC_TYPES and mapping.format):
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


def _check_sqlalchemy(
    mode: type[CaptureMode], name: str, source: SourceConfig
) -> list[CheckResult]:
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
        return results + mode.check_sql(name, source)
    finally:
        src.close()


# ------------------------------------------------------------------ status and drop


def status(config: HubConfig) -> list[dict[str, Any]]:
    """One row per configured (or previously run) connector, from ``connector_state``: the
    shown state (``down`` once a live one's heartbeat stopped), ``reported_state``,
    ``heartbeat_age_s`` and, while a snapshot runs, ``snapshot`` (rows, estimate, ETA)."""
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
    """Release what the connector's mode holds at the source (a logical slot and
    publication) and forget its hub-side state.

    Refuses while the connector still runs. Returns what was done.
    """
    source = source_of(config, name)
    _refuse_if_running(config, name)
    done = mode_class(source).drop(name, source)
    try:
        delete_connector_data(hub_engine(config.database.url), name)
        done.append("removed the connector's state from the hub database")
    except Exception as exc:  # noqa: BLE001 - the source side is done; say what is left
        done.append(f"could not remove the connector's state from the hub database: {exc}")
    return done


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]

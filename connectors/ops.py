"""Operator tasks on connectors: check a source before running it, report status, drop a
connector's slot and publication (SPEC §4)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import SQLAlchemyError

from connectors.base import FAIL, OK, WARN, CaptureMode, CheckResult
from connectors.events import EventBuilder
from connectors.logical.slot import DropIncomplete
from connectors.mapping import RecordMapper
from connectors.modes import mode_class
from connectors.pgtable import DATE_TYPES, NUMERIC_TYPES, TEXT_TYPES, TableInfo, table_info
from connectors.sample import SAMPLE_ROWS, SampleReport, sample_rows
from connectors.state import all_states, delete_connector_data, hub_engine
from hub.config import HubConfig, SourceConfig, redact_url
from hub.connector_status import DOWN_AFTER_S, LIVE_STATES, shown_state, status_ages
from hub.db import psycopg_conninfo, sqlalchemy_url
from hub.db.models import ConnectorOffset, ConnectorRequest, ConnectorSnapshotKey, ConnectorState
from hub.errors import ConfigError, FatalError, HubError
from hub.idschemes import get_scheme
from hub.logs import error_summary
from hub.vocabulary import DATE_FIELDS

if TYPE_CHECKING:
    from connectors.sqlsource import SqlSource


def source_of(config: HubConfig, name: str) -> SourceConfig:
    sources = config.sources()
    if name not in sources:
        known = ", ".join(sources) or "none configured"
        raise FatalError(f"no connector named {name!r} in the config (known: {known})")
    return sources[name]


def is_postgres(url: str | None) -> bool:
    """Whether ``url`` is a PostgreSQL database (False without one: a topic-reading mode)."""
    return url is not None and sqlalchemy_url(url).startswith(("postgresql", "postgres"))


# ------------------------------------------------------------------ check


def check(config: HubConfig, name: str) -> list[CheckResult]:
    """Everything that would stop the connector or dead-letter its rows, one line each
    (SPEC §4): the mode's own statements are run and undone (publication, slot), and a
    sample of rows is read and mapped as the run maps them."""
    source = source_of(config, name)
    mode = mode_class(source)
    try:
        mapper = RecordMapper(name, source, get_scheme(config.id_scheme))
    except ConfigError as exc:
        return [CheckResult(FAIL, "columns", "; ".join(exc.problems))]
    if not mode.reads_database:
        return mode.check_source(config, name, source, mapper)
    if mode.needs_postgres or is_postgres(source.url):
        return _check_postgres(mode, name, source, mapper)
    return _check_sqlalchemy(mode, name, source, mapper)


def _check_postgres(
    mode: type[CaptureMode], name: str, source: SourceConfig, mapper: RecordMapper
) -> list[CheckResult]:
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
        sample = _sample_postgres(conn, mapper, info)
        sampled = sample.checked if isinstance(sample, SampleReport) else {}
        results += _check_columns(source, info.columns, sampled)
        results += mode.check_postgres(conn, name, source, info)
        grant = conn.execute(
            "SELECT has_table_privilege(%s::regclass, 'SELECT')", (info.oid,)
        ).fetchone()[0]
        results.append(
            CheckResult(OK if grant else FAIL, "select privilege",
                        "granted" if grant else
                        f"cannot SELECT from {info.qualified}: GRANT SELECT ON "
                        f"{info.ident().as_string(conn)} TO {_role(conn)};")
        )  # fmt: skip
        if isinstance(sample, SampleReport):
            results += sample.results()
        elif sample is not None:
            results.append(sample)
    return results


def _sample_postgres(
    conn: psycopg.Connection, mapper: RecordMapper, info: TableInfo
) -> SampleReport | CheckResult | None:
    """Up to :data:`SAMPLE_ROWS` rows read as the snapshot reads them, mapped; ``None``
    when SELECT is not granted (the privilege line says so), a FAIL line when the read
    fails otherwise."""
    columns = [c for c in mapper.columns if c in info.columns]
    query = sql.SQL("SELECT {} FROM {} LIMIT {}").format(
        sql.SQL(", ").join(map(sql.Identifier, columns)), info.ident(), sql.Literal(SAMPLE_ROWS)
    )
    builder = EventBuilder(mapper, system="postgresql", database=conn.info.dbname,
                           table=info.qualified)  # fmt: skip
    try:
        with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            cur.execute("SET LOCAL statement_timeout = '30s'")
            rows = cur.execute(query).fetchall()
    except psycopg.errors.InsufficientPrivilege:
        return None
    except psycopg.Error as exc:
        return CheckResult(FAIL, "sample read", _first_line(exc))
    return sample_rows(builder, rows)


def _role(conn: psycopg.Connection) -> str:
    return sql.Identifier(conn.info.user).as_string(conn)


def _check_columns(
    source: SourceConfig, columns: dict[str, str], sampled: Mapping[str, int]
) -> list[CheckResult]:
    """Mapped columns present and of a usable type. A text date column without ``format:``
    is a warning only when no sampled value proved it (its failures are the sample's)."""
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
                if not mapping.format and not sampled.get(mapping.column):
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
    mode: type[CaptureMode], name: str, source: SourceConfig, mapper: RecordMapper
) -> list[CheckResult]:
    """A source reached through SQLAlchemy (MySQL, MariaDB, …): the connection, the table
    and its row count, the mapped columns and their types, SELECT on them, the sample."""
    from connectors.sqlsource import SqlSource

    columns = [source.mapping(f).column for f in source.columns] + list(source.key_columns)
    if source.poll is not None:
        columns += [source.poll.timestamp_column, source.poll.incrementing_column]
    try:
        src = SqlSource(name, source.url, source.table, columns)
    except HubError as exc:
        return [CheckResult(FAIL, "reachable", str(exc))]
    try:
        try:
            results = [CheckResult(OK, "reachable", src.server_version())]
        except HubError as exc:
            return [CheckResult(FAIL, "reachable", str(exc))]
        try:
            types = src.column_types()
        except HubError as exc:
            denied = src.probe_select()
            if denied and denied[1]:  # MySQL hides a table its user may not read
                return results + [_select_line(src, denied)]
            return results + [CheckResult(FAIL, "table", str(exc))]
        rows, exact = src.estimate_rows()
        shown = "unknown" if rows is None else f"{rows}" if exact else f"about {rows}"
        results.append(CheckResult(OK, "table", f"{src.qualified}, {shown} rows"))
        columns_line = _sql_columns_line(source, types, src.type_name)
        denied = src.probe_select([c for c in src.columns if c in types])
        results += [columns_line, _select_line(src, denied)]
        if columns_line.ok and denied is None:
            results += _sample_sqlalchemy(src, mapper)
        return results + mode.check_sql(name, source)
    finally:
        src.close()


def _sql_columns_line(
    source: SourceConfig, types: Mapping[str, Any], type_name: Callable[[Any], str]
) -> CheckResult:
    """The key and mapped columns present; none binary, dates on date, text or number."""
    from connectors.sqlsource import type_kind

    problems = [f"key column {c} missing" for c in source.key_columns if c not in types]
    for field in source.columns:
        column = source.mapping(field).column
        if column not in types:
            problems.append(f"{field}: column {column} missing")
            continue
        kind = type_kind(types[column])
        if kind == "binary" or (field in DATE_FIELDS and kind not in ("date", "text", "number")):
            wanted = "text" if kind == "binary" else "a date or text"
            problems.append(f"{field}: column {column} is {type_name(types[column])}, not {wanted}")
    if problems:
        return CheckResult(FAIL, "columns", "; ".join(problems))
    return CheckResult(OK, "columns", f"{len(source.columns)} mapped columns found")


def _select_line(src: SqlSource, denied: tuple[str, bool] | None) -> CheckResult:
    if denied is None:
        return CheckResult(OK, "select privilege", f"granted on {src.qualified}")
    reason, is_privilege = denied
    hint = f"; {src.grant_hint()}" if is_privilege else ""
    return CheckResult(FAIL, "select privilege", f"{reason}{hint}")


def _sample_sqlalchemy(src: SqlSource, mapper: RecordMapper) -> list[CheckResult]:
    """Up to :data:`SAMPLE_ROWS` rows read as the poll and snapshot modes read them, mapped."""
    import sqlalchemy as sa

    query = sa.select(*(src.table.c[c] for c in mapper.columns)).limit(SAMPLE_ROWS)
    builder = EventBuilder(mapper, system=src.system, database=src.database,
                           table=src.qualified)  # fmt: skip
    try:
        with src.errors(), src.engine.connect() as conn:
            rows = [r._mapping for r in conn.execute(query)]
    except HubError as exc:
        return [CheckResult(FAIL, "sample read", str(exc))]
    return sample_rows(builder, rows).results()


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


def _refuse_if_running(config: HubConfig, name: str) -> None:
    """A logical slot is ``active`` only during each peek, so ask the connector's own reports:
    a live state with a fresh heartbeat (``hub.connector_status.shown_state``, as the status
    shows it) means the connector is still running; a killed one is ``down`` within 15 s."""
    engine = hub_engine(config.database.url)
    cs = ConnectorState.__table__.c
    with engine.connect() as conn:
        row = conn.execute(select(cs.state, *status_ages()).where(cs.name == name)).first()
    if row is None:
        return
    shown = shown_state(row.state, row.heartbeat_age_s, row.report_age_s)
    if shown in LIVE_STATES:
        raise FatalError(
            f"connector {name} is {shown} (heartbeat {float(row.heartbeat_age_s or 0):.0f}s ago):"
            f" stop it first, or wait {DOWN_AFTER_S:.0f}s if it was killed"
        )


@dataclasses.dataclass
class Outcome:
    """What an operator command did, and what is left for someone to do (one line each)."""

    done: list[str] = dataclasses.field(default_factory=list)
    left: list[str] = dataclasses.field(default_factory=list)


def drop(config: HubConfig, name: str) -> Outcome:
    """Release what the connector's mode holds at the source (a logical slot and
    publication) and forget its hub-side state: each part on its own, so a publication only
    its owner may drop, or a source that cannot be reached, leaves a line in ``left`` (with
    the statement to run) and the rest is still done. Safe to run again: what is already
    gone is said so.

    Refuses (FatalError, nothing done) while the connector still runs.
    """
    if name not in config.sources():
        raise FatalError(
            f"no connector named {name!r} in the config: a connector removed from the config "
            f"is forgotten with `hub connector forget {name}`"
        )
    source = config.sources()[name]
    _refuse_if_running(config, name)
    outcome = Outcome()
    try:
        outcome.done += mode_class(source).drop(name, source)
    except DropIncomplete as exc:
        outcome.done += exc.done
        outcome.left += exc.left
    except psycopg.Error as exc:
        outcome.left.append(
            f"source of {name} ({redact_url(source.url)}): {error_summary(exc)}; the slot and"
            " publication may still be there: run the drop again once it answers"
        )
    try:
        outcome.done.append(_forget_hub_state(config, name))
    except SQLAlchemyError as exc:
        outcome.left.append(
            f"the connector's state is still in the hub database ({error_summary(exc)}): run "
            "the drop again once it answers"
        )
    return outcome


class StillConfigured(FatalError):
    """``forget`` was asked for a connector the config still names (a usage error)."""


def forget(config: HubConfig, name: str) -> Outcome:
    """Remove the hub-side state (status row, position, requests) of a connector that is no
    longer in the config. Refuses (StillConfigured) a configured one: ``drop`` releases its slot
    too. A slot the connector left on a configured source is named in ``left``."""
    if name in config.sources():
        raise StillConfigured(
            f"connector {name} is in the config: use `hub connector drop {name}`, which also "
            "drops its slot and publication"
        )
    _refuse_if_running(config, name)
    outcome = Outcome([_forget_hub_state(config, name)])
    from connectors.logical.inventory import slot_inventory

    for s in slot_inventory(config).orphans:
        if s.slot == f"hub_{name}":
            outcome.left.append(f"{s.orphan_line()} ({s.address})")
    return outcome


def _forget_hub_state(config: HubConfig, name: str) -> str:
    """Delete the connector's rows from the hub database; the line saying what was there."""
    engine = hub_engine(config.database.url)
    counts = connector_row_counts(engine, name)
    if not any(counts.values()):
        return f"hub database: nothing stored for connector {name} (already gone)"
    delete_connector_data(engine, name)
    kept = ", ".join(f"{what} ({n})" for what, n in counts.items() if n)
    return f"removed connector {name}'s rows from the hub database: {kept}"


def connector_row_counts(engine: Engine, name: str) -> dict[str, int]:
    """How many rows the hub database holds for the connector, by what they are."""
    tables = {
        "status": (ConnectorState.__table__, "name"),
        "position": (ConnectorOffset.__table__, "connector"),
        "requests": (ConnectorRequest.__table__, "connector"),
        "snapshot keys": (ConnectorSnapshotKey.__table__, "connector"),
    }
    with engine.connect() as conn:
        return {
            what: conn.execute(
                select(func.count()).select_from(table).where(table.c[column] == name)
            ).scalar_one()
            for what, (table, column) in tables.items()
        }


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]

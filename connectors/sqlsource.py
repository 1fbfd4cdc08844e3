"""Reading a source table through SQLAlchemy (any database it supports): the table, its
columns, keyset conditions, and database errors mapped onto the hub's error taxonomy.

MySQL and MariaDB (``mysql+pymysql://…?charset=utf8mb4``, the ``mysql`` extra): every session
runs in UTC (``SET time_zone = '+00:00'``), so ``TIMESTAMP`` columns read as UTC whatever the
server's zone, and zone-less ``DATETIME`` values are taken as UTC (:attr:`SqlSource.naive_utc`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import (
    DBAPIError,
    NoSuchModuleError,
    NoSuchTableError,
    OperationalError,
    SQLAlchemyError,
)

from connectors.base import split_table
from hub.db import sqlalchemy_url
from hub.errors import FatalError, RetriableError


class SqlSource:
    """One source table: a pooled engine and a lightweight ``sa.table`` of the columns read."""

    def __init__(self, connector: str, url: str, table: str, columns: Sequence[str]):
        self.connector = connector
        self.url = url
        self.schema, self.name = split_table(table)
        self.columns = tuple(dict.fromkeys(columns))
        try:
            self.engine = sa.create_engine(
                sqlalchemy_url(url), pool_pre_ping=True, pool_size=2, max_overflow=2
            )
        except (ModuleNotFoundError, NoSuchModuleError) as exc:
            scheme = sa.engine.make_url(sqlalchemy_url(url)).drivername
            hint = " (pip install 'registry-hub[mysql]')" if is_mysql(scheme) else ""
            raise FatalError(
                f"{connector}: no database driver for {scheme}://: {exc}{hint}"
            ) from None
        if is_mysql(self.engine.dialect.name):
            sa.event.listen(self.engine, "connect", _utc_session)
        self.table = sa.table(self.name, *(sa.column(c) for c in self.columns), schema=self.schema)

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema else self.name

    @property
    def database(self) -> str:
        return self.engine.url.database or ""

    @property
    def system(self) -> str:
        return self.engine.dialect.name

    @property
    def naive_utc(self) -> bool:
        """Zone-less timestamps are UTC (MySQL/MariaDB sessions run in UTC); elsewhere they
        are taken as the connector host's local time."""
        return is_mysql(self.system)

    def server_version(self) -> str:
        """``<dialect> <version>, database <name>`` (connects: a connection error raises)."""
        with self.errors(), self.engine.connect() as conn:
            if is_mysql(self.system):
                version = conn.execute(sa.text("SELECT VERSION()")).scalar()
            else:
                info = conn.dialect.server_version_info or ()
                version = ".".join(str(v) for v in info)
        return f"{self.system} {version}, database {self.database}"

    def probe_select(self, columns: Sequence[str] | None = None) -> tuple[str, bool] | None:
        """None when ``SELECT`` of ``columns`` (default: those read) works (no row fetched),
        else the database's reason as one line and whether it is a missing privilege."""
        query = sa.select(*(self.table.c[c] for c in columns or self.columns)).limit(0)
        try:
            with self.engine.connect() as conn:
                conn.execute(query).all()
        except SQLAlchemyError as exc:
            return _first_line(exc), _denied(exc)
        return None

    def grant_hint(self) -> str:
        """The statement that grants SELECT on the table to the URL's user."""
        user = self.engine.url.username or "<user>"
        if is_mysql(self.system):
            database = self.schema or self.database
            return f"GRANT SELECT ON `{database}`.`{self.name}` TO '{user}'@'<host>';"
        return f"GRANT SELECT ON {self.qualified} TO {user};"

    def indexes(self) -> list[tuple[tuple[str, ...], bool]]:
        """(columns, unique) of the primary key and every index of the table."""
        with self.errors():
            inspector = sa.inspect(self.engine)
            pk = inspector.get_pk_constraint(self.name, schema=self.schema)
            found = [(tuple(pk.get("constrained_columns") or ()), True)]
            for ix in inspector.get_indexes(self.name, schema=self.schema):
                found.append((tuple(c for c in ix["column_names"] if c), bool(ix["unique"])))
            for uq in inspector.get_unique_constraints(self.name, schema=self.schema):
                found.append((tuple(uq["column_names"]), True))
        return [f for f in found if f[0]]

    def estimate_rows(self) -> tuple[int | None, bool]:
        """(rows, exact): MySQL's table statistics where they have a figure (no scan), else
        ``count(*)``."""
        with self.errors(), self.engine.connect() as conn:
            if is_mysql(self.system):
                estimate = conn.execute(
                    sa.text("SELECT TABLE_ROWS FROM information_schema.TABLES"
                            " WHERE TABLE_SCHEMA = :s AND TABLE_NAME = :t"),
                    {"s": self.schema or self.database, "t": self.name},
                ).scalar()  # fmt: skip
                if estimate:
                    return int(estimate), False
            count = conn.execute(sa.select(sa.func.count()).select_from(self.table)).scalar()
            return count, True

    def column_types(self) -> dict[str, Any]:
        """Column name → SQLAlchemy type as the database describes it."""
        with self.errors():
            try:
                cols = sa.inspect(self.engine).get_columns(self.name, schema=self.schema)
            except NoSuchTableError:
                raise FatalError(
                    f"{self.connector}: table {self.qualified} does not exist"
                ) from None
        return {c["name"]: c["type"] for c in cols}

    def type_name(self, col_type: Any) -> str:
        """A column type as the database spells it (``DATETIME(6)``, ``DECIMAL(18, 2)``)."""
        try:
            return col_type.compile(dialect=self.engine.dialect)
        except Exception:  # noqa: BLE001 - a type the dialect cannot render: its generic name
            return str(col_type)

    def check_columns(self) -> None:
        """FatalError naming every column the mapping reads that the table lacks."""
        types = self.column_types()
        missing = [c for c in self.columns if c not in types]
        if missing:
            raise FatalError(
                f"{self.connector}: column {', '.join(missing)} not in table {self.qualified}"
            )

    @contextlib.contextmanager
    def errors(self) -> Iterator[None]:
        """Connection problems become RetriableError, anything else from the database Fatal."""
        try:
            yield
        except OperationalError as exc:
            raise RetriableError(
                f"source database of {self.connector}: {_first_line(exc)}"
            ) from exc
        except DBAPIError as exc:
            if exc.connection_invalidated:
                raise RetriableError(
                    f"source database of {self.connector}: {_first_line(exc)}"
                ) from exc
            raise FatalError(f"{self.connector}: {_first_line(exc)}") from exc
        except SQLAlchemyError as exc:
            raise FatalError(f"{self.connector}: {_first_line(exc)}") from exc

    def close(self) -> None:
        self.engine.dispose()


def after_condition(columns: Sequence[sa.ColumnElement], values: Sequence[Any]) -> sa.ColumnElement:
    """``(c1, c2, …) > (v1, v2, …)`` spelled out with AND/OR, which every database accepts."""
    clauses = []
    for i, (col, value) in enumerate(zip(columns, values, strict=True)):
        equal = [columns[j] == values[j] for j in range(i)]
        clauses.append(sa.and_(*equal, col > value))
    return sa.or_(*clauses)


def is_mysql(name: str) -> bool:
    """A MySQL or MariaDB dialect (or driver) name."""
    return name.split("+")[0] in ("mysql", "mariadb")


def type_kind(col_type: Any) -> str:
    """``date``, ``number``, ``text``, ``binary`` or ``other``: what a column type holds."""
    if isinstance(col_type, sa.Date | sa.DateTime):
        return "date"
    if isinstance(col_type, sa.Integer | sa.Numeric | sa.Float):
        return "number"
    if isinstance(col_type, sa.String | sa.Enum):
        return "text"
    if isinstance(col_type, sa.LargeBinary | sa.BINARY | sa.VARBINARY):
        return "binary"
    return "other"


_DENIED_CODES = (1044, 1142, 1143)
"""MySQL/MariaDB: access denied to a database, a table, a column."""


def _denied(exc: SQLAlchemyError) -> bool:
    orig = getattr(exc, "orig", None)
    args = getattr(orig, "args", ())
    if args and args[0] in _DENIED_CODES:
        return True
    return "permission denied" in str(orig or exc).lower()


def _utc_session(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    try:
        cur.execute("SET time_zone = '+00:00'")
    finally:
        cur.close()


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return (text.splitlines() or [type(exc).__name__])[0]

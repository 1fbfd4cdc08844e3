"""Reading a source table through SQLAlchemy (any database it supports): the table, its
columns, keyset conditions, and database errors mapped onto the hub's error taxonomy."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, NoSuchTableError, OperationalError, SQLAlchemyError

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
        self.engine = sa.create_engine(
            sqlalchemy_url(url), pool_pre_ping=True, pool_size=2, max_overflow=2
        )
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


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return (text.splitlines() or [type(exc).__name__])[0]

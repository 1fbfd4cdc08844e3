"""Loading the generated rows into the demo's source databases: one table at a time, or in
parts (create empty, append each part, then keys, indexes and statistics)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg

from hub.db import psycopg_conninfo
from hub.demo.population import SourceTable
from hub.errors import FatalError, RetriableError


def load_table(url: str, table: SourceTable, rows: Sequence[tuple[Any, ...]]) -> None:
    """(Re)create ``table`` in the database at ``url`` and COPY ``rows`` into it."""
    with _table_errors(table):
        with psycopg.connect(psycopg_conninfo(url)) as conn, conn.cursor() as cur:
            cur.execute(table.drop_sql())
            cur.execute(table.create_sql())
            _copy(cur, table, rows)
            _finish(cur, table)


def create_table(url: str, table: SourceTable) -> None:
    """(Re)create ``table`` empty, without its keys and indexes: for loading in parts with
    :func:`append_rows`, then :func:`finish_table`."""
    with _table_errors(table):
        with psycopg.connect(psycopg_conninfo(url)) as conn, conn.cursor() as cur:
            cur.execute(table.drop_sql())
            cur.execute(table.create_sql())


def append_rows(url: str, table: SourceTable, rows: Sequence[tuple[Any, ...]]) -> None:
    """COPY ``rows`` into a table made by :func:`create_table`, in one transaction."""
    with _table_errors(table):
        with psycopg.connect(psycopg_conninfo(url)) as conn, conn.cursor() as cur:
            _copy(cur, table, rows)


def finish_table(url: str, table: SourceTable) -> None:
    """Give a table loaded in parts its keys and indexes, and its statistics."""
    with _table_errors(table):
        with psycopg.connect(psycopg_conninfo(url)) as conn, conn.cursor() as cur:
            _finish(cur, table)


def _copy(cur: psycopg.Cursor, table: SourceTable, rows: Sequence[tuple[Any, ...]]) -> None:
    with cur.copy(table.copy_sql()) as copy:
        for row in rows:
            copy.write_row(row)


def _finish(cur: psycopg.Cursor, table: SourceTable) -> None:
    for statement in table.after_load:
        cur.execute(statement)
    cur.execute(f"ANALYZE {table.table}")


@contextmanager
def _table_errors(table: SourceTable) -> Iterator[None]:
    try:
        yield
    except psycopg.OperationalError as exc:
        raise RetriableError(f"demo {table.source} database: {exc}".strip()) from exc
    except psycopg.Error as exc:
        raise FatalError(f"demo {table.source} database: {exc}".strip()) from exc

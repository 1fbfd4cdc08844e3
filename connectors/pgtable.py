"""A source table as PostgreSQL's catalogs describe it: columns, key, replica identity, and
the type names checks compare column types against."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from connectors.base import split_table
from hub.errors import FatalError

TEXT_TYPES = ("text", "character varying", "character", "varchar", "char", "bpchar", "citext")
DATE_TYPES = ("date", "timestamp without time zone", "timestamp with time zone")
NUMERIC_TYPES = ("smallint", "integer", "bigint", "numeric")


@dataclass(frozen=True)
class KeyColumn:
    name: str
    type_sql: str  # format_type(): how to cast a key's text back to the column type
    collation: str | None  # non-default collation of the column, if any


@dataclass(frozen=True)
class TableInfo:
    """A source table as PostgreSQL resolves it."""

    oid: int
    schema: str
    name: str
    columns: dict[str, str]  # column name -> format_type()
    keys: tuple[KeyColumn, ...]
    replica_identity: str  # d, f, i, n
    primary_key: tuple[str, ...]

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    def ident(self) -> sql.Composed:
        return sql.SQL("{}.{}").format(sql.Identifier(self.schema), sql.Identifier(self.name))


def table_info(conn: psycopg.Connection, table: str, key_columns: tuple[str, ...]) -> TableInfo:
    """Resolve ``table`` (``schema.table`` or a name on the search path); FatalError if absent."""
    schema, name = split_table(table)
    regclass = (
        sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(name))
        if schema
        else sql.Identifier(name)
    ).as_string(conn)
    row = conn.execute(
        "SELECT c.oid, n.nspname, c.relname, c.relreplident"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.oid = to_regclass(%s)",
        (regclass,),
    ).fetchone()
    if row is None:
        raise FatalError(f"table {table} does not exist in the source database")
    oid, nspname, relname, replident = row
    cols = conn.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod),"
        " CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation"
        "      THEN co.collname END"
        " FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid"
        " LEFT JOIN pg_collation co ON co.oid = a.attcollation"
        " WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        (oid,),
    ).fetchall()
    columns = {c[0]: c[1] for c in cols}
    collations = {c[0]: c[2] for c in cols}
    missing = [k for k in key_columns if k not in columns]
    if missing:
        raise FatalError(f"table {table}: key column {', '.join(missing)} does not exist")
    pk = conn.execute(
        "SELECT array_agg(a.attname ORDER BY k.ord) FROM pg_index i"
        " CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)"
        " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum"
        " WHERE i.indrelid = %s AND i.indisprimary",
        (oid,),
    ).fetchone()[0]
    return TableInfo(
        oid=oid,
        schema=nspname,
        name=relname,
        columns=columns,
        keys=tuple(KeyColumn(k, columns[k], collations[k]) for k in key_columns),
        replica_identity=replident,
        primary_key=tuple(pk or ()),
    )


def key_casts(keys: tuple[KeyColumn, ...]) -> sql.Composed:
    """``(%s::type COLLATE "c", …)``: a key's text values as a row comparable to the key."""
    parts = []
    for k in keys:
        part = sql.SQL("%s::") + sql.SQL(k.type_sql)
        if k.collation:
            part = part + sql.SQL(" COLLATE ") + sql.Identifier(k.collation)
        parts.append(part)
    return sql.SQL("ROW(") + sql.SQL(", ").join(parts) + sql.SQL(")")

"""Name search in the queue: the words of a query, folded as the hub folds names
(:func:`reconciliation.names.fold`: case, diacritics, Arabic letter variants), each a
prefix of a word of the sector record's folded name. Served by the GIN index on
``to_tsvector('simple', name_folded)`` of migration 0014 when the matches are few; when
they are many (a surname: all of a million records), each mismatch of the page's walk is
probed instead (:func:`name_condition` with ``broad``), so a page stops at its rows."""

from __future__ import annotations

import json

from sqlalchemy import Connection, exists, func, literal, literal_column, select, text, tuple_
from sqlalchemy.sql import ColumnElement

from hub.db.models import Mismatch as M
from hub.db.models import SectorRecord as S
from reconciliation.names import fold

MAX_WORDS = 8

# Spelled as in the index of migration 0014 (a constant regconfig), so the planner uses it.
SIMPLE = literal_column("'simple'::regconfig")
NAME_VECTOR = func.to_tsvector(SIMPLE, func.coalesce(S.name_folded, ""))


def name_words(name: str) -> list[str]:
    """The folded words of a query (at most MAX_WORDS)."""
    return fold(name).split()[:MAX_WORDS]


def ts_query(name: str) -> str | None:
    """The words as a prefix tsquery (``'nguyen':* & 'van':*``); None when none is left."""
    words = name_words(name)
    if not words:
        return None
    return _prefix_query(words)


def word_query(name: str) -> str | None:
    """The words as whole words (``'nguyen' & 'van'``): the planner estimates these from the
    index's most common words, while a prefix's estimate is clamped (2% at most)."""
    words = name_words(name)
    if not words:
        return None
    return " & ".join("'" + w.replace("'", "''") + "'" for w in words)


def matching_records(conn: Connection, name: str) -> tuple[int, float]:
    """The planner's estimate of the sector records the name matches, and their share of
    all records: the larger of the prefix query's and the whole words' estimates (a prefix
    matches at least what the word does; on the bench store "nguyen" is every record, but
    "nguyen":* is estimated at 2%)."""
    prefix, words = ts_query(name), word_query(name)
    if prefix is None or words is None:
        return 0, 0.0
    rows = max(_estimated_records(conn, q) for q in (prefix, words))
    total = conn.scalar(
        text("SELECT reltuples FROM pg_class WHERE oid = 'sector_records'::regclass")
    )
    return rows, min(1.0, rows / total) if total and total > 0 else 1.0


def _estimated_records(conn: Connection, query: str) -> int:
    stmt = (
        select(literal(1))
        .select_from(S)
        .where(NAME_VECTOR.op("@@")(func.to_tsquery(SIMPLE, query)))
    )
    compiled = stmt.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    doc = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + str(compiled), compiled.params).scalar()
    if isinstance(doc, str):
        doc = json.loads(doc)
    return int(doc[0]["Plan"]["Plan Rows"])


COMMON_SHARE = 0.05
"""A word whole in more than this share of the sector records is common: asking the index
for its prefix (every record's posting of ``nguyen``) costs more than it filters."""


def index_words(conn: Connection, name: str) -> tuple[str, ...] | None:
    """The words of ``name`` worth asking the name index for: those estimated (as whole
    words, from the index's most common words) in at most COMMON_SHARE of the records.
    None (all of them) when there is one word, or none or all are common. A prefix of a word
    in every record makes the GIN index gather that word's whole posting list: "nguyen van
    54321" took 20 ms through the index, its uncommon word "54321" alone 0.05 ms."""
    words = name_words(name)
    if len(words) < 2:
        return None
    total = conn.scalar(
        text("SELECT reltuples FROM pg_class WHERE oid = 'sector_records'::regclass")
    )
    if not total or total <= 0:
        return None
    uncommon = tuple(
        w
        for w in words
        if _estimated_records(conn, "'" + w.replace("'", "''") + "'") <= COMMON_SHARE * total
    )
    return uncommon if 0 < len(uncommon) < len(words) else None


def _prefix_query(words) -> str:
    return " & ".join("'" + w.replace("'", "''") + "':*" for w in words)


def name_condition(
    name: str, *, broad: bool = False, index_words: tuple[str, ...] | None = None
) -> ColumnElement[bool]:
    """Mismatches whose sector record's folded name has a word starting with each word.

    Not ``broad``: the matching records are read through the GIN index and the mismatches
    joined to them (a semi-join), which suits few matches. ``broad``: a correlated EXISTS
    probing the record of each mismatch by its primary key, for a query that walks the
    mismatches in the page's order and stops at the page; OFFSET 0 keeps PostgreSQL from
    turning it back into a semi-join, which would read every match (a bitmap of a million
    rows for a surname) before the first row.

    ``index_words`` (not ``broad``; :func:`index_words`): the index is asked for the records
    whose names have those words only, and the whole name is checked on them (behind OFFSET
    0, so the planner does not hand that check to the index too): the same records."""
    query = ts_query(name)
    if query is None:
        return literal(False)
    match = NAME_VECTOR.op("@@")(func.to_tsquery(SIMPLE, query))
    if index_words and not broad:
        some = (
            select(S.sector, S.record_key, S.name_folded)
            .where(NAME_VECTOR.op("@@")(func.to_tsquery(SIMPLE, _prefix_query(index_words))))
            .offset(0)
            .subquery("named")
        )
        vector = func.to_tsvector(SIMPLE, func.coalesce(some.c.name_folded, ""))
        whole = select(some.c.sector, some.c.record_key).where(
            vector.op("@@")(func.to_tsquery(SIMPLE, query))
        )
        return tuple_(M.sector, M.record_key).in_(whole)
    if broad:
        probe = (
            select(literal(1))
            .select_from(S)
            .where(S.sector == M.sector, S.record_key == M.record_key, match)
            .correlate(M)
            .offset(0)
        )
        return exists(probe)
    matching = select(S.sector, S.record_key).where(match)
    return tuple_(M.sector, M.record_key).in_(matching)

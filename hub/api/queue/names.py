"""Name search in the queue: the words of a query, folded as the hub folds names
(:func:`reconciliation.names.fold`: case, diacritics, Arabic letter variants), each a
prefix of a word of the sector record's folded name. Served by the GIN index on
``to_tsvector('simple', name_folded)`` of migration 0014."""

from __future__ import annotations

from sqlalchemy import func, literal, literal_column, select, tuple_
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
    return " & ".join("'" + w.replace("'", "''") + "':*" for w in words)


def name_condition(name: str) -> ColumnElement[bool]:
    """Mismatches whose sector record's folded name has a word starting with each word."""
    query = ts_query(name)
    if query is None:
        return literal(False)
    matching = select(S.sector, S.record_key).where(
        NAME_VECTOR.op("@@")(func.to_tsquery(SIMPLE, query))
    )
    return tuple_(M.sector, M.record_key).in_(matching)

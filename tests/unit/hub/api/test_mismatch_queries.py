"""Keyset cursors and the filter's SQL, without a database."""

from __future__ import annotations

import re
from datetime import UTC

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.dialects import postgresql

from hub.api.queue.filters import MismatchFilter
from hub.api.queue.pages import UnknownCursor, decode_cursor, encode_cursor


def sql(f: MismatchFilter) -> str:
    from sqlalchemy import and_, select, true

    from hub.db.models import Mismatch

    stmt = select(Mismatch.id).where(and_(true(), *f.conditions()))
    return str(stmt.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))


@given(
    sort=st.sampled_from(["id", "severity"]),
    order=st.sampled_from(["asc", "desc"]),
    value=st.integers(-(2**62), 2**62),
    last_id=st.integers(0, 2**63 - 1),
)
def test_integer_cursor_round_trips(sort, order, value, last_id):
    assert decode_cursor(encode_cursor(sort, order, value, last_id), sort, order) == (
        value,
        last_id,
    )


@given(st.datetimes(timezones=st.just(UTC)), st.integers(1, 10**12))
def test_time_cursor_round_trips(at, last_id):
    cursor = encode_cursor("first_seen_at", "asc", at, last_id)
    assert decode_cursor(cursor, "first_seen_at", "asc") == (at, last_id)


@given(st.text(max_size=80))
def test_any_garbage_cursor_is_an_unknown_page_never_a_crash(garbage):
    with pytest.raises(UnknownCursor):
        decode_cursor(garbage, "id", "desc")


def test_a_cursor_is_tied_to_its_sort_and_order():
    cursor = encode_cursor("record_key", "asc", "MST0001", 5)
    assert decode_cursor(cursor, "record_key", "asc") == ("MST0001", 5)
    with pytest.raises(UnknownCursor, match="sort=record_key"):
        decode_cursor(cursor, "record_key", "desc")


def test_text_search_is_a_prefix_match_with_wildcards_escaped():
    text = sql(MismatchFilter(q="50%_a\\b"))
    assert "LIKE '50\\%\\_a\\\\b%'" in text.replace("%%", "%")
    assert "record_key" in text and "citizen_id" in text


def test_single_values_compare_with_equals_and_lists_with_in():
    text = sql(MismatchFilter(sector=("tax",), status=("open", "in_review")))
    assert "sector = 'tax'" in text and "status IN ('open', 'in_review')" in text


def test_filter_params_drop_empty_values():
    f = MismatchFilter(sector=("tax",), q="001", min_age_days=0)
    assert f.params() == {"sector": ["tax"], "q": "001", "min_age_days": 0}
    assert MismatchFilter().is_empty()


def test_age_bounds_count_whole_days():
    text = sql(MismatchFilter(min_age_days=7, max_age_days=30))
    assert "make_interval(0, 0, 0, 7)" in text and "make_interval(0, 0, 0, 31)" in text


def test_severity_sort_is_spelled_like_its_index_in_migration_0004():
    from pathlib import Path

    import hub.db.migrations.versions as versions
    from hub.api.queue.pages import SORTS
    from hub.db.models import SEVERITY_RANK_SQL

    migration = (Path(versions.__file__).parent / "0004_api.py").read_text()
    joined = re.sub(r'"\s*\n\s*"', "", migration)  # implicit string concatenation
    assert f'"({SEVERITY_RANK_SQL})"' in joined
    rendered = str(SORTS["severity"].compile(dialect=postgresql.dialect()))
    assert rendered == SEVERITY_RANK_SQL.replace("CASE severity", "CASE mismatches.severity")

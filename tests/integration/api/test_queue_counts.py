"""The queue's counts at a million rows (issue #24 item 6): the usual views (open and in
review, by sector, rule and severity) are counted from the trigger-kept figures, equal to
counting the table; other filters still count (capped)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from hub.api.queue import pages
from hub.api.queue.filters import M, MismatchFilter
from hub.vocabulary import OPEN_STATUSES, RULE_CODES
from tests.integration.api.paging import walk

ACTIVE = list(OPEN_STATUSES)


def _counted(conn, f: MismatchFilter) -> dict[str, int]:
    cond = f.conditions(without_rule=True)
    rows = conn.execute(select(M.rule, func.count()).where(*cond).group_by(M.rule)).all()
    return {r: n for r, n in rows}


@pytest.mark.parametrize(
    "values",
    [
        {"status": ACTIVE},
        {"status": ["in_review", "open"], "sector": ["tax"]},
        {"status": ACTIVE, "severity": ["high", "critical"]},
        {"status": ACTIVE, "sector": ["tax", "banking"], "severity": ["low"],
         "rule": ["NAME_MISMATCH"]},
        {"status": ["open"]},  # the figures less the ones in review (migration 0018)
        {"status": ["in_review"]},
        {"status": ["open"], "sector": ["tax"], "severity": ["high"]},
    ],
)  # fmt: skip
def test_rule_counts_from_the_figures_equal_counting_the_table(api_ro, values):
    f = MismatchFilter.of(**values)
    with api_ro.engine.connect() as conn:
        figures = pages.figure_rule_counts(conn, f)
        assert figures is not None
        counted = _counted(conn, f)
        assert figures == counted
        assert pages.rule_counts(conn, f) == {r: (counted.get(r, 0), True) for r in RULE_CODES}
        page = pages.list_page(conn, f, limit=5)
        total = sum(n for r, n in counted.items() if not f.rule or r in f.rule)
        assert (page.total, page.total_exact) == (total, True)


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"status": ["open", "resolved"]},
        {"status": ACTIVE, "province": "01"},
        {"status": ACTIVE, "min_age_days": 1},
        {"status": ACTIVE, "max_age_days": 1},
        {"status": ACTIVE, "q": "0"},
        {"status": ACTIVE, "assignee": "steward"},
    ],
)
def test_other_filters_are_counted(api_ro, values):
    f = MismatchFilter.of(**values)
    with api_ro.engine.connect() as conn:
        assert pages.figure_rule_counts(conn, f) is None
        counted = _counted(conn, f)
        assert pages.rule_counts(conn, f) == {r: (counted.get(r, 0), True) for r in RULE_CODES}


def test_the_figures_follow_a_status_change(api):
    f = MismatchFilter.of(status=ACTIVE)
    with api.engine.connect() as conn:
        before = pages.figure_rule_counts(conn, f)
        rule = conn.scalar(select(M.rule).where(M.id == api.ids["name"]))
    api.set_mismatch("name", status="resolved")
    with api.engine.connect() as conn:
        after = pages.figure_rule_counts(conn, f)
        assert after == _counted(conn, f)
    assert after.get(rule, 0) == before[rule] - 1


@pytest.mark.parametrize(
    "values",
    [
        {"min_age_days": 30},
        {"max_age_days": 4},
        {"status": ACTIVE, "min_age_days": 1, "max_age_days": 40},
        {"min_age_days": 10, "max_age_days": 5},
    ],
)
@pytest.mark.parametrize("sort", ["id", "first_seen_at", "severity"])
@pytest.mark.parametrize("cap", [10_000, 0])
def test_an_age_filter_pages_the_same_rows_counted_or_not(api_ro, values, sort, cap, monkeypatch):
    # cap 0: every age range is "wide": estimated, not counted, and the sort index walked.
    monkeypatch.setattr(pages, "COUNT_CAP", cap)
    f = MismatchFilter.of(**values)
    with api_ro.engine.connect() as conn:
        expected = conn.execute(
            select(M.id).where(*f.conditions()).order_by(pages.SORTS[sort].desc(), M.id.desc())
        ).scalars()
        expected = list(expected)
        seen, page = walk(conn, f, sort=sort, limit=2)
    assert seen == expected
    assert page.total_exact is (cap > 0)

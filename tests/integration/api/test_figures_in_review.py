"""The trigger-kept figures keep the mismatches in review apart from the open ones
(migration 0018): after opens, reviews, resolves, dismissals, reopens and deletes, through
the API and straight SQL alike, their sums equal counting the table, and the queue's counts
of ``status=open`` (or ``in_review``) alone come from them."""

from __future__ import annotations

from alembic import command
from sqlalchemy import text

from hub.api.queue import pages
from hub.api.queue.filters import MismatchFilter
from hub.db.figures import FOLD
from hub.db.migrate import alembic_config

_FIGURES = text(
    """
    SELECT sector, rule, severity, sum(open_mismatches) - sum(in_review_mismatches),
           sum(in_review_mismatches)
    FROM figure_counts WHERE rule <> '' GROUP BY sector, rule, severity
    """
)
_COUNTED = text(
    """
    SELECT sector, rule, severity, count(*) FILTER (WHERE status = 'open'),
           count(*) FILTER (WHERE status = 'in_review')
    FROM mismatches GROUP BY sector, rule, severity
    """
)


def _by_key(rows) -> dict[tuple[str, str, str], tuple[int, int]]:
    return {(s, r, v): (o, i) for s, r, v, o, i in rows if o or i}


def assert_figures_equal_counting(engine) -> None:
    with engine.connect() as conn:
        figures, counted = conn.execute(_FIGURES).all(), conn.execute(_COUNTED).all()
        assert _by_key(figures) == _by_key(counted)
        for status in ("open", "in_review"):
            f = MismatchFilter.of(status=[status])
            rows = conn.execute(
                text("SELECT rule, count(*) FROM mismatches WHERE status = :s GROUP BY rule"),
                {"s": status},
            ).all()
            assert pages.figure_rule_counts(conn, f) == dict(rows)


def _post(api, path: str, **body) -> None:
    resp = api.post(path, "steward", json=body)
    assert resp.status_code == 200, resp.text


def test_the_figures_keep_open_and_in_review_apart_through_a_lifecycle(api):
    assert_figures_equal_counting(api.engine)
    ids = api.ids
    _post(api, f"/api/v1/mismatches/{ids['dob']}/assign")  # open -> in review
    _post(api, f"/api/v1/mismatches/{ids['name']}/assign")
    assert_figures_equal_counting(api.engine)
    _post(api, f"/api/v1/mismatches/{ids['name']}/resolve", note="sửa")  # in review -> resolved
    _post(api, f"/api/v1/mismatches/{ids['dob']}/dismiss", reason_code="registry_wrong")
    assert_figures_equal_counting(api.engine)
    _post(api, f"/api/v1/mismatches/{ids['dismissed']}/reopen", note="sai")  # back to open
    _post(api, f"/api/v1/mismatches/{ids['dismissed']}/assign")
    assert_figures_equal_counting(api.engine)
    _post(api, "/api/v1/mismatches/bulk", action="assign", filter={"status": ["open"]})
    assert_figures_equal_counting(api.engine)
    with api.engine.begin() as conn:
        # What the reconciler does, set-wise: new mismatches (one straight into review), a
        # rule change that keeps the status, re-opening the closed, deleting some.
        conn.execute(
            text(
                """
                INSERT INTO mismatches (sector, record_key, rule, field, severity, status,
                                        values_hash, assignee)
                SELECT 'tax', 'NEW' || g, 'NAME_MISMATCH', 'full_name', 'low',
                       CASE WHEN g = 1 THEN 'in_review' ELSE 'open' END, md5(g::text),
                       CASE WHEN g = 1 THEN 'steward' END
                FROM generate_series(1, 3) AS g
                """
            )
        )
        conn.execute(
            text(
                "UPDATE mismatches SET severity = 'critical' WHERE status IN ('open', 'in_review')"
            )
        )
        conn.execute(
            text(
                "UPDATE mismatches SET status = 'open', resolution = NULL, resolved_at = NULL,"
                " dismissal_code = NULL WHERE status IN ('resolved', 'dismissed')"
            )
        )
        conn.execute(text("DELETE FROM mismatches WHERE record_key = 'NEW2'"))
        conn.execute(
            text("DELETE FROM mismatches WHERE id = (SELECT min(id) FROM mismatches"
                 " WHERE status = 'in_review')")
        )  # fmt: skip
    assert_figures_equal_counting(api.engine)
    with api.engine.begin() as conn:
        conn.execute(text(FOLD))  # folding the deltas keeps the sums
        assert conn.scalar(text("SELECT count(*) FROM figure_counts WHERE rule <> ''")) == len(
            _by_key(conn.execute(_FIGURES).all())
        )
    assert_figures_equal_counting(api.engine)


def test_migration_0018_backfills_the_in_review_figures(api):
    _post(api, f"/api/v1/mismatches/{api.ids['dob']}/assign")
    config = alembic_config(api.url)
    command.downgrade(config, "0017")
    with api.engine.begin() as conn:
        # Changed while 0017's trigger knew nothing of reviews: the backfill must count it.
        conn.execute(
            text("UPDATE mismatches SET status = 'in_review', assignee = 'steward' WHERE id = :id"),
            {"id": api.ids["name"]},
        )
    command.upgrade(config, "head")
    assert_figures_equal_counting(api.engine)
    with api.engine.connect() as conn:
        assert pages.figure_rule_counts(conn, MismatchFilter.of(status=["in_review"]))

"""figure counts: the mismatches in review kept apart from the open ones

``figure_counts`` (migration 0005) kept the open and in-review mismatches together
(``open_mismatches``), so the queue's counts of ``status=open`` alone took those in review
off by counting them (674 ms p95 at 8 concurrent on the churned 1M-row bench store, where
a fortieth of the open mismatches were taken into review on unvacuumed pages). The trigger
now also keeps ``in_review_mismatches``, a part of ``open_mismatches`` (which keeps its
meaning for the gauges and the dashboard): open alone is the difference of the two. The
mismatches in review are counted here, once, under the same lock as the trigger's change.

``ix_mismatches_active_first_seen_at`` (first_seen_at, id) over the open and in-review
mismatches: the working queue sorted by first seen (oldest first) walked
``ix_mismatches_first_seen_at`` past the closed mismatches at its old end before the first
open one (38,885 rows, 80 ms a page on the churned 1M-row store; 4.6 ms through this one,
20 MB there).
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"

ACTIVE = "('open', 'in_review')"


def _function(with_review: bool) -> str:
    """hub_count_mismatches() of 0005 (open and in review), with the in-review column."""
    if with_review:
        cols = "open_mismatches, in_review_mismatches"
        ins = "count(*), count(*) FILTER (WHERE status = 'in_review')"
        dele = "-count(*), -count(*) FILTER (WHERE status = 'in_review')"
        upd = f"""
        INSERT INTO figure_counts (sector, rule, severity, {cols})
        SELECT sector, rule, severity, sum(n), sum(r) FROM (
            SELECT sector, rule, severity, 1 AS n, (status = 'in_review')::int AS r
            FROM new_rows WHERE status IN {ACTIVE}
            UNION ALL
            SELECT sector, rule, severity, -1, -(status = 'in_review')::int
            FROM old_rows WHERE status IN {ACTIVE}
        ) d GROUP BY sector, rule, severity HAVING sum(n) <> 0 OR sum(r) <> 0;"""
    else:
        cols, ins, dele = "open_mismatches", "count(*)", "-count(*)"
        upd = f"""
        INSERT INTO figure_counts (sector, rule, severity, {cols})
        SELECT sector, rule, severity, sum(n) FROM (
            SELECT sector, rule, severity, 1 AS n FROM new_rows WHERE status IN {ACTIVE}
            UNION ALL
            SELECT sector, rule, severity, -1 FROM old_rows WHERE status IN {ACTIVE}
        ) d GROUP BY sector, rule, severity HAVING sum(n) <> 0;"""
    return f"""
CREATE OR REPLACE FUNCTION hub_count_mismatches() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO figure_counts (sector, rule, severity, {cols})
        SELECT sector, rule, severity, {ins} FROM new_rows
        WHERE status IN {ACTIVE} GROUP BY sector, rule, severity;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO figure_counts (sector, rule, severity, {cols})
        SELECT sector, rule, severity, {dele} FROM old_rows
        WHERE status IN {ACTIVE} GROUP BY sector, rule, severity;
    ELSE{upd}
    END IF;
    RETURN NULL;
END $$
"""


def upgrade() -> None:
    # No writer may slip between the count below and the new trigger function.
    op.execute("LOCK TABLE mismatches IN SHARE ROW EXCLUSIVE MODE")
    op.add_column(
        "figure_counts",
        sa.Column("in_review_mismatches", sa.BigInteger(), server_default="0", nullable=False),
    )
    op.execute(_function(with_review=True))
    # A delta row per key: open_mismatches already counts these, so only the part is added.
    op.execute(
        "INSERT INTO figure_counts (sector, rule, severity, in_review_mismatches) "
        "SELECT sector, rule, severity, count(*) FROM mismatches WHERE status = 'in_review' "
        "GROUP BY sector, rule, severity"
    )

    op.create_index(
        "ix_mismatches_active_first_seen_at",
        "mismatches",
        ["first_seen_at", "id"],
        postgresql_where=sa.text(f"status IN {ACTIVE}"),
    )


def downgrade() -> None:
    op.drop_index("ix_mismatches_active_first_seen_at", table_name="mismatches")
    op.execute("LOCK TABLE mismatches IN SHARE ROW EXCLUSIVE MODE")
    op.execute(_function(with_review=False))
    # Rows that only carried in-review deltas would be all zeros: drop them.
    op.execute(
        "DELETE FROM figure_counts WHERE records = 0 AND verified = 0 AND open_mismatches = 0"
    )
    op.drop_column("figure_counts", "in_review_mismatches")

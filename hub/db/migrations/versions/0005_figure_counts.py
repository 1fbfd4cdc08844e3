"""figure counts: the gauges' counts kept by statement triggers instead of full counts

The reconciler refreshed ``hub_mismatches_open`` and ``hub_records_verified_ratio`` (and the
API its dashboard) by counting ``sector_records`` and ``mismatches`` in full: a sequential
scan of the biggest tables every 15 s, which at 1M records stalled live batches for a few
seconds each time. Statement-level AFTER triggers with transition tables now add, in the
writer's transaction, one delta row per statement and key to ``figure_counts``; the sums are
exact at every snapshot. INSERT ... ON CONFLICT DO UPDATE fires both the INSERT trigger (the
inserted rows) and the UPDATE trigger (the updated rows), each seeing only its own rows.

The (sector, verified) index of sector_records served only those full counts. It goes: a
planner working from a nearly empty table's statistics (a first load, before the next
ANALYZE) chose it over the primary key for the reconciler's look-up of a batch's records,
probing the index on ``sector`` alone and filtering every record of the sector for each key
(one such query took 25 s at 100k records); and without it, an update of ``verified``
alone no longer touches an index.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"

ACTIVE = "('open', 'in_review')"

# Each function turns the statement's transition tables into signed deltas per key.
_RECORDS = """
CREATE FUNCTION hub_count_sector_records() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO figure_counts (sector, records, verified)
        SELECT sector, count(*), count(*) FILTER (WHERE verified) FROM new_rows GROUP BY sector;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO figure_counts (sector, records, verified)
        SELECT sector, -count(*), -count(*) FILTER (WHERE verified) FROM old_rows GROUP BY sector;
    ELSE
        INSERT INTO figure_counts (sector, records, verified)
        SELECT sector, sum(n), sum(v) FROM (
            SELECT sector, 1 AS n, verified::int AS v FROM new_rows
            UNION ALL
            SELECT sector, -1, -verified::int FROM old_rows
        ) d GROUP BY sector HAVING sum(n) <> 0 OR sum(v) <> 0;
    END IF;
    RETURN NULL;
END $$
"""

_MISMATCHES = f"""
CREATE FUNCTION hub_count_mismatches() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO figure_counts (sector, rule, severity, open_mismatches)
        SELECT sector, rule, severity, count(*) FROM new_rows
        WHERE status IN {ACTIVE} GROUP BY sector, rule, severity;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO figure_counts (sector, rule, severity, open_mismatches)
        SELECT sector, rule, severity, -count(*) FROM old_rows
        WHERE status IN {ACTIVE} GROUP BY sector, rule, severity;
    ELSE
        INSERT INTO figure_counts (sector, rule, severity, open_mismatches)
        SELECT sector, rule, severity, sum(n) FROM (
            SELECT sector, rule, severity, 1 AS n FROM new_rows WHERE status IN {ACTIVE}
            UNION ALL
            SELECT sector, rule, severity, -1 FROM old_rows WHERE status IN {ACTIVE}
        ) d GROUP BY sector, rule, severity HAVING sum(n) <> 0;
    END IF;
    RETURN NULL;
END $$
"""

# TRUNCATE has no transition tables, and it locks out every other writer: drop the counts.
_TRUNCATE = """
CREATE FUNCTION hub_count_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'sector_records' THEN
        DELETE FROM figure_counts WHERE rule = '';
    ELSE
        DELETE FROM figure_counts WHERE rule <> '';
    END IF;
    RETURN NULL;
END $$
"""

_TRIGGERS = [
    (table, function, event, referencing)
    for table, function in (
        ("sector_records", "hub_count_sector_records"),
        ("mismatches", "hub_count_mismatches"),
    )
    for event, referencing in (
        ("INSERT", "NEW TABLE AS new_rows"),
        ("UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows"),
        ("DELETE", "OLD TABLE AS old_rows"),
    )
]
_TABLES = ("sector_records", "mismatches")


def upgrade() -> None:
    op.drop_index("ix_sector_records_sector_verified", table_name="sector_records")
    op.create_table(
        "figure_counts",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("sector", sa.String(length=40), nullable=False),
        sa.Column("rule", sa.String(length=40), server_default="", nullable=False),
        sa.Column("severity", sa.String(length=16), server_default="", nullable=False),
        sa.Column("records", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("verified", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("open_mismatches", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_figure_counts")),
    )
    op.execute(_RECORDS)
    op.execute(_MISMATCHES)
    op.execute(_TRUNCATE)
    # No writer may slip between the initial counts and the triggers.
    op.execute("LOCK TABLE sector_records, mismatches IN SHARE ROW EXCLUSIVE MODE")
    for table, function, event, referencing in _TRIGGERS:
        op.execute(
            f"CREATE TRIGGER {function}_{event.lower()} AFTER {event} ON {table} "
            f"REFERENCING {referencing} FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
        )
    for table in _TABLES:
        op.execute(
            f"CREATE TRIGGER hub_count_truncate AFTER TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION hub_count_truncate()"
        )
    op.execute(
        "INSERT INTO figure_counts (sector, records, verified) "
        "SELECT sector, count(*), count(*) FILTER (WHERE verified) FROM sector_records "
        "GROUP BY sector"
    )
    op.execute(
        "INSERT INTO figure_counts (sector, rule, severity, open_mismatches) "
        f"SELECT sector, rule, severity, count(*) FROM mismatches WHERE status IN {ACTIVE} "
        "GROUP BY sector, rule, severity"
    )


def downgrade() -> None:
    for table, function, event, _referencing in _TRIGGERS:
        op.execute(f"DROP TRIGGER {function}_{event.lower()} ON {table}")
    for table in _TABLES:
        op.execute(f"DROP TRIGGER hub_count_truncate ON {table}")
    op.execute("DROP FUNCTION hub_count_truncate()")
    op.execute("DROP FUNCTION hub_count_sector_records()")
    op.execute("DROP FUNCTION hub_count_mismatches()")
    op.drop_table("figure_counts")
    op.create_index(
        "ix_sector_records_sector_verified", "sector_records", ["sector", "verified"], unique=False
    )

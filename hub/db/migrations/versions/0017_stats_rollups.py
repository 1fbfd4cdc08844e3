"""stats rollups, and two duplicate indexes of mismatches dropped

The dashboard series are kept per hour and per day as snapshots are written:

``/api/v1/stats`` and the dashboard thinned ``stats_snapshots`` (a row per sector every
300 s, never pruned) on every request: at two years of history 1.6 s p50 for 365 days, the
sort spilling to disk. A statement trigger on ``stats_snapshots`` now keeps, in the writer's
transaction, the last snapshot of each hour and of each UTC day per sector in
``stats_rollups`` (the same "last snapshot of the bucket" the thinning picked); the series
are read from there, and the raw snapshots can be pruned (``api.stats_retention_days``)
while the rollups stay. The existing snapshots are rolled up here, once.

``mismatches`` carried 12 indexes (773 MB beside a 249 MB table at 1M rows), each one more
write on every reconciler update and steward action. Two duplicate others and go:
``ix_mismatches_status_sector_rule_id`` (status, sector, rule, id; 105 MB at 1M rows)
beside ``ix_mismatches_status_sector_rule`` (status, sector, rule; 9 MB, deduplicated):
the small one keeps the capped per-rule counts four times faster (index-only), and a
sector + rule page sorted by id through it took 7.5 ms instead of 2.4 ms (29.5 ms instead
of 36.9 ms with status=open alone) on the churned 1M-row bench store;
``ix_mismatches_citizen_id`` is served by ``ix_mismatches_citizen_id_prefix``
(varchar_pattern_ops answers ``=`` and ``= ANY`` as well). ``ix_mismatches_record_key``
stays beside its prefix twin: ``sort=record_key`` pages through it (a pattern_ops index
cannot give the collation's order).
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"

# Seconds per grain; a bucket starts at a multiple of them since the epoch (UTC).
GRAINS = "(VALUES ('hour', 3600), ('day', 86400))"

_ROLLUP_SELECT = f"""
SELECT DISTINCT ON (g.grain, s.sector, bucket)
       g.grain, s.sector, to_timestamp(floor(extract(epoch FROM s.at) / g.secs) * g.secs) AS bucket,
       s.at, s.records_seen, s.records_verified, s.open_by_rule
FROM {{source}} s CROSS JOIN {GRAINS} AS g(grain, secs)
ORDER BY g.grain, s.sector, bucket, s.at DESC
"""

_UPSERT = """
ON CONFLICT (grain, sector, bucket) DO UPDATE
SET at = excluded.at, records_seen = excluded.records_seen,
    records_verified = excluded.records_verified, open_by_rule = excluded.open_by_rule
WHERE excluded.at >= stats_rollups.at
"""

_COLUMNS = "(grain, sector, bucket, at, records_seen, records_verified, open_by_rule)"

_FUNCTION = f"""
CREATE FUNCTION hub_rollup_stats_snapshots() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO stats_rollups {_COLUMNS}
    {_ROLLUP_SELECT.format(source="new_rows")}
    {_UPSERT};
    RETURN NULL;
END $$
"""


def upgrade() -> None:
    op.create_table(
        "stats_rollups",
        sa.Column("grain", sa.String(length=8), nullable=False),
        sa.Column("sector", sa.String(length=40), nullable=False),
        sa.Column("bucket", sa.DateTime(timezone=True), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("records_seen", sa.BigInteger(), nullable=False),
        sa.Column("records_verified", sa.BigInteger(), nullable=False),
        sa.Column("open_by_rule", sa.dialects.postgresql.JSONB(), nullable=False),
        sa.CheckConstraint("grain IN ('hour', 'day')", name=op.f("ck_stats_rollups_grain")),
        sa.PrimaryKeyConstraint("grain", "sector", "bucket", name=op.f("pk_stats_rollups")),
    )
    op.execute(_FUNCTION)
    op.execute(
        "CREATE TRIGGER stats_snapshots_rollup AFTER INSERT ON stats_snapshots"
        " REFERENCING NEW TABLE AS new_rows"
        " FOR EACH STATEMENT EXECUTE FUNCTION hub_rollup_stats_snapshots()"
    )
    op.drop_index("ix_mismatches_status_sector_rule_id", table_name="mismatches")
    op.drop_index("ix_mismatches_citizen_id", table_name="mismatches")
    op.execute(
        f"INSERT INTO stats_rollups {_COLUMNS} "
        + _ROLLUP_SELECT.format(source="stats_snapshots")
        + _UPSERT
    )


def downgrade() -> None:
    op.create_index("ix_mismatches_citizen_id", "mismatches", ["citizen_id"])
    op.create_index(
        "ix_mismatches_status_sector_rule_id", "mismatches", ["status", "sector", "rule", "id"]
    )
    op.execute("DROP TRIGGER stats_snapshots_rollup ON stats_snapshots")
    op.execute("DROP FUNCTION hub_rollup_stats_snapshots()")
    op.drop_table("stats_rollups")

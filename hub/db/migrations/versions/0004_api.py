"""api: indexes for the steward queue, prefix search and audit lookups at 1M+ rows"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.create_index(
        "ix_mismatches_status_sector_rule_id",
        "mismatches",
        ["status", "sector", "rule", "id"],
        unique=False,
    )
    op.create_index(
        "ix_mismatches_severity_rank_id",
        "mismatches",
        [
            sa.text(
                "(CASE severity WHEN 'low' THEN 1 WHEN 'medium' THEN 2 WHEN 'high' THEN 3 "
                "WHEN 'critical' THEN 4 ELSE 0 END)"
            ),
            "id",
        ],
        unique=False,
    )
    op.create_index(
        "ix_mismatches_province_status_id",
        "mismatches",
        ["province_code", "status", "id"],
        unique=False,
    )
    op.create_index(
        "ix_mismatches_record_key_prefix",
        "mismatches",
        ["record_key"],
        unique=False,
        postgresql_ops={"record_key": "varchar_pattern_ops"},
    )
    op.create_index(
        "ix_mismatches_citizen_id_prefix",
        "mismatches",
        ["citizen_id"],
        unique=False,
        postgresql_ops={"citizen_id": "varchar_pattern_ops"},
    )
    op.create_index(
        "ix_audit_log_target", "audit_log", ["target_type", "target_id", "id"], unique=False
    )
    op.create_index(
        "ix_audit_log_citizen_id",
        "audit_log",
        [sa.text("(detail ->> 'citizen_id')")],
        unique=False,
        postgresql_where=sa.text("(detail ->> 'citizen_id') IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_audit_log_citizen_id", table_name="audit_log")
    op.drop_index("ix_audit_log_target", table_name="audit_log")
    op.drop_index("ix_mismatches_citizen_id_prefix", table_name="mismatches")
    op.drop_index("ix_mismatches_province_status_id", table_name="mismatches")
    op.drop_index("ix_mismatches_severity_rank_id", table_name="mismatches")
    op.drop_index("ix_mismatches_record_key_prefix", table_name="mismatches")
    op.drop_index("ix_mismatches_status_sector_rule_id", table_name="mismatches")

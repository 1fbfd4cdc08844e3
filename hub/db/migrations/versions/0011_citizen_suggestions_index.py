"""citizen page: find the mismatches that suggest a citizen as a candidate

A citizen's page lists the sector records an open mismatch suggests the citizen for. The
suggestions are a JSONB array of candidates; a GIN index (``jsonb_path_ops``, which answers
``@>`` containment) over the rows that hold any makes ``suggestions @> '[{"citizen_id":
…}]'`` an index look-up instead of a scan of every mismatch.
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"


def upgrade() -> None:
    op.create_index(
        "ix_mismatches_suggestions",
        "mismatches",
        ["suggestions"],
        unique=False,
        postgresql_using="gin",
        postgresql_ops={"suggestions": "jsonb_path_ops"},
        postgresql_where=sa.text("suggestions IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_mismatches_suggestions", table_name="mismatches")

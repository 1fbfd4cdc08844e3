"""dismissal reason codes: mismatches.dismissal_code and mismatch_history.dismissal_code

A steward's dismissal names a configured reason code (``queue.dismissal_reasons``) beside
the free text, so false-positive patterns can be counted. Rows dismissed before keep NULL
("unspecified"). A partial index over the dismissed rows serves the counts by sector and
code and the queue's ``dismissal_code`` filter without touching the open rows.
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"


def upgrade() -> None:
    op.add_column("mismatches", sa.Column("dismissal_code", sa.String(length=64)))
    op.add_column("mismatch_history", sa.Column("dismissal_code", sa.String(length=64)))
    op.create_index(
        "ix_mismatches_dismissed_code",
        "mismatches",
        ["sector", "dismissal_code"],
        postgresql_where=sa.text("status = 'dismissed'"),
    )


def downgrade() -> None:
    op.drop_index("ix_mismatches_dismissed_code", table_name="mismatches")
    op.drop_column("mismatch_history", "dismissal_code")
    op.drop_column("mismatches", "dismissal_code")

"""one key per record's history: connector_record_ids

A logical connector on a table whose replica identity is not FULL gets key-only before
images: its deletes, and updates that change a record's citizen ID, do not say which ID the
record carried. The connector keeps the Kafka key each record last carried here, so it keys
the delete (or the retraction of the old ID) by it.
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"


def upgrade() -> None:
    op.create_table(
        "connector_record_ids",
        sa.Column("connector", sa.String(length=64), nullable=False),
        sa.Column("record_key", sa.String(length=256), nullable=False),
        sa.Column("kafka_key", sa.String(length=320), nullable=False),
        sa.PrimaryKeyConstraint("connector", "record_key", name=op.f("pk_connector_record_ids")),
    )


def downgrade() -> None:
    op.drop_table("connector_record_ids")

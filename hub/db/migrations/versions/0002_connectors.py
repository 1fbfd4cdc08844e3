"""connector offsets and snapshot key sets"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.create_table(
        "connector_offsets",
        sa.Column("connector", sa.String(length=64), nullable=False),
        sa.Column("offset", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("connector", name=op.f("pk_connector_offsets")),
    )
    op.create_table(
        "connector_snapshot_keys",
        sa.Column("connector", sa.String(length=64), nullable=False),
        sa.Column("record_key", sa.String(length=256), nullable=False),
        sa.Column("citizen_id", sa.String(length=64), nullable=True),
        sa.Column("row_hash", sa.String(length=32), nullable=True),
        sa.Column("run", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("connector", "record_key", name=op.f("pk_connector_snapshot_keys")),
    )
    op.create_index(
        "ix_connector_snapshot_keys_connector_run",
        "connector_snapshot_keys",
        ["connector", "run"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_connector_snapshot_keys_connector_run", table_name="connector_snapshot_keys")
    op.drop_table("connector_snapshot_keys")
    op.drop_table("connector_offsets")

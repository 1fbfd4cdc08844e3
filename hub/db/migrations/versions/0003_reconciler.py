"""reconciler: source positions, registry record keys, tombstones, outbox"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.add_column("registry_citizens", sa.Column("record_key", sa.String(length=256)))
    op.add_column("registry_citizens", sa.Column("source_lsn", sa.BigInteger()))
    op.add_column("registry_citizens", sa.Column("source_ts", sa.DateTime(timezone=True)))
    op.create_index(
        "ix_registry_citizens_record_key", "registry_citizens", ["record_key"], unique=True
    )
    op.add_column("sector_records", sa.Column("source_lsn", sa.BigInteger()))
    op.create_table(
        "reconciler_tombstones",
        sa.Column("source", sa.String(length=40), nullable=False),
        sa.Column("record_key", sa.String(length=256), nullable=False),
        sa.Column("source_lsn", sa.BigInteger(), nullable=True),
        sa.Column("source_ts", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "deleted_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("source", "record_key", name=op.f("pk_reconciler_tombstones")),
    )
    op.create_table(
        "reconciler_outbox",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("topic", sa.String(length=249), nullable=False),
        sa.Column("key", sa.LargeBinary(), nullable=True),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconciler_outbox")),
    )


def downgrade() -> None:
    op.drop_table("reconciler_outbox")
    op.drop_table("reconciler_tombstones")
    op.drop_column("sector_records", "source_lsn")
    op.drop_index("ix_registry_citizens_record_key", table_name="registry_citizens")
    op.drop_column("registry_citizens", "source_ts")
    op.drop_column("registry_citizens", "source_lsn")
    op.drop_column("registry_citizens", "record_key")

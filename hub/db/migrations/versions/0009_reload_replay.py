"""config reloads and idempotent dead-letter replay: connector_requests.result, dlq_replays

A restart or re-snapshot request re-reads the config file; the connector now stores how it
handled each request (``applied: …``, ``unchanged``, ``refused: <why>``) beside
``handled_at``, so an operator sees why a reload was refused. ``hub dlq replay`` records
each letter it published again (by the SHA-256 of its content, with the partition and
offset it was read at) so a second replay does not send it twice.
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"


def upgrade() -> None:
    op.add_column("connector_requests", sa.Column("result", sa.Text(), nullable=True))
    op.create_table(
        "dlq_replays",
        sa.Column("letter", sa.String(length=64), nullable=False),
        sa.Column("connector", sa.String(length=64), nullable=False),
        sa.Column("kafka_partition", sa.Integer(), nullable=False),
        sa.Column("kafka_offset", sa.BigInteger(), nullable=False),
        sa.Column(
            "replayed_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("letter", name=op.f("pk_dlq_replays")),
    )


def downgrade() -> None:
    op.drop_table("dlq_replays")
    op.drop_column("connector_requests", "result")

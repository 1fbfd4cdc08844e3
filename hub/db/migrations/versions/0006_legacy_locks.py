"""legacy ID locks: one row per legacy ID number, locked by the reconciler batches that read
across partitions through it

A sector record that carries a legacy ID number is keyed (and partitioned) by that number,
while the registry citizen holding it is keyed by the current ID: with several reconcilers
the two sides can be applied by two processes at once. Each transaction read the other
side as committed before the other's commit, so the record could keep a judgment made
against the citizen's previous state (write skew). A batch now locks the rows of the legacy
numbers it reads across, in sorted order, before it reads either side; the second of two
such batches waits for the first to commit and then reads what it wrote.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    op.create_table(
        "reconciler_legacy_locks",
        sa.Column("legacy_id", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("legacy_id", name=op.f("pk_reconciler_legacy_locks")),
    )


def downgrade() -> None:
    op.drop_table("reconciler_legacy_locks")

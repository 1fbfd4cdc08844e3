"""corrections as first-class objects: corrections, correction_history, mismatches.correction_id

A steward proposes a correction on a mismatch (a candidate citizen ID or a field's value);
it may be approved, is sent to the sector, and ends confirmed (the reconciler saw the
source carry it), rejected or acknowledged by the agency, or withdrawn. The mismatch a
confirmed correction fixed points to it.
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"

_LIVE = "status IN ('proposed', 'approved', 'sent')"


def _now() -> sa.Column:
    return sa.Column(
        "created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
    )


def upgrade() -> None:
    op.create_table(
        "corrections",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("mismatch_id", sa.BigInteger(), nullable=False),
        sa.Column("sector", sa.String(length=40), nullable=False),
        sa.Column("record_key", sa.String(length=256), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("field", sa.String(length=40), nullable=False),
        sa.Column("current_value", sa.Text(), nullable=True),
        sa.Column("proposed_value", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), server_default="proposed", nullable=False),
        sa.Column("proposed_by", sa.String(length=128), nullable=False),
        sa.Column("approved_by", sa.String(length=128), nullable=True),
        sa.Column("agency_reason", sa.Text(), nullable=True),
        _now(),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["mismatch_id"],
            ["mismatches.id"],
            name=op.f("fk_corrections_mismatch_id_mismatches"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_corrections")),
    )
    op.create_index("ix_corrections_sector_status_id", "corrections", ["sector", "status", "id"])
    op.create_index("ix_corrections_mismatch_id", "corrections", ["mismatch_id"])
    op.create_index(
        "ix_corrections_live_mismatch",
        "corrections",
        ["mismatch_id"],
        unique=True,
        postgresql_where=sa.text(_LIVE),
    )
    op.create_index(
        "ix_corrections_confirmable_record",
        "corrections",
        ["sector", "record_key"],
        postgresql_where=sa.text("status IN ('sent', 'acknowledged')"),
    )
    op.create_table(
        "correction_history",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("correction_id", sa.BigInteger(), nullable=False),
        sa.Column(
            "at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("from_status", sa.String(length=16), nullable=True),
        sa.Column("to_status", sa.String(length=16), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["correction_id"],
            ["corrections.id"],
            name=op.f("fk_correction_history_correction_id_corrections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_correction_history")),
    )
    op.create_index(
        "ix_correction_history_correction_id", "correction_history", ["correction_id", "id"]
    )
    op.add_column("mismatches", sa.Column("correction_id", sa.BigInteger(), nullable=True))
    op.create_foreign_key(
        op.f("fk_mismatches_correction_id_corrections"),
        "mismatches",
        "corrections",
        ["correction_id"],
        ["id"],
        ondelete="SET NULL",
    )


def downgrade() -> None:
    op.drop_constraint(
        op.f("fk_mismatches_correction_id_corrections"), "mismatches", type_="foreignkey"
    )
    op.drop_column("mismatches", "correction_id")
    op.drop_table("correction_history")
    op.drop_table("corrections")

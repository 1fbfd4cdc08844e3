"""queue ergonomics: saved filters per user, name search index (issue #24 item 1)

``saved_filters`` keeps a steward's named queue filters (the queue page's query string),
unique per user and name. ``ix_sector_records_name_words`` is a GIN index over the words of
each sector record's folded name, so the queue's name search (every folded query word the
prefix of a name word, ``to_tsvector('simple', …) @@ 'nguyen':* & 'van':*``) is an index
look-up at a million mismatches rather than a scan.
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"

NAME_WORDS = sa.text("to_tsvector('simple'::regconfig, coalesce(name_folded, ''))")


def upgrade() -> None:
    op.create_table(
        "saved_filters",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("query", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_saved_filters_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_saved_filters")),
        sa.UniqueConstraint("user_id", "name", name=op.f("uq_saved_filters_user_id_name")),
    )
    op.create_index(
        "ix_sector_records_name_words", "sector_records", [NAME_WORDS], postgresql_using="gin"
    )


def downgrade() -> None:
    op.drop_index("ix_sector_records_name_words", table_name="sector_records")
    op.drop_table("saved_filters")

"""server-side UI sessions, failed-login counts, shared settings (issue #24: logins and
sessions that resist attack)

``ui_sessions`` holds the SHA-256 of each steward session's token, so logout, disabling a
user and idle or absolute expiry end every copy of a cookie. ``login_failures`` counts failed
logins per user name and per address, so a guesser is refused before a hash is computed.
``hub_settings`` keeps the UI session secret when the config sets none.
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"


def _now() -> sa.TextClause:
    return sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "ui_sessions",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column(
            "last_seen_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_ui_sessions_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_ui_sessions")),
    )
    op.create_index("ix_ui_sessions_user_id", "ui_sessions", ["user_id"])
    op.create_table(
        "login_failures",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("user_name", sa.String(length=128), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_failures")),
    )
    op.create_index("ix_login_failures_at", "login_failures", ["at"])
    op.create_index("ix_login_failures_user_name_at", "login_failures", ["user_name", "at"])
    op.create_index("ix_login_failures_address_at", "login_failures", ["address", "at"])
    op.create_table(
        "hub_settings",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_hub_settings")),
    )


def downgrade() -> None:
    op.drop_table("hub_settings")
    op.drop_table("login_failures")
    op.drop_table("ui_sessions")

"""Users and API tokens in the hub's store: create, list, disable, authenticate."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine, func, insert, select, update

from hub.api import audit
from hub.api.auth import Principal, hash_password, hash_token, new_token, verify_password
from hub.api.errors import Conflict, NotFound, Unprocessable
from hub.api.sessions import end_user_sessions
from hub.db.models import ROLES, ApiToken, User

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$"
_NAME = re.compile(NAME_PATTERN)
MIN_PASSWORD = 8


@dataclass(frozen=True)
class UserInfo:
    id: int
    name: str
    role: str
    disabled: bool
    has_password: bool
    created_at: datetime
    tokens: int


def _check(name: str, role: str, password: str | None) -> None:
    if not _NAME.match(name):
        raise Unprocessable(
            f"bad user name {name!r}: letters, digits and . _ @ -, starting with a letter or digit"
        )
    if role not in ROLES:
        raise Unprocessable(f"unknown role {role!r} (known: {', '.join(ROLES)})")
    if password is not None and len(password) < MIN_PASSWORD:
        raise Unprocessable(f"password too short: at least {MIN_PASSWORD} characters")


def create_user(
    engine: Engine, name: str, role: str, password: str | None = None
) -> tuple[UserInfo, str]:
    """Create a user with a first API token; returns (user, token). The token is not stored,
    only its hash: the caller must show it now or never. Raises Conflict if the name is
    taken, Unprocessable on a bad name, role or password."""
    _check(name, role, password)
    with engine.begin() as conn:
        if conn.scalar(select(User.id).where(User.name == name)) is not None:
            raise Conflict(f"user {name!r} already exists")
        uid = conn.scalar(
            insert(User)
            .values(
                name=name,
                role=role,
                password_hash=hash_password(password) if password is not None else None,
            )
            .returning(User.id)
        )
        token = issue_token(conn, uid)
    return get_user(engine, name), token


def create_user_recorded(
    engine: Engine, actor: str, name: str, role: str, password: str | None = None
) -> tuple[UserInfo, str]:
    """:func:`create_user`, then the audit entry ``user_create`` by ``actor``."""
    info, token = create_user(engine, name, role, password)
    with engine.begin() as conn:
        audit.record(
            conn,
            actor,
            "user_create",
            target_type="user",
            target_id=name,
            detail={"role": role},
        )
    return info, token


def issue_token(conn: Connection, user_id: int) -> str:
    """A new bearer token for ``user_id`` (stored as SHA-256); returned once."""
    token = new_token()
    conn.execute(insert(ApiToken).values(user_id=user_id, token_hash=hash_token(token)))
    return token


def new_token_for(engine: Engine, name: str) -> str:
    """Issue one more token for an existing user; NotFound if there is none."""
    with engine.begin() as conn:
        uid = conn.scalar(select(User.id).where(User.name == name))
        if uid is None:
            raise NotFound(f"no user {name!r}")
        return issue_token(conn, uid)


def _info_query():
    tokens = (
        select(func.count(ApiToken.id))
        .where(ApiToken.user_id == User.id)
        .correlate(User)
        .scalar_subquery()
    )
    return select(
        User.id,
        User.name,
        User.role,
        User.disabled,
        User.password_hash.is_not(None),
        User.created_at,
        tokens,
    )


def list_users(engine: Engine) -> list[UserInfo]:
    with engine.connect() as conn:
        return [UserInfo(*row) for row in conn.execute(_info_query().order_by(User.name))]


def get_user(engine: Engine, name: str) -> UserInfo:
    """The user called ``name``; NotFound if there is none."""
    with engine.connect() as conn:
        row = conn.execute(_info_query().where(User.name == name)).one_or_none()
    if row is None:
        raise NotFound(f"no user {name!r}")
    return UserInfo(*row)


def set_disabled(engine: Engine, name: str, disabled: bool) -> UserInfo:
    """Disable (every session and token stops working at once) or enable a user."""
    with engine.begin() as conn:
        done = conn.execute(update(User).where(User.name == name).values(disabled=disabled))
        if done.rowcount == 0:
            raise NotFound(f"no user {name!r}")
        if disabled:
            end_user_sessions(conn, name)
    return get_user(engine, name)


def set_password(engine: Engine, name: str, password: str) -> None:
    _check(name, ROLES[0], password)
    with engine.begin() as conn:
        done = conn.execute(
            update(User).where(User.name == name).values(password_hash=hash_password(password))
        )
        if done.rowcount == 0:
            raise NotFound(f"no user {name!r}")
        end_user_sessions(conn, name)  # a new password signs every old session out


def authenticate_password(engine: Engine, name: str, password: str) -> Principal | None:
    """The enabled user with this name and password, else None (same cost either way)."""
    with engine.connect() as conn:
        row = conn.execute(
            select(User.id, User.name, User.role, User.password_hash, User.disabled).where(
                User.name == name
            )
        ).one_or_none()
    ok = verify_password(row.password_hash if row else None, password)
    if not ok or row is None or row.disabled:
        return None
    return Principal(row.id, row.name, row.role)


def authenticate_token(engine: Engine, token: str) -> Principal | None:
    """The enabled user holding this bearer token, else None. Marks the token used (at most
    once a minute, so reads do not turn into writes)."""
    digest = hash_token(token)
    with engine.begin() as conn:
        row = conn.execute(
            select(User.id, User.name, User.role, ApiToken.id.label("token_id"))
            .join(ApiToken, ApiToken.user_id == User.id)
            .where(ApiToken.token_hash == digest, User.disabled.is_(False))
        ).one_or_none()
        if row is None:
            return None
        conn.execute(
            update(ApiToken)
            .where(
                ApiToken.id == row.token_id,
                (ApiToken.last_used_at.is_(None))
                | (ApiToken.last_used_at < func.now() - func.make_interval(0, 0, 0, 0, 0, 1)),
            )
            .values(last_used_at=func.now())
        )
    return Principal(row.id, row.name, row.role)


def active_user_role(conn: Connection, name: str) -> str | None:
    """The role of the enabled user called ``name``, else None."""
    return conn.scalar(select(User.role).where(User.name == name, User.disabled.is_(False)))

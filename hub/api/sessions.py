"""Steward logins and sessions that resist attack (SPEC §6).

- **Throttling before the hash.** Failed logins are counted per user name and per client
  address over the last minute (``login_failures``); past ``api.login_failures_per_user`` or
  ``api.login_failures_per_address`` a login is refused before any password hash is computed.
- **A bound on hashing.** Each argon2 verification takes 64 MiB; ``HashSlots`` lets only
  ``api.login_concurrency`` run at once, so a burst of logins cannot exhaust memory.
- **Server-side sessions.** The signed cookie carries only a random token; the hub keeps its
  SHA-256 in ``ui_sessions`` with idle and absolute expiry. Logout, disabling the user and a
  new password end the session for every copy of the cookie.
- **One secret for every process.** Without ``api.session_secret`` the cookie-signing secret
  is kept in ``hub_settings``, so restarts and replicas keep their users signed in.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

import anyio
from sqlalchemy import Connection, Engine, delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from starlette.middleware.sessions import SessionMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from hub.api.auth import Principal, hash_token
from hub.config import ApiConfig
from hub.db.models import HubSetting, LoginFailure, UiSession, User

log = logging.getLogger(__name__)
T = TypeVar("T")

SESSION_COOKIE = "hub_session"
SESSION_KEY = "sid"
"""The key of the session token in the signed cookie."""
SECRET_SETTING = "ui_session_secret"
WINDOW = timedelta(minutes=1)
"""The window failed logins are counted over."""
_KEEP_FAILURES = timedelta(hours=1)
_KEEP_ENDED = timedelta(days=1)
_TOUCH_EVERY = timedelta(minutes=1)
"""A session's ``last_seen_at`` is written at most this often, so reads stay reads."""


@dataclass(frozen=True)
class SessionPolicy:
    idle: timedelta
    absolute: timedelta

    @classmethod
    def of(cls, api: ApiConfig) -> SessionPolicy:
        return cls(
            idle=timedelta(minutes=api.session_idle_minutes),
            absolute=timedelta(hours=api.session_max_hours),
        )


# ---------------------------------------------------------------------------- sessions


def open_session(conn: Connection, user_id: int, policy: SessionPolicy) -> str:
    """A new session of ``user_id``; returns the token the cookie carries (kept hashed).
    Sessions ended more than a day ago are pruned on the way."""
    conn.execute(
        delete(UiSession).where(
            (UiSession.expires_at < func.now() - _KEEP_ENDED)
            | (UiSession.revoked_at < func.now() - _KEEP_ENDED)
        )
    )
    token = secrets.token_urlsafe(32)
    conn.execute(
        insert(UiSession).values(
            token_hash=hash_token(token),
            user_id=user_id,
            expires_at=func.now() + policy.absolute,
        )
    )
    return token


def session_principal(engine: Engine, token: str, policy: SessionPolicy) -> Principal | None:
    """The enabled user of a live session (not ended, not idle past ``policy.idle``, not
    past its absolute expiry), else None. Marks the session seen at most once a minute."""
    digest = hash_token(token)
    with engine.begin() as conn:
        row = conn.execute(
            select(
                User.id,
                User.name,
                User.role,
                (UiSession.last_seen_at < func.now() - _TOUCH_EVERY).label("stale"),
            )
            .join(UiSession, UiSession.user_id == User.id)
            .where(
                UiSession.token_hash == digest,
                UiSession.revoked_at.is_(None),
                UiSession.expires_at > func.now(),
                UiSession.last_seen_at > func.now() - policy.idle,
                User.disabled.is_(False),
            )
        ).one_or_none()
        if row is None:
            return None
        if row.stale:  # most requests: no write at all
            conn.execute(
                update(UiSession)
                .where(UiSession.token_hash == digest)
                .values(last_seen_at=func.now())
            )
    return Principal(row.id, row.name, row.role)


def end_session(engine: Engine, token: str) -> None:
    """Logout: the session ends for every copy of its cookie."""
    with engine.begin() as conn:
        conn.execute(
            update(UiSession)
            .where(UiSession.token_hash == hash_token(token), UiSession.revoked_at.is_(None))
            .values(revoked_at=func.now())
        )


def end_user_sessions(conn: Connection, user_name: str) -> int:
    """End every live session of a user (disabled, or given a new password); how many."""
    done = conn.execute(
        update(UiSession)
        .where(
            UiSession.user_id == select(User.id).where(User.name == user_name).scalar_subquery(),
            UiSession.revoked_at.is_(None),
        )
        .values(revoked_at=func.now())
    )
    return done.rowcount


# ---------------------------------------------------------------------------- throttle


def refusal(conn: Connection, name: str, address: str, api: ApiConfig) -> str | None:
    """Why a login for ``name`` from ``address`` is refused before hashing, or None."""
    recent = LoginFailure.at > func.now() - WINDOW
    row = conn.execute(
        select(
            func.count().filter(LoginFailure.user_name == name).label("by_user"),
            func.count().filter(LoginFailure.address == address).label("by_address"),
        ).where(recent, (LoginFailure.user_name == name) | (LoginFailure.address == address))
    ).one()
    if row.by_user >= api.login_failures_per_user:
        return "too many failed logins for this user name in the last minute"
    if row.by_address >= api.login_failures_per_address:
        return "too many failed logins from this address in the last minute"
    return None


def record_failure(conn: Connection, name: str, address: str) -> None:
    """Count one failed login (never the password); failures older than an hour are pruned."""
    conn.execute(delete(LoginFailure).where(LoginFailure.at < func.now() - _KEEP_FAILURES))
    conn.execute(insert(LoginFailure).values(user_name=name[:128], address=address[:64]))


def clear_failures(conn: Connection, name: str) -> None:
    """A successful login starts the user name's count again."""
    conn.execute(delete(LoginFailure).where(LoginFailure.user_name == name))


class Busy(Exception):
    """Every hash slot stayed taken for the whole wait."""


class HashSlots:
    """At most ``n`` password hashes verified at once (each argon2 run takes 64 MiB). A login
    waiting for a slot holds no thread, so a burst of logins cannot starve other requests."""

    def __init__(self, n: int, wait_s: float = 30.0):
        self._n = n
        self._wait_s = wait_s
        self._slots: anyio.Semaphore | None = None

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """``fn(*args)`` in a worker thread once a slot is free; Busy after ``wait_s``."""
        if self._slots is None:
            self._slots = anyio.Semaphore(self._n)
        try:
            with anyio.fail_after(self._wait_s):
                await self._slots.acquire()
        except TimeoutError:
            raise Busy from None
        try:
            return await anyio.to_thread.run_sync(fn, *args)
        finally:
            self._slots.release()


# ---------------------------------------------------------------------- cookie secret


def shared_secret(engine: Engine) -> str:
    """The cookie-signing secret every ``hub serve`` process shares, created once."""
    with engine.begin() as conn:
        conn.execute(
            pg_insert(HubSetting)
            .values(key=SECRET_SETTING, value=secrets.token_urlsafe(48))
            .on_conflict_do_nothing(index_elements=["key"])
        )
        return conn.scalar(select(HubSetting.value).where(HubSetting.key == SECRET_SETTING))


class SessionCookies:
    """Starlette's signed-cookie sessions with the hub's secret (the config's, else the
    database's, read on the first request so the server starts while the database is down)
    and the ``Secure`` flag set by ``api.cookie_secure`` or, when unset, by the request's
    scheme (``https`` directly or through a trusted proxy)."""

    def __init__(self, app: ASGIApp, api: ApiConfig, engine: Engine):
        self._app = app
        self._api = api
        self._engine = engine
        self._by_secure: dict[bool, SessionMiddleware] | None = None
        self._lock = anyio.Lock()

    def _middlewares(self, secret: str) -> dict[bool, SessionMiddleware]:
        max_age = int(self._api.session_max_hours * 3600)
        return {
            secure: SessionMiddleware(
                self._app,
                secret_key=secret,
                session_cookie=SESSION_COOKIE,
                max_age=max_age,
                same_site="lax",
                https_only=secure,
            )
            for secure in (False, True)
        }

    async def _load(self) -> dict[bool, SessionMiddleware]:
        async with self._lock:
            if self._by_secure is None:
                configured = self._api.session_secret
                if configured is not None:
                    secret = configured.get_secret_value()
                else:
                    try:
                        secret = await anyio.to_thread.run_sync(shared_secret, self._engine)
                    except Exception as exc:  # database down: this request only, try again
                        log.warning("session secret not readable from the database: %s", exc)
                        return self._middlewares(secrets.token_urlsafe(32))
                self._by_secure = self._middlewares(secret)
            return self._by_secure

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self._app(scope, receive, send)
            return
        by_secure = self._by_secure or await self._load()
        secure = self._api.cookie_secure
        if secure is None:
            secure = scope.get("scheme") in ("https", "wss")
        await by_secure[secure](scope, receive, send)

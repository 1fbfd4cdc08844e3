"""FastAPI dependencies: the app's shared state and the authenticated principal of a request."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine

from hub.api import users
from hub.api.auth import Permission, Principal, csrf_matches, new_csrf_token
from hub.api.errors import ApiError, Forbidden, Unauthorized
from hub.api.sessions import SESSION_KEY, HashSlots, SessionPolicy, session_principal
from hub.api.stats import StatsCache
from hub.config import HubConfig


@dataclass
class AppState:
    """What every request handler shares: config, the pooled engine, the stats cache."""

    config: HubConfig
    engine: Engine
    stats: StatsCache
    hash_slots: HashSlots

    @property
    def sectors(self) -> list[str]:
        return list(self.config.sectors)

    @property
    def dismissal_codes(self) -> list[str]:
        """The configured dismissal reason codes (for filters that name one)."""
        return [r.code for r in self.config.queue.dismissal_reasons]


def get_state(request: Request) -> AppState:
    return request.app.state.hub


_bearer = HTTPBearer(auto_error=False, description="An API token from `hub users create`.")


def api_principal(
    request: Request,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The user whose bearer token the request carries; Unauthorized (401) otherwise."""
    if creds is None or creds.scheme.lower() != "bearer" or not creds.credentials:
        raise Unauthorized("authentication required: send Authorization: Bearer <token>")
    principal = users.authenticate_token(get_state(request).engine, creds.credentials)
    if principal is None:
        raise Unauthorized("invalid or revoked token, or the user is disabled")
    request.state.principal = principal
    return principal


def require(permission: Permission) -> Callable[..., Principal]:
    """An API dependency: the bearer principal, if their role holds ``permission`` (403)."""

    def dep(principal: Annotated[Principal, Depends(api_principal)]) -> Principal:
        if not principal.can(permission):
            raise Forbidden(
                f"role {principal.role} may not {permission.value} (needs a role "
                f"holding the {permission.value!r} permission)"
            )
        return principal

    return dep


# ------------------------------------------------------------------------------------- UI


class LoginRequired(ApiError):
    """A UI request without a valid session: answered with a redirect to the login form."""

    status = 303

    def __init__(self, next_url: str):
        super().__init__("login required")
        self.location = "/login?next=" + quote(next_url, safe="/")


def ui_principal(request: Request) -> Principal:
    """The user of the request's session; LoginRequired if there is none, or it ended
    (logout, idle or absolute expiry, the user disabled or given a new password)."""
    token = request.session.get(SESSION_KEY)
    principal = None
    if isinstance(token, str) and token:
        state = get_state(request)
        principal = session_principal(state.engine, token, SessionPolicy.of(state.config.api))
    if principal is None:
        request.session.pop(SESSION_KEY, None)
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(target if request.method == "GET" else "/")
    request.state.principal = principal
    return principal


def ui_require(permission: Permission) -> Callable[..., Principal]:
    """A UI dependency: the session's principal, if their role holds ``permission``."""

    def dep(principal: Annotated[Principal, Depends(ui_principal)]) -> Principal:
        if not principal.can(permission):
            raise Forbidden(f"your role ({principal.role}) may not open this page")
        return principal

    return dep


def csrf_token(request: Request) -> str:
    """The session's CSRF token, created on first use; every UI form posts it back."""
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = new_csrf_token()
    return token


async def verify_csrf(request: Request) -> None:
    """Refuse (403) a form POST whose ``csrf_token`` is not the session's."""
    form = await request.form()
    given = form.get("csrf_token")
    if not csrf_matches(request.session.get("csrf"), given if isinstance(given, str) else None):
        raise Forbidden("the form expired or did not come from this site; reload and try again")

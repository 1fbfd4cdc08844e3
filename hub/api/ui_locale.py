"""The console's language per request: the user's choice (``users.locale``), else the
browser's ``Accept-Language``, else English; and the form that saves a user's choice.

The choice is looked up once per session (then kept in the session cookie's data), so a page
costs no query for it; saving a new choice updates both."""

from __future__ import annotations

from typing import Annotated

from anyio.to_thread import run_sync
from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse
from sqlalchemy import Engine, select, update

from hub.api.auth import Principal, hash_token
from hub.api.deps import get_state, ui_principal, verify_csrf
from hub.api.errors import Unprocessable
from hub.api.sessions import SESSION_KEY
from hub.db.models import UiSession, User
from hub.web import i18n

LOCALE_KEY = "locale"  # in the session: the user's saved locale, "" for none


def _user_locale(engine: Engine, token: str) -> str:
    with engine.connect() as conn:
        loc = conn.execute(
            select(User.locale)
            .join(UiSession, UiSession.user_id == User.id)
            .where(UiSession.token_hash == hash_token(token))
        ).scalar_one_or_none()
    return loc or ""


async def request_locale(request: Request) -> str:
    """Sets the request's locale (an async dependency, so the context variable it sets is
    the one the handler, run in the thread pool, and the error handlers see)."""
    saved = request.session.get(LOCALE_KEY)
    token = request.session.get(SESSION_KEY)
    if saved is None and isinstance(token, str) and token:
        saved = await run_sync(_user_locale, get_state(request).engine, token)
        request.session[LOCALE_KEY] = saved
    locale = i18n.choose(saved or None, request.headers.get("accept-language"))
    i18n.set_locale(locale)
    return locale


router = APIRouter(include_in_schema=False, dependencies=[Depends(request_locale)])


def _save(engine: Engine, user_id: int, locale: str | None) -> None:
    with engine.begin() as conn:
        conn.execute(update(User).where(User.id == user_id).values(locale=locale))


@router.post("/profile/locale", dependencies=[Depends(verify_csrf)])
async def save_locale(
    request: Request, principal: Annotated[Principal, Depends(ui_principal)]
) -> RedirectResponse:
    """Saves the user's language (empty: follow the browser) and returns to the page."""
    form = await request.form()
    locale = str(form.get("locale") or "")
    if locale and locale not in i18n.LOCALES:
        raise Unprocessable(
            f"unknown language {locale[:16]!r} (offered: {', '.join(i18n.LOCALES)})"
        )
    await run_sync(_save, get_state(request).engine, principal.user_id, locale or None)
    request.session[LOCALE_KEY] = locale
    back = str(form.get("back") or "/queue")
    if not back.startswith("/") or back.startswith("//") or "\\" in back:
        back = "/queue"
    return RedirectResponse(back, status_code=303)

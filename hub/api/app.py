"""The ASGI app: REST API, steward UI, health and metrics, with errors answered as JSON/HTML."""

from __future__ import annotations

import logging
import time
import traceback
from importlib.resources import files

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DataError, DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hub.api import corrections, rest, ui, ui_corrections, ui_locale
from hub.api.citizens import loggable_path
from hub.api.deps import AppState, LoginRequired
from hub.api.errors import ApiError
from hub.api.schemas import Health
from hub.api.sessions import HashSlots, SessionCookies
from hub.api.stats import StatsCache
from hub.config import HubConfig
from hub.db import engine_for
from hub.kafka import check_kafka

log = logging.getLogger(__name__)


def create_app(config: HubConfig, *, engine: Engine | None = None) -> FastAPI:
    """The web app for ``config``. UI sessions live in the hub database (``hub.api.sessions``);
    their cookie is signed with ``config.api.session_secret``, or with the secret the hub
    database keeps when it is unset, so every process shares sessions and restarts keep them."""
    engine = engine or engine_for(config.database.url, config.database.pool_size)
    app = FastAPI(
        title="Registry Hub",
        version="1",
        description="Mismatch queue, sector statistics and connector control (SPEC §6). "
        "Authenticate with `Authorization: Bearer <token>` (`hub users create`).",
        openapi_url=None,  # served below, behind a login like every API route (SPEC §6)
        docs_url=None,
        redoc_url=None,
    )

    @app.get("/api/v1/openapi.json", include_in_schema=False)
    def openapi_document(_: rest.Reader) -> JSONResponse:
        doc = rest.publish_sectors(app.openapi(), list(config.sectors))
        return JSONResponse(rest.publish_dismissal_codes(doc, config.queue.dismissal_reasons))

    app.state.hub = AppState(
        config=config,
        engine=engine,
        stats=StatsCache(engine, lambda: list(config.sectors)),
        hash_slots=HashSlots(config.api.login_concurrency, config.api.login_wait_s),
    )
    app.add_middleware(SessionCookies, api=config.api, engine=engine)
    app.add_middleware(GuardMiddleware)
    app.include_router(rest.router)
    app.include_router(corrections.router)
    app.include_router(ui.router)
    app.include_router(ui_corrections.router)
    app.include_router(ui_locale.router)
    app.include_router(ui_locale.router)
    app.mount("/static", StaticFiles(directory=str(files("hub.web") / "static")), name="static")
    _health_routes(app, config, engine)
    _error_handlers(app)
    return app


def _health_routes(app: FastAPI, config: HubConfig, engine: Engine) -> None:
    @app.get("/healthz", response_model=Health, tags=["health"])
    def healthz() -> dict:
        """The process is alive (no dependency is checked)."""
        return {"status": "ok", "checks": {}}

    @app.get(
        "/readyz",
        response_model=Health,
        tags=["health"],
        responses={503: {"model": Health, "description": "A dependency is unreachable."}},
    )
    def readyz() -> Response:
        """The database answers and the Kafka bootstrap servers answer."""
        checks: dict[str, str] = {}
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as exc:  # any failure means not ready; the reason is for operators
            checks["database"] = f"unreachable: {type(exc).__name__}"
        problem = check_kafka(config.kafka, timeout_s=3.0)
        checks["kafka"] = "ok" if problem is None else f"unreachable: {problem[:200]}"
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"status": "ok" if ok else "unavailable", "checks": checks},
            status_code=200 if ok else 503,
        )

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


# Paths answered in JSON like the API (the rest is the UI, answered in HTML).
_JSON_PATHS = ("/healthz", "/readyz", "/metrics")
DB_RETRY_AFTER_S = 5


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/") or request.url.path in _JSON_PATHS


# SQLSTATEs a server sends when it cannot serve this client at all (class 08 is
# "connection exception"): shutting down, starting up, out of connection slots.
_UNREACHABLE_STATES = {"57P01", "57P02", "57P03", "53300"}


def database_unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` says the hub database cannot be reached (refused, dropped, shutting
    down, pool exhausted), as opposed to one statement the server refused (e.g. a
    statement timeout, also an OperationalError)."""
    if isinstance(exc, SQLAlchemyTimeoutError):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        exc = exc.orig if exc.orig is not None else exc
    if isinstance(exc, psycopg.InterfaceError):
        return True
    if isinstance(exc, psycopg.OperationalError):
        state = exc.sqlstate
        return state is None or state.startswith("08") or state in _UNREACHABLE_STATES
    return False


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    def api_error(request: Request, exc: ApiError) -> Response:
        if isinstance(exc, LoginRequired):
            if _is_api(request):
                return JSONResponse({"detail": "authentication required"}, 401)
            return RedirectResponse(exc.location, status_code=303)
        if _is_api(request):
            headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
            return JSONResponse({"detail": exc.reason}, exc.status, headers=headers)
        return ui.render_error(request, exc)

    @app.exception_handler(RequestValidationError)
    def validation_error(request: Request, exc: RequestValidationError) -> Response:
        reason = "; ".join(_describe(e) for e in exc.errors()[:5]) or "invalid request"
        if _is_api(request):
            return JSONResponse({"detail": reason}, 422)
        return ui.render_error(request, ApiError(reason, 422))

    @app.exception_handler(StarletteHTTPException)
    def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        reason = exc.detail if isinstance(exc.detail, str) else "error"
        if exc.status_code == 405:
            exc.headers = {**(exc.headers or {}), "Allow": _allowed_methods(app, request)}
        if _is_api(request) or request.url.path.startswith("/static/"):
            return JSONResponse({"detail": reason}, exc.status_code, headers=exc.headers)
        response = ui.render_error(request, ApiError(reason, exc.status_code))
        response.headers.update(exc.headers or {})  # e.g. a 405's Allow
        return response

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    @app.exception_handler(SQLAlchemyTimeoutError)
    @app.exception_handler(psycopg.OperationalError)
    @app.exception_handler(psycopg.InterfaceError)
    def database_down(request: Request, exc: Exception) -> Response:
        # Unreachable: 503 with Retry-After, like /readyz. Anything else is a real 500
        # (the guard logs where, never the message: it may quote values).
        if not database_unreachable(exc):
            raise exc
        log.warning(
            "hub database unreachable (%s) on %s",
            type(exc).__name__,
            loggable_path(request.url.path),
        )
        reason = "the hub database is unreachable; try again shortly"
        headers = {"Retry-After": str(DB_RETRY_AFTER_S)}
        if _is_api(request):
            return JSONResponse({"detail": reason}, 503, headers=headers)
        response = ui.render_error(request, ApiError(reason, 503))
        response.headers.update(headers)
        return response

    @app.exception_handler(DataError)
    @app.exception_handler(UnicodeEncodeError)
    def data_error(request: Request, exc: Exception) -> Response:
        # A value PostgreSQL refuses (encoding, range) slipped past validation: the client's
        # input, so 400 — and the message is not echoed, it may hold the value.
        reason = "a value in the request cannot be stored or compared (encoding or range)"
        if _is_api(request):
            return JSONResponse({"detail": reason}, 400)
        return ui.render_error(request, ApiError(reason, 400))


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(app: FastAPI, request: Request) -> str:
    """Every method some route takes at the request's path (Starlette names only the
    first route that matches the path, though GET /users and POST /users are two)."""
    allowed = [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL
            for route in app.router.routes
        )
    ]
    return ", ".join(allowed)


def _describe(e: dict) -> str:
    loc = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "request"
    return f"{loc}: {e.get('msg', 'invalid')}"


class GuardMiddleware:
    """Access log without query strings (they can hold a citizen ID prefix), security
    headers, and a last-resort 500 that logs where it failed but never the exception's text
    (database errors quote the values they choked on)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
                headers = list(message.get("headers", []))
                headers += [
                    (b"x-content-type-options", b"nosniff"),
                    (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"same-origin"),
                    (
                        b"content-security-policy",
                        b"default-src 'self'; img-src 'self' data:; style-src 'self'; "
                        b"script-src 'self'; frame-ancestors 'none'; form-action 'self'",
                    ),
                ]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception as exc:
            frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
            where = f"{frame.filename}:{frame.lineno}" if frame else "?"
            kind = type(exc).__name__
            if isinstance(exc, DBAPIError) and exc.orig is not None:
                kind += f"/{type(exc.orig).__name__}"
            log.error(
                "unhandled %s at %s on %s %s",
                kind,
                where,
                scope["method"],
                loggable_path(scope["path"]),
            )
            if not started:
                response = JSONResponse({"detail": "internal error"}, 500)
                await response(scope, receive, send_wrapper)
        finally:
            quiet = scope["path"] in ("/healthz", "/readyz", "/metrics")
            log.log(
                logging.DEBUG if quiet else logging.INFO,
                "%s %s %d %.1fms",
                scope["method"],
                loggable_path(scope["path"]),
                status,
                (time.perf_counter() - start) * 1000,
            )

"""The hub's own PostgreSQL store: engine factory, URL forms, models and Alembic migrations."""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import quote, urlencode

from psycopg.conninfo import conninfo_to_dict
from sqlalchemy import Engine, create_engine

_PG_SCHEMES = ("postgresql+psycopg://", "postgresql+psycopg2://", "postgresql://", "postgres://")


def sqlalchemy_url(url: str) -> str:
    """Any PostgreSQL URL or key=value conninfo → ``postgresql+psycopg://…`` (the hub always
    talks psycopg 3); another database's SQLAlchemy URL (a poll source) is left as it is."""
    if url.startswith(_PG_SCHEMES) or "://" not in url:
        return "postgresql+psycopg://" + _strip_scheme(url)
    return url


def psycopg_conninfo(url: str) -> str:
    """Any PostgreSQL URL or key=value conninfo → ``postgresql://…`` for ``psycopg.connect``."""
    return "postgresql://" + _strip_scheme(url)


def _strip_scheme(url: str) -> str:
    for scheme in _PG_SCHEMES:
        if url.startswith(scheme):
            return url[len(scheme) :]
    if "://" in url:
        raise ValueError(f"not a PostgreSQL URL: {url.partition('://')[0]}://…")
    return _conninfo_to_url_tail(url)


def _conninfo_to_url_tail(conninfo: str) -> str:
    """``host=h port=5 dbname=d user=u`` → ``u@h:5/d`` (socket dirs and extras as query)."""
    params = conninfo_to_dict(conninfo)
    user = params.pop("user", None)
    password = params.pop("password", None)
    host = params.pop("host", None)
    port = params.pop("port", None)
    dbname = params.pop("dbname", None)
    query = {k: str(v) for k, v in params.items()}
    if host and (host.startswith("/") or "," in host):
        query["host"] = host
        host = None
    auth = ""
    if user:
        auth = quote(user, safe="")
        if password:
            auth += ":" + quote(password, safe="")
        auth += "@"
    netloc = auth + (host or "") + (f":{port}" if port else "")
    tail = netloc + "/" + quote(dbname or "", safe="")
    if query:
        tail += "?" + urlencode(query)
    return tail


@lru_cache(maxsize=16)
def engine_for(url: str, pool_size: int = 10) -> Engine:
    """One pooled engine per URL per process."""
    return create_engine(
        sqlalchemy_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        hide_parameters=True,  # error text never carries row values (citizen IDs, names)
    )

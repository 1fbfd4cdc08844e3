"""The hub's own PostgreSQL store: engine factory, models and Alembic migrations."""

from __future__ import annotations

from functools import lru_cache

from sqlalchemy import Engine, create_engine


def sqlalchemy_url(url: str) -> str:
    """Accept ``postgresql://`` too; the hub always talks psycopg 3."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def psycopg_conninfo(url: str) -> str:
    """A libpq URL for psycopg.connect from a SQLAlchemy URL."""
    return "postgresql://" + sqlalchemy_url(url).split("://", 1)[1]


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

"""The connections of one logical connector to its source database, and the mapping of
psycopg's errors onto the hub's taxonomy (a broken connection is retriable)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import psycopg

from hub.db import psycopg_conninfo
from hub.errors import FatalError, RetriableError


class SourceConnections:
    """Opens connections to the source and owns the autocommit one (slot, heartbeat, lag).

    ``on_broken`` is called before a lost connection or a failed statement is raised, so the
    capture mode closes everything it holds and reopens cleanly after the retry.
    """

    def __init__(self, name: str, url: str, on_broken: Callable[[], None]):
        self.name = name
        self.conninfo = psycopg_conninfo(url)
        self.on_broken = on_broken
        self._conn: psycopg.Connection | None = None

    def connect(self, *, autocommit: bool = True) -> psycopg.Connection:
        """A new connection; RetriableError when the source cannot be reached."""
        try:
            return psycopg.connect(
                self.conninfo,
                autocommit=autocommit,
                connect_timeout=10,
                application_name=f"hub-connector-{self.name}",
            )
        except psycopg.OperationalError as exc:
            raise RetriableError(f"source database of {self.name}: {first_line(exc)}") from exc

    @contextlib.contextmanager
    def errors(self) -> Iterator[None]:
        """Map psycopg errors onto the taxonomy; a broken connection is retriable."""
        try:
            yield
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            if isinstance(exc, psycopg.errors.ObjectNotInPrerequisiteState):
                raise FatalError(f"{self.name}: {first_line(exc)}") from exc
            self.on_broken()
            raise RetriableError(f"source database of {self.name}: {first_line(exc)}") from exc
        except psycopg.errors.InsufficientPrivilege as exc:
            raise FatalError(
                f"{self.name}: {first_line(exc)} (logical capture needs the REPLICATION "
                "attribute or superuser, and ownership of the table for the publication)"
            ) from exc
        except psycopg.Error as exc:
            self.on_broken()
            raise FatalError(f"{self.name}: {first_line(exc)}") from exc

    def control(self) -> psycopg.Connection:
        """The autocommit connection, opened on first use and after it was lost."""
        if self._conn is None or self._conn.closed:
            self._conn = self.connect()
            # A heartbeat must be flushed to be decodable: do not let it wait for the WAL
            # writer when the server runs with synchronous_commit = off.
            self._conn.execute("SET synchronous_commit = on")
        return self._conn

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()


def first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]

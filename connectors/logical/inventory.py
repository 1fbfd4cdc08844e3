"""Every ``hub_*`` replication slot on the configured source databases, with the WAL it retains
and whether a configured connector reads it: for ``hub check``, ``hub connector status`` and the
``hub_slot_retained_wal_bytes`` gauge (a slot nobody reads keeps WAL until the disk is full)."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import psycopg

from connectors.base import byte_size
from connectors.logical.slot import drop_slot_statement, slot_names
from connectors.ops import is_postgres
from hub.config import HubConfig, redact_url
from hub.db import psycopg_conninfo
from hub.logs import error_summary

log = logging.getLogger(__name__)

REFRESH_S = 15.0
"""How often a process that runs connectors measures the slots (gauge)."""

_SLOTS_SQL = r"""
SELECT slot_name, active, active_pid,
       pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn()
                            ELSE pg_current_wal_lsn() END, restart_lsn)::bigint
  FROM pg_replication_slots
 WHERE database = current_database() AND (slot_name LIKE 'hub\_%%' OR slot_name = ANY(%s))
 ORDER BY slot_name
"""


@dataclass(frozen=True)
class SlotInfo:
    """One slot on one source database."""

    source: str
    """The connector whose database holds it, or the database's name when several share it."""
    database: str
    """The database's name."""
    address: str
    """The database's URL, password masked."""
    slot: str
    active: bool
    active_pid: int | None
    retained_bytes: int | None
    """``current WAL position - restart_lsn``; None when the slot retains nothing (invalidated)."""
    owner: str | None
    """The configured ``logical`` connector that reads it; None: nobody does (an orphan)."""

    @property
    def configured(self) -> bool:
        return self.owner is not None

    @property
    def drop_statement(self) -> str:
        return drop_slot_statement(self.slot)

    def orphan_line(self) -> str:
        """What an operator reads about a slot nobody reads, with the statement that drops it."""
        state = "inactive:"
        if self.active:
            state = f"active (pid {self.active_pid}): stop what reads it, then"
        return (
            f"slot {self.slot} on database {self.database} retains "
            f"{byte_size(self.retained_bytes)} of WAL ({self.retained_bytes} bytes) and no "
            f"configured connector reads it; {state} drop it there with {self.drop_statement}"
        )


@dataclass(frozen=True)
class Inventory:
    slots: list[SlotInfo] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    """One line per source database that could not be listed (``source NAME (url): reason``)."""

    @property
    def orphans(self) -> list[SlotInfo]:
        return [s for s in self.slots if not s.configured]


def slot_inventory(config: HubConfig, timeout_s: int = 5) -> Inventory:
    """Every ``hub_*`` slot (and every configured slot name) on each configured PostgreSQL
    source database, each database listed once however many sources share it. Never raises:
    a database that cannot be reached or read is a line of ``errors``."""
    urls: dict[str, list[str]] = {}
    for name, source in config.sources().items():
        if is_postgres(source.url):
            urls.setdefault(source.url, []).append(name)
    inventory = Inventory()
    with contextlib.ExitStack() as stack:
        databases: dict[tuple, tuple[psycopg.Connection, str, list[str]]] = {}
        for url, names in urls.items():
            try:
                conn = stack.enter_context(
                    psycopg.connect(
                        psycopg_conninfo(url),
                        autocommit=True,
                        connect_timeout=max(1, int(timeout_s)),
                    )
                )
            except psycopg.Error as exc:
                inventory.errors.append(_error_line(names, url, exc))
                continue
            key = (conn.info.host, conn.info.port, conn.info.dbname)
            if key in databases:
                databases[key][2].extend(names)
            else:
                databases[key] = (conn, url, list(names))
        for conn, url, names in databases.values():
            try:
                inventory.slots.extend(_slots_of(config, conn, url, names))
            except psycopg.Error as exc:
                inventory.errors.append(_error_line(names, url, exc))
    return inventory


def _slots_of(
    config: HubConfig, conn: psycopg.Connection, url: str, names: list[str]
) -> list[SlotInfo]:
    sources = config.sources()
    owners = {slot_names(n, sources[n])[0]: n for n in names if sources[n].capture == "logical"}
    dbname = conn.info.dbname
    label = names[0] if len(names) == 1 else dbname
    rows = conn.execute(_SLOTS_SQL, (list(owners),)).fetchall()
    return [
        SlotInfo(label, dbname, redact_url(url), slot, bool(active), pid,
                 None if retained is None else max(0, retained), owners.get(slot))
        for slot, active, pid, retained in rows
    ]  # fmt: skip


def _error_line(names: list[str], url: str, exc: BaseException) -> str:
    return f"source {', '.join(names)} ({redact_url(url)}): {error_summary(exc)}"


# ------------------------------------------------------------------ the gauge


class SlotGauge:
    """Keeps ``hub_slot_retained_wal_bytes`` current: measures every ``interval_s`` on a
    thread of its own (its own connections, so capture never waits for it) until ``stopping``
    is set or :meth:`stop` is called. A slot that is gone loses its series; while a database
    cannot be listed, the series already measured there stay (with their last value)."""

    def __init__(
        self,
        config: HubConfig,
        stopping: threading.Event | None = None,
        *,
        interval_s: float = REFRESH_S,
        inventory: Callable[[HubConfig], Inventory] = slot_inventory,
    ):
        self.config = config
        self.interval_s = interval_s
        self._inventory = inventory
        self._stopping = stopping or threading.Event()
        self._stopped = threading.Event()
        self._series: set[tuple[str, str, str]] = set()
        self._errors: list[str] = []
        self._thread: threading.Thread | None = None

    def refresh(self) -> Inventory:
        """Measure once and update the gauge."""
        from hub.metrics import SLOT_RETAINED_WAL

        inventory = self._inventory(self.config)
        seen = set()
        for s in inventory.slots:
            if s.retained_bytes is None:
                continue
            labels = (s.source, s.slot, "true" if s.configured else "false")
            SLOT_RETAINED_WAL.labels(*labels).set(s.retained_bytes)
            seen.add(labels)
        if not inventory.errors:
            for labels in self._series - seen:
                with contextlib.suppress(KeyError):
                    SLOT_RETAINED_WAL.remove(*labels)
            self._series = seen
        else:
            self._series |= seen
        if inventory.errors != self._errors:  # one line per change, not one per refresh
            for line in inventory.errors:
                log.warning("replication slots not measured: %s", line)
            if not inventory.errors:
                log.info("replication slots measured on every source again")
            self._errors = inventory.errors
        return inventory

    def start(self) -> SlotGauge:
        self._thread = threading.Thread(target=self._run, name="slot-gauge", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        while True:  # measured at least once, however short the run
            try:
                self.refresh()
            except Exception:  # noqa: BLE001 - a measuring thread never takes capture down
                log.exception("replication slots not measured")
            if self._stopped.wait(self.interval_s) or self._stopping.is_set():
                return


@contextlib.contextmanager
def watch_slots(config: HubConfig, stopping: threading.Event | None = None) -> Iterator[SlotGauge]:
    """Run a :class:`SlotGauge` for the duration of the block (a process's connectors)."""
    gauge = SlotGauge(config, stopping).start()
    try:
        yield gauge
    finally:
        gauge.stop()

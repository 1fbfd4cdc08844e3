"""The slot gauge's bookkeeping (series set, removed, kept while a database cannot be listed) and
the lines an operator reads, on in-memory inventories."""

from __future__ import annotations

import logging
import threading
import uuid

from prometheus_client import REGISTRY

from connectors.logical.inventory import Inventory, SlotGauge, SlotInfo
from connectors.logical.slot import drop_slot_statement
from hub.config import HubConfig

GAUGE = "hub_slot_retained_wal_bytes"


def _slot(name: str, retained: int | None, owner: str | None = None, **kw) -> SlotInfo:
    values = {"source": "tax", "database": "thue", "address": "postgresql://h@db/thue",
              "slot": name, "active": False, "active_pid": None, "retained_bytes": retained,
              "owner": owner}  # fmt: skip
    values.update(kw)
    return SlotInfo(**values)


def _sample(slot: str, configured: str, source: str = "tax") -> float | None:
    return REGISTRY.get_sample_value(
        GAUGE, {"source": source, "slot": slot, "configured": configured}
    )


def _gauge(*inventories: Inventory) -> SlotGauge:
    answers = list(inventories)
    return SlotGauge(HubConfig(), inventory=lambda config: answers.pop(0))


def test_each_measured_slot_is_a_series_and_one_that_retains_nothing_is_none():
    own, orphan, dead = (f"hub_{uuid.uuid4().hex[:8]}" for _ in range(3))
    _gauge(
        Inventory([_slot(own, 10, owner="tax"), _slot(orphan, 2048), _slot(dead, None)])
    ).refresh()
    assert _sample(own, "true") == 10 and _sample(own, "false") is None
    assert _sample(orphan, "false") == 2048
    assert _sample(dead, "false") is None and _sample(dead, "true") is None


def test_a_dropped_slot_loses_its_series_but_not_while_a_database_cannot_be_listed(caplog):
    kept, gone = f"hub_{uuid.uuid4().hex[:8]}", f"hub_{uuid.uuid4().hex[:8]}"
    unreachable = Inventory([], ["source labour (postgresql://h@x/ld): OperationalError: down"])
    gauge = _gauge(
        Inventory([_slot(kept, 1), _slot(gone, 5)]),
        unreachable,
        unreachable,
        Inventory([_slot(kept, 3)]),
    )
    gauge.refresh()
    with caplog.at_level(logging.INFO, logger="connectors.logical.inventory"):
        gauge.refresh()
        gauge.refresh()
        assert _sample(gone, "false") == 5 and _sample(kept, "false") == 1  # last values kept
        gauge.refresh()
    assert _sample(gone, "false") is None and _sample(kept, "false") == 3
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "replication slots not measured: source labour (postgresql://h@x/ld): "
        "OperationalError: down",
        "replication slots measured on every source again",
    ]  # one line per change, not one per refresh


def test_the_gauge_measures_at_least_once_however_short_the_run():
    slot = f"hub_{uuid.uuid4().hex[:8]}"
    stopping = threading.Event()
    stopping.set()
    gauge = SlotGauge(HubConfig(), stopping, inventory=lambda c: Inventory([_slot(slot, 7)]))
    gauge.start().stop()
    assert _sample(slot, "false") == 7


def test_an_orphan_line_names_database_bytes_and_the_statement_to_run():
    line = _slot("hub_labour", 3 * 1024 * 1024).orphan_line()
    assert line == (
        "slot hub_labour on database thue retains 3 MB of WAL (3145728 bytes) and no configured"
        " connector reads it; inactive: drop it there with"
        " SELECT pg_drop_replication_slot('hub_labour');"
    )
    busy = _slot("hub_labour", 10, active=True, active_pid=4242).orphan_line()
    assert "active (pid 4242): stop what reads it, then drop it there with" in busy
    assert drop_slot_statement("hub_x") == "SELECT pg_drop_replication_slot('hub_x');"

"""In-memory doubles of the reconciler's store and feed, so the batch logic runs in
milliseconds without servers (in the spirit of bytewax's ``testing`` sources and sinks).

:class:`FakeStore` implements :class:`reconciliation.transaction.DeliveryStore` over plain
dicts, with a transaction that restores everything on an exception. :class:`FakeFeed`
builds ``hub.ChangeEvent`` records like a connector and decodes them with the reconciler's
own :class:`~reconciliation.decode.ChangeDecoder`, into the :class:`Change` list a poll
batch becomes.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from typing import Any

from kafka import TopicPartition

from hub.config import HubConfig, KafkaConfig
from hub.idschemes import get_scheme
from hub.kafka import Topics
from reconciliation.batch import BatchSettings
from reconciliation.corrections import CONFIRMABLE_STATUSES, OpenCorrection
from reconciliation.decode import REGISTRY, Change, ChangeDecoder, IdReader
from reconciliation.lifecycle import Ledger, MismatchRow
from reconciliation.store.rows import RegistryRow, SectorKey, SectorRow
from reconciliation.suggestions import Citizen, MemoryRegistryIndex
from reconciliation.transaction import Applied, apply_batch
from tests.integration.reconciliation.feed import hub_config

GROUP = "rec-test"


def config(sectors: dict[str, dict[str, Any]] | None = None) -> HubConfig:
    """The reconciler tests' config (``tax`` with unique citizens, ``bank``), or one of
    ``sectors`` ({name: rules}); no server it names is ever reached."""
    kafka = KafkaConfig(bootstrap_servers="127.0.0.1:1", topic_prefix="t")
    return hub_config("postgresql://nobody@127.0.0.1:1/unused", kafka, sectors=sectors)


class FakeStore:
    """The reconciler's tables as dicts; what a test asserts on is public: ``registry``,
    ``records``, ``tombstones``, ``mismatches`` (by id), ``history``, ``offsets``,
    ``outbox`` and ``legacy_locks`` (each lock call's sorted numbers)."""

    def __init__(self, citizens: Iterable[RegistryRow] = ()):
        self.registry: dict[str, RegistryRow] = {c.citizen_id: c for c in citizens}
        self.records: dict[SectorKey, SectorRow] = {}
        self.tombstones: dict[tuple[str, str], tuple] = {}
        self.mismatches: dict[int, MismatchRow] = {}
        self.history: list[tuple[int, str, str | None, str | None, str | None]] = []
        self.offsets: dict[tuple[str, str, int], int] = {}
        self.outbox: list[tuple[int, tuple]] = []
        self.legacy_locks: list[list[str]] = []
        self.events: list[dict] = []
        """Every mismatch event the batches made, in order."""
        self.corrections: dict[int, OpenCorrection] = {}
        """Corrections by id; a confirmed one gets status ``confirmed``."""
        self.fixed_by: dict[int, int] = {}
        """mismatch id → the correction that fixed it."""
        self._ids = itertools.count(1)

    # -- transaction ----------------------------------------------------------------------

    _TABLES = (
        "registry", "records", "tombstones", "mismatches", "history", "offsets", "outbox",
        "events", "corrections", "fixed_by",
    )  # fmt: skip

    @contextmanager
    def transaction(self) -> Iterator[None]:
        saved = {name: copy.deepcopy(getattr(self, name)) for name in self._TABLES}
        try:
            yield
        except BaseException:
            for name, value in saved.items():
                setattr(self, name, value)
            raise

    # -- registry -------------------------------------------------------------------------

    def registry_by_record_keys(self, keys):
        keys = set(keys)
        rows = {r.record_key: copy.copy(r) for r in self.registry.values() if r.record_key in keys}
        tombs = {
            k: self.tombstones[(REGISTRY, k)] for k in keys if (REGISTRY, k) in self.tombstones
        }
        return rows, tombs

    def replace_registry(self, cleared_keys, rows):
        cleared = set(cleared_keys)
        self.registry = {c: r for c, r in self.registry.items() if r.record_key not in cleared}
        for row in rows:
            self.registry[row.citizen_id] = copy.copy(row)

    def registry_for_ids(self, citizen_ids, legacy_ids):
        ids, legacy = set(citizen_ids), set(legacy_ids)
        by_id, by_legacy = {}, {}
        for row in sorted(self.registry.values(), key=lambda r: r.citizen_id):
            if row.citizen_id in ids or row.legacy_id in legacy:
                by_id[row.citizen_id] = copy.copy(row)
            if row.legacy_id in legacy and row.legacy_id not in by_legacy:
                by_legacy[row.legacy_id] = copy.copy(row)
        return by_id, by_legacy

    def registry_index(self):
        return MemoryRegistryIndex(
            Citizen(r.citizen_id, r.full_name, r.name_folded, r.date_of_birth, r.sex,
                    r.province_code)
            for r in self.registry.values()
        )  # fmt: skip

    # -- sector records -------------------------------------------------------------------

    def sector_records_for(self, keys, citizen_ids, groups, unique_sectors):
        keys, ids, groups = set(keys), set(citizen_ids), set(groups)
        unique = set(unique_sectors)
        groups |= {
            (r.sector, r.citizen_id)
            for k, r in self.records.items()
            if k in keys and r.citizen_id and r.sector in unique
        }
        rows = {
            k: copy.copy(r)
            for k, r in self.records.items()
            if k in keys or r.citizen_id in ids or (r.sector, r.citizen_id) in groups
        }
        return rows, {k: self.tombstones[k] for k in keys if k in self.tombstones}

    def write_sector_records(self, rows, deleted):
        for key in deleted:
            self.records.pop(key, None)
        for row in rows:
            self.records[row.key] = copy.copy(row)

    def write_verified(self, flags):
        for sector, record_key, verified in flags:
            if (sector, record_key) in self.records:
                self.records[(sector, record_key)].verified = verified

    def write_tombstones(self, put, dropped):
        for key in dropped:
            self.tombstones.pop(tuple(key), None)
        for source, record_key, lsn, ts in put:
            self.tombstones[(source, record_key)] = (lsn, ts)

    def lock_legacy_ids(self, legacy_ids):
        ids = sorted(set(legacy_ids))
        if ids:
            self.legacy_locks.append(ids)

    # -- mismatches -----------------------------------------------------------------------

    def load_mismatches(self, keys):
        keys = set(keys)
        return [
            copy.deepcopy(m)
            for _, m in sorted(self.mismatches.items())
            if (m.sector, m.record_key) in keys
        ]

    def write_mismatches(self, ledger: Ledger) -> list[dict]:
        """What ``Ledger.flush`` writes, kept in the dicts (reads the ledger's pending lists,
        as ``tests/unit/reconciliation/test_lifecycle.py`` does)."""
        for row in ledger._new:
            row.id = next(self._ids)
        for key in {(m.sector, m.record_key) for m in self.mismatches.values()} | {
            (r.sector, r.record_key) for r in ledger._new
        }:
            for row in ledger.rows(key).values():
                if row.id is not None:
                    self.mismatches[row.id] = copy.deepcopy(row)
        self.history += [
            (h.row.id, h.action, h.from_status, h.to_status, h.note) for h in ledger._history
        ]
        events = [{"mismatch_id": e.row.id, **e.values} for e in ledger._events]
        ledger._new, ledger._history, ledger._events = [], [], []
        self.events += events
        return events

    # -- corrections ----------------------------------------------------------------------

    def confirmable_corrections(self, keys):
        keys = set(keys)
        return [
            c
            for _, c in sorted(self.corrections.items())
            if (c.sector, c.record_key) in keys and c.status in CONFIRMABLE_STATUSES
        ]

    def confirm_corrections(self, confirmed):
        for c in confirmed:
            if self.corrections[c.id].status in CONFIRMABLE_STATUSES:
                self.corrections[c.id] = dataclasses.replace(c, status="confirmed")
                self.fixed_by[c.mismatch_id] = c.id

    # -- offsets and outbox ---------------------------------------------------------------

    def lock_offsets(self, group_id, partitions):
        return {
            p: self.offsets[(group_id, *p)] for p in partitions if (group_id, *p) in self.offsets
        }

    def store_offsets(self, group_id, next_offsets, locked):
        locked = set(locked)
        fenced = False
        for part, offset in next_offsets.items():
            if part not in locked and (group_id, *part) in self.offsets:
                fenced = True  # another process inserted it first
            else:
                self.offsets[(group_id, *part)] = offset
        return not fenced

    def outbox_add(self, messages: Sequence[tuple]) -> list[int]:
        start = len(self.outbox) + 1
        ids = list(range(start, start + len(messages)))
        self.outbox += list(zip(ids, messages, strict=True))
        return ids

    # -- what tests read ------------------------------------------------------------------

    def open_rules(self, sector: str, record_key: str) -> set[str]:
        """The rules of the record's open and in-review mismatches."""
        return {
            m.rule
            for m in self.mismatches.values()
            if (m.sector, m.record_key) == (sector, record_key) and m.is_open
        }

    def mismatch(self, sector: str, record_key: str, rule: str) -> MismatchRow:
        (row,) = [
            m
            for m in self.mismatches.values()
            if (m.sector, m.record_key, m.rule) == (sector, record_key, rule)
        ]
        return row

    def actions(self, sector: str, record_key: str, rule: str) -> list[tuple]:
        """(action, from, to) of one mismatch's history, in order."""
        mid = self.mismatch(sector, record_key, rule).id
        return [(a, f, t) for m, a, f, t, _note in self.history if m == mid]


class FakeFeed:
    """Builds the changes of one poll batch: each call adds a change event of a source to
    its partition 0, with a growing LSN and offset, decoded by the real decoder."""

    def __init__(self, config: HubConfig):
        self.config = config
        self.ids = IdReader(get_scheme(config.id_scheme))
        topics = Topics(config.kafka.topic_prefix)
        self.source_of = {topics.registry: REGISTRY}
        self.source_of |= {topics.sector(s): s for s in config.sectors}
        self.topic_of = {s: t for t, s in self.source_of.items()}
        self.decoder = ChangeDecoder(self.source_of, self.ids, topics.dlq)
        self.offsets: dict[str, int] = {}
        self._lsn = itertools.count(1000)

    def settings(self, *, lock_legacy: bool = True) -> BatchSettings:
        return BatchSettings.from_config(self.config, self.ids, lock_legacy=lock_legacy)

    def change(
        self, source: str, record_key: str, after: dict | None, *, op: str = "u", lsn=None
    ) -> Change:
        """One change (``after`` None: a delete) as the reconciler decodes it."""
        topic = self.topic_of[source]
        offset = self.offsets.get(source, 0)
        self.offsets[source] = offset + 1
        event = {
            "op": "d" if after is None else op,
            "record_key": record_key,
            "after": None if after is None else {**_EMPTY, **after},
            "source": {
                "position": "0/0",
                "lsn": next(self._lsn) if lsn is None else lsn,
                "commit_ts_ms": 1_700_000_000_000,
                "snapshot": op == "r",
            },
        }
        return self.decoder.change(source, event, TopicPartition(topic, 0), offset)

    def put(self, source: str, record_key: str, **after: Any) -> Change:
        return self.change(source, record_key, after)

    def delete(self, source: str, record_key: str, **kw: Any) -> Change:
        return self.change(source, record_key, None, **kw)


_EMPTY = dict.fromkeys(
    ("citizen_id", "legacy_id", "full_name", "date_of_birth", "sex", "province_code",
     "address", "date_of_death", "status", "last_activity_date"),
)  # fmt: skip
_EMPTY["attributes"] = {}


def person(cid: str, *, name: str = "Nguyễn Văn An", dob: date = date(1985, 3, 14), **kw):
    """Canonical fields of a citizen or of a sector record carrying ``cid``."""
    return {"citizen_id": cid, "full_name": name, "date_of_birth": dob, "sex": "M", **kw}


def run(store: FakeStore, feed: FakeFeed, changes: list[Change], **kw: Any) -> Applied:
    """One poll batch of ``changes`` through the batch's transaction, against ``store``."""
    ends: dict[tuple[str, int], tuple[int, int]] = {}
    for c in changes:
        part = (c.tp.topic, c.tp.partition)
        first, end = ends.get(part, (c.offset, c.offset + 1))
        ends[part] = (min(first, c.offset), max(end, c.offset + 1))
    return apply_batch(
        store, feed.settings(**kw), GROUP, ends, changes, [], lambda e: ("t.mismatches", None, b"")
    )

"""One batch's reconcile step inside its transaction: apply the registry changes, then the
sector changes in order (duplicate groups, legacy ID locks), judge every record they touch
against the rules, find suggestions, and leave the mismatch transitions for the store.

Ordering. Within a batch, registry changes take effect together, before the sector
changes, which take effect one at a time in offset order: the mismatch history of a
record does not depend on where batch boundaries fall (except that a duplicate group is
judged once, as the batch leaves it). A change older (by source LSN, else commit time)
than the state already held — a re-delivery after a connector restart, or a record whose
citizen ID moved it to another partition — is ignored (counted ``stale``).

The batch reads and writes only through its :class:`Store` and judges with its
:class:`BatchSettings`: it knows nothing of Kafka or of the reconciler that runs it, so it
runs as well against the in-memory store of the unit tests as against PostgreSQL.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from hub.config import HubConfig
from hub.vocabulary import CANDIDATE_KEYS, SUGGESTING_RULES
from reconciliation.corrections import OpenCorrection, carries
from reconciliation.decode import REGISTRY, Change, IdReader
from reconciliation.lifecycle import Ledger, MismatchRow
from reconciliation.rules import RuleSet, evaluate, is_active
from reconciliation.store.rows import RegistryRow, SectorKey, SectorRow, same_state
from reconciliation.suggestions import (
    MAX_SUGGESTIONS,
    Citizen,
    Probe,
    RegistryIndex,
    Suggestion,
    find_candidates,
    score,
)

log = logging.getLogger(__name__)

Position = tuple[int | None, datetime | None]
"""(source LSN, commit time) of the state held, or of a delete (a tombstone)."""


class Store(Protocol):
    """What a batch reads and writes, all inside the batch's transaction: a failure raises
    and the whole batch (its offsets too) is rolled back and re-read.

    Every method works on the whole batch at once; reads see the batch's own writes.
    """

    def registry_by_record_keys(
        self, keys: Iterable[str]
    ) -> tuple[dict[str, RegistryRow], dict[str, Position]]:
        """Replica rows by record key, and the tombstones of the deleted keys."""

    def replace_registry(self, cleared_keys: Sequence[str], rows: Sequence[RegistryRow]) -> None:
        """Remove the rows of ``cleared_keys``, then store ``rows`` (one per citizen ID)."""

    def registry_for_ids(
        self, citizen_ids: Iterable[str], legacy_ids: Iterable[str]
    ) -> tuple[dict[str, RegistryRow], dict[str, RegistryRow]]:
        """Citizens by current ID, and by legacy ID (the lowest current ID wins a tie)."""

    def registry_index(self) -> RegistryIndex:
        """The registry look-ups of the suggestions."""

    def sector_records_for(
        self,
        keys: Iterable[SectorKey],
        citizen_ids: Iterable[str],
        groups: Iterable[SectorKey],
        unique_sectors: Iterable[str],
    ) -> tuple[dict[SectorKey, SectorRow], dict[SectorKey, Position]]:
        """The records of ``keys``, every record carrying one of ``citizen_ids``, the
        duplicate groups ``groups`` and those of the IDs the keyed records of
        ``unique_sectors`` carry; and the tombstones of ``keys``."""

    def write_sector_records(self, rows: Sequence[SectorRow], deleted: Sequence[SectorKey]) -> None:
        """Upsert ``rows``, delete the ``deleted`` records."""

    def write_verified(self, flags: Sequence[tuple[str, str, bool]]) -> None:
        """Set only the ``verified`` flag of (sector, record_key, verified) records."""

    def write_tombstones(
        self,
        put: Sequence[tuple[str, str, int | None, datetime | None]],
        dropped: Sequence[SectorKey],
    ) -> None:
        """Record deletes (source, record_key, lsn, ts); forget those of revived records."""

    def lock_legacy_ids(self, legacy_ids: Iterable[str]) -> None:
        """Hold these legacy numbers until the transaction ends (taken sorted, so two
        batches locking overlapping sets wait for each other instead of deadlocking)."""

    def load_mismatches(self, keys: Iterable[SectorKey]) -> list[MismatchRow]:
        """Every mismatch of these records, locked against a steward's concurrent action."""

    def write_mismatches(self, ledger: Ledger) -> list[dict]:
        """Write the ledger's rows and history; the mismatch events, in transition order."""

    def confirmable_corrections(self, keys: Sequence[SectorKey]) -> list[OpenCorrection]:
        """The sent or acknowledged corrections of these records (one statement)."""

    def confirm_corrections(self, confirmed: Sequence[OpenCorrection]) -> None:
        """Mark them confirmed, with history, and point their mismatches to them (one
        statement)."""


@dataclass(frozen=True)
class BatchSettings:
    """What a batch judges with, fixed for the life of a reconciler."""

    rules: dict[str, RuleSet]
    """Per sector; a sector missing here (dropped from the config) is left alone."""
    candidate_keys: dict[str, tuple[str, ...]]
    """Per sector, the blocking keys suggestions are looked up by."""
    ids: IdReader
    lock_legacy: bool
    """Lock the legacy numbers a batch reads across partitions through: only when other
    processes may hold the other partitions."""

    @classmethod
    def from_config(cls, config: HubConfig, ids: IdReader, *, lock_legacy: bool) -> BatchSettings:
        """The settings of ``config``'s sectors."""
        strict = config.reconciler.strict_script_names
        return cls(
            rules={
                s: RuleSet.from_config(cfg.rules, strict_script_names=strict)
                for s, cfg in config.sectors.items()
            },
            candidate_keys={s: cfg.rules.candidate_keys for s, cfg in config.sectors.items()},
            ids=ids,
            lock_legacy=lock_legacy,
        )


def is_older(
    lsn: int | None, ts: datetime | None, ref_lsn: int | None, ref_ts: datetime | None
) -> bool:
    """Whether a change at (lsn, ts) is older than state held at (ref_lsn, ref_ts): by LSN
    when both have one, else by commit time when both have one, else not older."""
    if lsn is not None and ref_lsn is not None:
        return lsn < ref_lsn
    if ts is not None and ref_ts is not None:
        return ts < ref_ts
    return False


class Batch:
    """The working set of one batch: call :meth:`apply_registry`, :meth:`apply_sectors`,
    then :meth:`finish` once. Changes older than the state held are counted ``stale`` and
    change nothing; ``outcomes`` counts (source, outcome) for the metrics."""

    def __init__(self, store: Store, settings: BatchSettings):
        self.store = store
        self.settings = settings
        self.ids = settings.ids
        self.changed_ids: set[str] = set()
        self.changed_legacy: set[str] = set()  # legacy numbers of the registry rows changed
        self.outcomes: Counter[tuple[str, str]] = Counter()
        # Commit times of streamed changes only, by source: the latency histogram.
        self.commit_times: defaultdict[str, list[int]] = defaultdict(list)
        self.snapshot_reads: Counter[str] = Counter()
        self.applied = self.stale = self.transitions = 0
        self.ledger = Ledger()
        self.records: dict[SectorKey, SectorRow] = {}
        self.stored: dict[SectorKey, SectorRow] = {}
        self.matches: dict[SectorKey, RegistryRow | None] = {}
        self.judged_at: dict[SectorKey, int] = {}  # the records judged, and at which step
        self.step = 0
        self.confirmed: list[OpenCorrection] = []  # corrections the sources now carry

    def _outcome(self, change: Change, outcome: str) -> None:
        self.outcomes[(change.source, outcome)] += 1
        if outcome == "applied":
            self.applied += 1
            if change.snapshot:
                self.snapshot_reads[change.source] += 1
            elif change.commit_ms is not None:
                self.commit_times[change.source].append(change.commit_ms)
        elif outcome == "stale":
            self.stale += 1

    # -- registry -------------------------------------------------------------------------

    def apply_registry(self, changes: list[Change]) -> None:
        """Apply registry changes to the replica; remember which citizen IDs changed."""
        if not changes:
            return
        keys = list({c.record_key for c in changes})
        original, tombs = self.store.registry_by_record_keys(keys)
        current: dict[str, RegistryRow | None] = dict(original)
        put_tombs: dict[str, tuple] = {}
        drop_tombs: set[str] = set()
        for c in changes:
            old = current.get(c.record_key)
            ref = (old.source_lsn, old.source_ts) if old is not None else tombs.get(c.record_key)
            if ref is not None and is_older(c.lsn, c.ts, *ref):
                self._outcome(c, "stale")
                continue
            self._outcome(c, "applied")
            if c.op == "d":
                current[c.record_key] = None
                tombs[c.record_key] = put_tombs[c.record_key] = (c.lsn, c.ts)
                drop_tombs.discard(c.record_key)
                if old is not None:
                    self._changed(old)
                continue
            new = c.row
            current[c.record_key] = new
            if tombs.pop(c.record_key, None) is not None:
                put_tombs.pop(c.record_key, None)
                drop_tombs.add(c.record_key)
            if not new.same_facts(old):
                self._changed(new)
                if old is not None:
                    self._changed(old)
        cleared = [
            k
            for k, old in original.items()
            if current.get(k) is None or current[k].citizen_id != old.citizen_id
        ]
        # One row per citizen ID (two registry rows claiming one ID: the last one listed wins).
        rows = list(
            {
                r.citizen_id: r
                for k, r in current.items()
                if r is not None and not same_state(r, original.get(k))
            }.values()
        )
        self.store.replace_registry(cleared, rows)
        self.store.write_tombstones(
            [(REGISTRY, k, lsn, ts) for k, (lsn, ts) in put_tombs.items()],
            [(REGISTRY, k) for k in drop_tombs],
        )

    def _changed(self, row: RegistryRow) -> None:
        """Every sector record carrying one of ``row``'s IDs is judged again."""
        self.changed_ids.add(row.citizen_id)
        if row.legacy_id:
            self.changed_ids.add(row.legacy_id)
            self.changed_legacy.add(row.legacy_id)

    # -- sectors --------------------------------------------------------------------------

    def apply_sectors(self, changes: list[Change]) -> None:
        """Apply sector changes in order and re-evaluate everything they (and the registry
        changes before them) touch."""
        if not changes and not self.changed_ids:
            return
        settings = self.settings
        # With several reconcilers, the citizen holding a legacy number and the sector
        # records carrying it are on different partitions, possibly in another process
        # applying its batch now: lock the batch's legacy numbers before reading either
        # side, so of two batches the second waits and reads what the first committed.
        locked: set[str] = set()
        if settings.lock_legacy:
            locked = self.changed_legacy | {
                c.row.citizen_id
                for c in changes
                if c.row is not None
                and c.row.citizen_id
                and self.ids.is_legacy(c.row.citizen_id_raw)
            }
            self.store.lock_legacy_ids(locked)
        keys = {(c.source, c.record_key) for c in changes}
        unique = {s for s, rules in settings.rules.items() if rules.unique_citizen}
        groups = {
            (c.source, c.row.citizen_id)
            for c in changes
            if c.source in unique and c.row is not None and c.row.citizen_id
        }
        records, tombs = self.store.sector_records_for(keys, self.changed_ids, groups, unique)
        self.records = records
        self.stored = dict(records)  # the records as stored before this batch
        current_ids: set[str] = set()
        legacy_ids: set[str] = set()
        for rec in [*records.values(), *(c.row for c in changes if c.row is not None)]:
            if rec.citizen_id:
                (legacy_ids if self.ids.is_legacy(rec.citizen_id_raw) else current_ids).add(
                    rec.citizen_id
                )
        if settings.lock_legacy and not legacy_ids <= locked:
            # A record's stored version carries a number the changes do not (a delete, an
            # ID corrected away from a legacy number). Taken after the first lock: a
            # deadlock with another batch is possible here, and PostgreSQL breaks it by
            # failing one batch, which is re-read from its stored offsets.
            self.store.lock_legacy_ids(legacy_ids - locked)
        self.by_id, self.by_legacy = self.store.registry_for_ids(current_ids, legacy_ids)
        known = [k for k in keys if k in records or k in tombs]
        known += [k for k in records if k not in keys]
        self.ledger = Ledger(self.store.load_mismatches(known))
        self.groups: dict[tuple[str, str], set[str]] = {}
        for rec in records.values():
            if rec.citizen_id:
                self.groups.setdefault((rec.sector, rec.citizen_id), set()).add(rec.record_key)
        self.dirty: set[SectorKey] = set()  # changed by a change event: the row is rewritten
        self.reverified: set[SectorKey] = set()  # only ``verified`` moved
        self.deleted: set[SectorKey] = set()
        # Duplicate groups of unique sectors: the step at which each group's membership
        # (IDs, active-ness) last changed, and each group's active keys as of that change.
        self.group_changed: dict[tuple[str, str], int] = {}
        self.actives: dict[tuple[str, str], tuple[int, list[str]]] = {}
        put_tombs: dict[SectorKey, tuple] = {}
        drop_tombs: set[SectorKey] = set()

        # Registry changes first: every record carrying a changed ID is judged again.
        if self.changed_ids:
            for key in sorted(k for k, r in records.items() if r.citizen_id in self.changed_ids):
                self.evaluate(key)

        for c in changes:
            key = (c.source, c.record_key)
            old = records.get(key)
            ref = (old.source_lsn, old.source_ts) if old is not None else tombs.get(key)
            if ref is not None and is_older(c.lsn, c.ts, *ref):
                self._outcome(c, "stale")
                continue
            self._outcome(c, "applied")
            if old is not None:
                self._ungroup(old)
            new = None
            if c.op == "d":
                records.pop(key, None)
                self.deleted.add(key)
                tombs[key] = put_tombs[key] = (c.lsn, c.ts)
                drop_tombs.discard(key)
                self.ledger.record_deleted(key)
            else:
                new = c.row
                new.verified = old.verified if old is not None else False
                records[key] = new
                self.deleted.discard(key)
                if not same_state(new, old):  # an identical re-delivery rewrites nothing
                    self.dirty.add(key)
                if tombs.pop(key, None) is not None:
                    put_tombs.pop(key, None)
                    drop_tombs.add(key)
                if new.citizen_id:
                    self.groups.setdefault((new.sector, new.citizen_id), set()).add(c.record_key)
            self.step += 1
            if c.source in unique and _membership_changed(old, new):
                for rec in (old, new):
                    if rec is not None and rec.citizen_id:
                        self.group_changed[(rec.sector, rec.citizen_id)] = self.step
            if new is None:
                continue
            if new.citizen_id and (new.sector, new.citizen_id) in self.group_changed:
                self.judged_at.pop(key, None)  # judged below, with the rest of its group
            else:
                self.evaluate(key)

        # Every record of a duplicate group whose membership changed is judged once, against
        # the group as the batch leaves it — not again at each change, which made a batch
        # loading a large group cost the cube of its size (and a history row per step).
        for group, changed_at in sorted(self.group_changed.items()):
            for other in sorted(self.groups.get(group, ())):
                if self.judged_at.get((group[0], other), -1) < changed_at:
                    self.evaluate((group[0], other))

        self._suggest()
        self.store.write_sector_records(
            [records[k] for k in sorted(self.dirty) if k in records],
            sorted(self.deleted),
        )
        # Records re-judged only (registry change, duplicate group): their row may have been
        # changed meanwhile by another reconciler (a legacy ID lives in another partition),
        # so only the flag is written.
        self.store.write_verified(
            [
                (k[0], k[1], records[k].verified)
                for k in sorted(self.reverified - self.dirty)
                if k in records
            ],
        )
        self.store.write_tombstones(
            [(s, k, lsn, ts) for (s, k), (lsn, ts) in put_tombs.items()],
            sorted(drop_tombs),
        )
        self._confirm()

    def _confirm(self) -> None:
        """The corrections that records changed in this batch now carry: one look-up for
        the batch's changed records, compared here with the hub's normalization."""
        changed = [k for k in sorted(self.dirty) if k in self.records]
        if not changed:
            return
        for c in self.store.confirmable_corrections(changed):
            rules = self.settings.rules.get(c.sector)
            strict = rules.strict_script_names if rules is not None else False
            record = self.records.get((c.sector, c.record_key))
            if record is not None and carries(c, record, self._normalize_id, strict_script=strict):
                self.confirmed.append(c)

    def _normalize_id(self, raw: str) -> str | None:
        return self.ids.normalized(raw)[0]

    def _ungroup(self, rec: SectorRow) -> None:
        if rec.citizen_id:
            group = self.groups.get((rec.sector, rec.citizen_id))
            if group is not None:
                group.discard(rec.record_key)

    def evaluate(self, key: SectorKey) -> None:
        """Judge one record as it stands now and record the transitions."""
        rec = self.records[key]
        settings = self.settings
        rules = settings.rules.get(rec.sector)
        if rules is None:  # a sector dropped from the config: its records are left alone
            return
        info = self.ids.id_info(rec.citizen_id_raw)
        match = None
        if info is not None and rec.citizen_id:
            if info.kind == "legacy":
                match = self.by_legacy.get(rec.citizen_id)
            elif info.kind == "current":
                match = self.by_id.get(rec.citizen_id)
        duplicates: list[str] = []
        if rules.unique_citizen and rec.citizen_id:
            actives = self._actives((rec.sector, rec.citizen_id))
            duplicates = [other for other in actives if other != rec.record_key]
        findings = evaluate(rec, match, info, rules, duplicates=duplicates)
        self.ledger.observe(
            key,
            findings,
            citizen_id=rec.citizen_id_raw,
            province_code=rec.province_code or (match.province_code if match else None),
            disabled=rules.disabled,
        )
        self.matches[key] = match
        self.judged_at[key] = self.step
        verified = match is not None and not self.ledger.has_open(key)
        if verified != rec.verified:
            rec.verified = verified
            self.reverified.add(key)

    def _actives(self, group: tuple[str, str]) -> list[str]:
        """The active records of a duplicate group, sorted; computed once per membership
        change of the group (each of its records is judged against the same list)."""
        sector = group[0]
        members = self.groups.get(group, ())
        if len(members) < 2:  # most IDs: a group of one has nothing worth caching
            return [k for k in members if is_active(self.records[(sector, k)].status)]
        version = self.group_changed.get(group, 0)
        cached = self.actives.get(group)
        if cached is None or cached[0] != version:
            keys = sorted(k for k in members if is_active(self.records[(sector, k)].status))
            cached = self.actives[group] = (version, keys)
        return cached[1]

    def _suggest(self) -> None:
        """Registry candidates for open ID_MISSING / ID_NOT_IN_REGISTRY / ID_LEGACY
        mismatches, through the sector's blocking keys (``reconciliation.suggestions``: one
        query per key for the batch, one for the citizens shortlisted), scored with parts.

        Found when the mismatch opens or reopens, and again when what they are found by
        changed: the record's ID, name or birth date, or (through a registry change) the
        citizen holding its ID. A change of other fields (status, address, activity: most
        updates) keeps them; a citizen added to the registry later does not refresh them.
        """
        rows = self.ledger.suggestion_rows(sorted(self.judged_at), SUGGESTING_RULES)
        if not rows:
            return
        waiting: list[tuple[MismatchRow, list[dict]]] = []
        probes: list[Probe] = []
        for row in rows:
            key = (row.sector, row.record_key)
            rec = self.records.get(key)
            if rec is None or (row.suggestions is not None and not self._moved(key, rec)):
                continue
            held = self._held(row, rec)
            if not rec.name_folded:
                self.ledger.set_suggestions(row, held)
                continue
            info = (
                self.ids.id_info(rec.citizen_id_raw) if row.rule == "ID_NOT_IN_REGISTRY" else None
            )
            encoded = info is not None and info.kind == "current"
            probes.append(
                Probe(
                    name_folded=rec.name_folded,
                    date_of_birth=rec.date_of_birth,
                    sex=rec.sex,
                    province_code=rec.province_code,
                    id_birth_year=info.birth_year if encoded else None,
                    id_sex=info.sex if encoded else None,
                    keys=self.settings.candidate_keys.get(row.sector, CANDIDATE_KEYS),
                )
            )
            waiting.append((row, held))
        if not probes:
            return
        found = find_candidates(
            self.store.registry_index(),
            probes,
            exclude=[[s["citizen_id"] for s in held] for _row, held in waiting],
            limit=MAX_SUGGESTIONS,
        )
        for (row, held), picks in zip(waiting, found, strict=True):
            out = held + [s.as_dict() for s in picks[: MAX_SUGGESTIONS - len(held)]]
            self.ledger.set_suggestions(row, out)

    def _moved(self, key: SectorKey, rec: SectorRow) -> bool:
        """Whether what a record's suggestions are found by changed in this batch."""
        stored = self.stored.get(key)
        return (
            stored is None
            or stored.name_folded != rec.name_folded
            or stored.date_of_birth != rec.date_of_birth
            or stored.citizen_id_raw != rec.citizen_id_raw
            or (rec.citizen_id is not None and rec.citizen_id in self.changed_ids)
        )

    def _held(self, row: MismatchRow, rec: SectorRow) -> list[dict]:
        """For ID_LEGACY, the citizen holding the legacy number comes first."""
        match = self.matches.get((row.sector, row.record_key))
        if row.rule != "ID_LEGACY" or match is None:
            return []
        probe = Probe(rec.name_folded or "", rec.date_of_birth, rec.sex, rec.province_code)
        citizen = Citizen(
            match.citizen_id, match.full_name, match.name_folded, match.date_of_birth,
            match.sex, match.province_code,
        )  # fmt: skip
        probability, parts = score(probe, citizen)
        held = Suggestion(match.citizen_id, match.full_name, probability, parts, ["legacy_id"])
        return [held.as_dict()]

    def finish(self) -> list[dict]:
        """Write the mismatch transitions; return the events to publish."""
        self.transitions = self.ledger.transitions
        events = self.store.write_mismatches(self.ledger)
        if self.confirmed:
            self.store.confirm_corrections(self.confirmed)
            log.debug("%d corrections confirmed", len(self.confirmed))
        if self.transitions:
            log.debug("%d mismatch transitions", self.transitions)
        return events


def _membership_changed(old: SectorRow | None, new: SectorRow | None) -> bool:
    """Whether a change can alter a duplicate group: ID or active-ness moved."""
    old_id = old.citizen_id if old is not None else None
    new_id = new.citizen_id if new is not None else None
    old_active = old is not None and is_active(old.status)
    new_active = new is not None and is_active(new.status)
    return (old_id, old_active) != (new_id, new_active) and bool(old_id or new_id)

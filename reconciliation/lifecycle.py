"""Mismatch lifecycle: every status transition, the reconciler's and the stewards', in one
table (:data:`TRANSITIONS`), and the one writer of ``mismatch_history`` (SPEC §5).

==================  ==========  ==========================  ===========  ====================
transition          actor       from                        to           resolution
==================  ==========  ==========================  ===========  ====================
``opened``          reconciler  (no mismatch)               open         —
``updated``         reconciler  open, in_review             (unchanged)  —
``fixed_at_source`` reconciler  open, in_review             resolved     fixed_at_source
``record_deleted``  reconciler  open, in_review             resolved     record_deleted
``reopened``        reconciler  resolved, dismissed         open         (cleared)
``assign``          steward     open, in_review             in_review    —
``resolve``         steward     open, in_review             resolved     manual
``dismiss``         steward     open, in_review             dismissed    false_positive
``reopen``          steward     resolved, dismissed         open         (cleared)
``comment``         steward     any                         (unchanged)  —
==================  ==========  ==========================  ===========  ====================

When the reconciler takes its transitions, per evaluation of a live record (:class:`Ledger`):

============================  ==========================================  ===============
current status                finding present                             finding absent
============================  ==========================================  ===============
(none)                        ``opened``                                  —
``open`` / ``in_review``      refresh values (``updated`` when the        ``fixed_at_source``
                              values changed)
``resolved``                  ``reopened``                                —
``dismissed``                 stays dismissed while ``values_hash`` is    stays dismissed
                              equal; else ``reopened``
============================  ==========================================  ===============

A deleted record resolves its open and in-review mismatches with ``record_deleted``.
Re-evaluating the same facts makes no transition, so re-delivery never duplicates anything.
A steward's action (``hub.api.queue.actions``) is refused unless the mismatch's status is
one its transition starts from; dismissing needs a reason code (its free text is required
only for the codes that say so), commenting a note.
"""

from __future__ import annotations

import json
import time
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field

import psycopg

from hub.vocabulary import CLOSED_STATUSES, MISMATCH_STATUSES, OPEN_STATUSES
from reconciliation.rules import Finding
from reconciliation.store.rows import SectorKey
from reconciliation.store.staging import stage

ACTOR = "reconciler"
STEWARD = "steward"
"""The actor kind of a steward's transition (the history names the steward themself)."""
FIXED_AT_SOURCE = "fixed_at_source"
RECORD_DELETED = "record_deleted"


@dataclass(frozen=True, slots=True)
class Transition:
    """One way a mismatch changes: who takes it, the statuses it starts from (``None``: no
    mismatch yet), the status it leaves (``None``: unchanged) and the resolution it sets.
    ``action`` is what the history row says."""

    name: str
    actor: str
    from_statuses: tuple[str | None, ...]
    to_status: str | None
    resolution: str | None = None
    note_required: bool = False
    action: str = ""

    def __post_init__(self) -> None:
        if not self.action:
            object.__setattr__(self, "action", self.name)

    def allows(self, status: str | None) -> bool:
        return status in self.from_statuses

    def changes(self) -> dict[str, str | None]:
        """The columns the transition sets: ``status`` and, with it, ``resolution`` and
        ``resolved_at`` (``"set"``: now, ``"clear"``: NULL); empty when the status stays."""
        if self.to_status is None:
            return {}
        if self.to_status in CLOSED_STATUSES:
            return {"status": self.to_status, "resolution": self.resolution, "resolved_at": "set"}
        if all(s in CLOSED_STATUSES for s in self.from_statuses):
            return {"status": self.to_status, "resolution": None, "resolved_at": "clear"}
        return {"status": self.to_status}


TRANSITIONS: dict[str, Transition] = {
    t.name: t
    for t in (
        Transition("opened", ACTOR, (None,), "open"),
        Transition("updated", ACTOR, OPEN_STATUSES, None),
        Transition(
            "fixed_at_source", ACTOR, OPEN_STATUSES, "resolved", FIXED_AT_SOURCE, action="resolved"
        ),
        Transition(
            "record_deleted", ACTOR, OPEN_STATUSES, "resolved", RECORD_DELETED, action="resolved"
        ),
        Transition("reopened", ACTOR, CLOSED_STATUSES, "open"),
        Transition("assign", STEWARD, OPEN_STATUSES, "in_review"),
        Transition("resolve", STEWARD, OPEN_STATUSES, "resolved", "manual"),
        Transition("dismiss", STEWARD, OPEN_STATUSES, "dismissed", "false_positive"),
        Transition("reopen", STEWARD, CLOSED_STATUSES, "open"),
        Transition("comment", STEWARD, MISMATCH_STATUSES, None, note_required=True),
    )
}
"""Every transition, by name (see the module docstring)."""
STEWARD_ACTIONS: dict[str, Transition] = {
    name: t for name, t in TRANSITIONS.items() if t.actor == STEWARD
}
"""What a steward may do to a mismatch, by action name."""


def steward_note(t: Transition, note: str | None, assignee: str | None) -> str | None:
    """The history note of a steward's action: an assignment names the assignee."""
    if t.name == "assign":
        return f"assigned to {assignee}" + (f": {note}" if note else "")
    return note


def write_history(
    conn: psycopg.Connection,
    actor: str,
    entries: Iterable[tuple[int, str, str | None, str | None, str | None]],
    *,
    dismissal_code: str | None = None,
) -> None:
    """Append ``(mismatch_id, action, from_status, to_status, note)`` rows by ``actor`` to
    ``mismatch_history`` in the caller's transaction (binary COPY), ids in the order given;
    ``dismissal_code`` is the reason code of a dismissal, the same for every row."""
    with (
        conn.cursor() as cur,
        cur.copy(
            "COPY mismatch_history"
            " (mismatch_id, actor, action, from_status, to_status, note, dismissal_code)"
            " FROM STDIN (FORMAT BINARY)"
        ) as copy,
    ):
        copy.set_types(_HISTORY_TYPES)
        for mismatch_id, action, from_status, to_status, note in entries:
            copy.write_row(
                (mismatch_id, actor, action, from_status, to_status, note, dismissal_code)
            )


_HISTORY_TYPES = ("int8", "text", "text", "text", "text", "text", "text")

_COLS = (
    "id, sector, record_key, rule, field, severity, status, resolution, citizen_id, "
    "province_code, sector_value, registry_value, score, suggestions, values_hash, assignee"
)


@dataclass(slots=True, eq=False)
class MismatchRow:
    """A ``mismatches`` row as the batch sees it; ``id`` is None until first written."""

    id: int | None
    sector: str
    record_key: str
    rule: str
    field: str
    severity: str
    status: str
    resolution: str | None = None
    citizen_id: str | None = None
    province_code: str | None = None
    sector_value: str | None = None
    registry_value: str | None = None
    score: float | None = None
    suggestions: list | None = None
    values_hash: str | None = None
    assignee: str | None = None
    # Batch bookkeeping, not columns.
    dirty: bool = False
    seen: bool = False  # the finding was present: last_seen_at moves
    resolved_at: str | None = None  # "set" / "clear" / None = keep

    @property
    def key(self) -> tuple[str, str]:
        return (self.rule, self.field)

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES


@dataclass(slots=True)
class _History:
    row: MismatchRow
    action: str
    from_status: str | None
    to_status: str | None
    note: str | None


@dataclass(slots=True)
class _Event:
    row: MismatchRow
    values: dict = field(default_factory=dict)


def load_mismatches(
    conn: psycopg.Connection, keys: Iterable[SectorKey], *, lock: bool = True
) -> list[MismatchRow]:
    """Every mismatch (any status) of the given records; locked for this transaction so a
    steward's concurrent action waits for the batch instead of being overwritten."""
    keys = set(keys)
    if not keys:
        return []
    stage(conn, "_hub_keys2", keys)
    with conn.cursor(binary=True) as cur:
        rows = cur.execute(
            f"""
            SELECT {", ".join("m." + c.strip() for c in _COLS.split(","))}
            FROM mismatches m JOIN _hub_keys2 k ON m.sector = k.a AND m.record_key = k.b
            ORDER BY m.id
            {"FOR UPDATE OF m" if lock else ""}
            """
        ).fetchall()
    return [MismatchRow(*r) for r in rows]


class Ledger:
    """The mismatches of a batch's records and the transitions made on them so far.

    Feed it every evaluation in processing order (:meth:`observe`, :meth:`record_deleted`);
    :meth:`flush` then writes rows, history and returns the events to publish.
    """

    def __init__(self, rows: Iterable[MismatchRow] = ()):
        self._rows: dict[SectorKey, dict[tuple[str, str], MismatchRow]] = {}
        for row in rows:
            self._rows.setdefault((row.sector, row.record_key), {})[row.key] = row
        self._new: list[MismatchRow] = []
        self._history: list[_History] = []
        self._events: list[_Event] = []

    def rows(self, key: SectorKey) -> dict[tuple[str, str], MismatchRow]:
        return self._rows.get(key, {})

    def has_open(self, key: SectorKey) -> bool:
        return any(r.is_open for r in self._rows.get(key, {}).values())

    def observe(
        self,
        key: SectorKey,
        findings: Sequence[Finding],
        *,
        citizen_id: str | None,
        province_code: str | None,
        disabled: Collection[str] = (),
    ) -> None:
        """Apply one evaluation of a live record: ``findings`` are every rule failing now."""
        current = self._rows.setdefault(key, {})
        present = set()
        for f in findings:
            present.add(f.key)
            row = current.get(f.key)
            if row is None:
                # No status until the "opened" transition gives it one.
                row = MismatchRow(None, key[0], key[1], f.rule, f.field, f.severity, None)
                self._fill(row, f, citizen_id, province_code)
                current[f.key] = row
                self._new.append(row)
                self._take(row, "opened", f.note)
            elif row.is_open:
                values_changed = row.values_hash != f.values_hash
                self._fill(row, f, citizen_id, province_code)
                if values_changed:
                    self._take(row, "updated", f.note)
            elif row.status == "resolved":
                self._fill(row, f, citizen_id, province_code)
                self._reopen(row, f.note)
            elif row.status == "dismissed" and row.values_hash != f.values_hash:
                self._fill(row, f, citizen_id, province_code)
                self._reopen(row, "values changed since the dismissal")
        for rule_field, row in current.items():
            if rule_field not in present and row.is_open:
                note = "rule disabled for the sector" if row.rule in disabled else "rule passes"
                self._take(row, FIXED_AT_SOURCE, f"{FIXED_AT_SOURCE}: {note}")

    def record_deleted(self, key: SectorKey) -> None:
        """The record is gone at its source: resolve whatever is open on it."""
        for row in self._rows.get(key, {}).values():
            if row.is_open:
                self._take(
                    row, RECORD_DELETED, f"{RECORD_DELETED}: the record was deleted at the source"
                )

    def suggestion_rows(
        self, keys: Iterable[SectorKey], rules: Collection[str]
    ) -> list[MismatchRow]:
        """Open rows of ``rules`` on the given records (the ones evaluated in this batch);
        the engine finds candidates for those that have none yet or whose record changed."""
        return [
            row
            for key in keys
            for row in self._rows.get(key, {}).values()
            if row.rule in rules and row.is_open
        ]

    def set_suggestions(self, row: MismatchRow, suggestions: list) -> None:
        if row.suggestions != suggestions:
            row.suggestions = suggestions
            row.dirty = True

    # -- transitions ------------------------------------------------------------------

    def _fill(
        self, row: MismatchRow, f: Finding, citizen_id: str | None, province: str | None
    ) -> None:
        new = (
            f.severity,
            citizen_id,
            province,
            f.sector_value,
            f.registry_value,
            f.score,
            f.values_hash,
        )
        old = (
            row.severity,
            row.citizen_id,
            row.province_code,
            row.sector_value,
            row.registry_value,
            row.score,
            row.values_hash,
        )
        if new != old:
            (
                row.severity,
                row.citizen_id,
                row.province_code,
                row.sector_value,
                row.registry_value,
                row.score,
                row.values_hash,
            ) = new
            row.dirty = True
        row.seen = True

    def _reopen(self, row: MismatchRow, note: str | None) -> None:
        row.suggestions = None  # found again for the record as it stands (engine._suggest)
        self._take(row, "reopened", note)

    def _take(self, row: MismatchRow, name: str, note: str | None) -> None:
        """Apply the reconciler's transition ``name`` to ``row``: its history row and, when
        the status changes, the new status and the mismatch event to publish."""
        t = TRANSITIONS[name]
        before = row.status
        assert t.actor == ACTOR and t.allows(before), (name, before)
        changes = t.changes()
        if changes:
            row.status = changes["status"]
            if "resolution" in changes:
                row.resolution, row.resolved_at = changes["resolution"], changes["resolved_at"]
            row.dirty = True
        self._history.append(_History(row, t.action, before, row.status, note))
        if not changes:
            return
        self._events.append(
            _Event(
                row,
                {
                    "event": t.action,
                    "sector": row.sector,
                    "record_key": row.record_key,
                    "citizen_id": row.citizen_id,
                    "rule": row.rule,
                    "field": row.field,
                    "severity": row.severity,
                    "status": row.status,
                    "resolution": row.resolution,
                    "sector_value": row.sector_value,
                    "registry_value": row.registry_value,
                    "score": row.score,
                },
            )
        )

    # -- writing ----------------------------------------------------------------------

    def flush(self, conn: psycopg.Connection) -> list[dict]:
        """Insert new rows, update changed ones, append the history (in transition order);
        return the mismatch events (``hub.MismatchEvent`` records) in transition order."""
        self._insert_new(conn)
        self._update_changed(conn)
        write_history(
            conn,
            ACTOR,
            ((h.row.id, h.action, h.from_status, h.to_status, h.note) for h in self._history),
        )
        ts_ms = int(time.time() * 1000)
        events = [{"mismatch_id": e.row.id, **e.values, "ts_ms": ts_ms} for e in self._events]
        self._new, self._history, self._events = [], [], []
        for per_record in self._rows.values():
            for row in per_record.values():
                row.dirty = row.seen = False
                row.resolved_at = None
        return events

    @property
    def transitions(self) -> int:
        return len(self._history)

    def _insert_new(self, conn: psycopg.Connection) -> None:
        new = self._new
        if not new:
            return
        stage(
            conn,
            "_hub_mismatch_new",
            (
                (
                    r.sector,
                    r.record_key,
                    r.rule,
                    r.field,
                    r.severity,
                    r.status,
                    r.resolution,
                    r.citizen_id,
                    r.province_code,
                    r.sector_value,
                    r.registry_value,
                    r.score,
                    _json(r.suggestions),
                    r.values_hash,
                )
                for r in new
            ),
        )
        rows = conn.execute(
            """
            INSERT INTO mismatches (sector, record_key, rule, field, severity, status, resolution,
                citizen_id, province_code, sector_value, registry_value, score, suggestions,
                values_hash, resolved_at)
            SELECT sector, record_key, rule, field, severity, status, resolution, citizen_id,
                   province_code, sector_value, registry_value, score, suggestions::jsonb,
                   values_hash, CASE WHEN status = 'resolved' THEN now() END
            FROM _hub_mismatch_new
            ON CONFLICT (sector, record_key, rule, field) DO UPDATE SET
                severity = EXCLUDED.severity, status = EXCLUDED.status,
                resolution = EXCLUDED.resolution, citizen_id = EXCLUDED.citizen_id,
                province_code = EXCLUDED.province_code, sector_value = EXCLUDED.sector_value,
                registry_value = EXCLUDED.registry_value, score = EXCLUDED.score,
                suggestions = EXCLUDED.suggestions, values_hash = EXCLUDED.values_hash,
                resolved_at = EXCLUDED.resolved_at, last_seen_at = now(), updated_at = now(),
                dismissal_code = CASE WHEN EXCLUDED.status = 'dismissed'
                                      THEN mismatches.dismissal_code END
            RETURNING id, sector, record_key, rule, field
            """
        ).fetchall()
        ids = {(s, k, rule, f): i for i, s, k, rule, f in rows}
        for r in new:
            r.id = ids[(r.sector, r.record_key, r.rule, r.field)]

    def _update_changed(self, conn: psycopg.Connection) -> None:
        new = {id(r) for r in self._new}
        rows = [
            r
            for per_record in self._rows.values()
            for r in per_record.values()
            if (r.dirty or r.seen) and id(r) not in new
        ]
        if not rows:
            return
        stage(
            conn,
            "_hub_mismatch_upd",
            (
                (
                    r.id,
                    r.severity,
                    r.status,
                    r.resolution,
                    r.citizen_id,
                    r.province_code,
                    r.sector_value,
                    r.registry_value,
                    r.score,
                    _json(r.suggestions),
                    r.values_hash,
                    r.seen,
                    r.resolved_at,
                    r.dirty,
                )
                for r in rows
            ),
        )
        conn.execute(
            """
            UPDATE mismatches m SET
                severity = u.severity, status = u.status, resolution = u.resolution,
                citizen_id = u.citizen_id, province_code = u.province_code,
                sector_value = u.sector_value, registry_value = u.registry_value,
                score = u.score, suggestions = u.suggestions::jsonb, values_hash = u.values_hash,
                last_seen_at = CASE WHEN u.seen THEN now() ELSE m.last_seen_at END,
                resolved_at = CASE u.resolved_at WHEN 'set' THEN now() WHEN 'clear' THEN NULL
                                                 ELSE m.resolved_at END,
                updated_at = CASE WHEN u.dirty THEN now() ELSE m.updated_at END,
                -- a reason code holds only while dismissed (a reopen drops it)
                dismissal_code = CASE WHEN u.status = 'dismissed' THEN m.dismissal_code END
            FROM _hub_mismatch_upd u
            WHERE m.id = u.id
            """
        )


def _json(value: list | None) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, sort_keys=True)

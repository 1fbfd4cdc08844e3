"""Corrections: what a steward asks a sector to change, their lifecycle, how the reconciler
knows a source now carries one, and the feed of ``hub.CorrectionEvent`` messages on
``<prefix>.corrections.<sector>`` for the sector's own system to pick up (SPEC §5).

==================  ============  ==========================  ============
transition          who           from                        to
==================  ============  ==========================  ============
``propose``         steward       (none)                      proposed
``approve``         approver      proposed                    approved
``send``            steward       proposed (no approval),     sent
                                  approved
``withdraw``        steward       proposed                    withdrawn
``confirm``         reconciler    sent, acknowledged          confirmed
``reject``          agency file   sent                        rejected
``acknowledge``     agency file   sent                        acknowledged
==================  ============  ==========================  ============

A sector whose config says ``corrections: {approval: true}`` needs the ``approve`` step, by
someone other than the proposer. ``confirm`` is the reconciler's: a later change at the
source carries the proposed value (:func:`carries`); the mismatch then resolves
``fixed_at_source`` by its rule passing, and points to the correction.

The feed is at least once: :func:`publish_corrections` publishes the mismatches open at that
moment (``mismatch_id`` is their identity); a sent correction is produced when it is sent,
with its ``correction_id``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection
from dataclasses import dataclass
from datetime import date
from typing import Any

import psycopg

from hub.avro.codec import Encoder
from hub.config import HubConfig
from hub.db import psycopg_conninfo
from hub.errors import FatalError, RetriableError
from hub.idschemes import get_scheme
from hub.kafka import Topics, ensure_topics, make_producer
from hub.vocabulary import OPEN_STATUSES_SQL
from reconciliation.names import compare

log = logging.getLogger(__name__)

# ------------------------------------------------------------------------------ lifecycle

CANDIDATE = "candidate"
VALUE = "value"
KINDS = (CANDIDATE, VALUE)
CORRECTION_STATUSES = (
    "proposed", "approved", "sent", "confirmed", "rejected", "acknowledged", "withdrawn",
)  # fmt: skip
LIVE_STATUSES = ("proposed", "approved", "sent")
"""A mismatch has at most one correction in these (a unique index says so)."""
CONFIRMABLE_STATUSES = ("sent", "acknowledged")
"""What the reconciler confirms when the source comes to carry the proposed value."""

CANDIDATE_RULES = frozenset({"ID_MISSING", "ID_NOT_IN_REGISTRY", "ID_LEGACY"})
"""Rules fixed by the record carrying a registry candidate's citizen ID."""
VALUE_RULES: dict[str, str] = {
    "NAME_MISMATCH": "full_name",
    "DOB_MISMATCH": "date_of_birth",
    "SEX_MISMATCH": "sex",
    "PROVINCE_MISMATCH": "province_code",
}
"""Rules fixed by one field holding the registry's value, with that field."""


@dataclass(frozen=True, slots=True)
class CorrectionTransition:
    """One step of a correction: its name (the history's action), the statuses it starts
    from (``None``: no correction yet) and the status it leaves."""

    name: str
    from_statuses: tuple[str | None, ...]
    to_status: str
    reason_required: bool = False

    def allows(self, status: str | None) -> bool:
        return status in self.from_statuses


CORRECTION_TRANSITIONS: dict[str, CorrectionTransition] = {
    t.name: t
    for t in (
        CorrectionTransition("propose", (None,), "proposed"),
        CorrectionTransition("approve", ("proposed",), "approved"),
        CorrectionTransition("send", ("proposed", "approved"), "sent"),
        CorrectionTransition("withdraw", ("proposed",), "withdrawn"),
        CorrectionTransition("confirm", CONFIRMABLE_STATUSES, "confirmed"),
        CorrectionTransition("reject", ("sent",), "rejected", reason_required=True),
        CorrectionTransition("acknowledge", ("sent",), "acknowledged"),
    )
}
"""Every correction transition, by name (see the module docstring)."""


def send_from(approval: bool) -> tuple[str, ...]:
    """The statuses a correction may be sent from, with or without the approval step."""
    return ("approved",) if approval else ("proposed", "approved")


def proposal_problem(rule: str, kind: str, value: str) -> str | None:
    """Why a ``kind`` correction proposing ``value`` does not fit a ``rule`` mismatch."""
    if kind == CANDIDATE:
        if rule not in CANDIDATE_RULES:
            return f"a {rule} mismatch is not fixed by a candidate ID (use a value correction)"
        return None if value.strip() else "the candidate citizen ID is empty"
    if kind != VALUE:
        return f"unknown kind {kind!r} (known: {', '.join(KINDS)})"
    field = VALUE_RULES.get(rule)
    if field is None:
        return f"a {rule} mismatch has no single value to propose"
    if not value.strip():
        return f"the proposed {field} is empty"
    if field == "date_of_birth":
        try:
            date.fromisoformat(value.strip())
        except ValueError:
            return f"the proposed date_of_birth {value.strip()[:20]!r} is not a date (YYYY-MM-DD)"
    return None


@dataclass(frozen=True, slots=True)
class OpenCorrection:
    """A correction the reconciler may confirm, as a batch reads it."""

    id: int
    mismatch_id: int
    sector: str
    record_key: str
    kind: str
    field: str
    proposed_value: str
    status: str


def carries(
    c: OpenCorrection, record: Any, normalize_id: Any, *, strict_script: bool = False
) -> bool:
    """Whether ``record`` (a sector row as the batch holds it) now carries what ``c``
    proposes, after the hub's own normalization: the candidate's citizen ID (by the ID
    scheme, ``normalize_id``), a name equal as the NAME_MISMATCH rule compares names, the
    same date, sex code or province code."""
    proposed = c.proposed_value.strip()
    if not proposed:
        return False
    if c.kind == CANDIDATE:
        return record.citizen_id is not None and record.citizen_id == normalize_id(proposed)
    if c.field == "full_name":
        if record.full_name is None:
            return False
        return compare(record.full_name, proposed, strict_script=strict_script).equal
    if c.field == "date_of_birth":
        return record.date_of_birth is not None and record.date_of_birth.isoformat() == proposed
    if c.field == "sex":
        return (record.sex or "").strip().upper() == proposed.upper()
    if c.field == "province_code":
        return (record.province_code or "").strip() == proposed
    return False


# ---------------------------------------------------------------------------------- feed

_FETCH = 5000
# What the sector should write instead of its value, per rule: the registry's value, or
# the candidate citizen the hub suggests; None when the fix is not a single value.
_SUGGEST_REGISTRY_VALUE = frozenset(
    {"ID_LEGACY", "NAME_MISMATCH", "DOB_MISMATCH", "SEX_MISMATCH", "PROVINCE_MISMATCH"}
)
_SUGGEST_CANDIDATE = frozenset({"ID_MISSING", "ID_NOT_IN_REGISTRY"})


def correction(row: dict[str, Any], ts_ms: int) -> dict[str, Any]:
    """The ``hub.CorrectionEvent`` record of one mismatch row (a dict of its columns)."""
    rule = row["rule"]
    suggested = None
    note = None
    if rule in _SUGGEST_REGISTRY_VALUE:
        suggested = row["registry_value"]
    elif rule in _SUGGEST_CANDIDATE and row.get("suggestions"):
        best = row["suggestions"][0]
        suggested = best.get("citizen_id")
        note = f"best registry candidate (similarity {best.get('score', 0):.2f}); check before use"
    elif rule == "DECEASED_ACTIVE":
        suggested = "closed"
        note = f"registry: {row['registry_value']}"
    elif rule == "DUPLICATE_ID":
        note = "several active records carry this citizen ID; keep one"
    elif rule == "ID_ATTRIBUTES_INCONSISTENT":
        note = f"{row['registry_value']}; the record has {row['sector_value']}"
    elif rule == "ID_INVALID":
        note = "the ID fails the national ID scheme's structure check"
    return {
        "mismatch_id": row["id"],
        "sector": row["sector"],
        "record_key": row["record_key"],
        "citizen_id": row["citizen_id"],
        "rule": rule,
        "field": row["field"] or None,
        "current_value": row["sector_value"],
        "suggested_value": suggested,
        "severity": row["severity"],
        "note": note,
        "ts_ms": ts_ms,
    }


def publish_corrections(
    config: HubConfig,
    sector: str,
    *,
    rules: Collection[str] = (),
    severities: Collection[str] = (),
    producer: Any = None,
) -> int:
    """Publish the open and in-review mismatches of ``sector`` (optionally only some rules
    or severities) in id order; returns how many. Raises :class:`RetriableError` when
    Kafka did not acknowledge them all."""
    if sector not in config.sectors:
        known = ", ".join(sorted(config.sectors)) or "none configured"
        raise FatalError(f"unknown sector {sector!r} (known: {known})")
    topics = Topics(config.kafka.topic_prefix)
    topic = topics.corrections(sector)
    ensure_topics(config.kafka, [topic])
    scheme = get_scheme(config.id_scheme)
    encoder = Encoder("hub.CorrectionEvent")
    own_producer = producer is None
    producer = producer or make_producer(config.kafka)
    futures = []
    sql = f"""
        SELECT id, sector, record_key, rule, field, severity, citizen_id, sector_value,
               registry_value, suggestions
        FROM mismatches
        WHERE sector = %s AND status IN {OPEN_STATUSES_SQL}
          AND (cardinality(%s::text[]) = 0 OR rule = ANY(%s::text[]))
          AND (cardinality(%s::text[]) = 0 OR severity = ANY(%s::text[]))
        ORDER BY id
    """
    try:
        with psycopg.connect(psycopg_conninfo(config.database.url)) as conn:
            with conn.cursor(name="corrections") as cur:
                cur.itersize = _FETCH
                cur.execute(
                    sql, (sector, list(rules), list(rules), list(severities), list(severities))
                )
                names = [d.name for d in cur.description]
                ts_ms = int(time.time() * 1000)
                for values in cur:
                    row = dict(zip(names, values, strict=True))
                    cid = scheme.normalize(row["citizen_id"])
                    key = (cid or f"{sector}:{row['record_key']}").encode()
                    value = encoder.encode(correction(row, ts_ms))
                    futures.append(producer.send(topic, key=key, value=value))
        producer.flush()
    finally:
        if own_producer:
            producer.close()
    failed = sum(1 for f in futures if not f.succeeded())
    if failed:
        raise RetriableError(f"{failed} of {len(futures)} corrections not acknowledged by Kafka")
    log.info("published %d corrections to %s", len(futures), topic)
    return len(futures)


def sent_event(item: dict[str, Any], mismatch: dict[str, Any], ts_ms: int) -> dict[str, Any]:
    """The ``hub.CorrectionEvent`` of a steward's correction as it is sent (``item``: its
    columns; ``mismatch``: its mismatch's rule, severity and citizen ID)."""
    return {
        "mismatch_id": item["mismatch_id"],
        "sector": item["sector"],
        "record_key": item["record_key"],
        "citizen_id": mismatch["citizen_id"],
        "rule": mismatch["rule"],
        "field": item["field"],
        "current_value": item["current_value"],
        "suggested_value": item["proposed_value"],
        "severity": mismatch["severity"],
        "note": item["reason"],
        "ts_ms": ts_ms,
        "correction_id": item["id"],
        "kind": item["kind"],
        "reason": item["reason"],
    }


class SentFeed:
    """Produces sent corrections to ``<prefix>.corrections.<sector>`` and waits for the
    broker's acknowledgement (a :class:`RetriableError` when it does not come), so the
    caller commits the ``sent`` status only once the sector can read it. One producer,
    made at first use, shared by the callers (kafka-python's producer is thread-safe)."""

    def __init__(self, config: HubConfig, *, timeout_s: float = 15.0):
        self._config = config
        self._topics = Topics(config.kafka.topic_prefix)
        self._timeout = timeout_s
        self._producer: Any = None
        self._ready: set[str] = set()
        self._encoder = Encoder("hub.CorrectionEvent")
        self._scheme = get_scheme(config.id_scheme)

    def publish(self, events: list[dict[str, Any]]) -> None:
        if not events:
            return
        topics = {self._topics.corrections(e["sector"]) for e in events}
        try:
            missing = sorted(topics - self._ready)
            if missing:
                ensure_topics(self._config.kafka, missing)
                self._ready.update(missing)
            if self._producer is None:
                self._producer = make_producer(self._config.kafka)
            futures = []
            for e in events:
                cid = self._scheme.normalize(e["citizen_id"]) if e["citizen_id"] else None
                key = (cid or f"{e['sector']}:{e['record_key']}").encode()
                futures.append(
                    self._producer.send(
                        self._topics.corrections(e["sector"]),
                        key=key,
                        value=self._encoder.encode(e),
                    )
                )
            self._producer.flush(timeout=self._timeout)
        except (FatalError, RetriableError):
            raise
        except Exception as exc:  # kafka-python's errors: the broker is unreachable
            raise RetriableError(f"Kafka unreachable: {type(exc).__name__}") from exc
        failed = sum(1 for f in futures if not f.succeeded())
        if failed:
            raise RetriableError(f"{failed} of {len(futures)} corrections not acknowledged")

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close()
            self._producer = None

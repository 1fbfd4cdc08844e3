"""The corrections feed: a sector's open mismatches as ``hub.CorrectionEvent`` messages on
``<prefix>.corrections.<sector>``, for the sector's own system to pick up (SPEC §5).

Delivery is at least once: every call publishes the mismatches open at that moment, so a
consumer of the feed must treat ``mismatch_id`` as the identity of a correction.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection
from typing import Any

import psycopg

from hub.avro.codec import Encoder
from hub.config import HubConfig
from hub.db import psycopg_conninfo
from hub.errors import FatalError, RetriableError
from hub.idschemes import get_scheme
from hub.kafka import Topics, ensure_topics, make_producer
from hub.vocabulary import OPEN_STATUSES_SQL

log = logging.getLogger(__name__)

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

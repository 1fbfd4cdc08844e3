"""The baselines each figure is measured against: one SQL statement doing the rules' work
(figure 1), a raw kafka-python poll-and-count loop (2) and a raw producer (3)."""

from __future__ import annotations

import random
import time
import unicodedata
from collections import Counter

from hub.vocabulary import RULE_CODES
from reconciliation.names import _APOSTROPHES, _LETTERS, _MARK_RANGES


def raw_consume(config, args: dict) -> dict:
    """Poll and count: no decoding, no database. Stops at ``expected`` messages or when quiet."""
    from kafka import TopicPartition

    from hub.kafka import make_consumer
    from hub.runtime import tune_gc

    tune_gc()  # the hub's processes run with these collector settings: so does the baseline
    consumer = make_consumer(config.kafka, group_id=None, enable_auto_commit=False)
    parts = [TopicPartition(t, p) for t in args["topics"] for p in consumer.partitions_for_topic(t)]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    expected = args.get("expected")
    count = 0
    size: Counter = Counter()
    per_topic: Counter = Counter()
    first = last = None
    quiet_since = time.monotonic()
    while True:
        batch = consumer.poll(timeout_ms=200)
        now = time.time()
        if batch:
            if first is None:
                first = now
            for tp, recs in batch.items():
                count += len(recs)
                per_topic[tp.topic] += len(recs)
                size[tp.topic] += sum(len(r.value or b"") for r in recs)
            last = time.time()
            quiet_since = time.monotonic()
            if expected and count >= expected:
                break
        elif time.monotonic() - quiet_since > args.get("quiet_s", 3.0):
            break
    consumer.close(autocommit=False)
    return {
        "messages": count,
        "first": first,
        "last": last,
        "per_topic": dict(per_topic),
        "bytes": dict(size),
    }


def raw_produce(config, args: dict) -> dict:
    """The same number of messages of the same size, one plain kafka-python producer with the
    connector's producer settings (acks=all, idempotent, 1 MiB batches)."""
    from hub.kafka import ensure_topics, make_producer
    from hub.runtime import tune_gc

    tune_gc()  # as in the connector's producer processes
    topic = args["topic"]
    ensure_topics(config.kafka, [topic])
    n, size = args["messages"], args["size"]
    rng = random.Random(7)
    values = [rng.randbytes(size) for _ in range(64)]
    keys = [f"{rng.randrange(10**11, 10**12)}".encode() for _ in range(4096)]
    producer = make_producer(config.kafka, linger_ms=1000, batch_size=1024 * 1024)
    started = time.time()
    send = producer.send
    for i in range(n):
        send(topic, key=keys[i & 4095], value=values[i & 63])
    producer.flush()
    seconds = time.time() - started
    producer.close(10)
    return {"messages": n, "seconds": seconds}


def _mark_class() -> str:
    """A regular-expression class of every combining mark :func:`reconciliation.names.fold`
    drops (the marks within its ranges), as ``\\uXXXX`` ranges."""
    spans: list[tuple[int, int]] = []
    for low, high in _MARK_RANGES:
        for cp in range(low, high + 1):
            if not unicodedata.category(chr(cp)).startswith("M"):
                continue
            if spans and spans[-1][1] == cp - 1:
                spans[-1] = (spans[-1][0], cp)
            else:
                spans.append((cp, cp))
    return (
        "[" + "".join(f"\\u{a:04x}" if a == b else f"\\u{a:04x}-\\u{b:04x}" for a, b in spans) + "]"
    )


def _letter_pairs() -> tuple[str, str]:
    """``translate()``'s arguments for the single characters the hub's folding replaces or
    deletes: its letter table (with upper-case forms: SQL folds case after), its
    Arabic-Indic digits and its apostrophes (in ``from`` only, so deleted)."""
    pairs = dict(_LETTERS)
    pairs.update({k.upper(): v for k, v in _LETTERS.items() if k.upper() != k})
    for i in range(10):
        pairs[chr(0x0660 + i)] = pairs[chr(0x06F0 + i)] = str(i)
    return "".join(pairs) + _APOSTROPHES, "".join(pairs.values())


def fold_sql(expr: str) -> str:
    """The hub's name folding (:func:`reconciliation.names.fold`) as far as one SQL expression
    reaches, built from its own tables so the two cannot drift: NFKD, its letter replacements
    (đ→d, Arabic letter variants), digits and apostrophes, its combining marks dropped, lower
    case, single spaces. Not its other punctuation rules or Arabic compounds."""
    source, target = (s.replace("'", "''") for s in _letter_pairs())
    return (
        "lower(btrim(regexp_replace(regexp_replace(translate(normalize("
        + expr
        + f", NFKD), '{source}', '{target}'), '{_mark_class()}', '', 'g'), '\\s+', ' ', 'g')))"
    )


def sql_baseline_statement() -> str:
    """One statement: tax records joined to the registry, every exact-comparison rule,
    materialized as (record_key, rule) rows — the work the hub's mismatch store does."""
    from hub.idschemes.vn import PROVINCE_CODES

    provinces = ", ".join(f"'{p}'" for p in sorted(PROVINCE_CODES))
    return f"""
CREATE UNLOGGED TABLE bench_sql_mismatches AS
WITH s AS (
    SELECT t.ma_so_thue AS record_key,
           nullif(translate(t.so_cccd, E' -.\\t', ''), '') AS cid,
           t.ten_nnt AS full_name,
           to_date(t.ngay_sinh, 'DD/MM/YYYY') AS dob,
           CASE t.gioi_tinh WHEN 'Nam' THEN 'M' WHEN 'Nữ' THEN 'F' END AS sex,
           t.ngay_nop_cuoi AS activity,
           CASE t.trang_thai WHEN 'hoat_dong' THEN 'active' WHEN 'ngung_hoat_dong' THEN 'closed'
                ELSE t.trang_thai END AS status
    FROM public.nguoi_nop_thue t
), k AS (
    SELECT s.*,
           CASE WHEN cid IS NULL THEN 'missing'
                WHEN cid !~ '^[0-9]+$' THEN 'invalid'
                WHEN length(cid) = 9 THEN 'legacy'
                WHEN length(cid) <> 12 THEN 'invalid'
                WHEN left(cid, 3) NOT IN ({provinces}) THEN 'invalid'
                ELSE 'current' END AS kind,
           status IS NOT NULL AND lower(btrim(status)) NOT IN ('closed', 'inactive') AS active
    FROM s
), j AS (
    SELECT k.*, coalesce(c1.so_dinh_danh, c2.so_dinh_danh) AS reg_id,
           coalesce(c1.ho_ten, c2.ho_ten) AS reg_name,
           coalesce(c1.ngay_sinh, c2.ngay_sinh) AS reg_dob,
           CASE coalesce(c1.gioi_tinh, c2.gioi_tinh) WHEN 'Nam' THEN 'M' WHEN 'Nữ' THEN 'F' END
               AS reg_sex,
           coalesce(c1.ngay_mat, c2.ngay_mat) AS reg_death,
           CASE WHEN k.kind IN ('current', 'legacy') AND k.active
                THEN count(*) FILTER (WHERE k.active) OVER (PARTITION BY k.cid) END AS dup
    FROM k
    LEFT JOIN public.citizens c1 ON k.kind = 'current' AND c1.so_dinh_danh = k.cid
    LEFT JOIN public.citizens c2 ON k.kind = 'legacy' AND c2.so_cmnd = k.cid
)
SELECT record_key, rule FROM j CROSS JOIN LATERAL (VALUES
    ('ID_MISSING', kind = 'missing'),
    ('ID_INVALID', kind = 'invalid'),
    ('ID_LEGACY', kind = 'legacy' AND reg_id IS NOT NULL),
    ('ID_NOT_IN_REGISTRY', kind IN ('current', 'legacy') AND reg_id IS NULL),
    ('ID_ATTRIBUTES_INCONSISTENT', kind = 'current' AND (
        (dob IS NOT NULL AND 1900 + 100 * (substr(cid, 4, 1)::int / 2) + substr(cid, 5, 2)::int
                             <> extract(year FROM dob))
        OR (sex IS NOT NULL AND sex <> CASE WHEN substr(cid, 4, 1)::int % 2 = 0
                                            THEN 'M' ELSE 'F' END))),
    ('NAME_MISMATCH', reg_id IS NOT NULL AND full_name IS NOT NULL AND reg_name IS NOT NULL
        AND {fold_sql("full_name")} <> {fold_sql("reg_name")}),
    ('DOB_MISMATCH', reg_id IS NOT NULL AND dob <> reg_dob),
    ('SEX_MISMATCH', reg_id IS NOT NULL AND sex <> reg_sex),
    ('DECEASED_ACTIVE', reg_id IS NOT NULL AND reg_death IS NOT NULL
        AND (active OR activity > reg_death)),
    ('DUPLICATE_ID', dup >= 2)
) AS r(rule, fires)
WHERE fires
"""


SQL_RULES = tuple(r for r in RULE_CODES if r != "PROVINCE_MISMATCH")
"""The rules the SQL baseline expresses exactly: all but ``PROVINCE_MISMATCH``. Severity
grading (similarity, swapped day/month) and candidate suggestions are hub-only and not
part of the comparison."""

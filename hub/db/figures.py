"""The trigger-kept counts behind the gauges and the dashboard (table ``figure_counts``,
migration 0005).

Writers never touch the table themselves: statement-level triggers on ``sector_records``
and ``mismatches`` add one signed delta row per statement and key, in the writer's
transaction. So the sums below are exact at every snapshot, and nobody counts the big
tables. Readers fold the delta rows back into one per key now and then (:data:`FOLD`, under
:data:`FOLD_LOCK`), which keeps the table at a few rows per sector and rule.
"""

from __future__ import annotations

# pg_try_advisory_xact_lock key of whoever folds: one folder at a time, so each reader's
# sums stay whole (a second folder would only see the rows the first one left).
FOLD_LOCK = 0x6875625F66696775

FOLD = """
WITH gone AS (
    DELETE FROM figure_counts
    RETURNING sector, rule, severity, records, verified, open_mismatches, in_review_mismatches
)
INSERT INTO figure_counts (sector, rule, severity, records, verified, open_mismatches,
                           in_review_mismatches)
SELECT sector, rule, severity, sum(records), sum(verified), sum(open_mismatches),
       sum(in_review_mismatches) FROM gone
GROUP BY sector, rule, severity
HAVING sum(records) <> 0 OR sum(verified) <> 0 OR sum(open_mismatches) <> 0
    OR sum(in_review_mismatches) <> 0
"""

# (sector, rule, severity, records, verified, open mismatches) per key. Record counts have
# rule = severity = ''; mismatch counts (open and in review) have both set. The in-review
# part of them (``in_review_mismatches``, migration 0018) is read by the queue's counts.
SUMS = """
SELECT sector, rule, severity, sum(records)::bigint, sum(verified)::bigint,
       sum(open_mismatches)::bigint
FROM figure_counts GROUP BY sector, rule, severity
"""

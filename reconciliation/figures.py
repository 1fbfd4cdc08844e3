"""What the reconciler reports: the per-batch event metrics and latency, the consumer lag,
the gauges and ``stats_snapshots`` rows read from the hub database, and the planner
statistics of the state tables — the last two on a background connection of their own,
so no batch waits for them."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

import psycopg
from kafka import TopicPartition

from hub import metrics
from hub.config import HubConfig
from hub.db import psycopg_conninfo
from reconciliation.batch import Batch
from reconciliation.decode import REGISTRY, DeadLetter
from reconciliation.store.figures import (
    figure_counts,
    prune_stats_snapshots,
    write_stats_snapshot,
)
from reconciliation.store.staging import refresh_statistics

log = logging.getLogger(__name__)

LATENCY_SAMPLES = 500


class Figures:
    """The figures of one reconciler; not thread-safe: :meth:`refresh` and
    :meth:`refresh_statistics` run on one thread (the figures thread)."""

    def __init__(self, config: HubConfig, snapshot_interval_s: float):
        self.config = config
        self.snapshot_interval_s = snapshot_interval_s
        self._conn: psycopg.Connection | None = None
        self._open_labels: set[tuple[str, str, str]] = set()
        self._lag_labels: set[tuple[str, str]] = set()
        metrics.init_reconciler_events([REGISTRY, *config.sectors])

    def count(self, batch: Batch, dead: list[DeadLetter], source_of: dict[str, str]) -> None:
        """Count a committed batch's outcomes, dead letters, snapshot reads and latency."""
        for (source, outcome), n in batch.outcomes.items():
            metrics.RECONCILER_EVENTS.labels(sector=source, outcome=outcome).inc(n)
        for (topic, _partition), _offset, _message in dead:
            metrics.RECONCILER_EVENTS.labels(sector=source_of[topic], outcome="dead_letter").inc()
        for source, n in batch.snapshot_reads.items():
            metrics.RECONCILER_SNAPSHOT_READS.labels(sector=source).inc(n)
        now_ms = time.time() * 1000
        for source, times in batch.commit_times.items():
            observe = metrics.RECONCILE_LATENCY.labels(sector=source).observe
            # At most LATENCY_SAMPLES observations per source and batch, evenly spread: the
            # distribution is what matters, and observing each of 10k events costs more than
            # the rest of the metrics.
            for commit_ms in times[:: max(1, len(times) // LATENCY_SAMPLES)]:
                observe(max(0.0, (now_ms - commit_ms) / 1000))

    def export_lag(
        self, consumer, partitions: Iterable[TopicPartition], positions: dict[TopicPartition, int]
    ) -> None:
        """Set ``hub_consumer_lag`` of each partition whose end and position are known; drop
        the partitions no longer held."""
        seen = set()
        for tp in partitions:
            high = consumer.highwater(tp)
            pos = positions.get(tp)
            if high is None or pos is None:
                continue
            labels = (tp.topic, str(tp.partition))
            metrics.CONSUMER_LAG.labels(*labels).set(max(0, high - pos))
            seen.add(labels)
        for labels in self._lag_labels - seen:
            metrics.CONSUMER_LAG.remove(*labels)
        self._lag_labels = seen

    def connection(self) -> psycopg.Connection:
        """The connection of the figures thread (gauges, planner statistics), opened on
        first use: what runs over it never holds a batch up."""
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(
                psycopg_conninfo(self.config.database.url),
                autocommit=True,
                application_name="hub-reconciler-figures",
                connect_timeout=10,
            )
        return self._conn

    def refresh(self) -> None:
        """Set ``hub_mismatches_open`` and ``hub_records_verified_ratio`` from the database and
        add a ``stats_snapshots`` row per sector when the last is older than the interval (and
        then prune the raw snapshots past ``api.stats_retention_days``)."""
        try:
            conn = self.connection()
            counts, open_counts = figure_counts(conn)
            if write_stats_snapshot(conn, counts, open_counts, self.snapshot_interval_s):
                prune_stats_snapshots(conn, self.config.api.stats_retention_days)
        except psycopg.Error as exc:
            log.warning("figures not refreshed: %s", str(exc).strip())
            self.close()
            return
        seen = set()
        for sector, rule, severity, n in open_counts:
            metrics.MISMATCHES_OPEN.labels(sector, rule, severity).set(n)
            seen.add((sector, rule, severity))
        for labels in self._open_labels - seen:
            metrics.MISMATCHES_OPEN.labels(*labels).set(0)
        self._open_labels |= seen
        for sector in self.config.sectors:
            total, verified = counts.get(sector, (0, 0))
            metrics.RECORDS_VERIFIED.labels(sector).set(verified / total if total else 0.0)

    def refresh_statistics(self, conn: psycopg.Connection | None = None) -> None:
        """Keep the planner's statistics of the state tables current (see
        :func:`reconciliation.store.staging.refresh_statistics`) over ``conn`` (None: the
        background connection); best effort: a failure only slows plans."""
        try:
            analyzed = refresh_statistics(conn or self.connection())
        except psycopg.Error as exc:
            log.warning("could not refresh planner statistics: %s", str(exc).strip())
            return
        if analyzed:
            log.debug("analyzed %s", ", ".join(analyzed))

    def close(self) -> None:
        """Close the background connection (opened again on next use)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

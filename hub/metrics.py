"""Prometheus metrics of every long-running process (SPEC §7): names, units, bounded labels.

Labels are only ever sector, connector, rule, severity, status, topic, partition, op, stage,
reason or outcome — never a citizen ID or record key.
"""

from __future__ import annotations

import logging
import threading
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import (
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    make_wsgi_app,
)

from hub.config import MetricsConfig

log = logging.getLogger(__name__)
disable_created_metrics()  # *_created series only add noise to dashboards

CONNECTOR_EVENTS = Counter(
    "hub_connector_events", "Change events a connector delivered to Kafka.", ["connector", "op"]
)
CONNECTOR_LAG = Gauge(
    "hub_connector_lag_seconds",
    "Age of the oldest change not yet delivered (source commit → now).",
    ["connector"],
)
CONNECTOR_SLOT_LAG = Gauge(
    "hub_connector_slot_lag_bytes",
    "WAL retained by the connector's replication slot.",
    ["connector"],
)
CONNECTOR_UP = Gauge(
    "hub_connector_up", "1 while the connector is running, 0 when paused or failed.", ["connector"]
)
CONNECTOR_LAST_EVENT = Gauge(
    "hub_connector_last_event_timestamp_seconds",
    "When the connector last delivered a change.",
    ["connector"],
)
RECONCILER_EVENTS = Counter(
    "hub_reconciler_events", "Change events the reconciler applied.", ["sector", "outcome"]
)
RECONCILE_LATENCY = Histogram(
    "hub_reconcile_latency_seconds",
    "Source commit → mismatch state stored, for streamed changes (snapshot reads excluded).",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
RECONCILER_SNAPSHOT_READS = Counter(
    "hub_reconciler_snapshot_reads",
    "Snapshot reads the reconciler applied (their commit time is the row's age, not a delay, "
    "so hub_reconcile_latency_seconds leaves them out).",
    ["sector"],
)
CONSUMER_LAG = Gauge(
    "hub_consumer_lag_messages",
    "Messages between the group's position and the log end.",
    ["topic", "partition"],
)
MISMATCHES_OPEN = Gauge(
    "hub_mismatches_open", "Open (or in review) mismatches.", ["sector", "rule", "severity"]
)
RECORDS_VERIFIED = Gauge(
    "hub_records_verified_ratio", "Share of a sector's records that match the registry.", ["sector"]
)
DEAD_LETTERS = Counter(
    "hub_dead_letters", "Records sent to the dead-letter topic.", ["stage", "reason"]
)
DEAD_LETTER_REASONS = {
    "connector": ("unmappable_value", "undecodable_value", "schema_mismatch", "truncate"),
    "reconciler": ("undecodable", "bad_shape"),
}
"""The bounded ``reason`` label values, per stage. Every series starts at 0, so the first
dead letter is an increase that rate()/increase() and the alert rules can see."""
for _stage, _reasons in DEAD_LETTER_REASONS.items():
    for _reason in _reasons:
        DEAD_LETTERS.labels(_stage, _reason)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass


class _ThreadingWSGIServer(WSGIServer):
    daemon_threads = True


def serve_metrics(cfg: MetricsConfig) -> WSGIServer:
    """Serve ``cfg.path`` on ``cfg.listen`` in a daemon thread; returns the server (port 0 = any)."""
    from socketserver import ThreadingMixIn

    host, _, port = cfg.listen.rpartition(":")
    app = make_wsgi_app(REGISTRY)
    path = cfg.path

    def routed(environ, start_response):
        if environ.get("PATH_INFO") == path:
            return app(environ, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]

    server_cls = type("MetricsServer", (ThreadingMixIn, _ThreadingWSGIServer), {})
    httpd = make_server(host, int(port), routed, server_cls, handler_class=_QuietHandler)
    threading.Thread(target=httpd.serve_forever, name="metrics", daemon=True).start()
    log.info("metrics on http://%s:%d%s", host, httpd.server_port, path)
    return httpd

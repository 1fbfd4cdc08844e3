"""Prometheus metrics of every long-running process (SPEC §7): names, units, bounded labels,
and the HTTP server each process serves them on (one address per role, metrics.listen).

Labels are only ever sector, connector, rule, severity, status, topic, partition, op, stage,
reason or outcome, and source, slot or configured (replication slots) — never a citizen ID or
record key.
"""

from __future__ import annotations

import logging
import socket
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

from hub.config import DEFAULT_METRICS_PORTS, METRICS_ROLES, MetricsConfig, parse_host_port
from hub.errors import ConfigError, FatalError

log = logging.getLogger(__name__)
disable_created_metrics()  # *_created series only add noise to dashboards

CONNECTOR_EVENTS = Counter(
    "hub_connector_events", "Change events a connector delivered to Kafka.", ["connector", "op"]
)
CONNECTOR_LAG = Gauge(
    "hub_connector_lag_seconds",
    "Age of the oldest change not yet delivered (source commit → now); refreshed every 5 s "
    "whether or not batches are delivered, so it grows while paused or stuck.",
    ["connector"],
)
CONNECTOR_SLOT_LAG = Gauge(
    "hub_connector_slot_lag_bytes",
    "WAL retained by the connector's replication slot (pg_current_wal_lsn() - restart_lsn), "
    "measured every 5 s on a connection of its own while the connector process runs.",
    ["connector"],
)
SLOT_RETAINED_WAL = Gauge(
    "hub_slot_retained_wal_bytes",
    "WAL a hub_* replication slot retains on a source database (current WAL position minus "
    "its restart_lsn), measured on a timer by every process that runs connectors; "
    'configured="false": no configured connector reads the slot (drop it). source: the '
    "connector whose database holds it, or the database when several connectors share it.",
    ["source", "slot", "configured"],
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
    ["sector"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
RECONCILER_SNAPSHOT_READS = Counter(
    "hub_reconciler_snapshot_reads",
    "Snapshot reads the reconciler applied (their commit time is the row's age, not a delay, "
    "so hub_reconcile_latency_seconds leaves them out).",
    ["sector"],
)
GROUP_REJOINS = Counter(
    "hub_reconciler_group_rejoins",
    "Times the reconciler replaced its consumer because a consumer-group join had not finished "
    "in time (reconciliation.membership).",
)
CONSUMER_LAG = Gauge(
    "hub_consumer_lag_messages",
    "Messages between the group's position and the log end.",
    ["topic", "partition"],
)
KAFKA_UP = Gauge(
    "hub_kafka_up",
    "1 while this process's Kafka clients of a role reach the broker, 0 while one cannot "
    "(a delivery not acknowledged in time, offsets not answered).",
    ["role"],
)
OFFSETS_BEYOND_END = Gauge(
    "hub_reconciler_offsets_beyond_end",
    "Partitions whose stored offset is past the log end (the broker lost its topics): "
    "nothing is consumed from them until `hub reconcile --reset-offsets` rewrites them.",
)
MISMATCHES_OPEN = Gauge(
    "hub_mismatches_open", "Open (or in review) mismatches.", ["sector", "rule", "severity"]
)
RECORDS_VERIFIED = Gauge(
    "hub_records_verified_ratio", "Share of a sector's records that match the registry.", ["sector"]
)
DEAD_LETTERS = Counter(
    "hub_dead_letters",
    "Records sent to the dead-letter topic, by stage, connector (source name) and reason.",
    ["stage", "connector", "reason"],
)
DEAD_LETTER_REASONS = {
    "connector": ("unmappable_value", "undecodable_value", "schema_mismatch", "truncate"),
    "reconciler": ("undecodable", "bad_shape"),
}
"""The bounded ``reason`` label values, per stage."""
RECONCILER_OUTCOMES = ("applied", "stale", "dead_letter")
"""The ``outcome`` label values of hub_reconciler_events_total."""
# role (connector, reconciler, serve, run) and version (the package's): bounded labels too.
PROCESS_INFO = Gauge(
    "hub_process_info",
    "1 for every hub process: its role (connector, reconciler, serve, run) and version.",
    ["role", "version"],
)

LOGINS = Counter(
    "hub_logins",
    "UI login attempts by outcome: ok, wrong (name or password), throttled (refused before "
    "any hash: too many failures for the user name or the address), busy (hash slots full).",
    ["outcome"],
)
LOGIN_OUTCOMES = ("ok", "wrong", "throttled", "busy")
PASSWORD_VERIFICATIONS = Counter(
    "hub_password_verifications", "Password hashes verified (argon2) by UI logins."
)


def init_dead_letters(stage: str, connector: str) -> None:
    """Create the dead-letter series of ``connector`` at ``stage`` at 0, one per reason, so
    the first dead letter is an increase that rate()/increase() and the alert rules see."""
    for reason in DEAD_LETTER_REASONS[stage]:
        DEAD_LETTERS.labels(stage, connector, reason)


def init_reconciler_events(sectors) -> None:
    """Create hub_reconciler_events_total of each source (registry and sectors) at 0, so a
    reconciler's first batch is an increase (HubReconcilerStalled sees it moving)."""
    for sector in sectors:
        for outcome in RECONCILER_OUTCOMES:
            RECONCILER_EVENTS.labels(sector, outcome)


def mark_process(role: str) -> None:
    """Set hub_process_info of this process: every process serves at least this hub_* series."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        release = version("registry-hub")
    except PackageNotFoundError:
        release = "unknown"
    PROCESS_INFO.labels(role, release).set(1)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass


class _ThreadingWSGIServer(WSGIServer):
    daemon_threads = True


class MetricsAddressError(ConfigError):
    """The metrics address of a process cannot be bound; the message names the key or flag."""

    def __init__(self, message: str):
        self.problems = [message]
        self.source = None
        FatalError.__init__(self, message)


def serve_metrics(
    cfg: MetricsConfig, role: str = "connector", listen: str | None = None
) -> WSGIServer:
    """Serve ``cfg.path`` on ``listen`` (default: the address of ``role``) in a daemon thread.

    Returns the server (port 0 = any free port; ``server_port`` tells which). Raises OSError
    when the address cannot be bound.
    """
    from socketserver import ThreadingMixIn

    host, port = parse_host_port(listen or cfg.address(role), allow_any_port=True)
    mark_process(role)
    app = make_wsgi_app(REGISTRY)
    path = cfg.path

    def routed(environ, start_response):
        if environ.get("PATH_INFO") == path:
            return app(environ, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    server_cls = type(
        "MetricsServer", (ThreadingMixIn, _ThreadingWSGIServer), {"address_family": family}
    )
    httpd = make_server(host, port, routed, server_cls, handler_class=_QuietHandler)
    threading.Thread(target=httpd.serve_forever, name="metrics", daemon=True).start()
    shown = f"[{host}]" if ":" in host else host
    log.info("metrics on http://%s:%d%s", shown, httpd.server_port, path)
    return httpd


def start_metrics(cfg: MetricsConfig, role: str, listen: str | None = None) -> WSGIServer:
    """serve_metrics for a process of ``role``, ``listen`` from its ``--metrics-listen`` flag.

    Raises MetricsAddressError (exit 2) saying which key or flag moves the address when it
    cannot be bound, e.g. because another hub process on the host already serves there.
    """
    address = listen or cfg.address(role)
    try:
        return serve_metrics(cfg, role, listen)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if listen:
            hint = "pass another --metrics-listen HOST:PORT (or --no-metrics)"
        elif isinstance(cfg.listen, str):
            example = ", ".join(
                f"{r}: 127.0.0.1:{DEFAULT_METRICS_PORTS[r]}" for r in METRICS_ROLES[:3]
            )
            hint = (
                "metrics.listen is one address for every hub process; on one host give each "
                f"role its own (metrics: {{listen: {{{example}}}}}), or pass "
                "--metrics-listen HOST:PORT (or --no-metrics)"
            )
        else:
            hint = (
                f"set {cfg.key(role)} to a free port, or pass --metrics-listen HOST:PORT "
                "(or --no-metrics)"
            )
        source = "--metrics-listen" if listen else cfg.key(role)
        raise MetricsAddressError(
            f"metrics of the {role} cannot be served on {address} (from {source}): {reason}; {hint}"
        ) from None

"""Runs connectors: the batch loop (read → Kafka → acknowledge), operator requests, status
with its heartbeat and lag timer, one runner per connector (an advisory lock), metrics,
retries, and a graceful stop on SIGTERM. ``python -m connectors.runner``."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

import psycopg
from sqlalchemy import exc as sa_exc
from sqlalchemy import func

from connectors.base import CaptureMode, ConnectorContext, LagProbe
from connectors.delivery import KAFKA_ROLE, POOL_MIN_EVENTS, Delivery, retrying
from connectors.events import Batch
from connectors.mapping import RecordMapper
from connectors.modes import mode_class, mode_for
from connectors.reload import APPLIED, REFUSED, Reload, reload_source
from connectors.state import (
    ConnectorBusy,
    RunnerLock,
    ensure_state,
    hub_engine,
    mark_handled,
    pending_requests,
    set_state,
)
from hub.config import HubConfig, SourceConfig, load_config
from hub.connector_status import HEARTBEAT_S
from hub.errors import EXIT_FAILURE, FatalError, HubError, RetriableError
from hub.idschemes import get_scheme
from hub.kafkawatch import KafkaWatch
from hub.logs import error_summary
from hub.metrics import CONNECTOR_LAG, CONNECTOR_SLOT_LAG, CONNECTOR_UP
from hub.runtime import tune_gc

log = logging.getLogger(__name__)

REQUEST_CHECK_S = 1.0
STALLED_S = 2.0
"""A delivery kept waiting this long by the broker starts the Kafka watch's checks."""


class ConnectorRunner:
    """Runs one connector until ``stopping`` is set (or, with ``once``, until caught up).

    Each step reads one batch from the capture mode, delivers it (every message
    acknowledged by Kafka), then commits the source position and the status in the hub
    database — so a stop or crash at any moment loses nothing (SPEC §4). Retriable errors
    (source, hub database or broker unreachable) are retried with exponential backoff
    for as long as it takes; a fatal error stops this connector with the reason stored in
    ``connector_state.error``.
    """

    def __init__(
        self,
        config: HubConfig,
        name: str,
        *,
        stopping: threading.Event | None = None,
        once: bool = False,
        hangups: Hangups | None = None,
    ):
        sources = config.sources()
        if name not in sources:
            known = ", ".join(sources) or "none configured"
            raise FatalError(f"no connector named {name!r} in the config (known: {known})")
        self.config = config
        self.name = name
        self.source = sources[name]
        self.stopping = stopping or threading.Event()
        self.once = once
        self.engine = hub_engine(config.database.url)
        self.mapper = RecordMapper(name, self.source, get_scheme(config.id_scheme))
        self.mode: CaptureMode | None = None
        self.delivery: Delivery | None = None
        self.paused = False
        self.rows_total = 0
        self._next_request_check = 0.0
        self._next_heartbeat = 0.0
        self._restart = False
        self.hangups = hangups or HANGUPS
        self._hangups_seen = self.hangups.count
        self._previous: tuple[HubConfig, SourceConfig, RecordMapper] | None = None
        self._reload_requests: dict[int, str] = {}
        """Requests whose reload was adopted: marked handled once the reopen tells how."""
        self._resnapshot_on_open = False
        self.lock = RunnerLock(config.database.url, name)
        self._delivered_to: float | None = None  # source commits up to here are delivered
        # The batch loop and the timer both set the lag gauge: each reads the clock above and
        # sets the gauge under this lock, so a tick cannot set a lag the loop just cleared.
        self._lag_lock = threading.Lock()
        self._lag_grace_s = 1.0
        self._recorded: dict[str, Any] | None = None  # what _record last wrote
        self._timer: threading.Thread | None = None
        self._timer_stop = threading.Event()
        self._probe: LagProbe | None = None
        self._beat_failing = False
        self._lock_lost = False
        # A broker that hangs (paused, overloaded) keeps a flush waiting for its delivery
        # timeout; this reports it within seconds. Only while a delivery has waited: an
        # idle or healthy connector opens no extra connection for it.
        self.kafka_watch = KafkaWatch(
            config.kafka,
            KAFKA_ROLE,
            name,
            needed=lambda: self.delivery is not None and self.delivery.waiting_s() >= STALLED_S,
        )

    # -------------------------------------------------------------- lifecycle

    def run(self) -> int:
        """Run to the end; 0 after a clean stop, 1 after a fatal error or when another
        process already runs this connector (refused, that one undisturbed)."""
        tune_gc()
        try:
            retrying(self.lock.acquire, stopping=self.stopping)()
        except ConnectorBusy as exc:
            log.error("%s: refused: %s", self.name, exc)
            return EXIT_FAILURE
        except RetriableError:
            return 0  # asked to stop while waiting for the hub database
        try:
            return self._run()
        finally:
            self._stop_timer()
            self.lock.release()

    def _run(self) -> int:
        try:
            state = retrying(
                lambda: ensure_state(self.engine, self.name, self.source.capture),
                stopping=self.stopping,
            )()
            self.paused = state["state"] == "paused"
            self.rows_total = state["rows_captured"] or 0
            self._start_timer(state)
            retrying(self._session, stopping=self.stopping, on_retry=self._on_retry)()
        except RetriableError:
            pass  # asked to stop while waiting to retry
        except Exception as exc:  # noqa: BLE001 - FatalError, or a bug: stop this connector
            if isinstance(exc, FatalError):
                log.error("%s: stopped: %s", self.name, exc)
            else:
                log.exception("%s: stopped by an unexpected error", self.name)
            CONNECTOR_UP.labels(self.name).set(0)
            self._close()
            self._stop_timer()
            self._set_state_quietly(state="failed", error=error_summary(exc))
            return 1
        # The timer first: a tick while the producer flushes on close would age the lag of a
        # connector that finished caught up (by then it has nothing more to deliver).
        self._stop_timer()
        self._close()
        CONNECTOR_UP.labels(self.name).set(0)
        self._set_state_quietly(state="paused" if self.paused else "stopped")
        log.info("%s: stopped", self.name)
        return 0

    def _session(self) -> None:
        """Open, run the batch loop, reopen on a restart request; closes on any failure."""
        try:
            while not self.stopping.is_set():
                self._open_reloaded()
                self._loop()
                if not self._restart:
                    return
                self._restart = False
                log.info("%s: restarting on request", self.name)
        except (sa_exc.OperationalError, psycopg.OperationalError) as exc:
            # A connection lost somewhere the capture mode did not expect it.
            self._close()
            raise RetriableError(f"{type(exc).__name__}: {str(exc).splitlines()[0]}") from exc
        except BaseException:
            self._close()
            raise

    def _on_retry(self, exc: BaseException, wait_s: float) -> None:
        CONNECTOR_UP.labels(self.name).set(0)
        log.warning("%s: %s; retrying in %.1fs", self.name, exc, wait_s)
        self._set_state_quietly(state="retrying", error=error_summary(exc))

    def _open(self) -> None:
        self._close()
        ctx = ConnectorContext(
            name=self.name,
            source=self.source,
            config=self.config,
            mapper=self.mapper,
            stopping=self.stopping,
        )
        self.delivery = Delivery(self.name, self.config.kafka)
        self.delivery.open()
        self.mode = mode_for(ctx)
        self.mode.open()
        if self._large_batches_ahead():
            # Large batches ahead (a snapshot, or a slot's backlog): start the producer
            # processes now rather than at the first large batch.
            self.delivery.warm()
        CONNECTOR_UP.labels(self.name).set(0 if self.paused else 1)
        self._lag_grace_s = self.mode.idle_interval() + 1.0
        self._recorded = None
        set_state(self.engine, self.name, state=self._state_name(), error=None)
        log.info("%s: %s (%s capture)", self.name, self._state_name(), self.source.capture)

    def _large_batches_ahead(self) -> bool:
        """Whether the opened mode may read a pooled batch soon; the mode is asked for its
        rows ahead (a source query) only when it snapshots or may have a backlog."""
        assert self.mode is not None
        if self.paused or not (self.mode.phase == "snapshotting" or self.mode.warm_on_open):
            return False
        ahead = self.mode.rows_ahead()
        return ahead is None or ahead >= POOL_MIN_EVENTS

    def _close(self) -> None:
        mode, self.mode = self.mode, None
        delivery, self.delivery = self.delivery, None
        if mode is not None:
            try:
                mode.close()
            except HubError:
                log.debug("closing capture mode", exc_info=True)
        if delivery is not None:
            try:
                delivery.close(timeout=10)
            except Exception:  # noqa: BLE001 - closing after a failure may fail again
                log.debug("closing producer", exc_info=True)

    def _state_name(self) -> str:
        if self.paused:
            return "paused"
        assert self.mode is not None
        return {"snapshotting": "snapshotting", "idle": "idle"}.get(self.mode.phase, "running")

    # -------------------------------------------------------------- the batch loop

    def _loop(self) -> None:
        assert self.mode is not None and self.delivery is not None
        heartbeat_s = self.mode.heartbeat_interval()
        ahead: Batch | None = None  # the next batch, read while the previous was in flight
        while not self.stopping.is_set() or ahead is not None:
            now = time.monotonic()
            if now >= self._next_request_check:
                self._next_request_check = now + REQUEST_CHECK_S
                if self._handle_requests():
                    ahead = None  # read from a snapshot that was just abandoned
                if self._restart:
                    return
            if self.paused:
                if self.stopping.is_set():
                    return  # a read-ahead batch is dropped: it was never committed
                self.stopping.wait(REQUEST_CHECK_S)
                continue
            if heartbeat_s and now >= self._next_heartbeat:
                self._next_heartbeat = now + heartbeat_s
                self.mode.heartbeat()  # the source's (a slot's); the process's is the timer's
            batch = ahead if ahead is not None else self.mode.next_batch()
            ahead = None
            flight = self.delivery.start(batch)
            if batch.read_ahead and not self.stopping.is_set():
                ahead = self.mode.next_batch()  # read while Kafka acknowledges this one
            self.delivery.finish(flight)
            self.mode.commit(batch)
            self._record(batch)
            if batch.caught_up:
                if self.once:
                    return
                idle_s = self.mode.idle_interval()  # a mode may back off while idle
                self._lag_grace_s = max(self._lag_grace_s, idle_s + 1.0)
                self.stopping.wait(idle_s)

    def _record(self, batch: Batch) -> None:
        """Status after a committed batch: counts, position, lag (metrics and hub database)."""
        assert self.mode is not None
        n = len(batch)
        values: dict[str, Any] = {"state": self._state_name()}
        if n:
            self.rows_total += n
            values["rows_captured"] = self.rows_total
            values["last_event_at"] = _utcnow()
        if batch.position is not None:
            values["position"] = batch.position[:128]
        with self._lag_lock:
            if batch.caught_up:
                lag_s = 0.0
                self._delivered_to = time.time()
            elif batch.newest_commit_ts is not None:
                lag_s = max(0.0, time.time() - batch.newest_commit_ts)
                self._delivered_to = batch.newest_commit_ts
            else:
                lag_s = None
            if lag_s is not None:
                CONNECTOR_LAG.labels(self.name).set(lag_s)
        if lag_s is not None:
            values["lag_seconds"] = lag_s
        if n or batch.commit is not None or (len(values) > 1 and values != self._recorded):
            # An idle read that changes nothing is not written: the status timer's
            # heartbeat (every HEARTBEAT_S) keeps the row fresh.
            set_state(self.engine, self.name, **values)
            self._recorded = values

    # -------------------------------------------------------------- status timer

    def _start_timer(self, state: dict[str, Any]) -> None:
        """Beat once now, then every HEARTBEAT_S on a thread of its own until the run ends."""
        updated, lag_s = state.get("updated_at"), state.get("lag_seconds")
        if updated is not None and lag_s is not None:
            # Where the previous run left off: a connector started paused still ages.
            self._delivered_to = updated.timestamp() - lag_s
        self._probe = mode_class(self.source).lag_probe(self.name, self.source)
        self._timer_stop.clear()
        self._tick()
        self._timer = threading.Thread(target=self._timer_loop, name=f"status-{self.name}",
                                       daemon=True)  # fmt: skip
        self._timer.start()
        self.kafka_watch.start()

    def _stop_timer(self) -> None:
        """Stop the timer and clear the heartbeat: no process holds the connector now."""
        self._timer_stop.set()
        self.kafka_watch.stop()
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.join(15)
            self._set_state_quietly(heartbeat_at=None)
        probe, self._probe = self._probe, None
        if probe is not None:
            probe.close()

    def _timer_loop(self) -> None:
        while not self._timer_stop.wait(HEARTBEAT_S):
            self._tick()

    def _tick(self) -> None:
        """The heartbeat, with lag measured now rather than at the last delivered batch: a
        paused, stuck or cut-off connector's lag keeps growing. Never raises."""
        values: dict[str, Any] = {"heartbeat_at": func.now()}
        with self._lag_lock:
            lag_s = timer_lag(time.time(), self._delivered_to, self._lag_grace_s)
            if lag_s is not None:
                CONNECTOR_LAG.labels(self.name).set(lag_s)
        if lag_s is not None:
            values["lag_seconds"] = lag_s
        if self._probe is not None:
            try:
                retained = self._probe.measure().bytes
            except Exception as exc:  # noqa: BLE001 - the source may be down; the gauge keeps
                log.debug("%s: slot lag not measured: %s", self.name, exc)
            else:
                if retained is not None:
                    CONNECTOR_SLOT_LAG.labels(self.name).set(retained)
                    values["lag_bytes"] = retained
        try:
            set_state(self.engine, self.name, **values)
        except Exception as exc:  # noqa: BLE001 - the hub database may be down: stay quiet
            if not self._beat_failing:
                log.warning("%s: heartbeat not stored: %s", self.name, error_summary(exc))
            self._beat_failing = True
        else:
            if self._beat_failing:
                log.info("%s: heartbeat stored again", self.name)
            self._beat_failing = False
        if not self.lock.held:
            self._relock()

    def _relock(self) -> None:
        """The lock's session ended (a hub-database restart): take the lock again, or say
        loudly that another runner took it meanwhile."""
        try:
            self.lock.release()
            self.lock.acquire()
            log.info("%s: runner lock taken again", self.name)
            self._lock_lost = False
        except ConnectorBusy as exc:
            if not self._lock_lost:
                log.error("%s: lost the runner lock: %s", self.name, exc)
            self._lock_lost = True
        except RetriableError:
            pass  # the hub database is still away; the next tick tries again

    # -------------------------------------------------------------- operator requests

    def _handle_requests(self) -> bool:
        """Apply a SIGHUP and pending operator requests; True when one re-started the
        snapshot. ``restart`` and ``resnapshot`` re-read the config file first and are
        refused (not carried out) when the new config cannot be applied."""
        if self.hangups.count != self._hangups_seen:
            self._hangups_seen = self.hangups.count
            self._reload_on_signal()
        requests = pending_requests(self.engine, self.name)
        if not requests:
            return False
        resnapshot = False
        results: dict[int, str] = {}
        for req in requests:
            log.info("%s: %s requested by %s", self.name, req.action, req.requested_by)
            results[req.id] = "done"
            if req.action == "pause":
                self.paused = True
            elif req.action == "resume":
                self.paused = False
            elif req.action in ("restart", "resnapshot"):
                reload = self._reload(req.action)
                results[req.id] = reload.result
                if reload.outcome == REFUSED:
                    continue
                if reload.outcome == APPLIED:
                    # Reopen (the mode and its builders hold the mapper); a re-snapshot
                    # starts once the new config has opened, not if it does not.
                    self._reload_requests[req.id] = results.pop(req.id)
                    self._restart = True
                    self._resnapshot_on_open |= req.action == "resnapshot"
                elif req.action == "resnapshot":
                    assert self.mode is not None
                    self.mode.resnapshot()
                    resnapshot = True
                else:
                    self._restart = True
        mark_handled(self.engine, list(results), results)
        self._recorded = None
        CONNECTOR_UP.labels(self.name).set(0 if self.paused else 1)
        if not self._restart:
            set_state(self.engine, self.name, state=self._state_name())
        return resnapshot

    # -------------------------------------------------------------- config reloads

    def _reload(self, action: str) -> Reload:
        """Re-read the config for a ``restart``/``resnapshot`` request; adopt it when it
        applies (the caller reopens). One log line says what happened."""
        reload = reload_source(self.config, self.name)
        self._log_reload(f"{action}: config", reload)
        if reload.outcome == APPLIED:
            self._adopt(reload)
        return reload

    def _reload_on_signal(self) -> None:
        """SIGHUP: apply changed mappings (where safe, see connectors.reload) by reopening."""
        reload = reload_source(self.config, self.name, on_signal=True)
        self._log_reload("SIGHUP:", reload)
        if reload.outcome == APPLIED:
            self._adopt(reload)
            self._restart = True

    def _log_reload(self, what: str, reload: Reload) -> None:
        level = logging.WARNING if reload.outcome == REFUSED or reload.note else logging.INFO
        log.log(level, "%s: %s %s", self.name, what, reload.result)

    def _adopt(self, reload: Reload) -> None:
        if self._previous is None:  # the config that last opened, if this one does not
            self._previous = (self.config, self.source, self.mapper)
        self.config = reload.config  # type: ignore[assignment]
        self.source = reload.source(self.name)
        self.mapper = RecordMapper(self.name, self.source, get_scheme(self.config.id_scheme))

    def _open_reloaded(self) -> None:
        """Open; when a just-adopted config does not start (a mapped column missing from the
        table, …), go back to the previous one, say so on the requests, and open that."""
        previous, self._previous = self._previous, None
        requests, self._reload_requests = self._reload_requests, {}
        resnapshot, self._resnapshot_on_open = self._resnapshot_on_open, False
        try:
            self._open()
            if resnapshot:
                assert self.mode is not None
                self.mode.resnapshot()
                set_state(self.engine, self.name, state=self._state_name())
        except FatalError as exc:
            if previous is None:
                raise
            self._close()
            self.config, self.source, self.mapper = previous
            result = f"refused: the new config does not start: {exc}; running with the old one"
            log.error("%s: %s", self.name, result)
            requests = dict.fromkeys(requests, result)
            self._open()
        if requests:
            mark_handled(self.engine, list(requests), requests)

    # -------------------------------------------------------------- helpers

    def _set_state_quietly(self, **values: Any) -> None:
        try:
            set_state(self.engine, self.name, **values)
        except Exception:  # noqa: BLE001 - status is best effort while failing or stopping
            log.debug("could not store the state of %s", self.name, exc_info=True)


def _utcnow():
    from datetime import UTC, datetime

    return datetime.now(UTC)


def timer_lag(now: float, delivered_to: float | None, grace_s: float) -> float | None:
    """Connector lag on the timer: seconds since the newest moment up to which every source
    change is known delivered; 0 within ``grace_s`` of it (one idle wait plus a second: a
    caught-up connector is not behind); None when unknown (nothing delivered yet)."""
    if delivered_to is None:
        return None
    age = max(0.0, now - delivered_to)
    return 0.0 if age <= grace_s else age


# ------------------------------------------------------------------ processes


def run_connectors(
    config: HubConfig,
    names: Sequence[str],
    *,
    stopping: threading.Event | None = None,
    once: bool = False,
) -> int:
    """Run ``names`` (one thread each) until stopped; the worst exit code of them."""
    from connectors.logical.inventory import watch_slots

    stopping = stopping or threading.Event()
    with watch_slots(config, stopping):  # hub_slot_retained_wal_bytes, on a thread of its own
        return _run_connectors(config, names, stopping, once)


def _run_connectors(
    config: HubConfig, names: Sequence[str], stopping: threading.Event, once: bool
) -> int:
    runners = [ConnectorRunner(config, n, stopping=stopping, once=once) for n in names]
    if len(runners) == 1:
        return runners[0].run()
    codes: dict[str, int] = {}

    def target(r: ConnectorRunner) -> None:
        codes[r.name] = r.run()

    threads = [
        threading.Thread(target=target, args=(r,), name=f"connector-{r.name}", daemon=True)
        for r in runners
    ]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        for t in threads:
            t.join(0.2)
    return max(codes.values(), default=0)


class Hangups:
    """The SIGHUPs a process received. The signal handler only counts (signal-safe: no
    lock, no I/O); each runner compares the count with the one it last applied, on its
    next request check (within ``REQUEST_CHECK_S``), and reloads its config there."""

    def __init__(self) -> None:
        self.count = 0

    def handler(self, _signum: int, _frame: Any) -> None:
        self.count += 1


HANGUPS = Hangups()
"""The process's SIGHUP count, shared by every runner that is given no other."""


def install_reload_handler(hangups: Hangups = HANGUPS) -> None:
    """SIGHUP: every running connector re-reads the config file and applies its changed
    mappings (``hub connector run``, ``hub run``); one log line per connector."""
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, hangups.handler)


def install_stop_handlers(stopping: threading.Event) -> None:
    """SIGTERM/SIGINT finish the batch in hand, acknowledge it, and exit; SIGHUP reloads
    (:func:`install_reload_handler`)."""

    def handler(signum: int, _frame: Any) -> None:
        log.info("signal %d: stopping after the current batch", signum)
        stopping.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    install_reload_handler()


def serve(config: HubConfig, names: Sequence[str], *, once: bool = False) -> int:
    """The process behind ``hub connector run``: logging, metrics, signals, connectors."""
    from hub.logs import setup_logging
    from hub.metrics import serve_metrics

    setup_logging(config.logging.level, config.logging.json_format)
    try:
        serve_metrics(config.metrics)
    except OSError as exc:
        log.warning("metrics not served on %s: %s", config.metrics.listen, exc)
    stopping = threading.Event()
    install_stop_handlers(stopping)
    return run_connectors(config, names, stopping=stopping, once=once)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m connectors.runner", description=__doc__)
    parser.add_argument("--config", help="config file (default hub.yaml; env HUB_CONFIG)")
    parser.add_argument("--all", action="store_true", help="run every configured connector")
    parser.add_argument("--once", action="store_true", help="exit once caught up")
    parser.add_argument("names", nargs="*", metavar="NAME")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        names = list(config.sources()) if args.all else args.names
        if not names:
            parser.error("name a connector or pass --all")
        return serve(config, names, once=args.once)
    except FatalError as exc:
        print(f"connectors: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

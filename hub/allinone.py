"""``hub run``: connectors, reconciler and web server in one process, for small installs.

Larger installs run ``hub connector run --all``, ``hub reconcile`` (several, up to the
partition count) and ``hub serve`` as separate processes; this module composes the same
parts. SIGTERM or Ctrl-C: every part finishes its batch in hand, commits, and the process
exits.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass, field

from hub.config import HubConfig

log = logging.getLogger(__name__)


@dataclass
class AllInOne:
    """The parts of one all-in-one process; ``start()`` then ``wait()`` or ``stop()``."""

    config: HubConfig
    web: bool = True
    metrics: bool = True
    metrics_listen: str | None = None  # None: metrics.listen of the config, role "run"
    connectors: tuple[str, ...] | None = None  # None: every configured source
    stopping: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def start(self) -> AllInOne:
        from connectors.runner import run_connectors
        from hub.api.server import check_schema, make_server, start_in_thread
        from hub.kafka import Topics, ensure_topics
        from hub.metrics import start_metrics
        from reconciliation.engine import Reconciler

        config = self.config
        check_schema(config)
        ensure_topics(config.kafka, Topics(config.kafka.topic_prefix).all_for(config))
        self.metrics_server = (
            start_metrics(config.metrics, "run", self.metrics_listen) if self.metrics else None
        )
        names = list(self.connectors if self.connectors is not None else config.sources())
        self.reconciler = Reconciler(config, assign_all=True)
        self._spawn("connectors", lambda: run_connectors(config, names, stopping=self.stopping))
        self._spawn("reconciler", self.reconciler.run)
        self.web_server = None
        if self.web:
            self.web_server = make_server(config)
            self.threads.append(start_in_thread(self.web_server))
        return self

    def _spawn(self, name: str, target) -> None:
        def run() -> None:
            try:
                target()
            except Exception as exc:  # a part that dies takes the process down, visibly
                log.exception("%s failed", name)
                self.errors.append(f"{name}: {exc}")
                self.stopping.set()

        thread = threading.Thread(target=run, name=name, daemon=True)
        thread.start()
        self.threads.append(thread)

    def stop(self, timeout_s: float = 9.0) -> None:
        """Ask every part to finish its batch and commit; wait up to ``timeout_s``."""
        self.stopping.set()
        self.reconciler.stop()
        if self.web_server is not None:
            self.web_server.should_exit = True
        deadline = time.monotonic() + timeout_s
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))
        alive = [t.name for t in self.threads if t.is_alive()]
        if alive:
            log.warning("still running after %.0fs: %s", timeout_s, ", ".join(alive))
        if self.metrics_server is not None:
            self.metrics_server.shutdown()

    def wait(self) -> None:
        """Block until SIGTERM/SIGINT or a part fails, then stop."""
        self.stopping.wait()
        self.stop()


def run(config: HubConfig, *, metrics_listen: str | None = None, metrics: bool = True) -> int:
    """The process behind ``hub run``; metrics on ``metrics_listen`` or the "run" address."""
    from connectors.runner import install_reload_handler
    from hub.logs import setup_logging

    setup_logging(config.logging.level, config.logging.json_format)
    app = AllInOne(config, metrics=metrics, metrics_listen=metrics_listen)

    def on_signal(signum: int, _frame: object) -> None:
        log.info("signal %d: finishing the batches in hand", signum)
        app.stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    install_reload_handler()  # SIGHUP: the connectors re-read their mappings
    app.start()
    log.info("running: connectors, reconciler, web on http://%s/", config.api.listen)
    app.wait()
    return 1 if app.errors else 0

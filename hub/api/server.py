"""Running the web app with uvicorn: blocking for ``hub serve``, in a thread for ``hub run``."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time

import uvicorn

from hub.config import HubConfig
from hub.db.migrate import current_revision, head_revision
from hub.errors import FatalError

log = logging.getLogger(__name__)


def check_schema(config: HubConfig) -> None:
    """FatalError unless the hub database is migrated to the code's head revision."""
    current, head = current_revision(config.database.url), head_revision()
    if current != head:
        raise FatalError(
            f"the hub database is at revision {current or 'empty'}, the code needs {head}: "
            "run `hub db upgrade`"
        )


def make_server(config: HubConfig, listen: str | None = None) -> uvicorn.Server:
    """A uvicorn server for the app on ``listen`` (default ``config.api.listen``). The access
    log is the app's own (no query strings: they can hold citizen IDs)."""
    from hub.api.app import create_app

    return uvicorn.Server(uvicorn.Config(create_app(config), **_uvicorn_options(config, listen)))


def _uvicorn_options(config: HubConfig, listen: str | None) -> dict:
    """Where and how uvicorn serves, for one process or several: ``listen`` (default
    ``config.api.listen``), no access log (the app logs requests without query strings), no
    lifespan, no Server header."""
    host, _, port = (listen or config.api.listen).rpartition(":")
    return {
        "host": host.strip("[]") or "127.0.0.1",
        "port": int(port),
        "access_log": False,
        "log_config": None,
        "lifespan": "off",
        "server_header": False,
    }


# The config of ``hub serve --workers N``, for the worker processes uvicorn spawns (each
# imports :func:`worker_app`): pickled into the environment they inherit, so a worker sees
# exactly the parent's config (secrets included) without reading the file again.
_WORKER_CONFIG = "HUB_SERVE_WORKER_CONFIG"


def worker_app():
    """The app of one ``hub serve --workers N`` worker (a uvicorn factory)."""
    import base64
    import pickle

    from hub.api.app import create_app
    from hub.logs import setup_logging
    from hub.metrics import mark_process

    config: HubConfig = pickle.loads(base64.b64decode(os.environ[_WORKER_CONFIG]))  # noqa: S301
    setup_logging(config.logging.level, config.logging.json_format)
    mark_process("serve")
    return create_app(config)


def serve_workers(config: HubConfig, workers: int, listen: str | None = None) -> None:
    """Serve with ``workers`` processes sharing one listening socket (uvicorn's supervisor
    restarts a worker that dies). Nothing is shared in memory: sessions, the cookie secret
    and the login throttle live in the hub database; each worker has its own connection
    pool (``database.pool_size`` each) and its own few-second stats cache."""
    import base64
    import pickle

    host, _, port = (listen or config.api.listen).rpartition(":")
    os.environ[_WORKER_CONFIG] = base64.b64encode(pickle.dumps(config)).decode()
    _stdin_for_spawned_workers()
    log.info("web UI and API on http://%s:%s/ (%d workers)", host, port, workers)
    uvicorn.run(
        "hub.api.server:worker_app",
        factory=True,
        workers=workers,
        **_uvicorn_options(config, listen),
    )


def _stdin_for_spawned_workers() -> None:
    """uvicorn's supervisor passes ``sys.stdin``'s descriptor number to the workers it spawns,
    which inherit only descriptors 0-2: a ``hub serve --workers N`` started inside a
    multiprocessing child (whose ``sys.stdin`` is ``/dev/null`` on a new descriptor) had every
    worker die on ``os.fdopen`` (EBADF) and be respawned forever. The workers read no input."""
    try:
        fileno = sys.stdin.fileno() if sys.stdin is not None else None
    except (OSError, ValueError):
        fileno = None
    if fileno is None or fileno > 2:
        sys.stdin = None


def serve(config: HubConfig, listen: str | None = None, workers: int = 1) -> None:
    """Serve until SIGINT/SIGTERM; the app's /metrics shows hub_process_info{role="serve"}
    (also with --no-metrics, when metrics.listen serves nothing). ``workers`` > 1 runs that
    many processes (:func:`serve_workers`)."""
    from hub.metrics import mark_process

    if workers > 1:
        serve_workers(config, workers, listen)
        return
    mark_process("serve")
    server = make_server(config, listen)
    log.info("web UI and API on http://%s:%d/", server.config.host, server.config.port)
    server.run()


def start_in_thread(server: uvicorn.Server, timeout_s: float = 10.0) -> threading.Thread:
    """Run ``server`` in a daemon thread and wait until it accepts connections; stop it with
    ``server.should_exit = True`` and join the thread."""
    thread = threading.Thread(target=server.run, name="web", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise FatalError(f"the web server did not start on {server.config.port}")
        time.sleep(0.02)
    return thread

"""The embedded servers' child processes: free ports, the wait for start-up, stopping, and
the registry that stops every server this process started, at exit or on SIGTERM."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from hub.errors import FatalError
from hub.runtime import die_with_parent

log = logging.getLogger(__name__)


class ChildServer:
    """What the embedded servers share: one child process, launched by :meth:`_launch` and
    stopped by :meth:`stop` with the server's ``stop_signal``, then SIGKILL after
    ``stop_timeout`` seconds. While it runs it is registered, so :func:`stop_all` stops it."""

    stop_signal: ClassVar[int] = signal.SIGTERM
    stop_timeout: ClassVar[float] = 10
    proc: subprocess.Popen | None

    def _launch(
        self,
        args: list[str],
        *,
        log_path: Path | None,
        preexec_fn: Callable[[], None],
        ready: Callable[[], bool],
        timeout: float,
        interval: float,
        exited: Callable[[int], str],
        not_ready: str,
    ) -> None:
        """Start ``args`` (output appended to ``log_path``, else discarded), then poll
        ``ready()`` every ``interval`` seconds until it is true.

        When the process exits first, or ``timeout`` passes, the server is stopped and
        :class:`FatalError` raised with ``exited(return code)`` or ``not_ready`` as its message.
        """
        out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - the child's
        self.proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            preexec_fn=preexec_fn, close_fds=True,
        )  # fmt: skip
        if out is not subprocess.DEVNULL:
            out.close()
        register(self)
        deadline = time.monotonic() + timeout
        while True:
            code = self.proc.poll()
            if code is not None:
                self.stop()
                raise FatalError(exited(code))
            if ready():
                return
            if time.monotonic() > deadline:
                self.stop()
                raise FatalError(not_ready)
            time.sleep(interval)

    def stop(self) -> None:
        """Stop the server (``stop_signal``, then SIGKILL); safe to call again."""
        if self.proc is not None:
            stop_process(self.proc, self.stop_signal, self.stop_timeout)
            self.proc = None
        unregister(self)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def own_session_killed_with_parent() -> None:
    """``preexec_fn`` of a broker: its own session (a terminal's Ctrl-C reaches the parent,
    which stops it in order), and SIGKILL when the parent dies."""
    os.setsid()
    die_with_parent(signal.SIGKILL)


def stop_process(proc: subprocess.Popen, sig: int, timeout: float) -> None:
    """Send ``sig`` and wait up to ``timeout`` seconds, then SIGKILL; nothing if it exited."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        log.warning("pid %s did not stop in %.0fs; killing it", proc.pid, timeout)
        proc.kill()
        proc.wait(10)


_running: list[ChildServer] = []
_prev_handlers: dict[int, object] = {}


def register(server: ChildServer) -> None:
    """Remember a started server, so :func:`stop_all` stops it at exit."""
    if server not in _running:
        _running.append(server)
    if len(_running) == 1 and not _prev_handlers:
        atexit.register(stop_all)


def unregister(server: ChildServer) -> None:
    """Forget a stopped server."""
    with contextlib.suppress(ValueError):
        _running.remove(server)


def stop_all() -> None:
    """Stop every embedded server this process started."""
    for server in list(reversed(_running)):
        with contextlib.suppress(Exception):
            server.stop()


def install_signal_handlers() -> None:
    """Turn SIGTERM into SystemExit so ``finally`` blocks and atexit stop the servers."""

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)

"""Fault injection for integration tests: stop, pause, kill and restart the embedded servers
(``hub.embedded``) a test started itself, on the same data directory and ports.

A broker restarted here keeps its topics only if it was made with ``keep_data=True``.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from hub.embedded import EmbeddedKafka, EmbeddedPostgres


def _pid(server: EmbeddedKafka | EmbeddedPostgres) -> int:
    assert server.proc is not None and server.proc.poll() is None, f"{server} is not running"
    return server.proc.pid


def pause(server: EmbeddedKafka | EmbeddedPostgres) -> None:
    """SIGSTOP the server: its sockets stay open, it answers nothing."""
    os.kill(_pid(server), signal.SIGSTOP)


def resume(server: EmbeddedKafka | EmbeddedPostgres) -> None:
    """SIGCONT a paused server."""
    os.kill(_pid(server), signal.SIGCONT)


def kill(server: EmbeddedKafka | EmbeddedPostgres) -> None:
    """SIGKILL the server (if it runs) and forget it: a teardown that throws its data away."""
    if server.proc is not None and server.proc.poll() is None:
        server.proc.kill()
    server.stop()


def stop_broker(kafka: EmbeddedKafka) -> None:
    """Controlled shutdown (SIGTERM); ``kafka.start()`` brings it back on the same log dir."""
    assert kafka.keep_data, "a broker without keep_data loses its topics when it starts again"
    kafka.stop()


def _session_members(sid: int) -> list[int]:
    """Live processes of session ``sid`` (the embedded servers each start a session)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # after "(comm)": state, ppid, pgrp, session
        if int(fields[3]) == sid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def kill_postgres(pg: EmbeddedPostgres, timeout: float = 30.0) -> None:
    """SIGKILL the postmaster, then wait until its orphaned backends have exited.

    A postmaster cannot start while processes of the old one still hold its shared memory;
    backends notice their postmaster's death and exit on their own within moments.
    """
    pid = _pid(pg)
    os.kill(pid, signal.SIGKILL)
    assert pg.proc is not None
    pg.proc.wait(10)
    pg.proc = None
    deadline = time.monotonic() + timeout
    while left := _session_members(pid):
        assert time.monotonic() < deadline, f"backends {left} outlived their postmaster"
        time.sleep(0.05)


def fast_shutdown(pg: EmbeddedPostgres) -> None:
    """``pg_ctl stop -m fast``: SIGINT, which ends every session, checkpoints and exits."""
    pg.stop()

"""Helpers for tests that run hub processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM the process if it still runs; kill it if it has not exited within 20 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def demo_env() -> dict[str, str]:
    """This environment without HUB_DATABASE_URL and HUB_KAFKA_BOOTSTRAP, so that ``hub demo``
    starts its own embedded servers."""
    return {
        k: v for k, v in os.environ.items() if k not in ("HUB_DATABASE_URL", "HUB_KAFKA_BOOTSTRAP")
    }


def run_demo(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """``hub demo --once *args`` on its own embedded servers, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "hub", "demo", "--once", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=demo_env(),
    )


def wait_for(predicate, timeout: float, what: str, every: float = 0.5):
    """predicate() every ``every`` seconds until it returns something truthy (returned);
    AssertionError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")

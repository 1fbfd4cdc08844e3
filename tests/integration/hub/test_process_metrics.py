"""Each long-running process serves Prometheus metrics that `promtool check metrics` accepts."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from hub.embedded import free_port
from tests.integration.hub.procs import stop

pytestmark = pytest.mark.heavy(28)


def _scrape(url: str, timeout_s: float = 60) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return resp.read().decode()
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


@pytest.mark.requires("promtool")
@pytest.mark.parametrize(
    ("args", "where"),
    [
        (["connector", "run", "--all"], "metrics"),
        (["reconcile", "--assign-all"], "metrics"),
        (["serve"], "api"),
    ],
    ids=["connector-run", "reconcile", "serve"],
)
def test_each_process_serves_promtool_clean_metrics(deployment, args, where):
    path, config, _urls, _manifest = deployment
    listen = f"127.0.0.1:{free_port()}"
    extra = ["--listen", listen] if where == "api" else []
    if args[0] == "reconcile":
        extra = ["--metrics-listen", listen]
    env = {
        k: v for k, v in os.environ.items() if k not in ("HUB_DATABASE_URL", "HUB_KAFKA_BOOTSTRAP")
    }
    if args[0] == "connector":
        path.write_text(path.read_text().replace(config.metrics.listen, listen))
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub", "--config", str(path), *args, *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    try:
        text = _scrape(f"http://{listen}/metrics")
        if args[0] == "serve":  # no pipeline metrics of its own, but its hub_process_info
            assert "process_cpu_seconds_total" in text
            assert 'hub_process_info{role="serve"' in text
        else:
            time.sleep(3)
            text = _scrape(f"http://{listen}/metrics")
            assert "hub_dead_letters_total" in text
        lint = subprocess.run(["promtool", "check", "metrics"], input=text, text=True,
                              capture_output=True, timeout=60)  # fmt: skip
        assert lint.returncode == 0, lint.stdout + lint.stderr
    finally:
        stop(proc)

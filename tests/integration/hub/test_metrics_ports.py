"""Connectors, reconciler and web server as separate processes on one host, from one config
file (issue #18 item 7): each serves metrics on its own address, and a taken address is one
line that names the key or flag to change."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
import yaml

from hub.embedded import free_port
from tests.integration.hub.procs import stop as _stop


def _env() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if k not in ("HUB_DATABASE_URL", "HUB_KAFKA_BOOTSTRAP", "HUB_CONFIG")
    }


def _get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def _wait_for(url: str, procs: dict[str, subprocess.Popen], timeout_s: float = 90) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = _get(url)
        if text is not None:
            return text
        dead = {n: p.returncode for n, p in procs.items() if p.poll() is not None}
        assert not dead, f"exited before serving {url}: {dead}"
        time.sleep(0.3)
    raise AssertionError(f"nothing served on {url} within {timeout_s}s")


def _hub(path, *args: str, log=subprocess.DEVNULL) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "hub", *args, "--config", str(path)],
                            stdout=log, stderr=subprocess.STDOUT, env=_env())  # fmt: skip


def test_connectors_reconciler_and_web_from_one_config_each_serve_their_own_port(
    deployment, tmp_path
):
    path, config, _urls, _manifest = deployment
    raw = yaml.safe_load(path.read_text())
    ports = {role: free_port() for role in ("connector", "reconciler", "serve")}
    raw["metrics"] = {"listen": {role: f"127.0.0.1:{p}" for role, p in ports.items()}}
    path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    logs = {role: open(tmp_path / f"{role}.log", "w") for role in ports}  # noqa: SIM115
    procs: dict[str, subprocess.Popen] = {}
    try:
        # The order of the README's command table; each starts once the previous one serves.
        for role, args in [("connector", ("connector", "run", "--all")),
                           ("reconciler", ("reconcile",)), ("serve", ("serve",))]:  # fmt: skip
            procs[role] = _hub(path, *args, log=logs[role])
            _wait_for(f"http://127.0.0.1:{ports[role]}/metrics", procs)
        for role, port in ports.items():
            text = _get(f"http://127.0.0.1:{port}/metrics")
            assert text is not None and "hub_dead_letters_total" in text, role
        _wait_for(f"http://{config.api.listen}/healthz", procs)
        assert all(p.poll() is None for p in procs.values())

        # A second web server on the same config: its metrics address is taken.
        second = subprocess.run(
            [sys.executable, "-m", "hub", "serve", "--config", str(path)],
            capture_output=True, text=True, timeout=120, env=_env(),
        )  # fmt: skip
        assert second.returncode == 2, second.stdout + second.stderr
        assert f"127.0.0.1:{ports['serve']} (from metrics.listen.serve)" in second.stderr
        assert "Traceback" not in second.stderr

        # Each port belongs to its own process: stopping one takes down only its port.
        for role in ports:
            _stop(procs[role])
            assert _get(f"http://127.0.0.1:{ports[role]}/metrics") is None, role
            for other in ports:
                if procs[other].poll() is None:
                    assert _get(f"http://127.0.0.1:{ports[other]}/metrics") is not None, other
    finally:
        for proc in procs.values():
            _stop(proc)
        for log in logs.values():
            log.close()


@pytest.mark.parametrize(
    ("metrics", "flag", "named"),
    [
        ({"listen": {"reconciler": "127.0.0.1:{port}"}}, None, "set metrics.listen.reconciler"),
        ({"listen": "127.0.0.1:{port}"}, None, "metrics.listen is one address for every"),
        ({}, "127.0.0.1:{port}", "pass another --metrics-listen"),
    ],
    ids=["role-key", "one-address", "flag"],
)
def test_a_taken_metrics_port_is_one_line_naming_the_key_or_flag(
    tmp_path, taken_port, metrics, flag, named
):
    text = yaml.safe_dump({"metrics": metrics}).replace("{port}", str(taken_port))
    path = tmp_path / "hub.yaml"
    path.write_text(text)
    extra = ["--metrics-listen", flag.format(port=taken_port)] if flag else []
    res = subprocess.run(
        [sys.executable, "-m", "hub", "reconcile", "--config", str(path), *extra],
        capture_output=True, text=True, timeout=120, env=_env(),
    )  # fmt: skip
    assert res.returncode == 2, res.stdout + res.stderr
    lines = [line for line in res.stderr.splitlines() if line.startswith("hub: ")]
    assert len(lines) == 1, res.stderr
    assert f"metrics of the reconciler cannot be served on 127.0.0.1:{taken_port}" in lines[0]
    assert "Address already in use" in lines[0] and named in lines[0]
    assert "Traceback" not in res.stderr

"""Connectors, reconciler and web server as separate processes on one host, from one config
file (issue #18 item 7): each serves hub_* metrics on its own address (the web server too,
issue #25 item 6), a real Prometheus configured as deploy/prometheus/prometheus.yml scrapes
them all and loads the alert rules, and a taken address is one line that names the key or
flag to change."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from hub.config import parse_config
from hub.db.migrate import upgrade
from hub.demo.generator import generate
from hub.demo.population import SOURCE_TABLES, demo_config
from hub.embedded import free_port
from tests.integration.hub.procs import stop as _stop
from tests.integration.hub.procs import wait_for

pytestmark = pytest.mark.heavy(42)


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


ROLES = {"connector": ("connector", "run", "--all"), "reconciler": ("reconcile",),
         "serve": ("serve",)}  # fmt: skip
"""Each process kind as deploy/docker-compose.yml and deploy/k8s/*.yaml start it."""
JOB_OF_ROLE = {"connector": "hub-connectors", "reconciler": "hub-reconciler", "serve": "hub-web"}
DEPLOY = Path(__file__).resolve().parents[3] / "deploy"


@pytest.fixture(scope="module")
def stack(servers, tmp_path_factory):
    """The demo sources, a hub database, and one process per kind started from one config
    with a metrics address per role (as deploy/hub.example.yaml), shared by the module."""
    tmp = tmp_path_factory.mktemp("stack")
    urls = {s: servers.create_database(f"ports_{s}") for s in SOURCE_TABLES}
    hub_url = servers.create_database("ports_hub")
    generate(urls, citizens=1000, seed=11)
    upgrade(hub_url)
    ports = {role: free_port() for role in ROLES}
    raw = {
        "kafka": {"bootstrap_servers": servers.bootstrap,
                  "topic_prefix": servers.kafka().topic_prefix},
        "database": {"url": hub_url},
        "api": {"listen": f"127.0.0.1:{free_port()}"},
        "metrics": {"listen": {role: f"127.0.0.1:{p}" for role, p in ports.items()}},
        **demo_config(urls),
    }  # fmt: skip
    path = tmp / "hub.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    config = parse_config(raw, env={})
    logs = {role: open(tmp / f"{role}.log", "w") for role in ports}  # noqa: SIM115
    procs: dict[str, subprocess.Popen] = {}
    try:
        # The order of the README's command table; each starts once the previous one serves.
        for role, args in ROLES.items():
            procs[role] = _hub(path, *args, log=logs[role])
            _wait_for(f"http://127.0.0.1:{ports[role]}/metrics", procs)
        yield path, config, ports, procs, tmp
    finally:
        for proc in procs.values():
            _stop(proc)
        for log in logs.values():
            log.close()
        for url in [*urls.values(), hub_url]:
            servers.drop_database(url)


def test_each_process_serves_hub_series_on_its_roles_metrics_listen(stack):
    _path, config, ports, procs, _tmp = stack
    for role, port in ports.items():
        text = _get(f"http://127.0.0.1:{port}/metrics")
        assert text is not None, role
        info = [line for line in text.splitlines() if line.startswith("hub_process_info{")]
        assert len(info) == 1 and f'role="{role}"' in info[0] and info[0].endswith(" 1.0"), info
        assert "hub_dead_letters_total" in text, role
    # The web server's API-port /metrics keeps working, with the same hub_* series.
    _wait_for(f"http://{config.api.listen}/healthz", procs)
    api = _get(f"http://{config.api.listen}/metrics")
    assert api is not None and 'hub_process_info{role="serve"' in api
    # The connectors' dead-letter series exist at 0 from the start, one per connector.
    connector = _get(f"http://127.0.0.1:{ports['connector']}/metrics") or ""
    for name in config.sectors:
        assert f'connector="{name}"' in connector, name


def _prometheus_config(ports: dict[str, int], prom_port: int) -> dict:
    """deploy/prometheus/prometheus.yml with its targets moved to the test's ports (the
    reconciler's DNS discovery, which needs a compose network, as a static target), a 1 s
    scrape and evaluation interval, and the rule file by absolute path."""
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    by_deploy_port = {9464: ports["connector"], 9465: ports["reconciler"],
                      9466: ports["serve"], 9090: prom_port}  # fmt: skip
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(DEPLOY / "prometheus" / name) for name in config["rule_files"]]
    for job in config["scrape_configs"]:
        for dns in job.pop("dns_sd_configs", []):
            job.setdefault("static_configs", []).append(
                {"targets": [f"{name}:{dns['port']}" for name in dns["names"]]}
            )
        for static in job["static_configs"]:
            static["targets"] = [
                f"127.0.0.1:{by_deploy_port[int(t.rpartition(':')[2])]}" for t in static["targets"]
            ]
    return config


def _api(prom: str, path: str) -> dict:
    text = _get(f"{prom}/api/v1/{path}")
    assert text is not None, path
    answer = json.loads(text)
    assert answer["status"] == "success", answer
    return answer["data"]


@pytest.mark.requires("prometheus")
def test_prometheus_scrapes_every_process_as_deployed_and_loads_the_alert_rules(stack):
    _path, _config, ports, procs, tmp = stack
    prom_port = free_port()
    config_file = tmp / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(_prometheus_config(ports, prom_port)))
    prom = f"http://127.0.0.1:{prom_port}"
    with open(tmp / "prometheus.log", "w") as log:
        server = subprocess.Popen(
            ["prometheus", f"--config.file={config_file}", f"--storage.tsdb.path={tmp / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{prom_port}"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            _wait_for(f"{prom}/-/ready", {**procs, "prometheus": server}, timeout_s=30)

            def scraped() -> dict[str, str] | None:
                targets = _api(prom, "targets?state=active")["activeTargets"]
                health = {t["labels"]["job"]: t["health"] for t in targets}
                return health if set(health.values()) == {"up"} else None

            health = wait_for(scraped, 20, "every target up")
            assert set(health) == {*JOB_OF_ROLE.values(), "prometheus"}, health

            # Every process kind's target has hub_* series, its own hub_process_info among them.
            def roles() -> dict[str, str] | None:
                found = _api(prom, "query?query=hub_process_info")["result"]
                got = {r["metric"]["job"]: r["metric"]["role"] for r in found}
                return got if len(got) == len(JOB_OF_ROLE) else None

            jobs = wait_for(roles, 20, "hub_process_info of every job")
            assert jobs == {job: role for role, job in JOB_OF_ROLE.items()}, jobs

            # alerts.yml is loaded and every rule evaluates without error.
            alerts = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
            want = sum(len(g["rules"]) for g in alerts["groups"])

            def rules() -> list[dict] | None:
                got = [r for g in _api(prom, "rules")["groups"] for r in g["rules"]]
                return got if len(got) == want and all(r["health"] == "ok" for r in got) else None

            got = wait_for(rules, 20, f"{want} rules evaluated with health ok")
            assert not [r["name"] for r in got if r["name"] == "HubProcessDown" and r["alerts"]]
        finally:
            _stop(server)


def test_a_second_web_server_is_refused_and_each_port_belongs_to_its_own_process(stack):
    path, _config, ports, procs, _tmp = stack
    # A second web server on the same config: its metrics address is taken.
    second = subprocess.run(
        [sys.executable, "-m", "hub", "serve", "--config", str(path)],
        capture_output=True, text=True, timeout=120, env=_env(),
    )  # fmt: skip
    assert second.returncode == 2, second.stdout + second.stderr
    assert f"127.0.0.1:{ports['serve']} (from metrics.listen.serve)" in second.stderr
    assert "Traceback" not in second.stderr

    # Each port belongs to its own process: stopping one takes down only its port (the
    # module's last test: it stops the shared processes).
    for role in ports:
        _stop(procs[role])
        assert _get(f"http://127.0.0.1:{ports[role]}/metrics") is None, role
        for other in ports:
            if procs[other].poll() is None:
                assert _get(f"http://127.0.0.1:{ports[other]}/metrics") is not None, other


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

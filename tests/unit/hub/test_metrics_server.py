"""Each role's metrics HTTP server (issue #18 item 7): its address, IPv6, and a taken port
reported with the key or flag to change; ``hub check`` never raises on an odd address."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request

import pytest

from hub.checks import check_targets
from hub.config import HubConfig, KafkaConfig, MetricsConfig, parse_config
from hub.metrics import MetricsAddressError, serve_metrics, start_metrics


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""


def test_a_role_serves_its_path_on_its_own_address_and_404_elsewhere():
    cfg = parse_config({"metrics": {"listen": {"reconciler": "127.0.0.1:0"}, "path": "/m"}}, env={})
    server = start_metrics(cfg.metrics, "reconciler")
    try:
        status, text = _get(f"http://127.0.0.1:{server.server_port}/m")
        assert status == 200 and "hub_dead_letters_total" in text
        assert _get(f"http://127.0.0.1:{server.server_port}/metrics")[0] == 404
    finally:
        server.shutdown()
        server.server_close()


def test_ipv6_addresses_in_brackets_are_served():
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    server = serve_metrics(MetricsConfig(listen="[::1]:0"), "serve")
    try:
        assert _get(f"http://[::1]:{server.server_port}/metrics")[0] == 200
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("listen", "flag", "source", "hint"),
    [
        ({"serve": "127.0.0.1:{p}"}, False, "metrics.listen.serve", "set metrics.listen.serve"),
        ("127.0.0.1:{p}", False, "metrics.listen", "give each role its own"),
        ({}, True, "--metrics-listen", "pass another --metrics-listen"),
    ],
)
def test_a_taken_port_names_where_the_address_came_from(taken_port, listen, flag, source, hint):
    if isinstance(listen, str):
        listen = listen.format(p=taken_port)
    else:
        listen = {k: v.format(p=taken_port) for k, v in listen.items()}
    cfg = MetricsConfig.model_validate({"listen": listen})
    with pytest.raises(MetricsAddressError) as exc:
        start_metrics(cfg, "serve", f"127.0.0.1:{taken_port}" if flag else None)
    message = str(exc.value)
    assert message.startswith(f"metrics of the serve cannot be served on 127.0.0.1:{taken_port}")
    assert f"(from {source})" in message and hint in message and "\n" not in message
    assert exc.value.problems == [message]


def test_check_reports_a_failing_client_as_a_fail_line_not_a_traceback():
    # Built without validation: what a future client-library quirk could still do.
    kafka = KafkaConfig.model_construct(
        **{**KafkaConfig().model_dump(), "bootstrap_servers": "kafka://::::"}
    )
    config = HubConfig.model_construct(**{**dict(HubConfig()), "kafka": kafka})
    results = check_targets(config)
    assert results[-1].target == "kafka" and not results[-1].ok
    assert results[-1].problem and "Traceback" not in results[-1].line()

"""Logins and sessions that resist attack (issue #24 item 4): failed logins audited without
the password, a guesser refused before any hash is computed, sessions kept server-side so a
copied cookie dies with logout, Secure cookies behind TLS, and a bounded memory cost of a
burst of wrong logins in a real ``hub serve``."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest
import yaml
from sqlalchemy import text

from hub.metrics import LOGINS, PASSWORD_VERIFICATIONS
from tests.integration.api.conftest import SECTORS, clone_database
from tests.integration.api.seed import PASSWORD
from tests.integration.api.test_ui_forms import csrf_of, log_in
from tests.integration.hub.procs import stop, wait_for

pytestmark = pytest.mark.heavy(35)


def _verifications() -> float:
    return PASSWORD_VERIFICATIONS._value.get()


def _logins(outcome: str) -> float:
    return LOGINS.labels(outcome)._value.get()


def test_the_21st_failed_login_in_a_minute_is_refused_without_computing_a_hash(api):
    for i in range(20):
        assert log_in(api.client, "steward", f"guess {i}").status_code == 401
    hashed, throttled = _verifications(), _logins("throttled")
    # The 21st wrong and even the right password: refused before argon2 runs.
    for password in ("guess 21", PASSWORD):
        resp = log_in(api.client, "steward", password)
        assert resp.status_code == 429, resp.text
        assert "too many failed logins for this user name" in resp.text
        assert resp.headers["retry-after"] == "60"
    assert _verifications() == hashed
    assert _logins("throttled") == throttled + 2
    # Another user is not locked out by the steward's guesser.
    assert log_in(api.client, "viewer").status_code == 303
    # After the minute (aged here), the right password works and clears the count.
    with api.engine.begin() as conn:
        conn.execute(text("UPDATE login_failures SET at = at - interval '61 seconds'"))
    assert log_in(api.client, "steward").status_code == 303
    with api.engine.connect() as conn:
        assert (
            conn.scalar(text("SELECT count(*) FROM login_failures WHERE user_name = 'steward'"))
            == 0
        )


def _app_with(api, **settings):
    from fastapi.testclient import TestClient

    from hub.api.app import create_app

    config = api.config.model_copy(update={"api": api.config.api.model_copy(update=settings)})
    return TestClient(create_app(config), follow_redirects=False)


def test_one_address_guessing_many_names_is_refused_before_hashing(api):
    with _app_with(api, login_failures_per_address=5) as client:
        for i in range(5):
            assert log_in(client, f"user{i}", "x").status_code == 401
        hashed = _verifications()
        resp = log_in(client, "someone-else", "x")
        assert resp.status_code == 429 and "from this address" in resp.text
        assert _verifications() == hashed


def test_failed_logins_are_audited_with_the_address_and_never_the_password(api):
    secret = "hunter2-not-the-password"
    assert log_in(api.client, "steward", secret).status_code == 401
    assert log_in(api.client, "nobody-here", secret).status_code == 401
    assert log_in(api.client, "steward").status_code == 303
    with api.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT actor, action, target_id, detail::text FROM audit_log "
                 "WHERE action LIKE 'login%' ORDER BY id")
        ).all()  # fmt: skip
    assert [(r.actor, r.action) for r in rows] == [
        ("steward", "login_failed"), ("nobody-here", "login_failed"), ("steward", "login")
    ]  # fmt: skip
    assert all('"address": "testclient"' in r.detail for r in rows)
    with api.engine.connect() as conn:
        dump = conn.scalar(text("SELECT string_agg(audit_log::text, ' ') FROM audit_log"))
    assert secret not in dump


def test_a_cookie_copied_before_logout_is_refused_after_it(api):
    assert log_in(api.client, "steward").status_code == 303
    copied = dict(api.client.cookies)
    assert api.client.get("/queue").status_code == 200
    csrf = csrf_of(api.client.get("/queue").text)
    assert api.client.post("/logout", data={"csrf_token": csrf}).status_code == 303
    api.client.cookies.clear()
    api.client.cookies.update(copied)
    resp = api.client.get("/queue")
    assert resp.status_code == 303 and resp.headers["location"].startswith("/login")


def test_disabling_a_user_or_a_new_password_ends_their_sessions(api):
    from hub.api import users

    assert log_in(api.client, "steward").status_code == 303
    users.set_password(api.engine, "steward", "a brand new password")
    assert api.client.get("/queue").status_code == 303
    assert log_in(api.client, "steward", "a brand new password").status_code == 303
    users.set_disabled(api.engine, "steward", True)
    users.set_disabled(api.engine, "steward", False)
    assert api.client.get("/queue").status_code == 303


def test_an_idle_or_expired_session_ends(api):
    assert log_in(api.client, "steward").status_code == 303
    with api.engine.begin() as conn:  # seen 2 minutes ago: a request marks it seen now
        conn.execute(text("UPDATE ui_sessions SET last_seen_at = now() - interval '2 minutes'"))
    assert api.client.get("/queue").status_code == 200
    with api.engine.connect() as conn:
        fresh = "SELECT bool_and(last_seen_at > now() - interval '1 minute') FROM ui_sessions"
        assert conn.scalar(text(fresh)) is True
    with api.engine.begin() as conn:  # idle past api.session_idle_minutes (30)
        conn.execute(text("UPDATE ui_sessions SET last_seen_at = now() - interval '31 minutes'"))
    assert api.client.get("/queue").status_code == 303
    assert log_in(api.client, "steward").status_code == 303
    with api.engine.begin() as conn:  # past the absolute expiry, though just seen
        conn.execute(text("UPDATE ui_sessions SET expires_at = now() - interval '1 second'"))
    assert api.client.get("/queue").status_code == 303


def test_the_cookie_is_secure_over_tls_and_the_secret_is_shared_by_every_process(api):
    from fastapi.testclient import TestClient

    from hub.api.app import create_app

    plain = log_in(api.client, "steward").headers["set-cookie"].lower()
    assert "secure" not in plain
    with TestClient(create_app(api.config), base_url="https://hub.test",
                    follow_redirects=False) as tls:  # fmt: skip
        cookie = log_in(tls, "steward").headers["set-cookie"].lower()
        assert "; secure" in cookie and "httponly" in cookie
    # A second app (another process, or a restart) accepts the first one's session.
    with TestClient(create_app(api.config), follow_redirects=False) as other:
        other.cookies.update(dict(api.client.cookies))
        assert other.get("/queue").status_code == 200
    with _app_with(api, cookie_secure=True) as client:
        assert "; secure" in log_in(client, "steward").headers["set-cookie"].lower()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_twenty_concurrent_wrong_logins_keep_hub_serve_under_400_mb(
    servers, api_template, tmp_path
):
    url = clone_database(servers, api_template.name)
    port, metrics_port = _free_port(), _free_port()
    source = {"url": "postgresql://reader@localhost/src", "table": "public.t", "key": "id",
              "columns": {"citizen_id": "cccd", "full_name": "ten"}}  # fmt: skip
    config = {
        "database": {"url": url},
        "kafka": {"bootstrap_servers": servers.bootstrap},
        "api": {
            "listen": f"127.0.0.1:{port}",
            "login_failures_per_address": 1000,
            "login_wait_s": 300,
        },
        "metrics": {"listen": {"serve": f"127.0.0.1:{metrics_port}"}},
        "registry": source,
        "sectors": {s: source for s in SECTORS},
    }
    path: Path = tmp_path / "hub.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    proc = subprocess.Popen([sys.executable, "-m", "hub", "serve", "--config", str(path)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            try:
                return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, 60, "hub serve answering /healthz", every=0.2)
        process = psutil.Process(proc.pid)
        peak = [process.memory_info().rss]
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], process.memory_info().rss)
                time.sleep(0.02)

        def wrong_login(i: int, codes: list[int]) -> None:
            with httpx.Client(base_url=base, timeout=60) as client:
                token = csrf_of(client.get("/login").text)
                resp = client.post("/login", data={"name": f"steward{i % 3}", "password": f"w{i}",
                                                   "csrf_token": token})  # fmt: skip
                codes.append(resp.status_code)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        codes: list[int] = []
        workers = [threading.Thread(target=wrong_login, args=(i, codes)) for i in range(20)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(120)
        done.set()
        sampler.join()
        assert sorted(codes) == [401] * 20, sorted(codes)
        peak_mb = peak[0] / 2**20
        assert peak_mb < 400, f"hub serve peaked at {peak_mb:.0f} MB RSS under 20 wrong logins"
        print(f"hub serve RSS peak under 20 concurrent wrong logins: {peak_mb:.0f} MB")
    finally:
        stop(proc)
        servers.drop_database(url)

"""``hub serve --workers N`` (issue #24 item 6): several uvicorn worker processes on one
socket, sharing nothing in memory: a login served by one worker is valid on the other
(sessions and the cookie secret live in the hub database)."""

from __future__ import annotations

import http.client
import os
import re
import socket
import subprocess
import sys
import time
import urllib.parse
from http.cookies import SimpleCookie
from pathlib import Path

import psutil
import yaml

from tests.integration.api.conftest import SECTORS, clone_database
from tests.integration.api.seed import PASSWORD
from tests.integration.hub.procs import stop, wait_for


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Conn:
    """One keep-alive HTTP connection (so one worker serves all its requests) that knows
    which worker process holds it."""

    def __init__(self, port: int, cookies: dict[str, str] | None = None):
        self.port = port
        self.http = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.cookies = dict(cookies or {})

    def request(self, method: str, path: str, body: dict | None = None):
        headers = {}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        data = None
        if body is not None:
            data = urllib.parse.urlencode(body)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        self.http.request(method, path, body=data, headers=headers)
        resp = self.http.getresponse()
        text = resp.read().decode()
        for value in resp.headers.get_all("Set-Cookie") or []:
            jar = SimpleCookie()
            jar.load(value)
            self.cookies.update({k: m.value for k, m in jar.items()})
        return resp.status, text

    def worker(self, workers: list[psutil.Process]) -> int:
        """The pid of the worker holding this connection."""
        local = self.http.sock.getsockname()[1]
        for w in workers:
            for c in w.net_connections(kind="tcp"):
                if c.raddr and c.raddr.port == local and c.laddr.port == self.port:
                    return w.pid
        raise AssertionError("no worker holds the connection")

    def close(self) -> None:
        self.http.close()


def test_a_login_on_one_worker_is_valid_on_the_other(servers, api_template, tmp_path):
    url = clone_database(servers, api_template.name)
    port = _free_port()
    source = {"url": "postgresql://reader@localhost/src", "table": "public.t", "key": "id",
              "columns": {"citizen_id": "cccd", "full_name": "ten"}}  # fmt: skip
    config = {
        "database": {"url": url},
        "kafka": {"bootstrap_servers": servers.bootstrap},
        "api": {"listen": f"127.0.0.1:{port}"},
        "registry": source,
        "sectors": {s: source for s in SECTORS},
    }
    path: Path = tmp_path / "hub.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    cmd = [sys.executable, "-m", "hub", "serve", "--config", str(path), "--workers", "2",
           "--no-metrics"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    opened: list[Conn] = []
    try:
        parent = psutil.Process(proc.pid)

        def children() -> list[psutil.Process]:
            # uvicorn's workers, not multiprocessing's resource tracker
            return [p for p in parent.children() if "resource_tracker" not in " ".join(p.cmdline())]

        def workers_up() -> bool:
            kids = children()
            if len(kids) < 2:
                return False
            try:
                c = Conn(port)
                ok = c.request("GET", "/healthz")[0] == 200
                c.close()
                return ok
            except OSError:
                return False

        wait_for(workers_up, 90, "two hub serve workers answering /healthz", every=0.3)
        time.sleep(1)  # both workers past start-up
        workers = children()
        assert len(workers) == 2, workers

        login = Conn(port)
        opened.append(login)
        status, page = login.request("GET", "/login")
        assert status == 200
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        status, _ = login.request(
            "POST", "/login", {"name": "steward", "password": PASSWORD, "csrf_token": csrf}
        )
        assert status == 303
        logged_in_on = login.worker(workers)
        assert login.request("GET", "/queue")[0] == 200

        served_by: dict[int, list[int]] = {}
        for _ in range(60):
            c = Conn(port, login.cookies)
            opened.append(c)
            status, _ = c.request("GET", "/queue")
            served_by.setdefault(c.worker(workers), []).append(status)
            if len(served_by) == 2:
                break
        others = {pid: codes for pid, codes in served_by.items() if pid != logged_in_on}
        assert others, f"every connection went to worker {logged_in_on}"
        assert all(code == 200 for codes in served_by.values() for code in codes), served_by

        # And a logout on one is a logout on the other.
        other = next(c for c in opened[1:] if c.worker(workers) != logged_in_on)
        status, page = login.request("GET", "/queue")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        assert login.request("POST", "/logout", {"csrf_token": csrf})[0] == 303
        assert other.request("GET", "/queue")[0] == 303
    finally:
        for c in opened:
            c.close()
        stop(proc)
        servers.drop_database(url)

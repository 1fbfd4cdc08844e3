"""A source database outage is retried with backoff and loses nothing."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

from connectors.runner import ConnectorRunner
from connectors.state import hub_engine, load_state
from tests.integration.connectors.conftest import changes
from tests.integration.connectors.test_logical import TABLE, insert_rows, tax_source


class Proxy:
    """A TCP proxy in front of PostgreSQL that can cut every connection and refuse new ones."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.up = threading.Event()
        self.up.set()
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.up.is_set():
                client.close()
                continue
            server = socket.create_connection(self.target)
            self.sockets += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := a.recv(65536):
                b.sendall(data)
        with contextlib.suppress(OSError):
            b.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self.up.clear()
        for s in self.sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        self.sockets.clear()

    def restore(self) -> None:
        self.up.set()

    def close(self) -> None:
        self.cut()
        self.listener.close()


def test_a_source_outage_is_retried_and_no_change_is_lost(source_db, make_config):
    source_db.execute(TABLE)
    host, port = "127.0.0.1", int(source_db.url.split(":")[-1].split("/")[0])
    proxy = Proxy((host, port))
    source = tax_source(source_db)
    source["url"] = source_db.url.replace(f":{port}/", f":{proxy.port}/")
    config = make_config(tax=source)
    engine = hub_engine(config.database.url)
    topic = changes(config, "tax")
    stopping = threading.Event()
    runner = ConnectorRunner(config, "tax", stopping=stopping)
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while (load_state(engine, "tax") or {}).get("state") != "running":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        insert_rows(source_db, 1, 5)
        proxy.cut()  # the connector's connections break; the source itself keeps working
        insert_rows(source_db, 6, 5)
        deadline = time.monotonic() + 30
        while (load_state(engine, "tax") or {}).get("state") != "retrying":
            assert time.monotonic() < deadline, "the outage was not noticed"
            time.sleep(0.1)
        assert "source database" in load_state(engine, "tax")["error"]
        proxy.restore()
        got: set[str] = set()
        deadline = time.monotonic() + 60
        while len(got) < 10:
            assert time.monotonic() < deadline, f"only {sorted(got)} arrived"
            got |= {m.record_key for m in topic.read()}
            time.sleep(0.2)
        assert got == {f"MST{i}" for i in range(1, 11)}
        assert load_state(engine, "tax")["state"] == "running"
    finally:
        stopping.set()
        thread.join(30)
        proxy.close()

"""``hub serve --workers N`` started where ``sys.stdin`` is not descriptor 0 (any
multiprocessing child): uvicorn's supervisor would hand that descriptor's number to workers
that do not inherit it."""

from __future__ import annotations

import os
import sys

import pytest

from hub.api import server
from hub.config import parse_config

CONFIG = {
    "database": {"url": "postgresql://hub@127.0.0.1:1/hub"},
    "kafka": {"bootstrap_servers": "127.0.0.1:1"},
    "sectors": {
        "tax": {
            "url": "postgresql://x@y/z",
            "table": "t",
            "key": "id",
            "columns": {"citizen_id": "c"},
        }
    },
}


@pytest.mark.parametrize("where", ["a new descriptor", "descriptor 0"])
def test_the_spawned_workers_are_given_no_descriptor_they_cannot_open(monkeypatch, where):
    seen = {}

    def run(app, **options):
        seen["stdin"] = sys.stdin
        seen["workers"] = options["workers"]
        # what uvicorn's _subprocess.get_subprocess reads from the supervisor's sys.stdin
        seen["fileno"] = None if sys.stdin is None else sys.stdin.fileno()

    monkeypatch.setattr(server.uvicorn, "run", run)
    stdin = open(os.devnull) if where == "a new descriptor" else open(0, closefd=False)
    descriptor = stdin.fileno()
    monkeypatch.setattr(sys, "stdin", stdin)
    try:
        server.serve(parse_config(CONFIG, env={}), "127.0.0.1:0", workers=2)
    finally:
        stdin.close()
    assert seen["workers"] == 2
    if where == "a new descriptor":
        assert descriptor > 2 and seen["stdin"] is None and seen["fileno"] is None
    else:
        assert seen["stdin"] is stdin and seen["fileno"] == 0

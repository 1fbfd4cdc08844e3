"""Test-only p95 timing of the queue and the citizen page over HTTP (part of
``bench_million``; not collected by pytest).

The hub's web server runs in a process of its own (``hub serve``'s uvicorn server, one
process, its thread pool for the handlers), so the load generator's threads do not share
its interpreter. Each page is asked for sequentially, then by 8 clients at once; each
request's wall time counts (p50, p95, max).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import re
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlencode

import httpx

from hub.config import parse_config
from hub.embedded import free_port

CONCURRENCY = 8
TARGET_P95_MS = 300.0


def _serve(config_data: dict, port: int, workers: int) -> None:
    from hub.api.server import serve

    serve(parse_config(config_data, env={}), f"127.0.0.1:{port}", workers)


def start_server(config_data: dict, workers: int = 1) -> tuple[multiprocessing.Process, str]:
    """The app for ``config_data`` on a free port, in a spawned process (``hub serve
    --workers N``: with more than one, uvicorn's supervisor and its worker processes)."""
    port = free_port()
    proc = multiprocessing.get_context("spawn").Process(
        target=_serve, args=(config_data, port, workers), daemon=workers == 1
    )
    proc.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                return proc, base
        except httpx.TransportError:
            pass
        if not proc.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the bench's web server did not start")
        time.sleep(0.2)


def ui_cookies(base: str, name: str, password: str) -> httpx.Cookies:
    """A signed-in session's cookies."""
    with httpx.Client(base_url=base) as c:
        page = c.get("/login").text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        r = c.post("/login", data={"name": name, "password": password, "csrf_token": csrf})
        assert r.status_code == 303, r.status_code
        return c.cookies


def _time_paths(base: str, paths: list[str], headers: dict, cookies: httpx.Cookies) -> list[float]:
    out = []
    with httpx.Client(base_url=base, headers=headers, cookies=cookies, timeout=60) as c:
        for path in paths:
            t = time.perf_counter()
            r = c.get(path)
            out.append((time.perf_counter() - t) * 1000)
            assert r.status_code == 200, (path, r.status_code, r.text[:200])
    return out


def measure(
    base: str,
    paths: Callable[[int], list[str]],
    *,
    headers: dict | None = None,
    cookies: httpx.Cookies | None = None,
    requests: int = 100,
) -> dict[str, list[float]]:
    """Wall times of ``requests`` requests one after another, and of ``requests`` × 2 spread
    over ``CONCURRENCY`` clients at once (after a warm-up pass, one client and then
    ``CONCURRENCY`` at once: one client's connection is served by one process, and with
    ``--workers`` every worker's pool and caches are warmed, as in a server that runs)."""
    headers, cookies = headers or {}, cookies or httpx.Cookies()
    _time_paths(base, paths(10), headers, cookies)  # warm the pool and the cache
    warm = paths(CONCURRENCY * 2)
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        list(
            pool.map(
                lambda i: _time_paths(base, warm[i::CONCURRENCY], headers, cookies),
                range(CONCURRENCY),
            )
        )
    sequential = _time_paths(base, paths(requests), headers, cookies)
    todo = paths(requests * 2)
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        parts = pool.map(
            lambda i: _time_paths(base, todo[i::CONCURRENCY], headers, cookies),
            range(CONCURRENCY),
        )
        concurrent = [ms for part in parts for ms in part]
    return {"sequential": sequential, f"{CONCURRENCY} concurrent": concurrent}


def p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20, method="inclusive")[18]


def citizen_ids(rows: int, seed: int = 7) -> Callable[[int], list[str]]:
    """Citizens drawn uniformly from the bench registry (2, 1 or no sector records, and
    about one record suggesting each; ``bench_million.CITIZEN_ID_SQL``)."""
    rng = random.Random(seed)
    return lambda k: [f"0011{rng.randint(1, rows):08d}" for _ in range(k)]


def in_process(url: str, rows: int, requests: int = 200) -> list[str]:
    """The same work without HTTP and the server's scheduling: the queue's default page and
    the citizen page's data, called directly on one connection; and the plan of the
    "suggested for this citizen" look-up (it must use the GIN index of migration 0011)."""
    from sqlalchemy import text

    from hub.api import citizens
    from hub.api.queue import pages
    from hub.api.queue.filters import MismatchFilter
    from hub.db import engine_for
    from hub.idschemes import get_scheme
    from hub.vocabulary import OPEN_STATUSES

    engine = engine_for(url)
    scheme = get_scheme("vn")
    ids = citizen_ids(rows, seed=11)
    f = MismatchFilter(status=OPEN_STATUSES)
    out = []
    with engine.connect() as conn:
        plan = conn.execute(
            text(
                "EXPLAIN (ANALYZE, COSTS OFF) SELECT DISTINCT sector, record_key FROM mismatches"
                " WHERE suggestions @> CAST(:c AS jsonb) AND status IN ('open', 'in_review')"
            ),
            {"c": json.dumps([{"citizen_id": ids(1)[0]}])},
        ).scalars()
        plan = list(plan)
        uses = any("ix_mismatches_suggestions" in line for line in plan)
        out.append(f"  'suggested for' look-up uses ix_mismatches_suggestions: {uses}; {plan[-1]}")

        def queue_page(c) -> None:
            pages.list_page(c, f, sort="id", order="desc", limit=50, after=None)

        def rule_counts(c) -> None:
            pages.rule_counts(c, f)

        def citizen_page(c) -> None:
            citizens.citizen(c, scheme, ids(1)[0])

        for label, fn in (
            ("queue page (list_page)", queue_page),
            ("per-rule counts (fetched after the page)", rule_counts),
            ("citizen page data (citizens.citizen)", citizen_page),
        ):
            samples = []
            for i in range(requests + 10):
                t = time.perf_counter()
                try:
                    fn(conn)
                except Exception as exc:  # an unknown citizen is a 404: part of the mix
                    if type(exc).__name__ != "NotFound":
                        raise
                if i >= 10:
                    samples.append((time.perf_counter() - t) * 1000)
            out.append(
                f"  in process: {label:<40} n={len(samples)} p50 "
                f"{statistics.median(samples):6.1f} ms  p95 {p95(samples):6.1f} ms"
            )
    engine.dispose()
    return out


def load() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def fixed(path: str) -> Callable[[int], list[str]]:
    return lambda k: [path] * k


def name_searches(prefix: str, rows: int, seed: int = 7) -> Callable[[int], list[str]]:
    """Searches for a sector record's whole name ("Nguyễn Văn <g>", typed as a steward
    would, with its diacritics), a random record each time."""
    rng = random.Random(seed)
    return lambda k: [
        prefix + urlencode({"name": f"Nguyễn Văn {rng.randint(1, rows)}"}) for _ in range(k)
    ]


def mismatch_ids(rows: int, seed: int = 5) -> Callable[[int], list[int]]:
    rng = random.Random(seed)
    return lambda k: [rng.randint(1, rows) for _ in range(k)]


def run(
    config_data: dict,
    rows: int,
    token: str,
    user: str,
    password: str,
    *,
    requests: int = 100,
    heavy: int = 100,
    workers: int = 1,
) -> list[str]:
    """The p95 table's lines: ``requests`` sequential requests per case and twice as many
    over 8 clients (``heavy`` for the stats and dashboard cases), served by ``hub serve
    --workers workers``."""
    lines = [
        f"  load average at start: {load()} (on {os.cpu_count()} cores); "
        f"hub serve --workers {workers}"
    ]
    lines += in_process(config_data["database"]["url"], rows)
    proc, base = start_server(config_data, workers)
    try:
        api = {"Authorization": f"Bearer {token}"}
        cookies = ui_cookies(base, user, password)
        ids = citizen_ids(rows)
        mids = mismatch_ids(rows)
        queue = "/api/v1/mismatches?status=open&status=in_review"
        ui_q = "/queue?status="  # empty: the working queue (open and in review)
        # (label, paths of k requests, API headers or None, UI cookies or None, requests).
        cases = [
            ("API /me (token check only: the floor)", fixed("/api/v1/me"), api, None, requests),
            ("API queue: open + in review, newest first", fixed(queue), api, None, requests),
            ("API queue: sector + rule", fixed(queue + "&sector=tax&rule=NAME_MISMATCH"), api,
             None, requests),
            ("API queue: severity=critical", fixed(queue + "&severity=critical"), api, None,
             requests),
            ("API queue: province + severity", fixed(queue + "&province=07&severity=high"),
             api, None, requests),
            ("API queue: age 100-120 days", fixed(queue + "&min_age_days=100&max_age_days=120"),
             api, None, requests),
            ("API queue: age >= 170 days", fixed(queue + "&min_age_days=170"), api, None,
             requests),
            ("API queue: q= citizen ID prefix", fixed("/api/v1/mismatches?q=0011"), api, None,
             requests),
            ("API queue: sort first_seen_at asc",
             fixed(queue + "&sort=first_seen_at&order=asc"), api, None, requests),
            ("API counts per rule", fixed("/api/v1/mismatches/counts?status=open"), api, None,
             requests),
            ("API queue: name= a whole name", name_searches("/api/v1/mismatches?", rows), api,
             None, requests),
            ("API queue: name= a surname every record has",
             fixed("/api/v1/mismatches?name=nguyen"), api, None, requests),
            ("API detail", lambda k: [f"/api/v1/mismatches/{m}" for m in mids(k)], api, None,
             requests),
            ("API citizen page", lambda k: [f"/api/v1/citizens/{c}" for c in ids(k)], api,
             None, requests),
            ("API stats, 30 days", fixed("/api/v1/stats"), api, None, heavy),
            ("API stats, 365 days", fixed("/api/v1/stats?days=365"), api, None, heavy),
            ("UI queue: default page", fixed("/queue"), None, cookies, requests),
            ("UI queue's per-rule counts (fetched after it)", fixed("/queue/rule-counts"),
             None, cookies, requests),
            ("UI queue: sector + rule", fixed(ui_q + "&sector=tax&rule=NAME_MISMATCH"), None,
             cookies, requests),
            ("UI queue: province + severity", fixed(ui_q + "&province=07&severity=high"), None,
             cookies, requests),
            ("UI queue: age 100-120 days", fixed(ui_q + "&min_age_days=100&max_age_days=120"),
             None, cookies, requests),
            ("UI queue: name= a whole name", name_searches("/queue?", rows), None, cookies,
             requests),
            ("UI detail page", lambda k: [f"/mismatches/{m}" for m in mids(k)], None, cookies,
             requests),
            ("UI citizen page", lambda k: [f"/citizens/{c}" for c in ids(k)], None, cookies,
             requests),
            ("UI dashboard, 30 days", fixed("/dashboard"), None, cookies, heavy),
            ("UI dashboard, 365 days", fixed("/dashboard?days=365"), None, cookies, heavy),
        ]  # fmt: skip
        width = max(len(label) for label, *_ in cases)
        for label, paths, headers, jar, n in cases:
            for mode, samples in measure(
                base, paths, headers=headers, cookies=jar, requests=n
            ).items():
                ok = "ok" if p95(samples) < TARGET_P95_MS else "OVER"
                lines.append(
                    f"  {label.ljust(width)}  {mode:>12}  n={len(samples):<4} "
                    f"p50 {statistics.median(samples):7.1f} ms  p95 {p95(samples):7.1f} ms  "
                    f"max {max(samples):7.1f} ms  {ok}"
                )
        lines.append(f"  load average at end: {load()}")
        return lines
    finally:
        proc.terminate()
        proc.join(10)

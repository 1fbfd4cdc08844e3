"""Test-only timing of the API and UI at a million mismatches (not collected by pytest).

    .venv/bin/python -m tests.integration.api.bench_million [--rows 1000000] [--url PG_URL]

Starts the embedded PostgreSQL unless ``--url`` names a server (maintenance database URL),
creates a fresh hub database, fills it with ``seed_million.sql`` (generate_series, shaped
like reconciler output) and as many sector records, then times each page/query (median of
several runs, warm cache) and a full CSV export (rows/s, peak memory).
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
import time
import tracemalloc
import warnings
from pathlib import Path

import psycopg

from hub.config import parse_config
from hub.db import engine_for, psycopg_conninfo
from hub.db.migrate import upgrade
from tests.integration.api import bench_pages
from tests.integration.api.seed import PASSWORD

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

SQL = Path(__file__).with_name("seed_million.sql")
# Citizen c holds the ID '0011' || lpad(c, 8, '0') (province 001, century-and-sex 1: valid
# in the vn scheme). Sector record g carries the ID of citizen 1 + (g - 1) % (4n/5): a fifth
# of the citizens have two records, in different sectors; the rest of the registry has none.
CITIZEN_ID_SQL = "'0011' || lpad(({c})::text, 8, '0')"
SECTOR_RECORDS_SQL = f"""
INSERT INTO sector_records (sector, record_key, citizen_id_raw, citizen_id, full_name,
                            name_folded, date_of_birth, sex, province_code, status, verified)
SELECT (ARRAY['tax','banking','labour','construction'])[1 + g %% 4], 'K' || lpad(g::text, 9, '0'),
       {CITIZEN_ID_SQL.format(c="1 + (g - 1) %% (%(n)s * 4 / 5)")},
       {CITIZEN_ID_SQL.format(c="1 + (g - 1) %% (%(n)s * 4 / 5)")}, 'Nguyễn Văn ' || g,
       'nguyen van ' || g, date '1950-01-01' + (g %% 20000)::int, CASE WHEN g %% 2 = 0 THEN 'M' ELSE 'F' END,
       lpad((g %% 96 + 1)::text, 2, '0'), 'active', g %% 3 <> 0
FROM generate_series(1::bigint, %(n)s) AS g
"""
REGISTRY_SQL = f"""
INSERT INTO registry_citizens (citizen_id, full_name, name_folded, date_of_birth, sex,
                               province_code, address)
SELECT {CITIZEN_ID_SQL.format(c="c")}, 'Nguyễn Văn An ' || c, 'nguyen van an ' || c,
       date '1950-01-01' + (c %% 20000)::int, 'F', lpad((c %% 96 + 1)::text, 2, '0'),
       c || ' Phố Huế, Hà Nội'
FROM generate_series(1::bigint, %(n)s) AS c
"""
# Two years of dashboard history as the reconciler writes it: a row per sector every 300 s
# (about 840k rows), the open counts drifting by the hour.
STATS_SQL = """
INSERT INTO stats_snapshots (at, sector, records_seen, records_verified, open_by_rule)
SELECT t, s, %(n)s / 4 + (extract(epoch FROM now() - t) / 3600)::bigint %% 1000,
       %(n)s / 6, jsonb_object_agg(r, 1000 + (extract(epoch FROM t) / 3600)::bigint %% 500)
FROM generate_series(now() - interval '730 days', now(), interval '300 seconds') AS t,
     unnest(ARRAY['tax','banking','labour','construction']) AS s,
     unnest(ARRAY['ID_MISSING','ID_INVALID','ID_LEGACY','ID_NOT_IN_REGISTRY',
                  'ID_ATTRIBUTES_INCONSISTENT','NAME_MISMATCH','DOB_MISMATCH','SEX_MISMATCH',
                  'DECEASED_ACTIVE','DUPLICATE_ID','PROVINCE_MISMATCH']) AS r
GROUP BY t, s
"""
# Churn after the load, not vacuumed (autovacuum off on mismatches, as on a busy store
# between its runs): a fifth of the mismatches seen again, a fortieth of the open ones taken
# into review.
CHURN_SQL = [
    "ALTER TABLE mismatches SET (autovacuum_enabled = off)",
    "UPDATE mismatches SET last_seen_at = now(), updated_at = now() WHERE id % 5 = 0",
    "UPDATE mismatches SET status = 'in_review', assignee = 'steward9', updated_at = now()"
    " WHERE id % 40 = 1 AND status = 'open'",
    "ANALYZE",
]


def fill(url: str, rows: int) -> None:
    sql = SQL.read_text().replace("%", "%%").replace(":n", "%(n)s")
    sql = "\n".join(line for line in sql.splitlines() if not line.startswith("--"))
    with psycopg.connect(psycopg_conninfo(url), autocommit=True) as conn:
        started = time.perf_counter()
        for statement in sql.split(";"):
            if statement.strip():
                conn.execute(statement, {"n": rows})
        conn.execute(SECTOR_RECORDS_SQL, {"n": rows})
        conn.execute(REGISTRY_SQL, {"n": rows})
        conn.execute(STATS_SQL, {"n": rows})
        conn.execute("VACUUM ANALYZE")
        for statement in CHURN_SQL:
            conn.execute(statement)
        print(f"filled {rows:,} mismatches, sector records and registry citizens in "
              f"{time.perf_counter() - started:.0f}s")  # fmt: skip


def timed(fn, runs: int = 5) -> float:
    fn()  # warm
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1000)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--url", help="maintenance database URL of a PostgreSQL server")
    parser.add_argument(
        "--pages-only",
        action="store_true",
        help="only the p95 of the queue and the citizen page (bench_pages), not the medians",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="with --url: time the store an earlier run filled (fill once, time when quiet)",
    )
    parser.add_argument("--requests", type=int, default=100, help="sequential requests a case")
    parser.add_argument(
        "--heavy", type=int, default=100, help="the same for the stats and dashboard cases"
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="hub serve --workers for the p95 table"
    )
    parser.add_argument(
        "--fill-only", action="store_true", help="with --url: fill the store, time nothing"
    )
    args = parser.parse_args()
    stack = None
    if args.url:
        server_url = args.url
    else:
        from hub.embedded import EmbeddedPostgres

        stack = EmbeddedPostgres(Path(tempfile.mkdtemp()) / "pg", durable=False).start()
        server_url = stack.url
    name = "hub_bench_api"
    url = server_url.rsplit("/", 1)[0] + "/" + name
    from hub.api.app import create_app
    from hub.api.users import create_user, new_token_for

    if args.reuse and args.url:
        engine = engine_for(url)
        token = new_token_for(engine, "bench-api")
    else:
        with psycopg.connect(psycopg_conninfo(server_url), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        upgrade(url)
        fill(url, args.rows)
        engine = engine_for(url)
        create_user(engine, "bench", "admin", PASSWORD)
        _, token = create_user(engine, "bench-api", "admin")
        if args.fill_only:
            engine.dispose()
            return
    config_data = {
        "database": {"url": url},
        "kafka": {"bootstrap_servers": "127.0.0.1:1"},
        "sectors": {
            s: {
                "url": "postgresql://x@y/z",
                "table": "t",
                "key": "id",
                "columns": {"citizen_id": "c"},
            }
            for s in ("tax", "banking", "labour", "construction")
        },
    }
    config = parse_config(config_data, env={})
    lines = bench_pages.run(
        config_data,
        args.rows,
        token,
        "bench",
        PASSWORD,
        requests=args.requests,
        heavy=args.heavy,
        workers=args.workers,
    )
    print(f"\nat {args.rows:,} mismatches, over HTTP (p95 target < 300 ms):")
    print("\n".join(lines))
    if args.pages_only:
        engine.dispose()
        if stack is not None:
            stack.stop()
        return
    app = create_app(config)
    h = {"Authorization": f"Bearer {token}"}
    results: list[tuple[str, float]] = []
    with TestClient(app, follow_redirects=False) as c:

        def api(label: str, path: str, **params) -> None:
            def call():
                r = c.get(path, headers=h, params=params)
                assert r.status_code == 200, (path, r.status_code, r.text[:200])

            results.append((label, timed(call)))

        active = {"status": ["open", "in_review"]}
        api("list: default (all statuses, newest first)", "/api/v1/mismatches")
        api("list: open + in review", "/api/v1/mismatches", **active)
        api("list: open, sector + rule", "/api/v1/mismatches", status="open", sector="tax",
            rule="NAME_MISMATCH")  # fmt: skip
        api("list: severity=critical", "/api/v1/mismatches", **active, severity="critical")
        api("list: province", "/api/v1/mismatches", **active, province="07")
        api("list: age >= 100 days", "/api/v1/mismatches", **active, min_age_days=100)
        api("list: q= citizen ID prefix", "/api/v1/mismatches", q="0011")
        api("list: q= record key prefix", "/api/v1/mismatches", q="K00012")
        api("list: sort=first_seen_at asc", "/api/v1/mismatches", **active,
            sort="first_seen_at", order="asc")  # fmt: skip
        api("list: sort=severity desc", "/api/v1/mismatches", **active, sort="severity")
        api("list: sort=record_key asc", "/api/v1/mismatches", **active, sort="record_key",
            order="asc")  # fmt: skip
        api("list: q= exact record key", "/api/v1/mismatches", q="K000500000")
        api("list: limit=500", "/api/v1/mismatches", **active, limit=500)
        cursor = c.get("/api/v1/mismatches", headers=h, params={**active, "offset": 5000}).json()
        api("list: keyset page after offset 5000", "/api/v1/mismatches", **active,
            after=cursor["next_cursor"])  # fmt: skip
        api("list: offset=10000", "/api/v1/mismatches", **active, offset=10_000)
        api("counts per rule: open + in review", "/api/v1/mismatches/counts", **active)
        api("counts per rule: sector=tax", "/api/v1/mismatches/counts", **active, sector="tax")
        api("detail (+ audit row)", "/api/v1/mismatches/500000")
        api("citizen page (+ audit row)", "/api/v1/citizens/001100000001")
        api("audit log page", "/api/v1/audit")
        results.append(
            (
                "stats (uncached)",
                timed(
                    lambda: (app.state.hub.stats.invalidate(), c.get("/api/v1/stats", headers=h))
                ),
            )  # fmt: skip
        )
        api("stats (cached figures + series)", "/api/v1/stats")

        page = c.get("/login").text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        c.post("/login", data={"name": "bench", "password": PASSWORD, "csrf_token": csrf})

        def ui(label: str, path: str) -> None:
            def call():
                r = c.get(path)
                assert r.status_code == 200, (path, r.status_code)

            results.append((label, timed(call)))

        ui("UI queue (default: open + in review, rule counts)", "/queue")
        ui("UI queue filtered (tax, NAME_MISMATCH)", "/queue?sector=tax&rule=NAME_MISMATCH")
        ui("UI detail page", "/mismatches/500000")
        ui("UI citizen page", "/citizens/001100000001")
        ui("UI dashboard", "/dashboard")

        tracemalloc.start()
        started = time.perf_counter()
        size = rows = 0
        with c.stream("GET", "/api/v1/mismatches/export", headers=h) as r:
            for chunk in r.iter_bytes():
                size += len(chunk)
                rows += chunk.count(b"\n")
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        export = (
            f"CSV export of every row: {rows - 1:,} rows, {size / 1e6:.0f} MB in {elapsed:.1f}s "
            f"({(rows - 1) / elapsed:,.0f} rows/s), peak Python memory {peak / 1e6:.1f} MB"
        )
        started = time.perf_counter()
        r = c.post(
            "/api/v1/mismatches/bulk",
            headers=h,
            json={"action": "resolve", "filter": {"status": ["open"]}, "note": "bench"},
        )
        bulk = f"bulk resolve over a filter, 10,000 rows: {time.perf_counter() - started:.2f}s"
        assert r.status_code == 200 and len(r.json()["changed"]) == 10_000

    width = max(len(label) for label, _ in results)
    print(f"\nat {args.rows:,} mismatches (median of 5, warm):")
    for label, ms in results:
        print(f"  {label.ljust(width)}  {ms:8.1f} ms")
    print("  " + export)
    print("  " + bulk)
    engine.dispose()
    if stack is not None:
        stack.stop()


if __name__ == "__main__":
    main()

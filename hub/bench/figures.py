"""The five figures, each measured beside its baseline on one scale's pipeline (see
:mod:`hub.bench`), and the table ``hub bench`` prints of them."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import click

from hub.bench.baselines import SQL_RULES, sql_baseline_statement
from hub.bench.runs import TAX_SOURCE, ScaleRun
from hub.bench.scale import fmt_n
from hub.bench.workers import Worker

FIGURES = ("full", "stream", "capture", "latency", "scaling", "debezium")
"""``--skip`` choices: the figures, and ``debezium``, figure 3's Debezium baseline."""
DEFAULT_RATE = 5000
LIVE_SHARE = 0.2
"""Share of the combined capture + reconcile rate offered by the latency figure when 5k/s
is out of reach: 1M runs at 50 % (1.4–1.5k/s) built a queue (p50 2–8 s); 20 % (~500/s)
does not."""

SMALL_RUNS = 2
"""Runs at the scaling figure's small scale (N/10); the fastest is the reference."""


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    idx = min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))
    return s[idx]


def slow_seconds(
    offsets: list[float], stored: list[float], to_kafka: list[float], limit_s: float = 0.5
) -> list[dict[str, Any]]:
    """The seconds of the live run (by source commit, from the start of the load) in which
    some change took longer than ``limit_s`` to be stored: when, how many, the worst, and
    the worst capture part — stalls show here, a queue shows as a run of seconds."""
    seconds: dict[int, list[float]] = {}
    for at, total, kafka in zip(offsets, stored, to_kafka, strict=True):
        if total > limit_s:
            row = seconds.setdefault(int(at), [0, 0.0, 0.0])
            row[0] += 1
            row[1] = max(row[1], total)
            row[2] = max(row[2], kafka)
    return [
        {"at_s": at, "over": n, "max_ms": round(worst * 1000), "capture_max_ms": round(k * 1000)}
        for at, (n, worst, k) in sorted(seconds.items())
    ]


# ------------------------------------------------------------------------------ figure 1


def full_figure(run: ScaleRun, pipe: dict) -> dict[str, Any]:
    import psycopg

    from hub.db import psycopg_conninfo

    run.bench.echo(f"[{fmt_n(run.n)}] SQL baseline: one statement joining the same tables …")
    with psycopg.connect(psycopg_conninfo(run.src_url), autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_sql_mismatches")
        t0 = time.monotonic()
        conn.execute(sql_baseline_statement())
        sql_s = time.monotonic() - t0
        sql_rows = set(conn.execute("SELECT record_key, rule FROM bench_sql_mismatches"))
    hub_rows = run.hub_open_mismatches()
    agreement: dict[str, dict[str, int]] = {}
    for rule in SQL_RULES:
        h = {k for k, r in hub_rows if r == rule}
        s = {k for k, r in sql_rows if r == rule}
        agreement[rule] = {
            "hub": len(h),
            "sql": len(s),
            "only_hub": len(h - s),
            "only_sql": len(s - h),
        }
    hub_only_rules = Counter(r for _, r in hub_rows if r not in SQL_RULES)
    ratio = pipe["hub_s"] / sql_s if sql_s else None
    return {
        "records": run.records,
        "hub_s": round(pipe["hub_s"], 2),
        "hub_capture_s": round(pipe["capture_s"], 2),
        "hub_reconcile_s": round(pipe["reconcile_s"], 2),
        "hub_phases": pipe["phases"],
        "hub_messages_per_reconciler": pipe["reconciler"]["messages_per_process"],
        "sql_s": round(sql_s, 2),
        "ratio": round(ratio, 2) if ratio else None,
        "target": "hub <= 2x SQL",
        "met": ratio is not None and ratio <= 2.0,
        "agreement": agreement,
        "agree": all(a["only_hub"] == 0 and a["only_sql"] == 0 for a in agreement.values()),
        "hub_only_rules": dict(hub_only_rules),
        "sql_expresses": (
            "exact comparisons: ID missing/invalid (structure + province table)/legacy/"
            "unknown, ID-encoded birth year and sex, name folded from the hub's own "
            "folding tables (NFKD + its letter, digit and apostrophe replacements + "
            "dropping its combining marks + lower case + single spaces), birth date, sex, "
            "deceased-active, duplicate active IDs; not the similarity grading, "
            "Arabic compounds, other punctuation rules or candidate suggestions"
        ),
    }


# ------------------------------------------------------------------------------ figure 2


def live_group(run: ScaleRun) -> str:
    """A consumer group for the live reconcilers, starting at the offsets figure 1's
    group stored in the hub database (the truth about what has been applied).

    Not figure 1's group itself: its members left one after the other as each went
    idle, and the embedded broker (tansu) can keep a member that left during the
    rebalance as the group's leader. New members then join, wait for the departed
    leader's assignment, get REBALANCE_IN_PROGRESS and join again: for tens of seconds,
    or for minutes (2 runs in 16 of the two-reconciler test). Kafka drops a member at
    its LeaveGroup."""
    import psycopg

    from hub.db import psycopg_conninfo
    from hub.kafka import Topics
    from reconciliation.store.offsets import read_offsets, store_offsets

    topics = Topics(run.config.kafka.topic_prefix)
    source = run.config.reconciler.group_id
    live = f"{source}-live"
    with psycopg.connect(psycopg_conninfo(run.config.database.url)) as hub:
        offsets = read_offsets(hub, source, [topics.registry, topics.sector(TAX_SOURCE)])
        if not store_offsets(hub, live, offsets, locked=()):
            raise click.ClickException(f"consumer group {live} already has offsets")
    return live


def stream_figure(run: ScaleRun, pipe: dict) -> dict[str, Any]:
    from hub.kafka import Topics

    topics = Topics(run.config.kafka.topic_prefix)
    names = [topics.registry, topics.sector(TAX_SOURCE)]
    rec = pipe["reconciler"]
    run.bench.echo(f"[{fmt_n(run.n)}] raw kafka-python poll-and-count on the same topics …")
    raw = run.worker("raw-consume", topics=names, expected=rec["messages"]).result()
    run.raw_consume = raw
    raw_s = (raw["last"] or 0) - (raw["first"] or 0)
    # Per reconciler process, as the target reads; the group's rate is reported too.
    total_rate = rec["messages"] / rec["busy_s"] if rec["busy_s"] > 0 else None
    hub_rate = total_rate / rec["processes"] if total_rate else None
    raw_rate = raw["messages"] / raw_s if raw_s > 0 else None
    ratio = hub_rate / raw_rate if hub_rate and raw_rate else None
    return {
        "messages": rec["messages"],
        "hub_events_per_s": round(hub_rate) if hub_rate else None,
        "reconciler_processes": rec["processes"],
        "hub_group_events_per_s": round(total_rate) if total_rate else None,
        "hub_busy_s": round(rec["busy_s"], 2),
        "raw_messages": raw["messages"],
        "raw_events_per_s": round(raw_rate) if raw_rate else None,
        "raw_s": round(raw_s, 2),
        "ratio": round(ratio, 3) if ratio else None,
        "target": ">= 0.60 of raw",
        "met": ratio is not None and ratio >= 0.6,
    }


# ------------------------------------------------------------------------------ figure 3


def capture_figure(run: ScaleRun, pipe: dict) -> dict[str, Any]:
    import psycopg

    from hub.db import psycopg_conninfo
    from hub.kafka import Topics

    topics = Topics(run.config.kafka.topic_prefix)
    raw = run.raw_consume
    if raw is None:
        raw = run.worker("raw-consume", topics=[topics.sector(TAX_SOURCE)], quiet_s=2.0).result()
    tax_topic = topics.sector(TAX_SOURCE)
    size = round(raw["bytes"][tax_topic] / max(1, raw["per_topic"][tax_topic]))
    m = min(run.records["tax"], max(20_000, run.n // 5))
    from hub.bench.debezium import finish_peer, start_peer

    peer, debezium = start_peer(run)  # its slot, before the updates: it streams the same ones
    run.bench.echo(
        f"[{fmt_n(run.n)}] {m:,} updates on the tax table; streaming them from the slot …"
    )
    with psycopg.connect(psycopg_conninfo(run.src_url), autocommit=True) as conn:
        step = max(1, m // 20)
        keys = [
            k
            for (k,) in conn.execute(
                "SELECT ma_so_thue FROM public.nguoi_nop_thue ORDER BY ma_so_thue LIMIT %s",
                (m,),
            )
        ]
        for i in range(0, len(keys), step):
            conn.execute(
                "UPDATE public.nguoi_nop_thue SET updated_at = now() WHERE ma_so_thue = ANY(%s)",
                (keys[i : i + step],),
            )
    cap = run.worker("capture", name=TAX_SOURCE).result()
    busy = cap["busy_seconds"]
    stream_rate = cap["rows"] / busy if busy else None
    run.stream_rate = stream_rate
    run.bench.echo(f"[{fmt_n(run.n)}] raw kafka-python producer: {m:,} messages of {size} bytes …")
    prod = run.worker(
        "raw-produce", topic=f"{run.config.kafka.topic_prefix}.bench.raw", messages=m, size=size
    ).result()
    raw_rate = prod["messages"] / prod["seconds"] if prod["seconds"] else None
    tax = pipe["connectors"][TAX_SOURCE]
    debezium = finish_peer(
        run, peer, debezium, m, (cap["rows"], stream_rate, cap.get("cpu_s")),
        (tax["rows"], tax["rows_per_s"], tax.get("cpu_s")),
    )  # fmt: skip
    snaps = {
        name: round(c["rows_per_s"]) if c["rows_per_s"] else None
        for name, c in pipe["connectors"].items()
    }
    ratio = stream_rate / raw_rate if stream_rate and raw_rate else None
    snap_min = min((v for v in snaps.values() if v), default=None)
    return {
        "stream_rows": cap["rows"],
        "stream_rows_per_s": round(stream_rate) if stream_rate else None,
        "stream_peak_rss_mb": cap["peak_rss_mb"],
        "snapshot_rows_per_s": snaps,
        "raw_producer_messages": prod["messages"],
        "raw_producer_message_bytes": size,
        "raw_producer_per_s": round(raw_rate) if raw_rate else None,
        "ratio": round(ratio, 3) if ratio else None,
        "snapshot_ratio": {
            name: round(v / raw_rate, 3) if v and raw_rate else None for name, v in snaps.items()
        },
        "target": ">= 0.80 of raw; snapshot >= 20k rows/s",
        "met": ratio is not None and ratio >= 0.8 and snap_min is not None and snap_min >= 20_000,
        "debezium": debezium,
    }


# ------------------------------------------------------------------------------ figure 4


def _wait_for_slots(run: ScaleRun, caps: list[Worker]) -> None:
    """Wait until the live connectors' slots have caught up with the WAL: with
    ``--shared-server`` the hub's own writes since the capture phase are WAL the slots
    must decode past first, which is start-up, not latency."""
    import psycopg

    from hub.db import psycopg_conninfo

    time.sleep(2.0)
    deadline = time.monotonic() + 300
    with psycopg.connect(psycopg_conninfo(run.src_url), autocommit=True) as conn:
        while time.monotonic() < deadline:
            (behind,) = conn.execute(
                "SELECT coalesce(max(pg_wal_lsn_diff(pg_current_wal_lsn(),"
                " confirmed_flush_lsn)), 0) FROM pg_replication_slots"
                " WHERE database = current_database()"
            ).fetchone()
            if behind < 1024 * 1024 or any(w.proc.poll() is not None for w in caps):
                return
            time.sleep(0.5)


def latency_figure(run: ScaleRun, figures: dict) -> dict[str, Any]:
    import psycopg

    from hub.db import psycopg_conninfo

    sustained = [
        v
        for v in (
            run.stream_rate,
            # What the reconcilers of the figure reach together (one: its own rate).
            (figures.get("streaming_reconcile") or {}).get("hub_group_events_per_s"),
        )
        if v
    ]
    if run.bench.rate:
        rate, why = run.bench.rate, "set by --rate"
    elif sustained and LIVE_SHARE / sum(1 / v for v in sustained) < DEFAULT_RATE:
        # Live, the connector and the reconciler share the CPUs: their combined rate is
        # the harmonic sum of what each reached alone. A change that opens a mismatch
        # costs the reconciler several times a clean one, so only a share is offered.
        rate = max(100, int(LIVE_SHARE / sum(1 / v for v in sustained) // 100 * 100))
        why = f"highest this machine sustains ({LIVE_SHARE:.0%} of the combined capture + reconcile rate)"
    else:
        rate, why = DEFAULT_RATE, "default"
    n_rec = run.bench.reconcilers
    readies = [run.bench.data_dir / f"ready-{run.tag}-{i}" for i in range(n_rec)]
    since = run.bench.data_dir / f"since-{run.tag}"
    procs = f"{n_rec} reconcilers" if n_rec > 1 else "reconciler"
    run.bench.echo(f"[{fmt_n(run.n)}] latency: connectors + {procs} live, {rate:,} changes/s …")
    with psycopg.connect(psycopg_conninfo(run.src_url), autocommit=True) as conn:
        # Records that carry no mismatch: a name change gives each a new NAME_MISMATCH.
        has_sql = conn.execute(
            "SELECT to_regclass('public.bench_sql_mismatches') IS NOT NULL"
        ).fetchone()[0]
        query = "SELECT ma_so_thue FROM public.nguoi_nop_thue t WHERE ten_nnt IS NOT NULL"
        if has_sql:
            query += (
                " AND NOT EXISTS (SELECT 1 FROM bench_sql_mismatches b"
                " WHERE b.record_key = t.ma_so_thue)"
            )
        clean = [k for (k,) in conn.execute(query + " ORDER BY random() LIMIT 400000")]
    flagged = {k for k, _ in run.hub_open_mismatches()}
    clean = [k for k in clean if k not in flagged]
    duration = min(20.0 if run.n >= 1_000_000 else 10.0, 0.8 * len(clean) / rate)
    total = int(rate * duration)
    keys = clean[:total]
    group_id = live_group(run) if n_rec > 1 else None
    recs = [
        run.worker(
            "live-reconcile",
            ready=str(r),
            since_path=str(since),
            group=n_rec > 1,
            group_id=group_id,
        )
        for r in readies
    ]
    caps = [run.worker("live-capture", name=n) for n in ("registry", TAX_SOURCE)]
    deadline = time.monotonic() + 600
    # Each reconciler is ready once caught up on the partitions the group gave it.
    while not all(r.exists() for r in readies):
        failed = [w for w in recs if w.proc.poll() is not None]
        if failed or time.monotonic() > deadline:
            for w in (*recs, *caps):
                w.terminate()
            for w in failed or recs:
                w.result(30)  # raises with the worker's error, if it failed
            raise click.ClickException("the live reconciler did not catch up")
        time.sleep(0.2)
    _wait_for_slots(run, caps)
    tick = 0.02
    per_tick = max(1, round(rate * tick))
    since.write_text(str(time.time()))
    sent = 0
    t0 = time.monotonic()
    with psycopg.connect(psycopg_conninfo(run.src_url), autocommit=True) as conn:
        while sent < len(keys):
            chunk = keys[sent : sent + per_tick]
            conn.execute(
                "UPDATE public.nguoi_nop_thue SET ten_nnt = ten_nnt || ' Bench',"
                " updated_at = now() WHERE ma_so_thue = ANY(%s)",
                (chunk,),
            )
            sent += len(chunk)
            wait = t0 + (sent / per_tick) * tick - time.monotonic()
            if wait > 0:
                time.sleep(wait)
    offered_s = time.monotonic() - t0
    # Wait until every change is reconciled (a NAME_MISMATCH per changed record).
    with psycopg.connect(psycopg_conninfo(run.config.database.url), autocommit=True) as hub:
        deadline = time.monotonic() + 120
        seen = 0
        while time.monotonic() < deadline:
            seen = hub.execute(
                "SELECT count(*) FROM mismatches WHERE sector = %s AND rule = 'NAME_MISMATCH'"
                " AND record_key = ANY(%s)",
                (TAX_SOURCE, keys),
            ).fetchone()[0]
            if seen >= len(keys):
                break
            time.sleep(0.5)
    for w in (*recs, *caps):
        w.terminate()
    results = [w.result(120) for w in recs]
    for w in caps:
        w.result(120)
    lat = [x for r in results for x in r["latencies"]]
    to_kafka = [x for r in results for x in r["to_kafka"]]
    commit_offsets = [x for r in results for x in r["commit_offsets"]]
    achieved = sent / offered_s if offered_s else None
    p = {q: percentile(lat, q) for q in (50, 95, 99)}
    return {
        "offered_per_s": rate,
        "rate_choice": why,
        "achieved_per_s": round(achieved) if achieved else None,
        "changes": sent,
        "duration_s": round(offered_s, 1),
        "mismatches_stored": seen,
        "samples": len(lat),
        "p50_ms": round(p[50] * 1000, 1) if p[50] is not None else None,
        "p95_ms": round(p[95] * 1000, 1) if p[95] is not None else None,
        "p99_ms": round(p[99] * 1000, 1) if p[99] is not None else None,
        "max_ms": round(max(lat) * 1000, 1) if lat else None,
        "capture_part_ms": {
            f"p{q}": round(v * 1000, 1)
            for q in (50, 95, 99)
            if (v := percentile(to_kafka, q)) is not None
        },
        "slow_seconds": slow_seconds(commit_offsets, lat, to_kafka),
        "reconciler_processes": n_rec,
        "samples_per_reconciler": [len(r["latencies"]) for r in results],
        # What the live reconcilers consumed: they resume where figure 1 stopped.
        "messages_per_reconciler": [r["messages"] for r in results],
        "baseline": "the offered load (commit time of each source change)",
        "target": "p99 <= 500 ms",
        "met": p[99] is not None and p[99] <= 0.5 and seen >= len(keys),
    }


# ------------------------------------------------------------------------------ figure 5


def scaling_figure(smalls: list[tuple[ScaleRun, dict]], big: ScaleRun, pb: dict) -> dict[str, Any]:
    def point(run: ScaleRun, p: dict) -> dict[str, Any]:
        return {
            "records": run.records["registry"] + run.records["tax"],
            "scale": run.n,
            "seconds": round(p["hub_s"], 2),
            "capture_s": round(p["capture_s"], 2),
            "reconcile_s": round(p["reconcile_s"], 2),
            "peak_rss_mb": {
                "connector_registry": p["connectors"]["registry"]["peak_rss_mb"],
                "connector_tax": p["connectors"][TAX_SOURCE]["peak_rss_mb"],
                "reconciler": p["reconciler"]["peak_rss_mb"],
            },
            "max_rss_mb": p["peak_rss_mb"],
            "phases": p["phases"],
        }

    tries = [point(run, p) for run, p in smalls]
    a, b = min(tries, key=lambda t: t["seconds"]), point(big, pb)
    data_ratio = b["records"] / a["records"]
    time_ratio = b["seconds"] / a["seconds"] if a["seconds"] else None
    rss_ratio = b["max_rss_mb"] / a["max_rss_mb"] if a["max_rss_mb"] else None
    return {
        "runs": [a, b],
        "small_runs_s": [t["seconds"] for t in tries],
        "data_ratio": round(data_ratio, 2),
        "time_ratio": round(time_ratio, 2) if time_ratio else None,
        "rss_ratio": round(rss_ratio, 2) if rss_ratio else None,
        "target": "time ratio <= 1.1x data ratio; memory flat",
        "met": time_ratio is not None
        and time_ratio <= 1.1 * data_ratio
        and rss_ratio is not None
        and rss_ratio <= 1.5,
    }


# ------------------------------------------------------------------------------ the table


def _num(v: Any, unit: str = "") -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.2f}{unit}"
    if isinstance(v, int):
        return f"{v:,}{unit}"
    return f"{v}{unit}"


def table_rows(figures: dict[str, Any]) -> list[tuple[str, str, str, str, str, str]]:
    """(figure, hub, baseline, ratio, target, met) lines."""
    rows = []
    f = figures.get("full_reconciliation")
    if f:
        rows.append(("1 full reconciliation", _num(f["hub_s"], " s"), _num(f["sql_s"], " s (SQL)"),
                     _num(f["ratio"], "x"), f["target"], "yes" if f["met"] else "NO"))  # fmt: skip
        bad = {r: a for r, a in f["agreement"].items() if a["only_hub"] or a["only_sql"]}
        rows.append(("  agreement per rule", "all agree" if not bad else f"{len(bad)} rules differ",
                     "", "", "hub = SQL", "yes" if not bad else "NO"))  # fmt: skip
    s = figures.get("streaming_reconcile")
    if s:
        n_rec = s.get("reconciler_processes", 1)
        per = (
            f" ev/s per process ({_num(s['hub_group_events_per_s'])} for {n_rec})"
            if n_rec > 1
            else " ev/s"
        )
        rows.append(("2 streaming reconcile", _num(s["hub_events_per_s"], per),
                     _num(s["raw_events_per_s"], " ev/s (raw poll)"), _num(s["ratio"]),
                     s["target"], "yes" if s["met"] else "NO"))  # fmt: skip
    c = figures.get("capture")
    if c:
        rows.append(("3 capture (slot stream)", _num(c["stream_rows_per_s"], " rows/s"),
                     _num(c["raw_producer_per_s"], " msg/s (raw producer)"), _num(c["ratio"]),
                     ">= 0.80", "yes" if (c["ratio"] or 0) >= 0.8 else "NO"))  # fmt: skip
        for name, v in c["snapshot_rows_per_s"].items():
            rows.append((f"  snapshot {name}", _num(v, " rows/s"),
                         _num(c["raw_producer_per_s"], " msg/s (raw producer)"),
                         _num(c["snapshot_ratio"][name]), ">= 20k rows/s",
                         "yes" if (v or 0) >= 20_000 else "NO"))  # fmt: skip
        rows.extend(debezium_rows(c.get("debezium")))
    lat = figures.get("latency")
    if lat:
        rows.append(("4 latency p50/p95/p99",
                     f"{_num(lat['p50_ms'])}/{_num(lat['p95_ms'])}/{_num(lat['p99_ms'])} ms",
                     f"{_num(lat['offered_per_s'])} offered, {_num(lat['achieved_per_s'])} achieved/s",
                     _num(lat["p99_ms"] / 500 if lat["p99_ms"] else None, "x target"),
                     lat["target"], "yes" if lat["met"] else "NO"))  # fmt: skip
    sc = figures.get("scaling")
    if sc:
        a, b = sc["runs"]
        rows.append(("5 scaling time", _num(b["seconds"], f" s @{fmt_n(b['scale'])}"),
                     _num(a["seconds"], f" s @{fmt_n(a['scale'])}")
                     + (f" (fastest of {len(sc['small_runs_s'])})" if len(sc.get("small_runs_s", [])) > 1 else ""),
                     f"{_num(sc['time_ratio'])} for {_num(sc['data_ratio'])}x data",
                     "<= 1.1x data", "yes" if sc["time_ratio"] and sc["time_ratio"] <= 1.1 * sc["data_ratio"] else "NO"))  # fmt: skip
        rows.append(("  scaling peak RSS", _num(b["max_rss_mb"], " MB"), _num(a["max_rss_mb"], " MB"),
                     _num(sc["rss_ratio"]), "flat (<= 1.5x)",
                     "yes" if sc["rss_ratio"] and sc["rss_ratio"] <= 1.5 else "NO"))  # fmt: skip
    return rows


def debezium_rows(d: dict[str, Any] | None) -> list[tuple[str, str, str, str, str, str]]:
    """Figure 3's Debezium lines: hub vs Debezium rows/s and CPU s, stream and snapshot."""
    if not d:
        return []
    if "absent" in d:
        return [("  vs Debezium", "-", f"absent: {d['absent']}", "-", "reported", "-")]
    rows = []
    for label, key in (("  stream vs Debezium", "stream_vs_hub"),
                       ("  snapshot vs Debezium", "snapshot_vs_hub")):  # fmt: skip
        c = d[key]
        rows.append((label, f"{_num(c['hub_rows_per_s'], ' rows/s')}, {_num(c['hub_cpu_s'], ' CPU s')}",
                     f"{_num(c['debezium_rows_per_s'], ' rows/s')}, {_num(c['debezium_cpu_s'], ' CPU s')}"
                     f" (Debezium {d['version']})",
                     f"{_num(c['ratio'], 'x')}; {_num(c['ratio_per_core'], 'x')} per core",
                     "reported", "-"))  # fmt: skip
    return rows


def print_table(result: dict[str, Any], echo=click.echo) -> None:
    rows = [("figure", "hub", "baseline", "ratio", "target", "met"), *table_rows(result["figures"])]
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    for i, r in enumerate(rows):
        echo("  ".join(cell.ljust(widths[j]) for j, cell in enumerate(r)).rstrip())
        if i == 0:
            echo("  ".join("-" * w for w in widths))
    f = result["figures"].get("full_reconciliation")
    if f:
        echo("rule agreement (hub vs SQL; only_hub / only_sql should be 0):")
        for rule, a in f["agreement"].items():
            echo(f"  {rule:<28} hub {a['hub']:>8,}  sql {a['sql']:>8,}  "
                 f"only_hub {a['only_hub']:>6,}  only_sql {a['only_sql']:>6,}")  # fmt: skip
    m = result["machine"]
    echo(f"machine: {m['nproc']} CPUs, {m['memory_gb']} GB, Python {m['python']}, "
         f"load average {m['load_average']} → {m.get('load_average_end')}; "
         f"total {result.get('total_s')} s")  # fmt: skip

"""``hub bench-candidates``: how well and how fast registry candidates are found.

A registry replica of N generated citizens (the demo generator's Vietnamese population) is
loaded into the hub's own table in PostgreSQL. Held-out probes are made from registry
citizens with the ID wrong (every probe: half without an ID, half with a well-formed ID the
registry lacks, which still encodes the birth year and sex) plus one more error per category.
For each category the figure is top-1 and top-3 accuracy: the share of probes whose citizen is
the first suggestion, or among the three. Both strategies run on the same probes: ``before``
is the earlier search (exact birth date, then folded-name similarity), ``after`` the
blocking keys and score of ``reconciliation.suggestions``. Cost: suggestions per second for
batches of mixed probes, and p95 of one probe on its own.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import click
import psycopg
from rapidfuzz import fuzz, process

from hub.bench.figures import percentile
from hub.bench.probes import machine_info
from hub.bench.scale import fmt_n, parse_scale, part_count
from hub.demo.population import SEX_VN
from hub.demo.vietnam import typo
from reconciliation.names import fold
from reconciliation.suggestions import (
    MAX_SUGGESTIONS,
    PER_DATE,
    Citizen,
    Probe,
    RegistryIndex,
    find_candidates,
)

CATEGORIES = (
    "id_only",
    "name_typo",
    "day_month_swapped",
    "year_off_by_one",
    "dob_missing",
    "word_order",
)


def load_registry(conninfo: str, n: int, seed: int, echo: Callable = click.echo) -> None:
    """Fill ``registry_citizens`` with ``n`` generated citizens (in parts of 500k), then
    VACUUM ANALYZE so the candidate look-ups are index-only scans."""
    from hub.demo.generator import build, part_sizes

    parts = part_count(n)
    sizes = part_sizes(n, parts) if parts > 1 else [n]
    loaded = 0
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("TRUNCATE registry_citizens")
        for i, size in enumerate(sizes):
            population = (
                build(n, seed, sectors=(), part=(i, parts))
                if parts > 1
                else build(size, seed, sectors=())
            )
            with conn.cursor().copy(
                "COPY registry_citizens (citizen_id, full_name, name_folded, date_of_birth, sex,"
                " province_code) FROM STDIN"
            ) as copy:
                for row in population.rows["registry"]:
                    copy.write_row(
                        (row[0], row[2], fold(row[2]), row[3], SEX_VN.get(row[4]), row[5])
                    )
            loaded += len(population.rows["registry"])
            echo(f"  registry replica: {fmt_n(loaded)} citizens loaded")
        conn.execute("VACUUM ANALYZE registry_citizens")


def sample_citizens(conninfo: str, k: int, seed: int) -> list[Citizen]:
    """``k`` registry citizens chosen at random (reproducibly), whole rows."""
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute(
            "SELECT citizen_id, full_name, name_folded, date_of_birth, sex, province_code"
            " FROM registry_citizens TABLESAMPLE BERNOULLI (%s) REPEATABLE (%s)"
            " WHERE date_of_birth IS NOT NULL AND name_folded <> '' LIMIT %s",
            (min(100.0, 100.0 * 4 * k / _count(conn)), seed, 4 * k),
        ).fetchall()
    rng = random.Random(seed)
    rng.shuffle(rows)
    return [Citizen(*r) for r in rows]


def _count(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT reltuples::bigint FROM pg_class WHERE relname = 'registry_citizens'"
                        ).fetchone()[0] or 1  # fmt: skip


def make_probe(c: Citizen, category: str, i: int, rng: random.Random) -> Probe | None:
    """The sector record a citizen becomes with the ID wrong and one error of ``category``;
    ``None`` when the category cannot apply (no day/month swap for the 13th or later)."""
    words = (c.name_folded or "").split()
    dob: date | None = c.date_of_birth
    if category == "name_typo":
        w = rng.randrange(len(words))
        original = words[w]
        while words[w] == original:
            words[w] = typo(original, rng)
    elif category == "day_month_swapped":
        if dob is None or dob.day > 12 or dob.day == dob.month:
            return None
        dob = date(dob.year, dob.day, dob.month)
    elif category == "year_off_by_one":
        if dob is None or (dob.month, dob.day) == (2, 29):
            return None
        dob = dob.replace(year=dob.year + rng.choice((-1, 1)))
    elif category == "dob_missing":
        dob = None
    elif category == "word_order":
        if len(words) < 2:
            return None
        words = [*words[1:], words[0]]  # given-name-first, as some forms ask
    encoded = i % 2 == 1  # a well-formed but unknown ID still encodes the year and sex
    year = c.date_of_birth.year if c.date_of_birth else None
    return Probe(
        " ".join(words), dob, c.sex, c.province_code,
        id_birth_year=year if encoded else None, id_sex=c.sex if encoded else None,
    )  # fmt: skip


def before(index: RegistryIndex, probes: Sequence[Probe]) -> list[list[str]]:
    """The earlier search, as it was: citizens born the same day, best folded-name
    token-sort similarity (cutoff 60), three at most; no birth date, no candidates."""
    born = index.by_birth_date(sorted({p.date_of_birth for p in probes if p.date_of_birth}))
    out = []
    for p in probes:
        if p.date_of_birth is None or not p.name_folded:
            out.append([])
            continue
        found = process.extract(p.name_folded, born.get(p.date_of_birth, {}),
                                scorer=fuzz.token_sort_ratio, limit=MAX_SUGGESTIONS,
                                score_cutoff=60.0)  # fmt: skip
        out.append([cid for _f, _s, cid in sorted(found, key=lambda f: (-f[1], f[2]))])
    return out


def after(index: RegistryIndex, probes: Sequence[Probe]) -> list[list[str]]:
    return [[s.citizen_id for s in found] for found in find_candidates(index, probes)]


def quality(conninfo: str, per_category: int, seed: int) -> dict[str, dict[str, Any]]:
    """Top-1 and top-3 accuracy per category, for both strategies, on the same probes."""
    from reconciliation.store.registry import PgRegistryIndex

    people = sample_citizens(conninfo, per_category * 2, seed)
    rng = random.Random(seed)
    table: dict[str, dict[str, Any]] = {}
    with psycopg.connect(conninfo) as conn:
        index = PgRegistryIndex(conn)
        for category in CATEGORIES:
            pairs = []
            for c in people:
                probe = make_probe(c, category, len(pairs), rng)
                if probe is not None:
                    pairs.append((c.citizen_id, probe))
                if len(pairs) == per_category:
                    break
            truth = [cid for cid, _ in pairs]
            probes = [p for _, p in pairs]
            row: dict[str, Any] = {"probes": len(probes)}
            for name, strategy in (("before", before), ("after", after)):
                found = strategy(index, probes)
                row[name] = {
                    "top1": _share(truth, found, 1),
                    "top3": _share(truth, found, 3),
                }
            if category == "dob_missing":
                row["ceiling_top1"] = _ceiling(conn, probes)
            table[category] = row
    return table


def _ceiling(conn: psycopg.Connection, probes: Sequence[Probe]) -> float:
    """The best expected top-1 any search can reach on these probes: each counts 1/k, where
    k registry citizens agree with everything the probe carries (sorted name, province, sex,
    and the birth year its ID encodes) — namesakes it cannot tell apart."""
    total = 0.0
    for p in probes:
        (k,) = conn.execute(
            "SELECT count(*) FROM registry_citizens WHERE hub_name_sorted(name_folded) ="
            " hub_name_sorted(%s) AND province_code = %s AND sex IS NOT DISTINCT FROM %s"
            " AND (%s::int IS NULL OR extract(year FROM date_of_birth) = %s::int)",
            (p.name_folded, p.province_code, p.sex, p.id_birth_year, p.id_birth_year),
        ).fetchone()
        total += 1 / max(1, k)
    return round(total / len(probes), 4) if probes else 0.0


def _share(truth: list[str], found: list[list[str]], k: int) -> float:
    hits = sum(1 for cid, got in zip(truth, found, strict=True) if cid in got[:k])
    return round(hits / len(truth), 4) if truth else 0.0


def cost(conninfo: str, probes_n: int, seed: int, batch: int = 1000) -> dict[str, Any]:
    """Suggestions per second over batches of mixed probes, and one probe's p95 (ms)."""
    from reconciliation.store.registry import PgRegistryIndex

    people = sample_citizens(conninfo, probes_n, seed + 1)
    rng = random.Random(seed + 1)
    probes = [
        p
        for i, c in enumerate(people[:probes_n])
        if (p := make_probe(c, CATEGORIES[i % len(CATEGORIES)], i, rng)) is not None
    ]
    with psycopg.connect(conninfo) as conn:
        index = PgRegistryIndex(conn)
        find_candidates(index, probes[:50])  # warm the caches and the plan
        started = time.perf_counter()
        for lo in range(0, len(probes), batch):
            find_candidates(index, probes[lo : lo + batch])
        batched_s = time.perf_counter() - started
        single: list[float] = []
        for p in probes[:300]:
            t0 = time.perf_counter()
            find_candidates(index, [p])
            single.append((time.perf_counter() - t0) * 1000)
    return {
        "probes": len(probes),
        "batch": batch,
        "suggestions_per_s": round(len(probes) / batched_s, 1) if batched_s else None,
        "ms_per_mismatch_batched": round(batched_s * 1000 / len(probes), 3),
        "single_p50_ms": round(percentile(single, 50) or 0, 2),
        "single_p95_ms": round(percentile(single, 95) or 0, 2),
        "per_date_cap": PER_DATE,
    }


def print_result(result: dict[str, Any], echo: Callable = click.echo) -> None:
    echo(f"registry replica: {fmt_n(result['registry'])} citizens")
    echo(f"{'category':<20}{'probes':>7}  {'top-1 before':>12}{'top-1 after':>12}"
         f"{'top-3 before':>13}{'top-3 after':>12}")  # fmt: skip
    for category, row in result["quality"].items():
        b, a = row["before"], row["after"]
        ceiling = (
            f"   (ceiling top-1 {row['ceiling_top1']:.3f}: namesakes)"
            if "ceiling_top1" in row
            else ""
        )
        echo(f"{category:<20}{row['probes']:>7}  {b['top1']:>12.3f}{a['top1']:>12.3f}"
             f"{b['top3']:>13.3f}{a['top3']:>12.3f}{ceiling}")  # fmt: skip
    c = result["cost"]
    echo(f"cost: {c['suggestions_per_s']:,} suggestions/s in batches of {c['batch']} "
         f"({c['ms_per_mismatch_batched']} ms each); one probe alone p50 {c['single_p50_ms']} ms,"
         f" p95 {c['single_p95_ms']} ms")  # fmt: skip


@click.command("bench-candidates")
@click.option("--registry", "scale", default="100k", show_default=True, metavar="100k|1m|10m",
              help="Citizens in the registry replica.")  # fmt: skip
@click.option("--probes", type=click.IntRange(10, 100_000), default=500, show_default=True,
              help="Probes per category (quality) and in all (cost).")  # fmt: skip
@click.option("--seed", default=6, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path, resolve_path=True),
              default=Path("bench-candidates.json"), show_default=True)  # fmt: skip
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path, resolve_path=True),
              default=None, help="Embedded PostgreSQL's data (default: a temporary directory).")  # fmt: skip
def bench_candidates(scale: str, probes: int, seed: int, out: Path, data_dir: Path | None) -> None:
    """Registry candidates: top-1/top-3 per error category (before and after), and cost."""
    from hub.db.migrate import upgrade
    from hub.embedded import EmbeddedPostgres, install_signal_handlers

    n = parse_scale(scale)
    install_signal_handlers()
    temp = data_dir is None
    data_dir = Path(tempfile.mkdtemp(prefix="hub-candidates-")) if temp else data_dir
    pg = EmbeddedPostgres(data_dir / "postgres", durable=False).start()
    try:
        url = pg.create_database("candidates")
        upgrade(url)
        conninfo = pg.conninfo("candidates")
        started = time.monotonic()
        load_registry(conninfo, n, seed)
        load_s = time.monotonic() - started
        result = {
            "registry": n,
            "seed": seed,
            "load_s": round(load_s, 1),
            "machine": machine_info(),
            "quality": quality(conninfo, probes, seed),
            "cost": cost(conninfo, probes, seed),
        }
    finally:
        pg.stop()
        if temp:
            shutil.rmtree(data_dir, ignore_errors=True)
    print_result(result)
    out.write_text(json.dumps(result, indent=2))
    click.echo(f"results written to {out}")

"""The bench's scales: ``100k``/``1m``/``10m`` read and written, and split into generated parts."""

from __future__ import annotations

import click

SCALES = {"100k": 100_000, "1m": 1_000_000, "10m": 10_000_000}


def parse_scale(text: str) -> int:
    """``100k``, ``1m``, ``10m`` (and any ``<n>k`` / ``<n>m`` / plain number)."""
    t = text.strip().lower().replace("_", "")
    mult = 1
    if t.endswith("k"):
        t, mult = t[:-1], 1000
    elif t.endswith("m"):
        t, mult = t[:-1], 1_000_000
    try:
        n = int(float(t) * mult)
    except ValueError:
        raise click.BadParameter(f"{text!r}: use 100k, 1m or 10m") from None
    if n < 1000:
        raise click.BadParameter("the scale must be at least 1k records")
    return n


def fmt_n(n: int) -> str:
    if n >= 1_000_000 and n % 100_000 == 0:
        return f"{n / 1_000_000:g}m"
    if n >= 1000 and n % 100 == 0:
        return f"{n / 1000:g}k"
    return str(n)


PART_CITIZENS = 500_000
"""Citizens per generated part. Parts are built and loaded by worker processes, two at a
time, each exiting after its part: generation memory stays bounded at any scale (building
10M citizens at once would take ~18 GB)."""


def part_count(n: int, per_part: int = PART_CITIZENS) -> int:
    return max(1, -(-n // per_part))

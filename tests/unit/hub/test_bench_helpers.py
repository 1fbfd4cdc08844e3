"""The bench's pure helpers: scales, parts, percentiles and the slow-seconds timeline."""

from __future__ import annotations

import click
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.bench import PART_CITIZENS, parse_scale, part_count, percentile, slow_seconds
from hub.demo.generator import part_sizes


@pytest.mark.parametrize(
    ("text", "n"), [("100k", 100_000), ("1m", 1_000_000), ("10M", 10_000_000), ("2.5k", 2500)]
)
def test_scales(text: str, n: int) -> None:
    assert parse_scale(text) == n


@pytest.mark.parametrize("text", ["lots", "500", "0.1k"])
def test_scales_that_cannot_be_run_are_refused(text: str) -> None:
    with pytest.raises(click.BadParameter):
        parse_scale(text)


@given(n=st.integers(1, 30_000_000), per_part=st.integers(1000, 2_000_000))
def test_parts_cover_the_population_and_none_is_larger_than_asked(n: int, per_part: int) -> None:
    parts = part_count(n, per_part)
    sizes = part_sizes(n, parts)
    assert sum(sizes) == n
    assert max(sizes) <= per_part
    assert max(sizes) - min(sizes) <= 1


def test_10m_is_built_in_20_parts() -> None:
    assert part_count(10_000_000) == 20
    assert part_count(100_000) == 1
    assert PART_CITIZENS == 500_000


def test_percentile_picks_the_nearest_rank() -> None:
    values = [float(i) for i in range(1, 101)]
    assert percentile(values, 50) == 51.0
    assert percentile(values, 99) == 99.0
    assert percentile([], 99) is None


def test_slow_seconds_groups_the_changes_over_the_limit_by_their_commit_second() -> None:
    offsets = [0.1, 0.5, 1.2, 3.9, 3.95, 4.0]
    stored = [0.2, 0.7, 0.3, 1.4, 0.9, 0.51]
    to_kafka = [0.05, 0.6, 0.1, 1.1, 0.2, 0.1]
    assert slow_seconds(offsets, stored, to_kafka) == [
        {"at_s": 0, "over": 1, "max_ms": 700, "capture_max_ms": 600},
        {"at_s": 3, "over": 2, "max_ms": 1400, "capture_max_ms": 1100},
        {"at_s": 4, "over": 1, "max_ms": 510, "capture_max_ms": 100},
    ]
    assert slow_seconds(offsets, [0.1] * 6, [0.1] * 6) == []

"""`hub demo --once` from the command line: its printed table equals the generator's manifest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter


def parse_table(stdout: str) -> tuple[list[str], dict[tuple[str, str], int]]:
    lines = stdout.splitlines()
    start = lines.index("open mismatches by sector and rule:")
    sectors = lines[start + 1].split()[1:]
    cells: dict[tuple[str, str], int] = {}
    for line in lines[start + 2 :]:
        parts = line.split()
        if not parts or parts[0] == "total":
            break
        for sector, value in zip(sectors, parts[1:], strict=True):
            cells[(sector, parts[0])] = int(value)
    return sectors, cells


def test_demo_once_prints_exactly_the_injected_mismatches(scratch_dir):
    data_dir = scratch_dir / "demo"
    env = {
        k: v for k, v in os.environ.items() if k not in ("HUB_DATABASE_URL", "HUB_KAFKA_BOOTSTRAP")
    }
    res = subprocess.run(
        [sys.executable, "-m", "hub", "demo", "--once", "--citizens", "20000",
         "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Traceback" not in res.stderr
    manifest = json.loads((data_dir / "manifest.json").read_text())
    expected = Counter((m["sector"], m["rule"]) for m in manifest["mismatches"])

    sectors, printed = parse_table(res.stdout)
    assert sorted(sectors) == ["banking", "construction", "labour", "tax"]
    assert {k: v for k, v in printed.items() if v} == dict(expected)
    assert "against the manifest: precision 1.0000, recall 1.0000" in res.stdout
    for sector in sectors:
        assert f"  {sector}" in res.stdout.split("verified share:")[1]

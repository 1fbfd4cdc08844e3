"""`hub demo --once` from the command line: its printed table equals the generator's manifest."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from tests.integration.hub.procs import run_demo

pytestmark = pytest.mark.heavy(65)


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
    res = run_demo("--citizens", "20000", "--data-dir", str(data_dir))
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


def test_demo_once_scheme_eg_finds_exactly_the_injected_mismatches_and_no_noise(scratch_dir):
    """The Egyptian population through the whole pipeline (Arabic registry columns through
    pgoutput, transliterated sector columns, Arabic-Indic IDs): every injected mismatch and
    nothing else, per rule — the spelling variants and digit forms are not counted."""
    import yaml

    data_dir = scratch_dir / "demo-eg"
    res = run_demo("--scheme", "eg", "--citizens", "3000", "--data-dir", str(data_dir))
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Traceback" not in res.stderr and "Traceback" not in res.stdout
    config = yaml.safe_load((data_dir / "hub.yaml").read_text())
    assert config["id_scheme"] == "eg"
    assert config["registry"]["columns"]["citizen_id"] == "الرقم_القومي"
    assert config["sectors"]["tax"]["columns"]["citizen_id"] == "ragam_qawmi"
    manifest = json.loads((data_dir / "manifest.json").read_text())
    assert manifest["id_scheme"] == "eg"
    expected = Counter((m["sector"], m["rule"]) for m in manifest["mismatches"])
    assert "ID_LEGACY" not in {rule for _, rule in expected}  # eg has no legacy IDs

    sectors, printed = parse_table(res.stdout)
    assert sorted(sectors) == ["banking", "construction", "labour", "tax"]
    assert {k: v for k, v in printed.items() if v} == dict(expected)
    assert "against the manifest: precision 1.0000, recall 1.0000" in res.stdout
    lines = res.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("by rule"))
    per_rule = {}
    for line in lines[start + 1 :]:
        parts = line.split()
        if len(parts) != 3 or parts[0] not in {r for _, r in expected}:
            break
        per_rule[parts[0]] = (parts[1], parts[2])
    assert per_rule == {rule: ("1.0000", "1.0000") for _, rule in expected}
    # The noise was there to be miscounted, and was not.
    noise = manifest["noise"]
    assert sum(noise["names"].values()) > 100 and noise["ids"]["arabic_indic_digits"] > 10
    assert "noise injected, not mismatches" in res.stdout

"""`hub demo --once` from a fresh working directory: the default and a relative --data-dir."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.heavy(60)


@pytest.mark.parametrize(
    ("args", "data_dir"),
    [([], "hub-data"), (["--data-dir", "rel/demo data"], "rel/demo data")],
    ids=["default-data-dir", "relative-data-dir"],
)
def test_demo_once_runs_from_a_fresh_directory_with_a_relative_data_dir(
    scratch_dir, args, data_dir
):
    cwd = scratch_dir / f"fresh-{len(args)}"
    cwd.mkdir()
    env = {
        k: v for k, v in os.environ.items() if k not in ("HUB_DATABASE_URL", "HUB_KAFKA_BOOTSTRAP")
    }
    res = subprocess.run(
        [sys.executable, "-m", "hub", "demo", "--once", "--citizens", "500", *args],
        cwd=cwd, capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Traceback" not in res.stderr
    assert "precision 1.0000, recall 1.0000" in res.stdout
    assert (cwd / data_dir / "postgres" / "PG_VERSION").exists()
    assert (cwd / data_dir / "manifest.json").exists()

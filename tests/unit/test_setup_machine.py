"""`make test`'s machine set-up: without root it names what to install and what it skips."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests import setup_machine

ROOT = Path(__file__).resolve().parents[2]


def _not_root_without(monkeypatch, *commands: str) -> None:
    real_which = setup_machine.shutil.which
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(
        setup_machine.shutil, "which", lambda cmd: None if cmd in commands else real_which(cmd)
    )


def test_without_root_one_line_names_the_packages_and_the_skipped_tests(monkeypatch, capsys):
    _not_root_without(monkeypatch, "promtool", "chromium")
    assert setup_machine.main() == 0
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert "apt-get install chromium prometheus" in lines[0]
    assert "steward UI tests" in lines[0] and "alert-rule" in lines[0]


def test_nothing_missing_prints_nothing(monkeypatch, capsys):
    monkeypatch.setattr(setup_machine.shutil, "which", lambda cmd: f"/usr/bin/{cmd}")
    monkeypatch.setattr(setup_machine, "_venv_missing", lambda: False)
    assert setup_machine.main() == 0
    assert capsys.readouterr() == ("", "")


def test_a_test_that_requires_a_missing_tool_is_skipped_naming_the_package(tmp_path):
    test_file = tmp_path / "test_needs_promtool.py"
    test_file.write_text(
        textwrap.dedent(
            """
            import pytest

            @pytest.mark.requires("promtool")
            def test_lint():
                raise AssertionError("must not run without promtool")

            def test_other():
                pass
            """
        )
    )
    # A PATH without promtool: only the interpreter's own directory.
    env = dict(os.environ, PATH=str(Path(sys.executable).parent))
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
         "-p", "tests.conftest", "--rootdir", str(tmp_path), str(test_file)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env=env | {"PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert "1 passed, 1 skipped" in res.stdout, res.stdout + res.stderr
    assert "needs promtool: apt-get install prometheus" in res.stdout


def test_promtool_and_the_prometheus_server_come_from_one_package(monkeypatch, capsys):
    _not_root_without(monkeypatch, "promtool", "prometheus")
    assert setup_machine.main() == 0
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "apt-get install prometheus —" in line and line.count("prometheus —") == 1
    assert "need promtool" in line and "need prometheus" in line


def test_mariadb_server_is_named_with_the_tests_it_skips(monkeypatch, capsys):
    _not_root_without(monkeypatch, "mariadbd")
    assert setup_machine.main() == 0
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "apt-get install mariadb-server" in line
    assert "real MariaDB (need mariadbd)" in line

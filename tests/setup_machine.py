"""Installs the machine-level tools the suite uses; `make test` and `.ci/run` both run it.

Run with the system ``python3`` before any virtualenv exists (standard library only). As root
it installs what is missing from Debian's packages; otherwise it prints one line saying what
to install and which tests will be skipped, and exits 0 so the rest of the suite still runs.
``tests/conftest.py`` reads ``TOOLS`` to skip exactly the tests whose tool is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Tool:
    command: str
    package: str
    used_by: str
    """The tests that need it, as the skip line names them (pytest marker ``requires(command)``)."""


TOOLS = (
    Tool("chromium", "chromium", "the steward UI tests in headless Chromium"),
    Tool("promtool", "prometheus", "the alert-rule, Prometheus-config and metrics-format checks"),
)
"""Tools a test marks with ``@pytest.mark.requires("<command>")``."""

BUILD = (Tool("make", "make", "the README's commands"),)
"""Tools the README's commands themselves need (no test is skipped for them)."""


def missing_tools() -> list[Tool]:
    """The tools of ``TOOLS`` and ``BUILD`` that are not on PATH."""
    return [t for t in (*BUILD, *TOOLS) if shutil.which(t.command) is None]


def _venv_missing() -> bool:
    probe = subprocess.run(
        [sys.executable, "-c", "import venv, ensurepip"], capture_output=True, check=False
    )
    return probe.returncode != 0


def _apt_install(packages: list[str]) -> None:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    # Packages such as prometheus start their service on install; the tests need only the
    # binaries, so a policy-rc.d that refuses every start keeps the machine quiet.
    policy = "/usr/sbin/policy-rc.d"
    had_policy = os.path.exists(policy)
    if not had_policy:
        with open(policy, "w") as f:
            f.write("#!/bin/sh\nexit 101\n")
        os.chmod(policy, 0o755)
    try:
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
            check=True,
            env=env,
        )
    finally:
        if not had_policy:
            os.remove(policy)
    # Where a service manager started one anyway, stop it: nothing may listen but the tests.
    if "prometheus" in packages:
        subprocess.run(["pkill", "-x", "prometheus"], check=False, capture_output=True)


def main() -> int:
    missing = missing_tools()
    packages = [t.package for t in missing]
    if _venv_missing():
        packages.append("python3-venv")
    if not packages:
        return 0
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print(f"setup: installing Debian packages {' '.join(packages)}", flush=True)
        _apt_install(packages)
        still = [t.command for t in missing_tools()]
        if still:
            print(f"setup: still missing after install: {', '.join(still)}", file=sys.stderr)
            return 1
        return 0
    skipped = "; ".join(f"{t.used_by} (need {t.command})" for t in missing if t in TOOLS)
    print(
        f"setup: not root, so not installing: apt-get install {' '.join(packages)}"
        + (f" — skipping {skipped}" if skipped else ""),
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

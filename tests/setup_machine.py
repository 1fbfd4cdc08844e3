"""Installs the machine-level tools the suite uses; `make test` and `.ci/run` both run it.

Run with the system ``python3`` before any virtualenv exists (standard library only). As root
it installs what is missing from Debian's packages; otherwise it prints one line saying what
to install and which tests will be skipped, and exits 0 so the rest of the suite still runs.
``tests/conftest.py`` reads ``TOOLS`` to skip exactly the tests whose tool is missing.

It also resolves the Apache Kafka broker the integration suite runs on (:func:`setup_kafka`):
with ``java`` and ``mvn`` it copies the jars of ``deploy/kafka/pom.xml`` into a cache folder
outside the repository, once per version of the pom; without them it says so, and the suite
falls back to the tansu broker. In the same way it resolves ``deploy/debezium/pom.xml`` (Kafka
Connect and Debezium, :func:`setup_debezium`), which the Debezium tests and the bench's
Debezium baseline run.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KAFKA_POM = ROOT / "deploy" / "kafka" / "pom.xml"
KAFKA_STAMP = ".resolved"  # hub.embedded.KAFKA_STAMP
KAFKA_PACKAGES = {"java": "default-jre-headless", "mvn": "maven"}
DEBEZIUM_POM = ROOT / "deploy" / "debezium" / "pom.xml"
"""Kafka Connect (the broker's version) and Debezium's connectors: hub.embedded.connect."""


@dataclass(frozen=True)
class Tool:
    command: str
    package: str
    used_by: str
    """The tests that need it, as the skip line names them (pytest marker ``requires(command)``)."""


TOOLS = (
    Tool("chromium", "chromium", "the steward UI tests in headless Chromium"),
    Tool("promtool", "prometheus", "the alert-rule, Prometheus-config and metrics-format checks"),
    Tool("prometheus", "prometheus", "the Prometheus server scraping the hub processes"),
    Tool("mariadbd", "mariadb-server", "the poll/snapshot tests on a real MariaDB"),
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


def kafka_version(pom: Path = KAFKA_POM) -> str:
    """The Kafka version the pom names (its ``kafka.version`` property)."""
    found = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", pom.read_text())
    if not found:
        raise SystemExit(f"setup: {pom} has no <kafka.version> property")
    return found.group(1).strip()


def kafka_libs_dir(version: str) -> Path:
    """``$HUB_KAFKA_LIBS``, else ``~/.cache/registry-hub/kafka-<version>`` (as hub.embedded)."""
    env = os.environ.get("HUB_KAFKA_LIBS")
    if env:
        return Path(env).absolute()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "registry-hub" / f"kafka-{version}"


def setup_kafka(pom: Path = KAFKA_POM) -> bool:
    """Resolve the Kafka broker's jars with Maven; True when they are ready.

    The stamp file holds the pom's SHA-256: a second run with the same pom costs nothing, a
    changed pom resolves again into a clean folder. As root, missing ``java``/``mvn`` are
    installed from Debian; otherwise one line names them and says the suite uses tansu.
    """
    return _resolve(
        pom, kafka_libs_dir(kafka_version(pom)), f"Apache Kafka {kafka_version(pom)}",
        "the integration suite falls back to the tansu broker",
    )  # fmt: skip


def debezium_libs_dir(pom: Path = DEBEZIUM_POM) -> Path:
    """``$HUB_DEBEZIUM_LIBS``, else ``~/.cache/registry-hub/debezium-<v>-kafka-<v>`` (as
    hub.embedded.connect)."""
    env = os.environ.get("HUB_DEBEZIUM_LIBS")
    if env:
        return Path(env).absolute()
    text = pom.read_text()
    dbz = re.search(r"<debezium\.version>([^<]+)</debezium\.version>", text)
    if not dbz:
        raise SystemExit(f"setup: {pom} has no <debezium.version> property")
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "registry-hub" / f"debezium-{dbz.group(1).strip()}-kafka-{kafka_version(pom)}"


def setup_debezium(pom: Path = DEBEZIUM_POM) -> bool:
    """Resolve Kafka Connect and Debezium's connectors with Maven (as :func:`setup_kafka`);
    without them the Debezium tests and the bench's Debezium baseline say why they skip."""
    return _resolve(
        pom, debezium_libs_dir(pom), "Kafka Connect + Debezium",
        "the Debezium tests skip and hub bench leaves out its Debezium baseline",
    )  # fmt: skip


def _resolve(pom: Path, libs: Path, what: str, without: str) -> bool:
    """Copy the dependencies of ``pom`` into ``libs`` once per version of the pom (its hash in
    the stamp file); True when they are there. ``without`` says what the suite does if not."""
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()
    stamp = libs / KAFKA_STAMP
    if stamp.exists() and stamp.read_text().strip() == digest:
        return True
    missing = [cmd for cmd in KAFKA_PACKAGES if shutil.which(cmd) is None]
    if missing and os.geteuid() == 0 and shutil.which("apt-get"):
        packages = [KAFKA_PACKAGES[c] for c in missing]
        print(f"setup: installing Debian packages {' '.join(packages)} ({what})", flush=True)
        _apt_install(packages)
        missing = [cmd for cmd in KAFKA_PACKAGES if shutil.which(cmd) is None]
    if missing:
        print(
            f"setup: no {' and no '.join(missing)}: {without} "
            f"(apt-get install {' '.join(KAFKA_PACKAGES[c] for c in missing)} to run {what})",
            file=sys.stderr,
        )
        return False
    print(f"setup: resolving {what} with Maven into {libs}", flush=True)
    shutil.rmtree(libs, ignore_errors=True)
    libs.mkdir(parents=True)
    res = subprocess.run(
        ["mvn", "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
         f"-DoutputDirectory={libs}"],
        check=False, capture_output=True, text=True,
    )  # fmt: skip
    if res.returncode != 0:
        tail = (res.stdout + res.stderr).strip()[-1500:]
        print(f"setup: Maven could not resolve {pom} ({without}):\n{tail}", file=sys.stderr)
        return False
    stamp.write_text(digest + "\n")
    return True


def main() -> int:
    setup_kafka()
    setup_debezium()
    missing = missing_tools()
    packages = list(dict.fromkeys(t.package for t in missing))  # one package, two tools
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

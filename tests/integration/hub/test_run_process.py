"""`hub run` under load: every SPEC §7 metric present and moving, promtool-clean, SIGTERM
within 10 s, and a restart that loses and duplicates no mismatch."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import psycopg
import pytest

from hub.db import psycopg_conninfo
from hub.demo.runner import read_figures
from tests.integration.hub.procs import wait_for
from tests.spec import SPEC_METRICS

pytestmark = pytest.mark.heavy(35)


class HubRun:
    """``hub run`` as a subprocess, its output in a file; ``kill()`` is safe to call twice."""

    def __init__(self, path):
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("HUB_DATABASE_URL", "HUB_KAFKA_BOOTSTRAP")
        }
        self.log = path.with_suffix(f".{time.monotonic_ns()}.log")
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "hub", "--config", str(path), "run"],
                stdout=out, stderr=subprocess.STDOUT, env=env,
            )  # fmt: skip

    def output(self) -> str:
        return self.log.read_text()[-3000:]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def scrape(config) -> str:
    url = f"http://{config.metrics.listen}{config.metrics.path}"
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read().decode()


def samples(text: str, name: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


class Load:
    """Changes that move every counter but no mismatch: registry addresses, tax touches,
    and one row per second that cannot be mapped (a dead letter)."""

    def __init__(self, urls):
        self.urls = {k: psycopg_conninfo(v) for k, v in urls.items()}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.bad = 0

    def run(self) -> None:
        with (
            psycopg.connect(self.urls["registry"], autocommit=True) as reg,
            psycopg.connect(self.urls["tax"], autocommit=True) as tax,
        ):
            while not self.stop.wait(0.05):
                reg.execute(
                    "UPDATE public.citizens SET dia_chi = dia_chi || '.' WHERE so_dinh_danh IN"
                    " (SELECT so_dinh_danh FROM public.citizens ORDER BY random() LIMIT 20)"
                )
                tax.execute(
                    "UPDATE public.nguoi_nop_thue SET updated_at = now() WHERE ma_so_thue IN"
                    " (SELECT ma_so_thue FROM public.nguoi_nop_thue ORDER BY random() LIMIT 20)"
                )
                if self.bad < 3:
                    self.bad += 1
                    tax.execute(
                        "INSERT INTO public.nguoi_nop_thue (ma_so_thue, so_cccd, ten_nnt, ngay_sinh,"
                        " trang_thai) VALUES (%s, NULL, 'X', 'not a date', 'hoat_dong')",
                        (f"BAD{self.bad:07d}",),
                    )


def at_steady_state(config, truth):
    _, _, found = read_figures(config)
    return found == truth


def assert_present_and_moving(first: str, second: str) -> None:
    """Every SPEC §7 metric in the ``second`` scrape, and the counters past the ``first``."""
    for name in SPEC_METRICS:
        assert samples(second, name), f"{name} missing from the scrape"
    for name in ("hub_connector_events_total", "hub_reconciler_events_total",
                 "hub_reconcile_latency_seconds_count"):  # fmt: skip
        assert sum(samples(second, name).values()) > sum(samples(first, name).values()), name
    dead = samples(second, "hub_dead_letters_total")
    unmappable = [v for k, v in dead.items() if 'reason="unmappable_value"' in k
                  and 'stage="connector"' in k and 'connector="tax"' in k]  # fmt: skip
    assert sum(unmappable) >= 1, dead
    assert any(v > 0 for v in samples(second, "hub_records_verified_ratio").values())


@pytest.mark.requires("promtool")
def test_hub_run_metrics_sigterm_and_restart(deployment):
    path, config, urls, manifest = deployment
    truth = {(m.sector, m.record_key, m.rule) for m in manifest.mismatches}
    runs = [HubRun(path)]
    load = Load(urls)
    try:
        wait_for(lambda: at_steady_state(config, truth), 120, "the initial steady state")
        load.thread.start()
        first = scrape(config)
        # Scraped until every metric shows, at most past the reconciler's 15 s gauge refresh.
        deadline = time.monotonic() + 20
        while True:
            second = scrape(config)
            try:
                assert_present_and_moving(first, second)
                break
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.5)

        lint = subprocess.run(["promtool", "check", "metrics"], input=second, text=True,
                              capture_output=True, timeout=60)  # fmt: skip
        assert lint.returncode == 0, lint.stdout + lint.stderr

        started = time.monotonic()
        runs[0].proc.send_signal(signal.SIGTERM)
        runs[0].proc.wait(timeout=30)
        assert time.monotonic() - started <= 10, "hub run took over 10 s to stop"
        assert runs[0].proc.returncode == 0, runs[0].output()

        runs.append(HubRun(path))
        time.sleep(5)
        load.stop.set()
        load.thread.join(10)
        wait_for(lambda: at_steady_state(config, truth), 120, "the steady state after restart")
        with psycopg.connect(psycopg_conninfo(config.database.url)) as conn:
            opened_twice = conn.execute(
                "SELECT count(*) FROM (SELECT mismatch_id FROM mismatch_history"
                " WHERE action = 'opened' GROUP BY mismatch_id HAVING count(*) > 1) d"
            ).fetchone()[0]
            unbalanced = conn.execute(
                "SELECT count(*) FROM mismatches m WHERE m.status = 'open' AND (SELECT count(*)"
                " FROM mismatch_history h WHERE h.mismatch_id = m.id AND h.action IN"
                " ('opened', 'reopened')) <> 1 + (SELECT count(*) FROM mismatch_history h"
                " WHERE h.mismatch_id = m.id AND h.action = 'resolved')"
            ).fetchone()[0]
        assert opened_twice == 0, "a mismatch was opened twice (a duplicate transition)"
        assert unbalanced == 0, "history of an open mismatch does not add up"
    finally:
        load.stop.set()
        for run in runs:
            if run.proc.poll() is None:
                run.proc.send_signal(signal.SIGTERM)
                try:
                    run.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    run.kill()

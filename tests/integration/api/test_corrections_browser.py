"""The fixing loop end to end in a real headless Chromium against ``hub run`` (connectors,
reconciler and web server) on two small source databases: a steward proposes the
registry's name on a NAME_MISMATCH and accepts the candidate of an ID_NOT_IN_REGISTRY,
sends both, downloads the work list; the rows change at the source, and the page shows
the corrections ``confirmed`` and the mismatches resolved ``fixed_at_source``."""

from __future__ import annotations

import csv
import io
import urllib.request
from collections.abc import Iterator
from datetime import date

import psycopg
import pytest
import yaml

from hub.api.users import create_user
from hub.db import engine_for, psycopg_conninfo
from hub.db.migrate import upgrade
from hub.embedded import free_port
from hub.idschemes.vn import make_id
from tests.integration.api.seed import PASSWORD
from tests.integration.api.test_ui_browser import ARTIFACTS, browser, log_in, page  # noqa: F401
from tests.integration.hub.procs import wait_for
from tests.integration.hub.test_run_process import HubRun

pytestmark = [pytest.mark.requires("chromium"), pytest.mark.heavy(44)]

A = make_id("079", 1985, "M", 1)  # in the registry: Nguyễn Văn An
B = make_id("001", 1990, "F", 2)  # in the registry: Trần Thị Bình
X = make_id("001", 1990, "F", 77)  # carried by the sector, unknown to the registry

_TABLE = """CREATE TABLE public.people (
    ma_so text PRIMARY KEY, so_cccd text, ho_ten text, ngay_sinh date, gioi_tinh text,
    ma_tinh text)"""


def _source(url: str) -> dict:
    return {
        "url": url,
        "table": "public.people",
        "key": "ma_so",
        "capture": "snapshot",
        "snapshot": {"interval_s": 0.5},
        "columns": {
            "citizen_id": "so_cccd",
            "full_name": "ho_ten",
            "date_of_birth": "ngay_sinh",
            "sex": "gioi_tinh",
            "province_code": "ma_tinh",
        },
    }


@pytest.fixture(scope="module")
def loop(servers, tmp_path_factory) -> Iterator[tuple[str, str, str]]:
    """``hub run`` over a registry of two citizens and a tax table of two wrong rows;
    yields (site, hub database URL, tax database URL) once both mismatches are open."""
    reg, tax, hub = (servers.create_database(n) for n in ("loop_reg", "loop_tax", "loop_hub"))
    rows = {
        reg: [("R1", A, "Nguyễn Văn An", date(1985, 3, 14), "M", "79"),
              ("R2", B, "Trần Thị Bình", date(1990, 6, 2), "F", "01")],
        tax: [("T1", A, "Nguyen Van Anh", date(1985, 3, 14), "M", "79"),
              ("T2", X, "Trần Thị Bình", date(1990, 6, 2), "F", "01")],
    }  # fmt: skip
    for url in (reg, tax):
        with psycopg.connect(psycopg_conninfo(url), autocommit=True) as conn:
            conn.execute(_TABLE)
    _insert(reg, rows[reg])
    upgrade(hub)
    engine = engine_for(hub)
    create_user(engine, "steward", "steward", PASSWORD)
    port = free_port()
    raw = {
        "kafka": {"bootstrap_servers": servers.bootstrap, "topic_prefix": f"loop{port}"},
        "database": {"url": hub},
        "api": {"listen": f"127.0.0.1:{port}"},
        "metrics": {"listen": f"127.0.0.1:{free_port()}"},
        "registry": _source(reg),
        "sectors": {"tax": _source(tax)},
    }
    path = tmp_path_factory.mktemp("loop") / "hub.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    run = HubRun(path)
    try:
        # The tax rows only once the registry is in the replica: a sector record judged
        # before its candidate's registry record arrived would get no candidate (the
        # registry-first gate holds sector partitions only while the registry has a backlog).
        wait_for(lambda: _registry_citizens(hub) == 2, 60, "the registry: " + run.output())
        _insert(tax, rows[tax])
        wait_for(
            lambda: _open_rules(hub) >= {"NAME_MISMATCH", "ID_NOT_IN_REGISTRY"},
            60,
            "both mismatches opened: " + run.output(),
        )
        site = f"http://127.0.0.1:{port}"
        wait_for(lambda: _answers(site + "/healthz"), 30, "the web server: " + run.output())
        yield site, hub, tax
    finally:
        run.kill()
        engine.dispose()
        for url in (reg, tax, hub):
            servers.drop_database(url)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def _insert(url: str, values) -> None:
    with psycopg.connect(psycopg_conninfo(url), autocommit=True) as conn:
        conn.cursor().executemany(
            "INSERT INTO public.people VALUES (%s, %s, %s, %s, %s, %s)", values
        )


def _registry_citizens(hub: str) -> int:
    with psycopg.connect(psycopg_conninfo(hub)) as conn:
        try:
            return conn.execute("SELECT count(*) FROM registry_citizens").fetchone()[0]
        except psycopg.errors.UndefinedTable:
            return 0


def _open_rules(hub: str) -> set[str]:
    with psycopg.connect(psycopg_conninfo(hub)) as conn:
        try:
            rows = conn.execute(
                "SELECT rule FROM mismatches WHERE status = 'open' AND sector = 'tax'"
            ).fetchall()
        except psycopg.errors.UndefinedTable:
            return set()
    return {r[0] for r in rows}


def _mismatch_id(hub: str, rule: str) -> int:
    with psycopg.connect(psycopg_conninfo(hub)) as conn:
        return conn.execute("SELECT id FROM mismatches WHERE rule = %s", (rule,)).fetchone()[0]


def _source_update(tax: str, sql: str, *args) -> None:
    with psycopg.connect(psycopg_conninfo(tax), autocommit=True) as conn:
        conn.execute(sql, args)


def _walk(page, site, hub, tax, rule, propose, fix, shot) -> None:  # noqa: F811
    mid = _mismatch_id(hub, rule)
    page.goto(f"{site}/mismatches/{mid}")
    propose(page)
    row = page.locator("table.corrections-list tbody tr").first
    assert row.locator("[data-status]").inner_text() == "proposed"
    row.locator('button:has-text("Send to tax")').click()
    page.wait_for_load_state()
    assert page.locator("table.corrections-list [data-status]").first.inner_text() == "sent"

    page.goto(f"{site}/corrections?sector=tax&status=sent")
    with page.expect_download() as dl:
        page.click('a:has-text("Download work list (CSV)")')
    listed = list(csv.reader(io.StringIO(open(dl.value.path(), encoding="utf-8-sig").read())))
    assert listed[0] == ["correction_id", "ma_so", "field", "current_value", "proposed_value"]
    assert any(r[1] == ("T1" if rule == "NAME_MISMATCH" else "T2") for r in listed[1:])
    page.screenshot(path=str(ARTIFACTS / f"corrections-{shot}-sent.png"), full_page=True)

    fix()

    def confirmed() -> bool:
        page.goto(f"{site}/mismatches/{mid}")
        status = page.locator("table.corrections-list [data-status]").first.inner_text()
        return status == "confirmed" and "fixed_at_source" in page.locator("dl.facts").inner_text()

    wait_for(confirmed, 30, f"the {rule} correction confirmed")
    assert page.locator("#status").inner_text() == "resolved"
    page.screenshot(path=str(ARTIFACTS / f"corrections-{shot}-confirmed.png"), full_page=True)


def test_a_proposed_registry_name_sent_and_fixed_at_the_source_is_confirmed(
    page,  # noqa: F811
    loop,
):
    site, hub, tax = loop
    ARTIFACTS.mkdir(exist_ok=True)
    log_in(page, site, "steward")

    def propose(page) -> None:
        form = page.locator("form.propose-value")
        assert form.locator('input[name="proposed_value"]').input_value() == "Nguyễn Văn An"
        form.locator('input[name="reason"]').fill("as in the registry")
        form.locator('button:has-text("Propose correction")').click()
        page.wait_for_load_state()

    def fix() -> None:
        _source_update(
            tax, "UPDATE public.people SET ho_ten = %s WHERE ma_so = 'T1'", "NGUYEN VAN AN"
        )

    _walk(page, site, hub, tax, "NAME_MISMATCH", propose, fix, "name")


def test_an_accepted_candidate_sent_and_carried_at_the_source_is_confirmed(
    page,  # noqa: F811
    loop,
):
    site, hub, tax = loop
    ARTIFACTS.mkdir(exist_ok=True)
    log_in(page, site, "steward")

    def propose(page) -> None:
        page.locator(f'form.propose-candidate button:has-text("{B}")').click()
        page.wait_for_load_state()

    def fix() -> None:
        _source_update(tax, "UPDATE public.people SET so_cccd = %s WHERE ma_so = 'T2'", B)

    _walk(page, site, hub, tax, "ID_NOT_IN_REGISTRY", propose, fix, "candidate")

    # Both loops closed (the name one ran first): the dashboard counts them.
    page.goto(f"{site}/dashboard")
    card = page.locator('section.card[data-sector="tax"]')
    assert card.locator('[data-figure="confirmed"]').inner_text() == "2"
    assert card.locator('[data-figure="sent"]').inner_text() == "0"
    assert card.locator('[data-figure="median_days"]').inner_text() != "—"
    page.screenshot(path=str(ARTIFACTS / "corrections-dashboard.png"), full_page=True)

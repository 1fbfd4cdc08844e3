"""Exports open right in a spreadsheet (issue #18, item 9): CSV with a byte-order mark and
ID cells that keep their leading zeros, XLSX with text-typed ID cells, and file names that
say sector, rule and date — through the API, the UI and ``hub mismatches export``."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import openpyxl
import pytest
from sqlalchemy import update

from hub.api.queue.export import UTF8_BOM, unwrap_excel_text
from hub.api.queue.filters import ITEM_FIELDS
from hub.db.models import Mismatch
from tests.integration.api.test_cli import run
from tests.integration.api.test_ui_forms import log_in

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def csv_rows(data: bytes) -> list[dict[str, str]]:
    """The rows as an existing consumer reads them: csv module, utf-8-sig."""
    return list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))


def xlsx_sheet(data: bytes):
    wb = openpyxl.load_workbook(io.BytesIO(data))
    return wb["mismatches"]


def by_id(rows: list[dict[str, str]], mid: int) -> dict[str, str]:
    return next(r for r in rows if int(r["id"]) == mid)


def test_csv_starts_with_a_bom_and_keeps_the_column_names(api_ro):
    resp = api_ro.get("/api/v1/mismatches/export", "viewer", params={"sector": "tax"})
    assert resp.status_code == 200
    assert resp.content.startswith(UTF8_BOM)
    assert not resp.content[3:].startswith(UTF8_BOM)
    rows = csv_rows(resp.content)
    assert tuple(rows[0]) == ITEM_FIELDS


def test_csv_id_cells_keep_leading_zeros_and_unicode_round_trips(api_ro):
    resp = api_ro.get("/api/v1/mismatches/export", params={"sector": ["tax", "banking"]})
    rows = csv_rows(resp.content)
    name = by_id(rows, api_ro.ids["name"])
    # Excel shows ="001090001234" as the text 001090001234 (zeros kept, not 1.0909E+9).
    assert name["citizen_id"] == '="001090001234"'
    assert unwrap_excel_text(name["citizen_id"]) == "001090001234"
    assert unwrap_excel_text(name["record_key"]) == "MST0001"
    assert name["sector_value"] == "Nguyễn Văn Anh"  # not an ID field: plain text
    arabic = by_id(rows, api_ro.ids["arabic"])
    assert (arabic["sector_value"], arabic["registry_value"]) == ("أحمد علي", "محمد عبد الله")
    # The value cells of an ID field are ID cells too; NULL stays an empty field.
    unknown = by_id(rows, api_ro.ids["unknown_id"])
    assert unknown["sector_value"] == '="999999999999"' and unknown["registry_value"] == ""
    missing = by_id(rows, api_ro.ids["missing"])
    assert missing["citizen_id"] == ""


def test_csv_id_cells_with_quotes_or_beyond_a_literal_stay_inert(api):
    long_key = "0" * 256  # the column holds 256: one more than a literal may
    with api.engine.begin() as conn:
        conn.execute(
            update(Mismatch)
            .where(Mismatch.id == api.ids["name"])
            .values(record_key='00"7";=1+1', citizen_id="=cmd|'/c calc'!A0")
        )
        conn.execute(
            update(Mismatch).where(Mismatch.id == api.ids["dob"]).values(record_key=long_key)
        )
    rows = csv_rows(api.get("/api/v1/mismatches/export", params={"sector": "tax"}).content)
    name = by_id(rows, api.ids["name"])
    assert name["record_key"] == '="00""7"";=1+1"'
    assert unwrap_excel_text(name["record_key"]) == '00"7";=1+1'
    assert unwrap_excel_text(name["citizen_id"]) == "=cmd|'/c calc'!A0"
    # Too long for an Excel literal: written as is (it does not start with a formula sign).
    assert by_id(rows, api.ids["dob"])["record_key"] == long_key


def test_xlsx_export_has_text_id_cells_and_the_same_columns(api_ro):
    resp = api_ro.get(
        "/api/v1/mismatches/export", "viewer", params={"format": "xlsx", "sector": "banking"}
    )
    assert resp.status_code == 200 and resp.headers["content-type"] == XLSX
    ws = xlsx_sheet(resp.content)
    rows = list(ws.iter_rows())
    assert tuple(c.value for c in rows[0]) == ITEM_FIELDS
    col = {name: i for i, name in enumerate(ITEM_FIELDS)}
    body = {r[col["id"]].value: r for r in rows[1:]}
    assert set(body) == {api_ro.ids[n] for n in ("arabic", "unknown_id", "dismissed")}
    arabic = body[api_ro.ids["arabic"]]
    cid = arabic[col["citizen_id"]]
    assert (cid.value, cid.data_type, cid.number_format) == ("29001011234567", "s", "@")
    key = arabic[col["record_key"]]
    assert (key.value, key.data_type, key.number_format) == ("ACC-0001", "s", "@")
    assert arabic[col["sector_value"]].value == "أحمد علي"
    assert arabic[col["registry_value"]].value == "محمد عبد الله"
    assert isinstance(arabic[col["first_seen_at"]].value, datetime)
    unknown = body[api_ro.ids["unknown_id"]]
    assert unknown[col["sector_value"]].number_format == "@"  # a citizen_id field's value


def test_xlsx_keeps_formula_like_values_as_text(api):
    api.set_mismatch("name", sector_value='=HYPERLINK("http://x")', record_key="007\x01")
    resp = api.get("/api/v1/mismatches/export", params={"format": "xlsx", "sector": "tax"})
    ws = xlsx_sheet(resp.content)
    col = {name: i for i, name in enumerate(ITEM_FIELDS)}
    row = next(r for r in ws.iter_rows(min_row=2) if r[0].value == api.ids["name"])
    value = row[col["sector_value"]]
    assert (value.value, value.data_type) == ('=HYPERLINK("http://x")', "s")
    assert row[col["record_key"]].value == "007\ufffd"  # a control character Excel refuses


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({}, "mismatches_all_all_{d}.csv"),
        ({"format": "xlsx"}, "mismatches_all_all_{d}.xlsx"),
        (
            {"sector": "tax", "rule": "NAME_MISMATCH", "format": "xlsx"},
            "mismatches_tax_NAME_MISMATCH_{d}.xlsx",
        ),
        ({"sector": ["tax", "banking"]}, "mismatches_tax+banking_all_{d}.csv"),
    ],
)
def test_the_file_name_says_sector_rule_and_date(api_ro, params, name):
    resp = api_ro.get("/api/v1/mismatches/export", params=params)
    day = datetime.now(UTC).date().isoformat()
    assert resp.headers["content-disposition"] == f'attachment; filename="{name.format(d=day)}"'


def test_an_unknown_format_is_refused(api_ro):
    resp = api_ro.get("/api/v1/mismatches/export", params={"format": "ods"})
    assert resp.status_code == 422 and "format" in resp.json()["detail"]


def test_the_ui_offers_both_exports(api):
    log_in(api.client, "viewer")
    page = api.client.get("/queue?sector=banking").text
    assert "/queue/export.csv?" in page and "/queue/export.xlsx?" in page
    resp = api.client.get("/queue/export.xlsx?sector=banking&status=all")
    assert resp.status_code == 200 and resp.headers["content-type"] == XLSX
    assert "mismatches_banking_all_" in resp.headers["content-disposition"]
    assert xlsx_sheet(resp.content).max_row == 4  # header + 3
    csv_resp = api.client.get("/queue/export.csv?sector=banking&status=all")
    assert csv_resp.content.startswith(UTF8_BOM)
    assert api.client.get("/queue/export.ods?sector=banking").status_code == 404


def test_cli_exports_xlsx_and_csv_to_a_file(api_ro, tmp_path):
    out = tmp_path / "tax.xlsx"
    result = run(
        api_ro, "mismatches", "export", "--sector", "tax", "--format", "xlsx", "--out", str(out)
    )
    assert result.exit_code == 0, result.output
    assert "5 mismatches written" in result.stderr
    ws = xlsx_sheet(out.read_bytes())
    cids = [r[ITEM_FIELDS.index("citizen_id")] for r in ws.iter_rows(min_row=2)]
    assert "001090001234" in {c.value for c in cids}
    assert all(c.data_type == "s" for c in cids if c.value is not None)
    # The format follows the file's extension when not given; CSV has the BOM.
    out_csv = tmp_path / "tax.csv"
    assert (
        run(api_ro, "mismatches", "export", "--sector", "tax", "--out", str(out_csv)).exit_code == 0
    )
    assert out_csv.read_bytes().startswith(UTF8_BOM)
    guessed = tmp_path / "guess.xlsx"
    assert run(api_ro, "mismatches", "export", "--out", str(guessed)).exit_code == 0
    assert xlsx_sheet(guessed.read_bytes()).max_row == 1 + len(api_ro.ids)


def test_cli_export_reports_a_bad_format_or_an_unwritable_file(api_ro, tmp_path):
    bad = run(api_ro, "mismatches", "export", "--format", "ods")
    assert bad.exit_code == 2 and "--format" in bad.output
    missing_dir = tmp_path / "no" / "such.csv"
    result = run(api_ro, "mismatches", "export", "--out", str(missing_dir))
    assert result.exit_code == 1 and "--out" in result.output and "Traceback" not in result.output

"""The export files without a database: XLSX cells and memory, file names, ="…" cells."""

from __future__ import annotations

import io
import tempfile
import tracemalloc
from datetime import UTC, date, datetime

import openpyxl
from hypothesis import given
from hypothesis import strategies as st

from hub.api.queue.export import export_filename, unwrap_excel_text, write_xlsx
from hub.api.queue.filters import ITEM_FIELDS, MismatchFilter

AT = datetime(2026, 12, 1, 8, 30, tzinfo=UTC)


def row(i: int, **kw) -> tuple:
    item = {
        "id": i,
        "sector": "tax",
        "record_key": f"{i:012d}",
        "citizen_id": f"00{i:010d}",
        "rule": "NAME_MISMATCH",
        "field": "full_name",
        "severity": "low",
        "status": "open",
        "resolution": None,
        "dismissal_code": None,
        "sector_value": "Nguyễn Văn Anh",
        "registry_value": "أحمد علي",
        "score": 0.5,
        "province_code": "01",
        "assignee": None,
        "first_seen_at": AT,
        "last_seen_at": AT,
        "resolved_at": None,
        "updated_at": AT,
    } | kw
    return tuple(item[f] for f in ITEM_FIELDS)


def read(data: bytes):
    return openpyxl.load_workbook(io.BytesIO(data))


def test_xlsx_cells_have_the_right_types():
    out = io.BytesIO()
    rows = [row(1), row(2, field="citizen_id", sector_value="0012")]
    assert write_xlsx(rows, out) == 2
    ws = read(out.getvalue())["mismatches"]
    header, first, second = list(ws.iter_rows())
    assert tuple(c.value for c in header) == ITEM_FIELDS
    col = {n: i for i, n in enumerate(ITEM_FIELDS)}
    for name in ("record_key", "citizen_id"):
        cell = first[col[name]]
        assert cell.data_type == "s" and cell.number_format == "@"
    assert first[col["citizen_id"]].value == "000000000001"
    assert first[col["record_key"]].value == "000000000001"
    assert first[col["id"]].value == 1 and first[col["score"]].value == 0.5
    assert first[col["sector_value"]].number_format != "@"  # a name, not an ID
    assert second[col["sector_value"]].number_format == "@"  # the value of a citizen_id
    assert first[col["first_seen_at"]].value == datetime(2026, 12, 1, 8, 30)  # UTC, naive
    assert first[col["resolved_at"]].value is None
    assert (first[col["sector_value"]].value, first[col["registry_value"]].value) == (
        "Nguyễn Văn Anh",
        "أحمد علي",
    )


def test_xlsx_never_writes_a_formula_and_replaces_what_excel_refuses():
    out = io.BytesIO()
    write_xlsx([row(1, sector_value="=1+1", record_key="a\x00b\x1fc")], out)
    ws = read(out.getvalue())["mismatches"]
    cells = list(ws.iter_rows(min_row=2))[0]
    value = cells[ITEM_FIELDS.index("sector_value")]
    assert (value.value, value.data_type) == ("=1+1", "s")
    assert cells[ITEM_FIELDS.index("record_key")].value == "a\ufffdb\ufffdc"


def test_xlsx_beyond_the_sheet_limit_goes_on_in_another_sheet():
    out = io.BytesIO()
    assert write_xlsx((row(i) for i in range(1, 8)), out, rows_per_sheet=3) == 7
    wb = read(out.getvalue())
    assert wb.sheetnames == ["mismatches", "mismatches 2", "mismatches 3"]
    assert [wb[n].max_row for n in wb.sheetnames] == [4, 4, 2]  # each with its header
    assert wb["mismatches 3"]["A2"].value == 7


def test_an_empty_export_is_a_workbook_with_the_header():
    out = io.BytesIO()
    assert write_xlsx([], out) == 0
    ws = read(out.getvalue())["mismatches"]
    assert ws.max_row == 1 and ws["A1"].value == "id"


def _peak_bytes(n: int) -> int:
    with tempfile.TemporaryFile() as out:  # on disk, so the file's size is not counted
        tracemalloc.start()
        try:
            write_xlsx((row(i) for i in range(n)), out)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()


def test_xlsx_memory_stays_flat_however_many_rows():
    # Rows stream to a temporary file (inline strings, no shared-string table), so four
    # times the rows cost no more peak Python memory than a little slack (a workbook that
    # kept its rows would need several kB more a row). openpyxl holds up to about a
    # thousand rows in flight, so the smaller run is past that.
    small, large = _peak_bytes(1_000), _peak_bytes(4_000)
    assert large < small + 128 * 1024, (small, large)


def test_file_names_say_sector_rule_and_date():
    day = date(2026, 12, 1)
    f = MismatchFilter(sector=("tax",), rule=("NAME_MISMATCH",))
    assert export_filename(f, "xlsx", day) == "mismatches_tax_NAME_MISMATCH_2026-12-01.xlsx"
    assert export_filename(MismatchFilter(), "csv", day) == "mismatches_all_all_2026-12-01.csv"
    two = MismatchFilter(sector=("tax", "banking"))
    assert export_filename(two, "csv", day) == "mismatches_tax+banking_all_2026-12-01.csv"


@given(st.lists(st.text(max_size=50), max_size=4), st.lists(st.text(max_size=30), max_size=3))
def test_a_file_name_is_always_header_safe(sectors, rules):
    name = export_filename(MismatchFilter(sector=tuple(sectors), rule=tuple(rules)), "csv")
    assert name.isascii() and '"' not in name and "/" not in name and "\\" not in name
    assert all(c.isalnum() or c in "_+-." for c in name) and name.endswith(".csv")
    assert len(name) < 180


@given(st.text(max_size=100))
def test_an_excel_text_cell_unwraps_to_its_value(value):
    cell = '="' + value.replace('"', '""') + '"'
    assert unwrap_excel_text(cell) == value

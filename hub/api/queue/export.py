"""The queue as a spreadsheet: CSV streamed from COPY and XLSX built in a temporary file,
both with memory flat however many rows match."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, date, datetime
from typing import Any, BinaryIO

from sqlalchemy import Engine, and_, case, func, literal, select, true
from sqlalchemy.sql import ColumnElement

from hub.api.queue.filters import ITEM_COLUMNS, ITEM_FIELDS, M, MismatchFilter

#
# Both formats open right in a spreadsheet (issue #18, item 9):
#
# * CSV starts with a UTF-8 byte-order mark: Excel reads a CSV without one in the machine's
#   ANSI code page, which garbles Vietnamese and Arabic. Python readers decode it with
#   ``encoding="utf-8-sig"`` and see the same column names as before.
# * ID cells (record_key, citizen_id, and sector/registry values of the citizen_id and
#   legacy_id fields) are written as ``="…"``, Excel's string-literal formula: Excel,
#   LibreOffice and Google Sheets show the text as is, so ``000123`` keeps its zeros, a
#   12-digit ID is not rounded to ``1.23E+11`` and ``2024-01-02`` stays text. A cell Excel
#   cannot parse as a number or date is never affected by its format guessing, but any
#   digit-only or date-like ID is, and column types cannot be declared in a CSV file, so
#   this is the one technique that works on a double-click open. Embedded quotes are doubled
#   inside the literal, so the cell is inert text, never a live formula; values longer than
#   the 255 characters Excel allows in a literal fall back to the plain, defused form.
#   ``unwrap_excel_text`` turns such a cell back into the value.
# * XLSX (``export_xlsx``) has real text cells instead, formatted ``@`` (Text).


EXPORT_FORMATS = ("csv", "xlsx")
EXPORT_MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
UTF8_BOM = b"\xef\xbb\xbf"
EXCEL_LITERAL_MAX = 255  # characters in a string literal of an Excel formula
EXCEL_MAX_ROWS = 1_048_576  # per worksheet, the header row included
EXCEL_CELL_MAX = 32_767  # characters in a cell

_TIMESTAMPS = {"first_seen_at", "last_seen_at", "resolved_at", "updated_at"}
# Columns that always hold an identifier; the value columns hold one for these fields.
_ID_COLUMNS = {"record_key", "citizen_id"}
_ID_FIELDS = ("citizen_id", "legacy_id")
_VALUE_COLUMNS = {"sector_value", "registry_value"}

# Values that come from the sources: a leading = + - @ (or tab/CR) would make a spreadsheet
# evaluate the cell, so the export prefixes such values with ' (OWASP "CSV injection").
_SOURCE_TEXT = {"record_key", "citizen_id", "sector_value", "registry_value", "province_code"}


def _defused(col: ColumnElement) -> ColumnElement:
    return case((col.op("~")(r"^[=+\-@\t\r]"), literal("'") + col), else_=col)


def _excel_text(col: ColumnElement) -> ColumnElement:
    """``="value"`` (quotes doubled), or the defused value when too long for a literal."""
    quoted = func.replace(col, '"', '""')
    return case(
        (func.char_length(quoted) <= EXCEL_LITERAL_MAX, literal('="') + quoted + literal('"')),
        else_=_defused(col),
    )


def unwrap_excel_text(cell: str) -> str:
    """The value of a CSV export cell written as ``="…"`` (any other cell unchanged)."""
    if len(cell) >= 3 and cell.startswith('="') and cell.endswith('"'):
        return cell[2:-1].replace('""', '"')
    return cell


def _export_column(name: str) -> ColumnElement:
    col = getattr(M, name)
    if name in _TIMESTAMPS:  # ISO 8601 in UTC, like the JSON answers
        col = func.to_char(func.timezone("UTC", col), 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
    elif name in _ID_COLUMNS:
        col = _excel_text(col)
    elif name in _VALUE_COLUMNS:
        col = case((M.field.in_(_ID_FIELDS), _excel_text(col)), else_=_defused(col))
    elif name in _SOURCE_TEXT:
        col = _defused(col)
    return col.label(name)


def export_filename(f: MismatchFilter, fmt: str, today: date | None = None) -> str:
    """``mismatches_<sector>_<rule>_<YYYY-MM-DD>.<fmt>``: each part is the filter's value,
    several joined with ``+``, or ``all`` when the filter leaves it open; only letters,
    digits, ``_``, ``-`` and ``+`` remain, so it is safe in a Content-Disposition header."""

    def part(values: tuple[str, ...]) -> str:
        text = "+".join(values)[:60] if values else "all"
        return re.sub(r"[^A-Za-z0-9_+-]", "-", text)

    day = (today or datetime.now(UTC).date()).isoformat()
    return f"mismatches_{part(f.sector)}_{part(f.rule)}_{day}.{fmt}"


def export_csv(
    engine: Engine,
    f: MismatchFilter,
    *,
    chunk_bytes: int = 256 * 1024,
    on_rows: Callable[[int], None] | None = None,
) -> Iterator[bytes]:
    """CSV (UTF-8 with a byte-order mark, header row, ITEM_FIELDS in order, NULL as an empty
    field, times ISO 8601 UTC, ID cells as ``="…"``, see above) of every mismatch matching
    ``f``, ordered by id. PostgreSQL writes the CSV itself (``COPY … TO STDOUT``) and it is
    passed on in ``chunk_bytes`` pieces: memory stays flat however many rows match. The
    connection is held until the generator ends or is closed; ``on_rows`` hears the number
    of rows at the end."""
    stmt = (
        select(*(_export_column(n) for n in ITEM_FIELDS))
        .where(and_(true(), *f.conditions()))
        .order_by(M.id)
    )
    with engine.connect() as conn:
        compiled = stmt.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
        raw = conn.connection.driver_connection
        with raw.cursor() as cur:
            # COPY takes no server-side parameters: psycopg binds these client-side.
            sql = f"COPY ({compiled}) TO STDOUT WITH (FORMAT csv, HEADER true)"
            buf = bytearray(UTF8_BOM)
            with cur.copy(sql, compiled.params) as copy:
                for data in copy:
                    buf += data
                    if len(buf) >= chunk_bytes:
                        yield bytes(buf)
                        buf.clear()
            if buf:
                yield bytes(buf)
            if on_rows is not None:
                on_rows(cur.rowcount)


_XLSX_TEXT_FORMAT = "@"
_XLSX_TIME_FORMAT = "yyyy-mm-dd hh:mm:ss"


def write_xlsx(
    rows: Iterable[Sequence[Any]],
    out: BinaryIO,
    *,
    header: Sequence[str] = ITEM_FIELDS,
    rows_per_sheet: int = EXCEL_MAX_ROWS - 1,
) -> int:
    """Write ``rows`` (values in ``header`` order, as ``list_page`` items hold them) to
    ``out`` as an XLSX workbook; return the number of rows.

    openpyxl's write-only mode streams each row to a temporary file, so memory stays flat
    however many rows there are. Strings are text cells (never formulas, control characters
    Excel refuses become U+FFFD); record_key and citizen_id cells, and the value cells of
    ID fields, are formatted as Text (``@``) so an edit keeps their leading zeros; times are
    UTC without a zone, as Excel has none. Beyond Excel's row limit the rows go on in
    another sheet (``mismatches 2`` …), each with the header."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    wb = Workbook(write_only=True)
    text_cols = {i for i, h in enumerate(header) if h in _ID_COLUMNS}
    value_cols = {i for i, h in enumerate(header) if h in _VALUE_COLUMNS}
    field_col = header.index("field") if "field" in header else None
    ws = None
    in_sheet = sheets = n = 0

    def cell(value: Any, as_text: bool) -> Any:
        if isinstance(value, datetime):
            if value.tzinfo is not None:
                value = value.astimezone(UTC).replace(tzinfo=None)
            c = WriteOnlyCell(ws, value)
            c.number_format = _XLSX_TIME_FORMAT
            return c
        if not isinstance(value, str):
            return value
        value = ILLEGAL_CHARACTERS_RE.sub("\ufffd", value)[:EXCEL_CELL_MAX]
        c = WriteOnlyCell(ws, value)
        c.data_type = "s"  # a value starting with = stays text, not a formula
        if as_text:
            c.number_format = _XLSX_TEXT_FORMAT
        return c

    for row in rows:
        if ws is None or in_sheet >= rows_per_sheet:
            sheets += 1
            ws = wb.create_sheet("mismatches" if sheets == 1 else f"mismatches {sheets}")
            ws.freeze_panes = "A2"
            ws.append(list(header))
            in_sheet = 0
        id_field = field_col is not None and row[field_col] in _ID_FIELDS
        ws.append(
            [cell(v, i in text_cols or (id_field and i in value_cols)) for i, v in enumerate(row)]
        )
        in_sheet += 1
        n += 1
    if ws is None:
        ws = wb.create_sheet("mismatches")
        ws.append(list(header))
    wb.save(out)
    return n


def export_xlsx(
    engine: Engine,
    f: MismatchFilter,
    *,
    chunk_bytes: int = 256 * 1024,
    on_rows: Callable[[int], None] | None = None,
) -> Iterator[bytes]:
    """Every mismatch matching ``f`` (ordered by id) as an XLSX workbook (``write_xlsx``),
    in ``chunk_bytes`` pieces. Rows come through a server-side cursor and the workbook is
    built in a temporary file, so memory stays flat; the first piece comes once the
    workbook is complete (a ZIP archive cannot be streamed before its end)."""
    stmt = select(*ITEM_COLUMNS).where(and_(true(), *f.conditions())).order_by(M.id)
    with tempfile.TemporaryFile(prefix="hub-export-", suffix=".xlsx") as tmp:
        with engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=2000).execute(stmt)
            n = write_xlsx((tuple(r) for r in result), tmp)
        tmp.seek(0)
        while chunk := tmp.read(chunk_bytes):
            yield chunk
    if on_rows is not None:
        on_rows(n)


EXPORTERS: dict[str, Callable[..., Iterator[bytes]]] = {"csv": export_csv, "xlsx": export_xlsx}

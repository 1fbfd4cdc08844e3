"""A sector's work list of sent corrections (CSV or XLSX, in the sector's own column names),
and the agency's returned file: the same shape plus ``status`` (rejected / acknowledged)
and ``reason``, read back row by row."""

from __future__ import annotations

import csv
import io
import itertools
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, select

from hub.api.errors import Conflict
from hub.api.queue.export import UTF8_BOM, unwrap_excel_text, write_xlsx
from hub.config import SourceConfig
from hub.db.models import Correction as C


class BadFile(Conflict):
    """The file as a whole is not the sector's work list (format, size, columns): 409, as
    the schema cannot say which bytes make one."""


CORRECTION_ID = "correction_id"
FIELD = "field"
CURRENT = "current_value"
PROPOSED = "proposed_value"
STATUS = "status"
REASON = "reason"
ANSWERS = ("rejected", "acknowledged")
MAX_UPLOAD_BYTES = 5 * 1024 * 1024
MAX_UPLOAD_ROWS = 10_000
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def key_header(src: SourceConfig) -> str:
    """The record key's column: the sector's key column (``a+b`` for a composite key)."""
    return "+".join(src.key_columns)


def header(src: SourceConfig) -> list[str]:
    return [CORRECTION_ID, key_header(src), FIELD, CURRENT, PROPOSED]


def sector_column(src: SourceConfig, canonical: str) -> str:
    """The sector's own name of a canonical field (the canonical name when unmapped)."""
    m = src.mapping(canonical)
    return m.column if m is not None else canonical


def sector_value(src: SourceConfig, canonical: str, value: str | None) -> str | None:
    """``value`` as the sector spells it: through its value map backwards when it has one
    (``Nam`` for ``M``), else unchanged."""
    m = src.mapping(canonical)
    if value is None or m is None or not m.map:
        return value
    spelled = [k for k, v in m.map.items() if v == value]
    return spelled[0] if len(spelled) == 1 else value


def rows(conn: Connection, sector: str, src: SourceConfig) -> list[list[Any]]:
    """The sector's sent corrections, by id, as work list rows."""
    result = conn.execute(
        select(C.id, C.record_key, C.field, C.current_value, C.proposed_value)
        .where(C.sector == sector, C.status == "sent")
        .order_by(C.id)
    )
    return [
        [cid, key, sector_column(src, fld), cur, sector_value(src, fld, proposed)]
        for cid, key, fld, cur, proposed in result
    ]


def _defuse(value: Any) -> Any:
    # A value from a source or a steward that a spreadsheet would evaluate stays text.
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def to_csv(head: list[str], body: list[list[Any]]) -> bytes:
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(head)
    w.writerows([[_defuse(v) for v in r] for r in body])
    return UTF8_BOM + out.getvalue().encode()


def to_xlsx(head: list[str], body: list[list[Any]]) -> bytes:
    out = io.BytesIO()
    write_xlsx(body, out, header=head)
    return out.getvalue()


@dataclass
class Answer:
    row: int
    correction_id: int
    record_key: str
    status: str
    reason: str | None


@dataclass
class Returned:
    """The rows of a returned file that name an answer, and the rows that cannot be read."""

    answers: list[Answer] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)


def _table(data: bytes, filename: str) -> list[list[str]]:
    """The cells of a CSV or XLSX file (by content: an XLSX file is a ZIP archive)."""
    if data.startswith(b"PK\x03\x04"):
        from openpyxl import load_workbook

        try:
            wb = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        except Exception as exc:  # a broken archive: any of openpyxl's and zipfile's errors
            raise BadFile(f"{filename}: not a readable XLSX workbook") from exc
        ws = wb.worksheets[0]
        table = [
            ["" if v is None else str(v) for v in r]
            for r in itertools.islice(ws.iter_rows(values_only=True), MAX_UPLOAD_ROWS + 2)
        ]
        wb.close()
        return table
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadFile(f"{filename}: neither XLSX nor UTF-8 CSV") from exc
    if "\x00" in text:
        raise BadFile(f"{filename}: neither XLSX nor UTF-8 CSV")
    try:
        return [[unwrap_excel_text(c) for c in r] for r in csv.reader(io.StringIO(text))]
    except csv.Error as exc:
        raise BadFile(f"{filename}: not a readable CSV file ({exc})") from exc


def read_returned(data: bytes, filename: str, src: SourceConfig) -> Returned:
    """The answers of an agency's returned work list. Unprocessable when the file as a whole
    cannot be read (:class:`BadFile`: format, size, missing columns); a bad row is named in ``errors`` (its
    row number as a spreadsheet shows it, the header being row 1)."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise BadFile(f"{filename}: larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MB")
    table = _table(data, filename)
    if not table or not any(c.strip() for c in table[0]):
        raise BadFile(f"{filename}: empty file (expected a header row)")
    if len(table) > MAX_UPLOAD_ROWS + 1:
        raise BadFile(f"{filename}: more than {MAX_UPLOAD_ROWS} rows")
    names = [c.strip() for c in table[0]]
    key = key_header(src)
    missing = [c for c in (CORRECTION_ID, key, STATUS) if c not in names]
    if missing:
        raise BadFile(
            f"{filename}: missing column {', '.join(missing)} (expected "
            f"{', '.join([*header(src), STATUS, REASON])})"
        )
    at = {n: names.index(n) for n in (CORRECTION_ID, key, STATUS, REASON) if n in names}
    out = Returned()
    for n, cells in enumerate(table[1:], start=2):
        if not any(c.strip() for c in cells):
            continue

        def cell(name: str, cells: list[str] = cells) -> str:
            i = at.get(name)
            return cells[i].strip().removeprefix("'") if i is not None and i < len(cells) else ""

        raw_id, status, reason = cell(CORRECTION_ID), cell(STATUS).lower(), cell(REASON)
        try:
            cid = int(float(raw_id)) if raw_id else 0
        except ValueError:
            cid = 0
        if cid < 1 or cid >= 2**63:
            out.errors.append({"row": n, "reason": f"bad correction_id {raw_id[:20]!r}"})
        elif status not in ANSWERS:
            out.errors.append(
                {
                    "row": n,
                    "reason": f"status must be rejected or acknowledged, not {status[:20]!r}",
                }
            )
        elif status == "rejected" and not reason:
            out.errors.append({"row": n, "reason": "a rejected row needs a reason"})
        else:
            out.answers.append(Answer(n, cid, cell(key), status, reason or None))
    return out

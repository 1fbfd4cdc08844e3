"""The check's sample report: sampled rows mapped as the run maps them, what would dead-letter
grouped per column and reason with a masked example, and the values a value map lacks."""

from __future__ import annotations

import sqlite3

from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.events import EventBuilder
from connectors.mapping import RecordMapper
from connectors.ops import check
from connectors.sample import SHOWN_VALUES, masked_example, sample_rows
from hub.config import HubConfig, SourceConfig
from hub.errors import SkippableError
from hub.idschemes import get_scheme

SEX_MAP = {"Nam": "M", "Nữ": "F"}


def builder(**columns) -> EventBuilder:
    base = {"citizen_id": "so_cccd", "full_name": "ten"}
    base.update(columns)
    source = SourceConfig(url="postgresql://x@y/z", table="t", key="ma", columns=base)
    mapper = RecordMapper("tax", source, get_scheme("vn"))
    return EventBuilder(mapper, system="postgresql", database="z", table="public.t")


def row(i: int, **values) -> dict:
    out = {"ma": f"MST{i}", "so_cccd": f"0010900{i:05d}", "ten": f"Nguyễn Văn {i}",
           "ngay": "1990-01-02", "gt": "Nam"}  # fmt: skip
    out.update(values)
    return out


def test_failures_are_grouped_per_column_and_reason_with_a_count_and_every_failing_column():
    b = builder(date_of_birth="ngay", sex={"column": "gt", "map": SEX_MAP})
    rows = [row(i) for i in range(5)]
    rows += [row(i, ngay="02/01/1990") for i in range(5, 8)]
    rows += [row(8, ngay="02/01/1990", gt="Khác"), row(9, gt="Khác"), row(10, gt="?")]
    report = sample_rows(b, rows)

    assert (report.rows, report.failing_rows) == (11, 6)
    (dates,) = report.problems.values()  # both failures of row 8 counted, each in its group
    assert (dates.column, dates.count) == ("ngay", 4)
    assert "not an ISO date" in dates.reason and dates.example == "'99/99/9999'"
    assert dict(report.unmapped["sex"].counts) == {"Khác": 2, "?": 1}
    lines = [r.line() for r in report.results()]
    assert len(lines) == 2 and all(line.startswith("FAIL") for line in lines)
    assert "sex (gt): the map is incomplete, 2 sampled value(s) not in it" in lines[0]
    assert "'Khác' ×2, '?' ×1" in lines[0] and "3 of 11 rows would dead-letter" in lines[0]
    assert "4 of 11 sampled rows would dead-letter: column ngay (date_of_birth)" in lines[1]


def test_a_clean_sample_is_one_ok_line_and_an_empty_one_a_warning():
    b = builder(date_of_birth="ngay", sex={"column": "gt", "map": SEX_MAP})
    (ok,) = sample_rows(b, [row(i) for i in range(3)]).results()
    assert ok.ok and ok.status == "ok" and "3 sampled rows map" in ok.detail
    (empty,) = sample_rows(b, []).results()
    assert empty.status == "warn" and "empty" in empty.detail


def test_examples_never_show_a_full_citizen_id_or_name():
    b = builder(date_of_death="ten", legacy_id="bin")
    report = sample_rows(b, [row(1, bin=b"\x00\x01"), row(2, bin=b"\x00\x01")])
    text = "\n".join(r.line() for r in report.results())
    assert "Nguyễn Văn 1" not in text and "Nguyễn Văn" not in text
    assert "'Nguy****** 1'" in text  # the name column is also full_name: masked like an ID
    assert "<2 bytes>" in text and "2 of 2 sampled rows" in text


def test_only_the_first_unmapped_values_are_listed_and_the_rest_counted():
    b = builder(status={"column": "tt", "map": {"A": "active"}})
    rows = [row(i, tt=f"code{i % (SHOWN_VALUES + 3)}") for i in range(40)]
    (line,) = [r.detail for r in sample_rows(b, rows).results()]
    assert f"{SHOWN_VALUES + 3} sampled value(s) not in it" in line and "and 3 more" in line


def test_an_unmapped_value_that_looks_like_an_id_is_masked():
    b = builder(status={"column": "tt", "map": {"A": "active"}})
    (line,) = [r.detail for r in sample_rows(b, [row(1, tt="001090012345")]).results()]
    assert "001090012345" not in line and "0010******45" in line


@settings(max_examples=50)
@given(st.lists(st.sampled_from(["Nam", "Nữ", "nam", " NỮ ", "Khác", "", "M", "x"]), max_size=30))
def test_the_report_counts_exactly_the_rows_the_mapper_refuses(values):
    b = builder(sex={"column": "gt", "map": SEX_MAP})
    rows = [row(i, gt=v) for i, v in enumerate(values)]
    refused = []
    for r in rows:
        try:
            b.mapper.map(r)
        except SkippableError:
            refused.append(r["gt"])
    report = sample_rows(b, rows)
    assert report.failing_rows == len(refused)
    counted = report.unmapped["sex"].counts if refused else {}
    assert sum(counted.values()) == len(refused) and set(counted) == set(refused)
    assert report.results()[0].ok == (not refused)


@settings(max_examples=50)
@given(st.text(st.characters(blacklist_characters="*"), min_size=7, max_size=30))
def test_a_personal_value_is_never_shown_whole(value):
    assert value not in masked_example(["full_name"], value)
    assert value not in masked_example(["citizen_id"], value)


def test_a_sqlalchemy_source_is_sampled_too(tmp_path):
    path = tmp_path / "bank.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE kh (ma TEXT PRIMARY KEY, so_cccd TEXT, ten TEXT, gt TEXT)")
        db.executemany("INSERT INTO kh VALUES (?, ?, ?, ?)",
                       [(f"K{i}", f"0010900{i:05d}", f"Tên {i}", "Nam" if i % 3 else "Khác")
                        for i in range(9)])  # fmt: skip
    source = SourceConfig(url=f"sqlite:///{path}", table="kh", key="ma", capture="snapshot",
                          columns={"citizen_id": "so_cccd", "full_name": "ten",
                                   "sex": {"column": "gt", "map": SEX_MAP}})  # fmt: skip
    config = HubConfig(id_scheme="vn", sectors={"bank": source})
    lines = [r.line() for r in check(config, "bank")]
    fails = [line for line in lines if line.startswith("FAIL")]
    assert len(fails) == 1 and "'Khác' ×3" in fails[0] and "3 of 9 rows" in fails[0], lines

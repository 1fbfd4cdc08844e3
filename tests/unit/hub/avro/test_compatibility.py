"""Backward-compatibility check: the current schemas must read data of released schemas."""

from __future__ import annotations

import copy
import json
from importlib import resources
from pathlib import Path

import pytest

from hub.avro.compatibility import check_compatibility, check_schemas, schema_problems

SCHEMA_DIR = resources.files("schemas.avro")


def shipped(file: str) -> dict:
    return json.loads((SCHEMA_DIR / file).read_text(encoding="utf-8"))


def record(fields: list[dict], name: str = "Thing", **extra) -> dict:
    return {"type": "record", "name": name, "namespace": "hub", "fields": fields, **extra}


def dirs(tmp_path: Path, released: dict[str, dict], current: dict[str, dict]) -> tuple[Path, Path]:
    for sub, schemas in (("released", released), ("current", current)):
        (tmp_path / sub).mkdir()
        for file, schema in schemas.items():
            (tmp_path / sub / file).write_text(json.dumps(schema), encoding="utf-8")
    return tmp_path / "released", tmp_path / "current"


def problems(tmp_path: Path, released: dict, current: dict) -> list[str]:
    return check_compatibility(*dirs(tmp_path, {"thing.avsc": released}, {"thing.avsc": current}))


BASE = record(
    [
        {"name": "id", "type": "long"},
        {"name": "name", "type": ["null", "string"], "default": None},
        {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["A", "B", "C"]}},
        {"name": "count", "type": "int"},
    ]
)


def changed(field: str, **changes) -> dict:
    schema = copy.deepcopy(BASE)
    for f in schema["fields"]:
        if f["name"] == field:
            f.update(changes)
    return schema


def test_shipped_schemas_are_compatible_with_every_release():
    assert check_schemas() == []


def test_identical_schemas_are_compatible(tmp_path):
    assert problems(tmp_path, BASE, BASE) == []


def test_field_added_with_default_is_compatible(tmp_path):
    current = copy.deepcopy(BASE)
    current["fields"].append({"name": "note", "type": ["null", "string"], "default": None})
    current["fields"].append(
        {"name": "tags", "type": {"type": "map", "values": "string"}, "default": {}}
    )
    assert problems(tmp_path, BASE, current) == []


def test_field_added_without_default_names_schema_and_field(tmp_path):
    current = copy.deepcopy(BASE)
    current["fields"].append({"name": "nationality", "type": "string"})
    assert problems(tmp_path, BASE, current) == [
        "thing.avsc: hub.Thing.nationality: field added without default"
    ]


def test_field_added_with_a_default_its_type_refuses_is_incompatible(tmp_path):
    current = copy.deepcopy(BASE)
    current["fields"].append({"name": "note", "type": ["string", "null"], "default": None})
    (problem,) = problems(tmp_path, BASE, current)
    assert "hub.Thing.note" in problem and "default" in problem


def test_field_removed_is_compatible(tmp_path):
    current = copy.deepcopy(BASE)
    current["fields"] = [f for f in current["fields"] if f["name"] != "name"]
    assert problems(tmp_path, BASE, current) == []


def test_field_renamed_with_alias_is_compatible_and_without_is_not(tmp_path):
    with_alias = copy.deepcopy(BASE)
    with_alias["fields"][3] = {"name": "total", "type": "int", "aliases": ["count"]}
    assert schema_problems(BASE, with_alias) == []
    without = copy.deepcopy(BASE)
    without["fields"][3] = {"name": "total", "type": "int"}
    assert schema_problems(BASE, without) == ["hub.Thing.total: field added without default"]


@pytest.mark.parametrize(
    ("writer", "reader"),
    [
        ("int", "long"),
        ("int", "double"),
        ("long", "float"),
        ("float", "double"),
        ("string", "bytes"),
        ("bytes", "string"),
    ],
)
def test_type_promotion_is_compatible(writer, reader):
    assert schema_problems(changed("count", type=writer), changed("count", type=reader)) == []


def test_long_narrowed_to_int_is_incompatible(tmp_path):
    assert problems(tmp_path, BASE, changed("id", type="int")) == [
        "thing.avsc: hub.Thing.id: type narrowed from long to int"
    ]


def test_field_type_changed_string_to_int_is_incompatible(tmp_path):
    (problem,) = problems(tmp_path, changed("count", type="string"), changed("count", type="int"))
    assert problem == "thing.avsc: hub.Thing.count: type changed from string to int"


def test_enum_symbol_removed_is_incompatible(tmp_path):
    kind = {"type": "enum", "name": "Kind", "symbols": ["A", "C"]}
    assert problems(tmp_path, BASE, changed("kind", type=kind)) == [
        "thing.avsc: hub.Thing.kind: enum hub.Kind symbols removed without an enum default: B"
    ]


def test_enum_symbol_added_or_removed_with_enum_default_is_compatible():
    added = {"type": "enum", "name": "Kind", "symbols": ["A", "B", "C", "D"]}
    assert schema_problems(BASE, changed("kind", type=added)) == []
    defaulted = {"type": "enum", "name": "Kind", "symbols": ["A", "OTHER"], "default": "OTHER"}
    assert schema_problems(BASE, changed("kind", type=defaulted)) == []


def test_named_type_renamed_without_alias_is_incompatible():
    renamed = {"type": "enum", "name": "Category", "symbols": ["A", "B", "C"]}
    assert schema_problems(BASE, changed("kind", type=renamed)) == [
        "hub.Thing.kind: enum hub.Kind renamed to hub.Category without an alias"
    ]
    aliased = dict(renamed, aliases=["Kind"])
    assert schema_problems(BASE, changed("kind", type=aliased)) == []


def test_record_renamed_with_alias_matches_its_released_file(tmp_path):
    current = dict(copy.deepcopy(BASE), name="Item", aliases=["hub.Thing"])
    released, current_dir = dirs(tmp_path, {"thing.avsc": BASE}, {"item.avsc": current})
    assert check_compatibility(released, current_dir) == []


def test_schema_file_removed_is_incompatible(tmp_path):
    released, current = dirs(
        tmp_path, {"thing.avsc": BASE, "other.avsc": record([], "Other")}, {"thing.avsc": BASE}
    )
    assert check_compatibility(released, current) == [
        "other.avsc: hub.Other: schema removed or renamed without an alias; "
        "data written with it can no longer be read"
    ]


def test_union_branch_added_is_compatible_and_removed_is_not():
    wider = changed("name", type=["null", "string", "long"])
    assert schema_problems(BASE, wider) == []
    (problem,) = schema_problems(wider, BASE)
    assert problem.startswith("hub.Thing.name: long written by the released schema has no match")


def test_optional_field_made_required_is_incompatible():
    (problem,) = schema_problems(BASE, changed("name", type="string"))
    assert problem == "hub.Thing.name: type changed from null to string"


def test_required_field_made_optional_is_compatible():
    assert schema_problems(BASE, changed("count", type=["null", "int"], default=None)) == []


def test_logical_type_change_is_flagged():
    dated = changed("count", type={"type": "int", "logicalType": "date"})
    assert schema_problems(
        dated, changed("count", type={"type": "int", "logicalType": "time-millis"})
    ) == ["hub.Thing.count: logical type changed from date to time-millis"]
    assert schema_problems(dated, BASE) == [
        "hub.Thing.count: logical type changed from date to none"
    ]


def test_nested_change_names_the_path_through_the_envelope(tmp_path):
    change = shipped("change_event.avsc")
    current = copy.deepcopy(change)
    citizen = current["fields"][1]["type"][1]
    for field in citizen["fields"]:
        if field["name"] == "date_of_birth":
            field["type"] = ["null", "string"]
    found = check_compatibility(
        *dirs(tmp_path, {"change_event.avsc": change}, {"change_event.avsc": current})
    )
    assert found == [
        "change_event.avsc: hub.ChangeEvent.before.date_of_birth: "
        "int (date) written by the released schema has no match in the union [null, string]",
        "change_event.avsc: hub.ChangeEvent.after.date_of_birth: "
        "int (date) written by the released schema has no match in the union [null, string]",
    ]


def test_array_and_map_items_are_checked():
    writer = record(
        [
            {"name": "xs", "type": {"type": "array", "items": "long"}},
            {"name": "m", "type": {"type": "map", "values": "long"}},
        ]
    )
    reader = record(
        [
            {"name": "xs", "type": {"type": "array", "items": "int"}},
            {"name": "m", "type": {"type": "map", "values": "double"}},
        ]
    )
    assert schema_problems(writer, reader) == ["hub.Thing.xs[]: type narrowed from long to int"]


def test_recursive_record_is_checked_once():
    node = record(
        [
            {"name": "value", "type": "int"},
            {"name": "next", "type": ["null", "hub.Thing"], "default": None},
        ]
    )
    grown = copy.deepcopy(node)
    grown["fields"].append({"name": "label", "type": "string"})
    assert schema_problems(node, node) == []
    assert schema_problems(node, grown) == ["hub.Thing.label: field added without default"]


def test_invalid_current_schema_is_reported(tmp_path):
    released, current = dirs(tmp_path, {"thing.avsc": BASE}, {"thing.avsc": BASE})
    (current / "broken.avsc").write_text("{not json", encoding="utf-8")
    (current / "bad.avsc").write_text(
        json.dumps(record([{"name": "x", "type": "nope"}], "Bad")), encoding="utf-8"
    )
    found = check_compatibility(released, current)
    assert any(p.startswith("broken.avsc: not valid JSON") for p in found)
    assert any(p.startswith("bad.avsc: invalid Avro schema") for p in found)

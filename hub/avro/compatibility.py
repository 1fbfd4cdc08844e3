"""Backward-compatibility check of the Avro schemas: the current schemas must read every
message written with a released schema (Avro schema resolution rules)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib import resources
from importlib.resources.abc import Traversable
from os import PathLike
from pathlib import Path
from typing import Any

from fastavro import parse_schema

from hub.avro.codec import PRIMITIVES, SCHEMA_PACKAGE, full_name, qualify, release_dirs

NAMED = frozenset({"record", "error", "enum", "fixed"})
# writer type -> reader types that can read it (Avro spec, "Schema Resolution")
PROMOTIONS = {
    "int": frozenset({"long", "float", "double"}),
    "long": frozenset({"float", "double"}),
    "float": frozenset({"double"}),
    "string": frozenset({"bytes"}),
    "bytes": frozenset({"string"}),
}

Dir = Traversable | PathLike[str] | str


def check_schemas() -> list[str]:
    """Problems that make the shipped schemas unable to read data of a released version.

    Compares the working set in the ``schemas.avro`` package with every release under
    ``released/`` (not only the newest: the decoder accepts messages of all of them, and
    topics can still hold old ones). Each problem line starts with ``released <version>:``.
    An empty list means compatible (or nothing released yet).
    """
    current = resources.files(SCHEMA_PACKAGE)
    problems = []
    for version, released in release_dirs(current).items():
        problems += [f"released {version}: {p}" for p in check_compatibility(released, current)]
    return problems


def check_compatibility(released_dir: Dir, current_dir: Dir) -> list[str]:
    """Problems that stop the schemas in ``current_dir`` reading data written with those in
    ``released_dir`` (each a directory of ``*.avsc`` files); empty when backward compatible.

    A released schema is matched to the current schema of the same full name, or to one that
    lists the released name in ``aliases``. Each problem names the file and the field path,
    e.g. ``citizen_record.avsc: hub.CitizenRecord.nickname: field added without default``.
    """
    problems: list[str] = []
    released = _load_dir(released_dir, problems)
    current = _load_dir(current_dir, problems)
    by_name: dict[str, tuple[str, Any]] = {}
    for file, raw in current.items():
        try:
            parse_schema(raw, named_schemas={})
        except Exception as exc:  # fastavro reports bad schemas with several exception types
            problems.append(f"{file}: invalid Avro schema: {exc}")
            continue
        if not isinstance(raw, dict) or "name" not in raw:
            continue
        name = full_name(raw)
        by_name[name] = (file, raw)
        namespace = name.rpartition(".")[0]
        for alias in raw.get("aliases", ()):
            by_name.setdefault(qualify(alias, namespace), (file, raw))
    for file, writer in released.items():
        if not isinstance(writer, dict) or "name" not in writer:
            continue
        name = full_name(writer)
        match = by_name.get(name)
        if match is None:
            problems.append(
                f"{file}: {name}: schema removed or renamed without an alias; "
                f"data written with it can no longer be read"
            )
            continue
        reader_file, reader = match
        label = file if reader_file == file else f"{file} -> {reader_file}"
        problems += [f"{label}: {p}" for p in schema_problems(writer, reader)]
    return problems


def schema_problems(writer: Any, reader: Any) -> list[str]:
    """Problems reading data written with ``writer`` using ``reader`` (both JSON schemas),
    each as ``<path>: <problem>`` where the path starts at the writer's full name."""
    w_names, r_names = _Names(writer), _Names(reader)
    root = full_name(writer) if isinstance(writer, dict) and "name" in writer else "<root>"
    checker = _Checker(w_names, r_names)
    checker.check(writer, "", reader, "", root)
    return checker.problems


def _load_dir(directory: Dir, problems: list[str]) -> dict[str, Any]:
    root = Path(directory) if isinstance(directory, str | PathLike) else directory
    found = {}
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if entry.is_file() and entry.name.endswith(".avsc"):
            try:
                found[entry.name] = json.loads(entry.read_text(encoding="utf-8"))
            except (ValueError, UnicodeDecodeError) as exc:
                problems.append(f"{entry.name}: not valid JSON: {exc}")
    return found


def _named_full_name(schema: Mapping[str, Any], namespace: str) -> str:
    name = schema["name"]
    if "." in name:
        return name
    return qualify(name, schema.get("namespace", namespace) or "")


class _Names:
    """Named types of one schema document by full name, each with its namespace."""

    def __init__(self, schema: Any):
        self.types: dict[str, tuple[dict, str]] = {}
        self._collect(schema, "")

    def _collect(self, schema: Any, namespace: str) -> None:
        if isinstance(schema, list):
            for branch in schema:
                self._collect(branch, namespace)
        elif isinstance(schema, dict):
            kind = schema.get("type")
            if kind in NAMED:
                name = _named_full_name(schema, namespace)
                inner = name.rpartition(".")[0]
                self.types[name] = (schema, inner)
                for field in schema.get("fields", ()) if kind in ("record", "error") else ():
                    self._collect(field.get("type"), inner)
            elif kind == "array":
                self._collect(schema.get("items"), namespace)
            elif kind == "map":
                self._collect(schema.get("values"), namespace)
            elif isinstance(kind, dict | list):
                self._collect(kind, namespace)

    def resolve(self, schema: Any, namespace: str) -> tuple[Any, str]:
        """``(definition, namespace)`` with names replaced by their definitions."""
        while True:
            if isinstance(schema, str):
                if schema in PRIMITIVES:
                    return {"type": schema}, namespace
                for candidate in (qualify(schema, namespace), schema):
                    if candidate in self.types:
                        return self.types[candidate]
                return {"type": "unknown", "name": schema}, namespace
            if isinstance(schema, dict) and isinstance(schema.get("type"), dict | list):
                schema = schema["type"]  # {"type": {...}} is the same as {...}
                continue
            return schema, namespace


def _kind(schema: Any) -> str:
    return "union" if isinstance(schema, list) else schema.get("type", "unknown")


def _describe(schema: Any, namespace: str) -> str:
    if isinstance(schema, list):
        return "[" + ", ".join(_describe(b, namespace) for b in schema) + "]"
    if isinstance(schema, str):
        return schema
    kind = _kind(schema)
    if kind in NAMED:
        return f"{kind} {_named_full_name(schema, namespace)}"
    if kind == "array":
        return "array"
    if kind == "map":
        return "map"
    if schema.get("logicalType"):
        return f"{kind} ({schema['logicalType']})"
    return str(kind)


class _Checker:
    def __init__(self, writer_names: _Names, reader_names: _Names):
        self.w_names = writer_names
        self.r_names = reader_names
        self.problems: list[str] = []
        self._open: set[tuple[str, str]] = set()

    def check(self, w: Any, w_ns: str, r: Any, r_ns: str, path: str) -> None:
        w, w_ns = self.w_names.resolve(w, w_ns)
        r, r_ns = self.r_names.resolve(r, r_ns)
        if isinstance(w, list):
            # Data may have been written with any branch, so every branch must stay readable.
            for branch in w:
                self.check(branch, w_ns, r, r_ns, path)
            return
        if isinstance(r, list):
            branch = self._pick_branch(w, w_ns, r, r_ns)
            if branch is None:
                self.problems.append(
                    f"{path}: {_describe(w, w_ns)} written by the released schema has no "
                    f"match in the union {_describe(r, r_ns)}"
                )
            else:
                self.check(w, w_ns, branch, r_ns, path)
            return
        w_kind, r_kind = _kind(w), _kind(r)
        if w_kind in PRIMITIVES:
            self._check_primitive(w, w_kind, r, r_kind, r_ns, path)
        elif w_kind != r_kind:
            self._type_changed(w, w_ns, r, r_ns, path)
        elif w_kind in NAMED:
            self._check_named(w, w_ns, r, r_ns, path)
        elif w_kind == "array":
            self.check(w.get("items"), w_ns, r.get("items"), r_ns, f"{path}[]")
        elif w_kind == "map":
            self.check(w.get("values"), w_ns, r.get("values"), r_ns, f"{path}{{}}")
        else:
            self.problems.append(f"{path}: unknown type {_describe(w, w_ns)}")

    def _pick_branch(self, w: Any, w_ns: str, union: list, r_ns: str) -> Any:
        # The spec: the first reader branch that matches the writer's type; exact matches
        # are preferred over promotions, as Avro's Java resolver does.
        w_kind = _kind(w)
        resolved = [(b, *self.r_names.resolve(b, r_ns)) for b in union]
        for original, branch, b_ns in resolved:
            b_kind = _kind(branch)
            if b_kind != w_kind:
                continue
            if w_kind not in NAMED:
                return original
            if self._names_match(w, w_ns, branch, b_ns):
                return original
        if w_kind in PROMOTIONS:
            for original, branch, _ in resolved:
                if _kind(branch) in PROMOTIONS[w_kind]:
                    return original
        return None

    def _check_primitive(
        self, w: dict, w_kind: str, r: dict, r_kind: str, r_ns: str, path: str
    ) -> None:
        if r_kind == w_kind:
            w_logical, r_logical = w.get("logicalType"), r.get("logicalType")
            if w_logical != r_logical:
                # Avro itself ignores logical types when resolving, but a consumer handed a
                # datetime where it had a date (or an int) is broken all the same.
                self.problems.append(
                    f"{path}: logical type changed from {w_logical or 'none'} to {r_logical or 'none'}"
                )
            elif w_logical == "decimal" and (
                w.get("scale", 0) != r.get("scale", 0) or w.get("precision") != r.get("precision")
            ):
                self.problems.append(f"{path}: decimal precision/scale changed")
        elif r_kind in PROMOTIONS.get(w_kind, ()):
            return
        elif w_kind in PROMOTIONS.get(r_kind, ()):
            self.problems.append(f"{path}: type narrowed from {w_kind} to {r_kind}")
        else:
            self._type_changed(w, "", r, r_ns, path)

    def _type_changed(self, w: Any, w_ns: str, r: Any, r_ns: str, path: str) -> None:
        self.problems.append(
            f"{path}: type changed from {_describe(w, w_ns)} to {_describe(r, r_ns)}"
        )

    def _names_match(self, w: dict, w_ns: str, r: dict, r_ns: str) -> bool:
        w_name = _named_full_name(w, w_ns)
        r_name = _named_full_name(r, r_ns)
        if w_name == r_name:
            return True
        r_space = r_name.rpartition(".")[0]
        return w_name in {qualify(a, r_space) for a in r.get("aliases", ())}

    def _check_named(self, w: dict, w_ns: str, r: dict, r_ns: str, path: str) -> None:
        w_name, r_name = _named_full_name(w, w_ns), _named_full_name(r, r_ns)
        if not self._names_match(w, w_ns, r, r_ns):
            self.problems.append(
                f"{path}: {w['type']} {w_name} renamed to {r_name} without an alias"
            )
            return
        kind = w["type"]
        if kind == "enum":
            removed = [s for s in w.get("symbols", ()) if s not in r.get("symbols", ())]
            if removed and r.get("default") is None:
                self.problems.append(
                    f"{path}: enum {r_name} symbols removed without an enum default: "
                    + ", ".join(removed)
                )
        elif kind == "fixed":
            if w.get("size") != r.get("size"):
                self.problems.append(
                    f"{path}: fixed {r_name} size changed from {w.get('size')} to {r.get('size')}"
                )
        else:
            pair = (w_name, r_name)
            if pair in self._open:  # a recursive reference: already being checked above
                return
            self._open.add(pair)
            self._check_record(w, w_name, r, r_name, path)
            self._open.discard(pair)

    def _check_record(self, w: dict, w_name: str, r: dict, r_name: str, path: str) -> None:
        w_ns, r_ns = w_name.rpartition(".")[0], r_name.rpartition(".")[0]
        w_fields = {f["name"]: f for f in w.get("fields", ())}
        for field in r.get("fields", ()):
            name = field["name"]
            source = w_fields.get(name)
            if source is None:
                source = next(
                    (w_fields[a] for a in field.get("aliases", ()) if a in w_fields), None
                )
            field_path = f"{path}.{name}"
            if source is not None:
                self.check(source["type"], w_ns, field["type"], r_ns, field_path)
            elif "default" not in field:
                self.problems.append(f"{field_path}: field added without default")
            elif not self._default_fits(field["type"], r_ns, field["default"]):
                self.problems.append(
                    f"{field_path}: field added with a default {json.dumps(field['default'])} "
                    f"that its type does not allow (a union's default must fit its first branch)"
                )

    def _default_fits(self, schema: Any, namespace: str, value: Any, depth: int = 0) -> bool:
        schema, namespace = self.r_names.resolve(schema, namespace)
        if depth > 50:
            return True
        if isinstance(schema, list):
            return bool(schema) and self._default_fits(schema[0], namespace, value, depth + 1)
        kind = _kind(schema)
        if kind == "null":
            return value is None
        if kind == "boolean":
            return isinstance(value, bool)
        if kind in ("int", "long"):
            return isinstance(value, int) and not isinstance(value, bool)
        if kind in ("float", "double"):
            return isinstance(value, int | float) and not isinstance(value, bool)
        if kind in ("bytes", "string"):
            return isinstance(value, str)
        if kind == "enum":
            return value in schema.get("symbols", ())
        if kind == "fixed":
            return isinstance(value, str) and len(value) == schema.get("size")
        if kind == "array":
            return isinstance(value, list) and all(
                self._default_fits(schema.get("items"), namespace, v, depth + 1) for v in value
            )
        if kind == "map":
            return isinstance(value, dict) and all(
                self._default_fits(schema.get("values"), namespace, v, depth + 1)
                for v in value.values()
            )
        if kind in ("record", "error"):
            inner = _named_full_name(schema, namespace).rpartition(".")[0]
            return isinstance(value, dict) and all(
                self._default_fits(f["type"], inner, value[f["name"]], depth + 1)
                if f["name"] in value
                else "default" in f
                for f in schema.get("fields", ())
            )
        return True

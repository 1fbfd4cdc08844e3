"""Decoding a pgoutput row change against its relation: tuples to Python values, and the
cache of relation shapes a decoding session describes."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import InvalidOperation
from typing import Any

from connectors.logical.pgoutput.messages import (
    UNCHANGED,
    Delete,
    Insert,
    Message,
    PgOutputError,
    PgValueError,
    Relation,
    TupleValue,
    Type,
    Update,
)
from connectors.logical.pgoutput.values import HINTS, TYPE_NAMES


def decode_tuple(
    relation: Relation, values: tuple[TupleValue, ...], *, key_only: bool = False
) -> dict[str, Any]:
    """Column name -> Python value for one tuple of ``relation``.

    Values: NULL -> ``None``; unchanged TOAST -> :data:`UNCHANGED`; text, varchar, bpchar
    (blank padding kept, exactly as PostgreSQL sends it), name, json, jsonb and unknown types
    -> ``str``; int2/int4/int8/oid -> ``int``; numeric -> ``Decimal`` (NaN and ±Infinity
    included, never float); bool -> ``bool``; date -> ``date`` ('infinity'/'-infinity' ->
    ``date.max``/``date.min``); timestamp -> naive ``datetime``; timestamptz -> aware
    ``datetime`` with the offset PG printed (infinities -> ``datetime.max``/``min`` in UTC);
    uuid -> ``UUID``. Text is decoded as UTF-8 (the database encoding must be UTF8).

    With ``key_only`` only replica-identity columns are returned: use it for 'K' old tuples,
    where the other columns are sent as null but are in fact unknown. Raises
    :class:`PgValueError` (column set) for a value that cannot be converted and
    :class:`PgOutputError` when the tuple does not match the relation's column count.
    """
    decoders = relation.decoders
    if len(values) != len(decoders):
        raise PgOutputError(
            f"tuple of {len(values)} columns for relation {relation.qualified_name} "
            f"of {len(decoders)} columns"
        )
    row: dict[str, Any] = {}
    for index, ((name, convert, is_key), raw) in enumerate(zip(decoders, values, strict=True)):
        if key_only and not is_key:
            continue
        if raw is None or raw is UNCHANGED:
            row[name] = raw
            continue
        try:
            text = raw.decode()
            row[name] = text if convert is None else convert(text)
        except UnicodeDecodeError:
            raise PgValueError(
                f"column {name!r} of {relation.qualified_name}: not UTF-8 text "
                f"(the database encoding must be UTF8)",
                column=name,
            ) from None
        except (ValueError, ArithmeticError, InvalidOperation):
            column = relation.columns[index]
            type_name = TYPE_NAMES.get(column.type_oid, str(column.type_oid))
            raise PgValueError(
                f"column {name!r} of {relation.qualified_name}: {type_name} value "
                f"{HINTS.get(column.type_oid, 'not convertible')}",
                column=name,
            ) from None
    return row


@dataclass(frozen=True, slots=True)
class RowChange:
    """One row change decoded against its relation. ``op`` is 'c', 'u' or 'd'. ``before``
    is ``None`` when the change carries no old tuple; when ``before_is_key_only`` it holds
    only the replica-identity columns."""

    relation: Relation
    op: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    before_is_key_only: bool


class RelationCache:
    """The Relation and Type messages seen in a decoding session, by OID.

    pgoutput describes a relation once per decoding session (each call of the
    ``pg_logical_slot_*_changes`` functions is one) before its first change, and again when
    it changes. Feed every message to :meth:`observe`, in order; changes then decode with
    the relation shape in force when they were written.
    """

    __slots__ = ("_relations", "_types")

    def __init__(self) -> None:
        self._relations: dict[int, Relation] = {}
        self._types: dict[int, Type] = {}

    def observe(self, message: Message) -> None:
        """Remember ``message`` if it is a Relation or Type; ignore anything else."""
        if type(message) is Relation:
            self._relations[message.relation_id] = message
        elif type(message) is Type:
            self._types[message.type_oid] = message

    def get(self, relation_id: int) -> Relation:
        """The relation's latest description; :class:`PgOutputError` if none was seen."""
        try:
            return self._relations[relation_id]
        except KeyError:
            raise PgOutputError(
                f"change for relation {relation_id} before its Relation message: "
                f"messages must be read from the start of a decoding session"
            ) from None

    def type_name(self, type_oid: int) -> str | None:
        """``namespace.name`` of a type described by a Type message, or of a built-in."""
        described = self._types.get(type_oid)
        if described is not None:
            return f"{described.namespace}.{described.name}"
        return TYPE_NAMES.get(type_oid)

    def __contains__(self, relation_id: object) -> bool:
        return relation_id in self._relations

    def __len__(self) -> int:
        return len(self._relations)

    def decode_change(self, message: Insert | Update | Delete) -> RowChange:
        """Decode an Insert, Update or Delete; see :func:`decode_tuple` for the values."""
        relation = self.get(message.relation_id)
        kind = type(message)
        if kind is Insert:
            return RowChange(relation, "c", None, decode_tuple(relation, message.new), False)
        if kind is Update:
            key_only = message.old_kind == "K"
            before = (
                None
                if message.old is None
                else decode_tuple(relation, message.old, key_only=key_only)
            )
            return RowChange(relation, "u", before, decode_tuple(relation, message.new), key_only)
        if kind is Delete:
            key_only = message.old_kind == "K"
            before = decode_tuple(relation, message.old, key_only=key_only)
            return RowChange(relation, "d", before, None, key_only)
        raise TypeError(f"not a row change: {kind.__name__}")

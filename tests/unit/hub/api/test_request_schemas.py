"""Request bodies accept exactly what their published JSON schema says (issue #18, item 11)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from hub.api.schemas import NONBLANK_TEXT, BulkBody, DismissBody, RequiredNoteBody


def accepted(model, **kw) -> bool:
    try:
        model(**kw)
    except ValidationError:
        return False
    return True


@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=20))
def test_a_required_reason_is_accepted_exactly_when_the_pattern_matches(text):
    # The schema's pattern (read by Python's re here, as by clients) and the server agree,
    # and both mean what the action code checks: something left after strip().
    meaning = bool(text.strip()) and "\x00" not in text
    assert bool(re.match(NONBLANK_TEXT, text)) is meaning
    assert accepted(RequiredNoteBody, note=text) is meaning


@pytest.mark.parametrize("blank", [" ", "\t\n", "\u3000", "\x1c", "\u00a0 "])
def test_blank_reasons_are_refused_by_the_schema(blank):
    assert not accepted(RequiredNoteBody, note=blank)


def test_a_dismissal_names_a_reason_code_and_may_leave_out_the_words():
    # Which codes need words is the configuration's: checked by the service (a 422 naming it).
    assert accepted(DismissBody, reason_code="registry_wrong")
    assert not accepted(DismissBody, reason="same person")


def test_a_bulk_body_names_exactly_one_non_null_target():
    assert accepted(BulkBody, action="resolve", ids=[1])
    assert accepted(BulkBody, action="resolve", filter={})
    for kw in ({}, {"ids": [1], "filter": {}}, {"ids": None}, {"filter": None}, {"ids": []}):
        assert not accepted(BulkBody, action="resolve", **kw), kw
    schema = BulkBody.model_json_schema()
    assert schema["oneOf"] == [{"required": ["ids"]}, {"required": ["filter"]}]
    assert "default" not in schema["properties"]["ids"]


def test_bulk_integers_are_json_integers_not_booleans_or_strings():
    assert BulkBody(action="resolve", ids=[5.0], limit=3.0).ids == [5]
    for ids in ([True], ["5"], [5.5], [0], [2**53]):
        assert not accepted(BulkBody, action="resolve", ids=ids), ids
    assert not accepted(BulkBody, action="resolve", filter={"max_age_days": False})

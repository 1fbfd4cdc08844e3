"""The tests every ID scheme must pass (the :class:`hub.idschemes.IdScheme` contract),
written once and run with each scheme's own cases."""

from __future__ import annotations

from typing import ClassVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.idschemes import IdInfo, IdPart, IdScheme

BLANKS = [None, "", "  ", " - . "]
"""Values that hold no ID at all, whatever the scheme."""


class IdSchemeContract:
    """Subclass it as ``Test…`` in a scheme's test module and set the cases: ``scheme``,
    ``malformed`` as ``(value, part of its reason)`` pairs, and ``spellings``, raw forms that
    all normalize to ``canonical``."""

    scheme: ClassVar[IdScheme]
    malformed: ClassVar[list[tuple[str, str]]]
    spellings: ClassVar[list[str]]
    canonical: ClassVar[str]

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "reason_part" in metafunc.fixturenames:
            metafunc.parametrize(("value", "reason_part"), self.malformed)
        if "raw" in metafunc.fixturenames:
            metafunc.parametrize("raw", self.spellings)
        if "blank" in metafunc.fixturenames:
            metafunc.parametrize("blank", BLANKS)

    def test_malformed_ids_are_invalid_with_a_reason(self, value, reason_part):
        info = self.scheme.parse(value)
        assert info.kind == "invalid"
        assert reason_part in info.reason

    def test_normalize_strips_separators_and_converts_arabic_indic_digits(self, raw):
        assert self.scheme.normalize(raw) == self.canonical

    def test_blank_id_normalizes_to_none(self, blank):
        assert self.scheme.normalize(blank) is None
        assert self.scheme.inspect(blank) is None

    def test_explain_reads_nothing_from_a_malformed_id(self, value, reason_part):
        assert self.scheme.explain(value) == ()

    def test_explain_names_every_attribute_parse_decodes_and_agrees_with_it(self):
        info = self.scheme.parse(self.canonical)
        assert info.kind == "current"
        parts = self.scheme.explain(self.canonical)
        assert parts and all(p.text().startswith(p.positions) for p in parts)
        assert explained(parts) == decoded(info)

    def test_explain_never_raises_and_agrees_with_parse_on_any_digits(self):
        scheme = self.scheme  # one property per scheme: hypothesis keys it by function

        @given(digits=st.text("0123456789", min_size=0, max_size=16))
        def check(digits: str) -> None:
            info = scheme.parse(digits)
            parts = scheme.explain(digits)
            if info.kind == "invalid":
                assert parts == ()
            elif info.kind == "current":
                assert explained(parts) == decoded(info)
            else:
                assert parts and all(p.field is None for p in parts)

        check()


def explained(parts: tuple[IdPart, ...]) -> dict[str, str]:
    """The record fields an explanation speaks about, with what it says of each."""
    out = {p.field: p.value for p in parts if p.field is not None}
    assert len(out) == sum(p.field is not None for p in parts), "one part per field"
    return out


def decoded(info: IdInfo) -> dict[str, str]:
    out = {}
    if info.region_code is not None:
        out["province_code"] = info.region_code
    if info.birth_date is not None:
        out["date_of_birth"] = info.birth_date.isoformat()
    elif info.birth_year is not None:
        out["date_of_birth"] = str(info.birth_year)
    if info.sex is not None:
        out["sex"] = info.sex
    return out

"""The tests every ID scheme must pass (the :class:`hub.idschemes.IdScheme` contract),
written once and run with each scheme's own cases."""

from __future__ import annotations

from typing import ClassVar

import pytest

from hub.idschemes import IdScheme

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

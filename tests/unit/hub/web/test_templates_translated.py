"""No template shows English text that bypasses the catalogues: every word a page shows, in
its text or its visible attributes (placeholder, title, aria-label, data-confirm), comes from
``_()`` / ``ngettext()`` or from data."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

TEMPLATES = Path(__file__).resolve().parents[4] / "hub" / "web" / "templates"
VISIBLE_ATTRIBUTES = re.compile(r'\b(?:placeholder|title|aria-label|data-confirm|alt)="([^"]*)"')
# Codes shown as codes: the audit log's action filter lists action names.
ALLOWED = {"view, resolve, …"}


def _outside_jinja(source: str) -> str:
    source = re.sub(r"\{#.*?#\}", " ", source, flags=re.S)
    source = re.sub(r"\{\{.*?\}\}", " ", source, flags=re.S)
    return re.sub(r"\{%.*?%\}", " ", source, flags=re.S)


@pytest.mark.parametrize("template", sorted(p.name for p in TEMPLATES.glob("*.html")))
def test_no_literal_english_in(template):
    source = _outside_jinja((TEMPLATES / template).read_text(encoding="utf-8"))
    attributes = [
        a
        for a in VISIBLE_ATTRIBUTES.findall(source)
        if re.search(r"[A-Za-z]{2,}", a) and a not in ALLOWED
    ]
    text = re.sub(r"<[^>]*>", " ", source)
    words = re.findall(r"[A-Za-z][A-Za-z']+", text)
    assert (words, attributes) == ([], [])

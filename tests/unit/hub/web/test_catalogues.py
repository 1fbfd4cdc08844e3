"""The console's catalogues: every message of the .pot translated in Vietnamese and Arabic,
with the same ``%(name)s`` placeholders, and the catalogues in step with the templates."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from hub.vocabulary import CANONICAL_FIELDS, MISMATCH_STATUSES, RULE_CODES, SEVERITIES
from hub.web import i18n, labels

LOCALE_DIR = Path(i18n.__file__).parent / "locale"
PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]")


def _catalogue(path: Path, locale: str | None = None):
    with path.open("rb") as fp:
        return read_po(fp, locale=locale)


def _messages(cat):
    return {m.id: m for m in cat if m.id}


POT = _messages(_catalogue(LOCALE_DIR / "messages.pot"))


def test_the_pot_holds_the_consoles_messages():
    ids = {m if isinstance(m, str) else m[0] for m in POT}
    assert len(ids) > 250
    for msg in ("Mismatch queue", "Sign in", "Dashboard", "Citizen ID missing", "Full name"):
        assert msg in ids


@pytest.mark.parametrize("locale", ["vi", "ar"])
def test_every_message_is_translated_with_the_same_placeholders(locale):
    cat = _catalogue(LOCALE_DIR / locale / "LC_MESSAGES" / "messages.po", locale)
    got = _messages(cat)
    assert set(got) == set(POT), "run `make i18n`: the .po is out of step with the .pot"
    problems = []
    for msgid, m in got.items():
        ids = (msgid,) if isinstance(msgid, str) else msgid
        strings = (m.string,) if isinstance(m.string, str) else m.string
        if isinstance(msgid, tuple):
            assert len(strings) == cat.num_plurals, msgid
        if "fuzzy" in m.flags:
            problems.append(("fuzzy", msgid))
        wanted = set(PLACEHOLDER.findall(ids[-1])) | set(PLACEHOLDER.findall(ids[0]))
        for s in strings:
            if not s or not s.strip():
                problems.append(("empty", msgid))
            elif set(PLACEHOLDER.findall(s)) != wanted:
                problems.append(("placeholders", msgid, s))
            elif s.count("%") != len(PLACEHOLDER.findall(s)) + 2 * s.count("%%"):
                problems.append(("stray %", msgid, s))
    assert problems == []


@pytest.mark.parametrize("locale", ["vi", "ar"])
def test_rule_field_severity_and_status_labels_are_translated(locale):
    codes = [
        (labels.rule, RULE_CODES),
        (labels.field, CANONICAL_FIELDS),
        (labels.severity, SEVERITIES),
        (labels.status, MISMATCH_STATUSES),
    ]
    with i18n.use_locale("en"):
        english = {(f, c): f(c) for f, cs in codes for c in cs}
    with i18n.use_locale(locale):
        for (f, c), en in english.items():
            assert f(c) and f(c) != en, (locale, c)


def test_english_pages_show_the_codes_themselves():
    assert labels.rule("NAME_MISMATCH") == "NAME_MISMATCH"
    assert labels.status("in_review") == "in_review"
    with i18n.use_locale("vi"):
        assert labels.rule("NAME_MISMATCH") == "Tên khác nhau"
        assert labels.status("in_review") == "đang xem xét"


def test_percentages_in_the_locales_format():
    assert i18n.format_percent(0.2) == "20%"
    assert i18n.format_percent(0.996) == "99.6%"
    assert i18n.format_percent(None) == "—"
    with i18n.use_locale("vi"):
        assert i18n.format_percent(0.996) == "99,6%"


def test_an_unknown_code_is_shown_as_it_is():
    with i18n.use_locale("vi"):
        assert labels.rule("NEW_RULE") == "NEW_RULE"
        assert labels.field(None) == ""


def test_messages_and_plurals_in_the_current_locale():
    assert i18n.gettext("Mismatch queue") == "Mismatch queue"
    with i18n.use_locale("vi"):
        assert i18n.gettext("Mismatch queue") == "Hàng đợi sai lệch"
        assert i18n.gettext("Select %(id)s", id=7) == "Chọn 7"
    with i18n.use_locale("ar"):
        assert i18n.direction() == "rtl"
        assert i18n.ngettext("%(num)s day", "%(num)s days", 11) == "11 يومًا"
        assert i18n.ngettext("%(num)s day", "%(num)s days", 3) == "3 أيام"
    assert i18n.direction() == "ltr"


@pytest.mark.parametrize(
    ("user", "header", "want"),
    [
        ("ar", "vi-VN,vi;q=0.9", "ar"),
        (None, "vi-VN,vi;q=0.9,en-US;q=0.8", "vi"),
        (None, "fr-FR,fr;q=0.9,ar;q=0.5", "ar"),
        (None, "en-GB", "en"),
        (None, "de-DE", "en"),
        (None, "vi;q=0, ar", "ar"),
        (None, "", "en"),
        (None, None, "en"),
        ("xx", "garbage;;q=x,,", "en"),
    ],
)
def test_locale_choice(user, header, want):
    assert i18n.choose(user, header) == want


def test_dates_and_numbers_in_the_locales_format():
    from datetime import UTC, date, datetime

    at = datetime(2026, 3, 9, 14, 5, tzinfo=UTC)
    with i18n.use_locale("vi"):
        assert i18n.format_decimal(1234567) == "1.234.567"
        assert i18n.format_date(date(2026, 3, 9), "short") == "9/3/26"  # day first
        assert i18n.format_date(date(2026, 3, 9), "long") == "9 tháng 3, 2026"
    with i18n.use_locale("en"):
        assert i18n.format_decimal(1234567) == "1,234,567"
        assert i18n.format_datetime(at, "short").startswith("3/9/26")
    with i18n.use_locale("ar"):
        assert "مارس" in i18n.format_date(date(2026, 3, 9), "long")


def test_the_id_schemes_parts_are_translated():
    assert labels.id_positions("digits 1–3") == "digits 1–3"  # English: as the scheme says
    with i18n.use_locale("vi"):
        assert labels.id_positions("digits 1–3") == "chữ số 1–3"
        assert labels.id_positions("digit 4") == "chữ số 4"
        assert labels.id_part("century and sex") == "thế kỷ và giới tính"
        assert labels.id_part("male, born 1900–1999") == "nam, sinh 1900–1999"
        assert labels.id_part("Hà Nội") == "Hà Nội"  # data, not a message
    with i18n.use_locale("ar"):
        assert labels.id_part("born 2000–2099") == "مولود 2000–2099"

"""The console's translations: the gettext functions pages and flash messages call.

Every user-visible string of the UI goes through them: ``{{ _("Queue") }}`` in templates (the
``jinja2.ext.i18n`` extension, new-style: ``_("%(n)s open", n=3)``), :func:`gettext` in Python.
The catalogues are Babel's: ``hub/web/locale/<locale>/LC_MESSAGES/messages.po`` (text, kept in
the repository; ``make i18n`` extracts and updates them), read and compiled in memory at first
use, once per locale. The request's locale is a context variable, set per request by the UI's
locale dependency (:mod:`hub.api.ui_locale`): the user's choice, else the browser's
``Accept-Language``, else English."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import date, datetime
from functools import cache, lru_cache
from importlib.resources import files

from babel import Locale, UnknownLocaleError, dates, numbers
from babel.core import negotiate_locale
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

DEFAULT = "en"
#: The console's languages, with their names as their speakers write them (the selector).
LOCALES: dict[str, str] = {"en": "English", "vi": "Tiếng Việt", "ar": "العربية"}
RTL = frozenset({"ar"})

_locale: ContextVar[str] = ContextVar("hub_ui_locale", default=DEFAULT)


def current() -> str:
    """The locale of the request being served (``en`` outside one)."""
    return _locale.get()


def set_locale(locale: str) -> None:
    _locale.set(locale if locale in LOCALES else DEFAULT)


@contextmanager
def use_locale(locale: str) -> Iterator[None]:
    """``locale`` for the duration of the block (tests, background renders)."""
    token = _locale.set(locale if locale in LOCALES else DEFAULT)
    try:
        yield
    finally:
        _locale.reset(token)


def direction(locale: str | None = None) -> str:
    return "rtl" if (locale or current()) in RTL else "ltr"


def catalogue_path(locale: str):  # noqa: ANN201 - an importlib Traversable
    return files("hub.web") / "locale" / locale / "LC_MESSAGES" / "messages.po"


@cache
def translations(locale: str) -> NullTranslations:
    """The compiled catalogue of ``locale`` (English: the messages themselves)."""
    if locale == DEFAULT or locale not in LOCALES:
        return NullTranslations()
    path = catalogue_path(locale)
    if not path.is_file():
        return NullTranslations()
    with path.open("rb") as fp:
        catalog = read_po(fp, locale=locale)
    buf = io.BytesIO()
    write_mo(buf, catalog, use_fuzzy=False)
    buf.seek(0)
    return Translations(buf, domain="messages")


def choose(user_locale: str | None, accept_language: str | None) -> str:
    """The user's locale if they chose one, else the best of the browser's, else English."""
    if user_locale in LOCALES:
        return user_locale
    preferred = parse_accept_language(accept_language or "")
    return negotiate_locale(preferred, list(LOCALES), sep="-") or DEFAULT


def parse_accept_language(header: str) -> list[str]:
    """The languages of an ``Accept-Language`` header, best first (``q=0`` left out); each
    also followed by its bare language (``vi-VN`` → ``vi-VN``, ``vi``)."""
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate(header.split(",")[:32]):
        tag, _, params = part.strip().partition(";")
        tag = tag.strip()
        if not tag or tag == "*" or len(tag) > 35:
            continue
        q = 1.0
        for p in params.split(";"):
            k, _, v = p.strip().partition("=")
            if k.strip() == "q":
                try:
                    q = float(v)
                except ValueError:
                    q = 0.0
        if q > 0:
            ranked.append((-q, i, tag))
    out: list[str] = []
    for _, _, tag in sorted(ranked):
        for t in (tag, tag.split("-")[0]):
            if t.lower() not in (o.lower() for o in out):
                out.append(t)
    return out


# ------------------------------------------------------------------------------ messages


def raw_gettext(message: str) -> str:
    """The translation of ``message``, unformatted (Jinja's new-style gettext formats it)."""
    return translations(current()).gettext(message)


def raw_ngettext(singular: str, plural: str, n: int) -> str:
    return translations(current()).ngettext(singular, plural, n)


def gettext(message: str, **variables: object) -> str:
    """``message`` in the current locale, with ``%(name)s`` variables filled in."""
    message = raw_gettext(message)
    return message % variables if variables else message


def ngettext(singular: str, plural: str, n: int, **variables: object) -> str:
    """The singular or plural form for ``n`` (available to the message as ``%(num)s``)."""
    return raw_ngettext(singular, plural, n) % {"num": n, **variables}


def N_(message: str) -> str:
    """Marks ``message`` for extraction without translating it (translated where shown)."""
    return message


_ = gettext


# ------------------------------------------------------------------------------- formats


def _babel_locale() -> Locale:
    return _parsed_locale(current())


@cache
def _parsed_locale(locale: str) -> Locale:
    """Babel's ``Locale`` of ``locale``, parsed once (a parse costs 7-17 µs, and a queue page
    formats a hundred dates)."""
    try:
        return Locale.parse(locale)
    except (UnknownLocaleError, ValueError):
        return Locale.parse(DEFAULT)


def format_datetime(value: datetime | None, format: str = "medium") -> str:
    """A date and time in the locale's format (``short``, ``medium``, ``long``)."""
    if value is None:
        return ""
    return dates.format_datetime(value, format, tzinfo=value.tzinfo, locale=_babel_locale())


def format_date(value: date | datetime | None, format: str = "medium") -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        try:
            value = date.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, datetime):
        value = value.date()  # what Babel formats of it
    return _formatted_date(value, format, current())


@lru_cache(maxsize=4096)
def _formatted_date(value: date, format: str, locale: str) -> str:
    """A date in a locale's format, remembered: a page shows the same few days many times
    (25 µs a call in Babel)."""
    return dates.format_date(value, format, locale=_parsed_locale(locale))


def format_decimal(value: float | int | None, format: str | None = None) -> str:
    if value is None:
        return ""
    return numbers.format_decimal(value, format=format, locale=_babel_locale())


def format_percent(value: float | None, format: str | None = None) -> str:
    """A share as a percentage in the locale's format: whole percents, except just below 100
    (99.6 % is not "100 %"), as :func:`hub.web.charts.percent` does in English."""
    if value is None:
        return "—"
    if format is None:
        format = "#,##0%" if value < 0.995 or value == 1 else "#,##0.0%"
    return numbers.format_percent(value, format=format, locale=_babel_locale())


def install(env) -> None:  # noqa: ANN001 - a jinja2.Environment
    """The gettext callables, locale filters and ``lang``/``dir`` globals in ``env``."""
    env.add_extension("jinja2.ext.i18n")
    env.install_gettext_callables(raw_gettext, raw_ngettext, newstyle=True)
    env.filters.update(
        datetime=format_datetime,
        date=format_date,
        decimal=format_decimal,
        percent_l=format_percent,
    )
    env.globals.update(current_locale=current, text_direction=direction, ui_locales=LOCALES)

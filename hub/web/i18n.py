"""The console's translations: the gettext functions pages and flash messages call.

Every user-visible string of the UI goes through them: ``{{ _("Queue") }}`` in templates (the
``jinja2.ext.i18n`` extension, new-style: ``_("%(n)s open", n=3)``), :func:`gettext` in Python.
Until catalogues are compiled in, they return the English message."""

from __future__ import annotations


def gettext(message: str, **variables: object) -> str:
    """``message`` in the current locale, with ``%(name)s`` variables filled in."""
    return message % variables if variables else message


def ngettext(singular: str, plural: str, n: int, **variables: object) -> str:
    """The singular or plural form for ``n`` (available to the message as ``%(num)s``)."""
    message = singular if n == 1 else plural
    return message % {"num": n, **variables}


_ = gettext

"""Pluggable citizen-ID schemes: normalize a raw ID, then read what its structure encodes.

The contract is :class:`~hub.idschemes.base.IdScheme`; a scheme is one module here and one
entry in :data:`SCHEMES`, which the config's ``id_scheme`` names.
"""

from __future__ import annotations

from hub.errors import ConfigError
from hub.idschemes.base import IdInfo, IdPart, IdScheme
from hub.idschemes.eg import EgyptNationalNumber
from hub.idschemes.vn import VietnamPersonalId

__all__ = ["SCHEMES", "IdInfo", "IdPart", "IdScheme", "get_scheme"]

SCHEMES: dict[str, IdScheme] = {
    scheme.name: scheme for scheme in (EgyptNationalNumber(), VietnamPersonalId())
}


def get_scheme(name: str) -> IdScheme:
    """Return the registered scheme called ``name`` or raise :class:`ConfigError`."""
    try:
        return SCHEMES[name]
    except KeyError:
        known = ", ".join(sorted(SCHEMES))
        raise ConfigError([f"id_scheme: unknown scheme {name!r} (known: {known})"]) from None

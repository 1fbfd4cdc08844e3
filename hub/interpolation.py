"""``${VAR}`` / ``${VAR:-default}`` references in the config file, expanded from the
environment before validation (SPEC §8)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class InterpolationError(ValueError):
    """A malformed ``${…}`` reference; the message never quotes the string (it may be a secret)."""


def interpolate_string(text: str, env: Mapping[str, str]) -> tuple[str, list[str]]:
    """Expand one string; return (result, names of unset variables without a default).

    Syntax: ``${NAME}``, ``${NAME:-default}`` (default: any text without ``}`` or ``${``),
    and ``$${`` for a literal ``${``. NAME is a letter or ``_``, then letters, digits, ``_``.
    A ``$`` not followed by ``{`` is literal. Raises InterpolationError on a malformed
    reference (unterminated, empty name, bad character, nested reference).
    """
    out: list[str] = []
    unset: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if text.startswith("$${", i):
            out.append("${")
            i += 3
            continue
        if not text.startswith("${", i):
            nxt = text.find("$", i + 1)
            nxt = n if nxt < 0 else nxt
            out.append(text[i:nxt])
            i = nxt
            continue
        start = i
        close = text.find("}", i + 2)
        if close < 0:
            raise InterpolationError(
                f"unterminated ${{ at character {start + 1} (no closing }}; "
                "write $${ for a literal ${)"
            )
        body = text[i + 2 : close]
        m = _ENV_NAME.match(body)
        if m is None:
            if not body or body.startswith(":"):
                raise InterpolationError(f"empty variable name in ${{}} at character {start + 1}")
            raise InterpolationError(
                f"bad variable name in ${{…}} at character {start + 1}: a name starts with a "
                f"letter or _ (got {body[0]!r})"
            )
        name, rest = m.group(0), body[m.end() :]
        if rest == "":
            default = None
        elif rest.startswith(":-"):
            default = rest[2:]
            if "${" in default:
                raise InterpolationError(
                    f"nested ${{…}} in the default of ${{{name}:-…}} is not supported"
                )
        else:
            raise InterpolationError(
                f"bad character {rest[0]!r} in ${{{name}…}} at character "
                f"{start + 3 + m.end()}: names are letters, digits and _, "
                "optionally followed by :-default"
            )
        if name in env:
            out.append(env[name])
        elif default is not None:
            out.append(default)
        else:
            unset.append(name)
        i = close + 1
    return "".join(out), unset


def interpolate(data: Any, env: Mapping[str, str], path: str = "") -> tuple[Any, list[str]]:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string; return (data, problems).

    Each problem is ``key.path: message``; see interpolate_string for the syntax.
    """
    problems: list[str] = []
    if isinstance(data, str):
        where = path or "<root>"
        try:
            value, unset = interpolate_string(data, env)
        except InterpolationError as exc:
            return data, [f"{where}: {exc}"]
        problems += [f"{where}: environment variable {name} is not set" for name in unset]
        return value, problems
    if isinstance(data, dict):
        out = {}
        for k, v in data.items():
            out[k], p = interpolate(v, env, f"{path}.{k}" if path else str(k))
            problems += p
        return out, problems
    if isinstance(data, list):
        items = []
        for i, v in enumerate(data):
            item, p = interpolate(v, env, f"{path}[{i}]")
            items.append(item)
            problems += p
        return items, problems
    return data, problems

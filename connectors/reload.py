"""Re-reading the config file in a running connector process: what a ``restart`` or
``resnapshot`` request, or SIGHUP, may apply to one connector, and what it must refuse.

A reload re-reads the file the process was started with (:func:`hub.config.reload_config`)
and compares this connector's source with the one it runs:

- mapping settings (``columns`` with their value maps, formats and defaults, ``snapshot``,
  ``poll`` and ``logical`` tuning) are applied by every reload, SIGHUP included;
- what the connector reads (``url``, ``table``, ``key``, ``debezium``) is applied by a request only: a
  SIGHUP refuses it for that connector, since an operator should choose when a connector
  starts reading another table;
- ``capture`` and the logical ``slot``/``publication`` names are refused by every reload: a
  process restart (after ``hub connector drop`` for a new slot) applies them;
- the process's own settings (``kafka``, ``database``, ``id_scheme``, ``metrics``,
  ``logging``) are never applied: the result says a process restart is needed and the
  process keeps the ones it started with.

``rules`` are the reconciler's and are not compared. Nothing here logs a value from the
config: only the names of the changed keys (a URL may hold a password).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from connectors.mapping import RecordMapper
from hub.config import HubConfig, SourceConfig, reload_config
from hub.errors import ConfigError, FatalError
from hub.idschemes import get_scheme

APPLIED, UNCHANGED, REFUSED = "applied", "unchanged", "refused"

PROCESS_KEYS = ("kafka", "database", "id_scheme", "metrics", "logging")
"""Settings of the whole process: a reload reports their change and keeps the old ones."""
READ_KEYS = ("url", "table", "key", "debezium")
"""What the connector reads: applied by a restart or re-snapshot request, not by SIGHUP."""
RESTART_KEYS = ("capture", "logical.slot", "logical.publication")
"""Applied only by a process restart (a new capture mode, or a new slot)."""
IGNORED_KEYS = ("rules",)
"""Source settings the connector does not use (the reconciler reads them)."""
_MAX_SHOWN = 6
_ABSENT = object()


@dataclass(frozen=True)
class Reload:
    """The outcome of one reload for one connector.

    ``config`` is the config to run with when ``outcome`` is ``applied`` (the running one
    with this connector's new source); ``note`` names process settings that changed in the
    file and were not applied.
    """

    outcome: str
    detail: str = ""
    config: HubConfig | None = None
    note: str = ""

    @property
    def result(self) -> str:
        """One line: ``applied: columns.sex.map changed``, ``refused: …``, ``unchanged``."""
        text = self.outcome + (f": {self.detail}" if self.detail else "")
        return f"{text}; {self.note}" if self.note else text

    def source(self, name: str) -> SourceConfig:
        assert self.config is not None
        return self.config.sources()[name]


def reload_source(
    current: HubConfig,
    name: str,
    *,
    on_signal: bool = False,
    load: Callable[[HubConfig], HubConfig] = reload_config,
) -> Reload:
    """Re-read the config file and decide what this connector may apply (see the module
    doc). Never raises for a bad file: the outcome is ``refused`` with the reason. A config
    built in code (tests, benches) has no file: ``unchanged``, and a restart goes on."""
    if current.file is None and load is reload_config:
        return Reload(UNCHANGED, "not re-read: the config was not loaded from a file")
    try:
        fresh = load(current)
    except ConfigError as exc:
        shown = "; ".join(exc.problems[:3]) + (" …" if len(exc.problems) > 3 else "")
        where = f" {exc.source}" if exc.source else ""
        return Reload(REFUSED, f"invalid config{where}: {shown}")
    except FatalError as exc:
        return Reload(REFUSED, str(exc))
    return plan(current, fresh, name, on_signal=on_signal)


def plan(current: HubConfig, fresh: HubConfig, name: str, *, on_signal: bool = False) -> Reload:
    """What reloading ``fresh`` means for connector ``name`` running with ``current``."""
    process = [k for k in PROCESS_KEYS if _dump(getattr(current, k)) != _dump(getattr(fresh, k))]
    note = (
        f"{', '.join(process)} changed: needs a process restart (running with the old settings)"
        if process
        else ""
    )
    old = current.sources()[name]
    new = fresh.sources().get(name)
    if new is None:
        return Reload(REFUSED, f"{name} is no longer in the config file (stop it, then "
                      f"`hub connector drop {name}`)", note=note)  # fmt: skip
    changed = changed_keys(source_data(old), source_data(new))
    if not changed:
        return Reload(UNCHANGED, note=note)
    needs_restart = [k for k in changed if _under(k, RESTART_KEYS)]
    if needs_restart:
        return Reload(REFUSED, f"{_names(needs_restart)} changed: needs a process restart",
                      note=note)  # fmt: skip
    read = [k for k in changed if _under(k, READ_KEYS)]
    if on_signal and read:
        return Reload(REFUSED, f"{_names(read)} changed: SIGHUP applies mappings only; "
                      f"apply it with `hub connector restart {name}`", note=note)  # fmt: skip
    try:
        RecordMapper(name, new, get_scheme(current.id_scheme))
    except (ValueError, KeyError, FatalError) as exc:
        return Reload(REFUSED, f"the new mapping does not build: {exc}", note=note)
    return Reload(APPLIED, f"{_names(changed)} changed", with_source(current, name, new), note)


def with_source(config: HubConfig, name: str, source: SourceConfig) -> HubConfig:
    """``config`` with connector ``name``'s source replaced (its file remembered)."""
    if name == "registry":
        return config.model_copy(update={"registry": source})
    return config.model_copy(update={"sectors": {**config.sectors, name: source}})


def source_data(source: SourceConfig) -> dict[str, Any]:
    """The settings of ``source`` as plain data, ``columns`` in their long form (a column
    given as ``sex: gioi_tinh`` equals ``sex: {column: gioi_tinh}``)."""
    data = source.model_dump(mode="json", exclude=set(IGNORED_KEYS))
    data["columns"] = {
        f: source.mapping(f).model_dump(mode="json")  # type: ignore[union-attr]
        for f in source.columns
    }
    data["key"] = list(source.key_columns)
    return data


def changed_keys(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths of the keys whose values differ (down to the first non-mapping)."""
    out: list[str] = []
    for key in sorted(set(old) | set(new), key=str):
        a, b = old.get(key, _ABSENT), new.get(key, _ABSENT)
        path = f"{prefix}{key}"
        if isinstance(a, Mapping) and isinstance(b, Mapping) and not path.endswith(".map"):
            out += changed_keys(a, b, f"{path}.")
        elif a != b:
            out.append(path)
    return out


def _under(path: str, roots: tuple[str, ...]) -> bool:
    return any(path == r or path.startswith(f"{r}.") for r in roots)


def _names(keys: list[str]) -> str:
    shown = ", ".join(keys[:_MAX_SHOWN])
    return shown + (f" and {len(keys) - _MAX_SHOWN} more" if len(keys) > _MAX_SHOWN else "")


def _dump(value: Any) -> Any:
    # Python mode: SecretStr values compare by their secret (json mode masks them all alike).
    return value.model_dump() if hasattr(value, "model_dump") else value

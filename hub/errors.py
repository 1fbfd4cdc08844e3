"""The hub's error taxonomy: every call site knows whether to stop, retry or skip."""

from __future__ import annotations


class HubError(Exception):
    """Root of every error the hub raises on purpose."""


class FatalError(HubError):
    """The process cannot go on (bad config, missing privilege): stop with a clear message."""


class RetriableError(HubError):
    """A transient failure (server unreachable, timeout): retry with backoff (tenacity)."""


class SkippableError(HubError):
    """One record cannot be processed: dead-letter it with the reason and go on."""

    def __init__(self, reason: str, *, column: str | None = None, record_key: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.column = column
        self.record_key = record_key


class ConfigError(FatalError):
    """The config file is invalid; ``problems`` holds one ``key.path: message`` line each."""

    def __init__(self, problems: list[str], source: str | None = None):
        self.problems = problems
        self.source = source
        head = f"invalid config {source}" if source else "invalid config"
        super().__init__(head + ":\n" + "\n".join(f"  {p}" for p in problems))

"""The hub's error taxonomy: every call site knows whether to stop, retry or skip, and every
command line exits with the status its error maps to (:func:`run_cli`)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import click


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


# ------------------------------------------------------------------ exit statuses

EXIT_FAILURE = 1
"""A command failed: a check found problems, a server cannot be reached, a hub error."""
EXIT_USAGE = 2
"""The command line or the config file is wrong (click's status for usage errors)."""
EXIT_INTERRUPTED = 130
"""Ctrl-C or an aborted prompt (128 + SIGINT)."""


def exit_status(exc: BaseException) -> tuple[int, str] | None:
    """How a command that ``exc`` ends exits: ``(status, one line for stderr)``, or ``None``
    when ``exc`` is a bug, whose traceback should show.

    A bad config is a usage error; any other hub error, and a database or broker that
    cannot be reached (an operator's problem, not a bug), is a failure.
    """
    if isinstance(exc, ConfigError):
        return EXIT_USAGE, f"hub: {exc}"
    if isinstance(exc, HubError):
        return EXIT_FAILURE, f"hub: {exc}"
    if _is_unreachable(exc):
        from hub.logs import error_summary

        return EXIT_FAILURE, f"hub: a server cannot be reached: {error_summary(exc)}"
    return None


def _is_unreachable(exc: BaseException) -> bool:
    import psycopg
    import sqlalchemy.exc
    from kafka.errors import KafkaConnectionError, KafkaTimeoutError

    unreachable = (
        sqlalchemy.exc.OperationalError,
        sqlalchemy.exc.InterfaceError,
        psycopg.OperationalError,
        KafkaConnectionError,
        KafkaTimeoutError,
        ConnectionError,
    )
    return isinstance(exc, unreachable)


def run_cli(command: click.Command, prog_name: str) -> None:
    """Run a click command as a console entry point: every error ends the process with its
    status from :func:`exit_status` and one clear message, never a traceback (bugs aside).

    A click usage error keeps its own status (2); a plain ``click.ClickException`` (status 1)
    is reported as 2 too, since it is raised for arguments the command cannot act on.
    """
    import click

    try:
        command.main(standalone_mode=False, prog_name=prog_name)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("aborted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(EXIT_USAGE if exc.exit_code == EXIT_FAILURE else exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:
        status = exit_status(exc)
        if status is None:
            raise
        click.echo(status[1], err=True)
        sys.exit(status[0])

"""What every ``hub`` command shares: the ``--config`` option, accepted before or after any
subcommand, the context object that loads the config once, and the options of the
long-running commands (``--metrics-listen``, ``--no-metrics``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from hub.config import HubConfig, load_config, parse_host_port

CONFIG_PARAM = "config_path"


class ConfigContext:
    """The root context object: the config path the command line chose, the config on use.

    ``config_path`` is the last ``--config`` given (the deepest subcommand's wins); None
    falls back to ``HUB_CONFIG``, then ``hub.yaml`` (hub.config.config_path).
    """

    def __init__(self, config_path: str | None = None):
        self.config_path = config_path
        self._config: HubConfig | None = None

    @property
    def config(self) -> HubConfig:
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config


def _remember_config_path(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is None:
        return
    root = ctx.find_root()
    if root.obj is None:
        root.obj = ConfigContext()
    root.obj.config_path = value
    root.obj._config = None


def config_option() -> click.Option:
    """The one ``--config`` option; every command of the tree gets its own copy of it."""
    return click.Option(
        ["--config", CONFIG_PARAM],
        metavar="FILE",
        expose_value=False,
        is_eager=True,
        callback=_remember_config_path,
        help="Config file (default hub.yaml; env HUB_CONFIG). Accepted before or after "
        "the subcommand; the last one given wins.",
    )


def with_config_option(command: click.Command) -> click.Command:
    """Give ``command`` and every command below it the ``--config`` option (idempotent)."""
    if not any(p.name == CONFIG_PARAM for p in command.params):
        command.params.append(config_option())
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            with_config_option(sub)
    return command


class HubGroup(click.Group):
    """A group whose commands (and their subcommands, however defined) all take ``--config``.

    Subgroups made with ``@group.group()`` are HubGroups too.
    """

    group_class = type

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        with_config_option(self)

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        super().add_command(with_config_option(cmd), name)


def config_of(ctx: click.Context | None = None) -> HubConfig:
    """The config of the running command (its ``--config``, else HUB_CONFIG or hub.yaml)."""
    ctx = ctx or click.get_current_context()
    root = ctx.find_root()
    if root.obj is None:
        root.obj = ConfigContext()
    return root.obj.config


class HostPort(click.ParamType):
    """A ``host:port`` / ``[ipv6]:port`` to listen on (port 0 = any free port)."""

    name = "HOST:PORT"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        try:
            parse_host_port(str(value), allow_any_port=True)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        return str(value)


def metrics_options(role: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--metrics-listen HOST:PORT`` and ``--no-metrics`` for the process of ``role``; the
    command receives ``metrics_listen`` (str | None) and ``no_metrics`` (bool)."""

    def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
        f = click.option("--no-metrics", is_flag=True, help="Serve no metrics.")(f)
        return click.option(
            "--metrics-listen",
            type=HostPort(),
            metavar="HOST:PORT",
            help=f"Serve Prometheus metrics here (default: metrics.listen.{role} of the "
            "config, or metrics.listen when it is one address).",
        )(f)

    return decorate

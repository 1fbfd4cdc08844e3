"""The ``hub`` command: one entry point with a subcommand per job (SPEC §8)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from hub.cliconfig import ConfigContext, HubGroup, metrics_options
from hub.config import config_path
from hub.errors import EXIT_FAILURE, run_cli

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
Ctx = ConfigContext  # the root context object every command reads its config from

pass_ctx = click.make_pass_decorator(ConfigContext, ensure=True)


@click.group(cls=HubGroup, context_settings=CONTEXT)
@click.version_option(package_name="registry-hub", prog_name="hub")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Registry Hub: keep sector databases in agreement with the population registry.

    Every subcommand takes --config FILE, before or after its name (the last one wins).
    """
    ctx.ensure_object(ConfigContext)


@cli.command()
@pass_ctx
def check(ctx: Ctx) -> None:
    """Validate the config file, then try every database and the Kafka bootstrap servers."""
    from hub.checks import check_targets

    config = ctx.config
    click.echo(f"ok   config                   {config_path(ctx.config_path)}")
    results = check_targets(config)
    for r in results:
        click.echo(r.line())
    if not all(r.ok for r in results):
        sys.exit(EXIT_FAILURE)


@cli.group()
def db() -> None:
    """The hub's own database."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
@pass_ctx
def db_upgrade(ctx: Ctx, revision: str) -> None:
    """Apply migrations (safe to run twice)."""
    from hub.db.migrate import upgrade

    before, after = upgrade(ctx.config.database.url, revision)
    if before == after:
        click.echo(f"database already at revision {after}")
    else:
        click.echo(f"database upgraded from {before or 'empty'} to {after}")


@cli.command()
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path, resolve_path=True),
    default=Path("hub-data"),
    show_default=True,
    help="Where the embedded servers keep their data (reused by a second run).",
)
@click.option(
    "--citizens", type=click.IntRange(100, 20_000_000), default=100_000, show_default=True
)
@click.option("--seed", type=int, default=6, show_default=True)
@click.option("--once", is_flag=True, help="Run to a steady state, print the figures, exit.")
@click.option(
    "--scheme",
    type=click.Choice(["vn", "eg"]),
    default="vn",
    show_default=True,
    help="Population and ID scheme: vn (Vietnamese CCCD) or eg (Egyptian national number).",
)
@click.option(
    "--reset",
    is_flag=True,
    help="Start over: drop the generated data and the hub database (users, mismatches, history).",
)
@click.option("--broker", type=click.Choice(["tansu", "kafka"]), default="tansu", show_default=True,
              help="Embedded broker; kafka needs Java 17+ and tests/setup_machine.py's jars.")  # fmt: skip
def demo(
    data_dir: Path, citizens: int, seed: int, once: bool, scheme: str, reset: bool, broker: str
) -> None:
    """Run everything on embedded PostgreSQL and broker with a generated population.

    A second run in the same --data-dir keeps users, tokens, mismatches and their history.
    """
    from hub.demo.runner import run_demo

    run_demo(
        data_dir=data_dir, citizens=citizens, seed=seed, once=once, scheme=scheme, reset=reset,
        broker=broker,
    )  # fmt: skip


@cli.group()
def schemas() -> None:
    """Avro schemas."""


@schemas.command("check")
def schemas_check() -> None:
    """Fail when a working schema cannot read data written with a released one."""
    from hub.avro.compatibility import check_schemas

    problems = check_schemas()
    for p in problems:
        click.echo(p, err=True)
    if problems:
        sys.exit(EXIT_FAILURE)
    click.echo("Avro schemas are backward compatible with every released version")


@cli.command("run")
@metrics_options("run")
@pass_ctx
def run_all(ctx: Ctx, metrics_listen: str | None, no_metrics: bool) -> None:
    """Connectors, reconciler and web server in one process (small installs).

    SIGTERM or Ctrl-C: each part finishes the batch in hand, commits, and the process exits.
    """
    from hub.allinone import run

    sys.exit(run(ctx.config, metrics_listen=metrics_listen, metrics=not no_metrics))


def _mount() -> None:
    """Subcommands that live with the package whose job they are (SPEC §2)."""
    from connectors.cli import connector, dlq
    from hub.api.cli import mismatches, serve, users
    from hub.bench.candidates import bench_candidates
    from hub.bench.cli import bench
    from hub.bench.idle import bench_idle
    from reconciliation.cli import corrections, reconcile

    for command in (
        connector,
        dlq,
        reconcile,
        corrections,
        serve,
        users,
        mismatches,
        bench,
        bench_candidates,
        bench_idle,
    ):
        cli.add_command(command)


_mount()


def main() -> None:
    """Console entry point: hub errors become one clear message, never a traceback."""
    run_cli(cli, "hub")

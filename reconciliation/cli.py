"""Commands of the matching side: ``reconcile`` and ``corrections publish SECTOR``.

They read the config from the root click context object (hub.cliconfig.ConfigContext), so
``hub`` mounts them as they are; ``python -m reconciliation.cli [--config FILE] …`` runs them
on their own, taking ``--config`` before or after the subcommand like ``hub``.
"""

from __future__ import annotations

import signal

import click

from hub.cliconfig import ConfigContext, HubGroup, config_of, metrics_options
from hub.errors import run_cli
from hub.vocabulary import SEVERITIES


@click.command("reconcile")
@metrics_options("reconciler")
@click.option(
    "--until-idle",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="Exit once every assigned partition has been caught up for this long.",
)
@click.option("--group-id", help="Consumer group (default: reconciler.group_id of the config).")
@click.option(
    "--assign-all",
    is_flag=True,
    help="Take every partition without joining the group (only when one reconciler runs).",
)
def reconcile(
    metrics_listen: str | None,
    no_metrics: bool,
    until_idle: float | None,
    group_id: str | None,
    assign_all: bool,
) -> None:
    """Run the reconciler: consume registry and sector changes, keep the mismatch store.

    SIGTERM or Ctrl-C finishes the batch in progress, commits it and exits.
    """
    from hub.logs import setup_logging
    from hub.metrics import start_metrics
    from reconciliation.engine import Reconciler

    config = config_of()
    setup_logging(config.logging.level, config.logging.json_format)
    if not no_metrics:
        start_metrics(config.metrics, "reconciler", metrics_listen)
    reconciler = Reconciler(config, group_id=group_id, assign_all=assign_all)

    def stop(signum: int, _frame: object) -> None:
        click.echo(f"signal {signum}: finishing the batch in progress", err=True)
        reconciler.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    totals = reconciler.run(until_idle_s=until_idle)
    click.echo(
        f"reconciler stopped: {totals.messages} messages, {totals.applied} applied, "
        f"{totals.stale} stale, {totals.dead_letters} dead letters, "
        f"{totals.transitions} mismatch transitions"
    )


@click.group("corrections")
def corrections() -> None:
    """The corrections feed sent back to the sectors."""


@corrections.command("publish")
@click.argument("sector")
@click.option("--rule", "rules", multiple=True, help="Only this rule (repeatable).")
@click.option(
    "--severity", "severities", multiple=True, type=click.Choice(SEVERITIES), help="Repeatable."
)
def corrections_publish(sector: str, rules: tuple[str, ...], severities: tuple[str, ...]) -> None:
    """Publish SECTOR's open mismatches to <prefix>.corrections.<SECTOR>."""
    from hub.kafka import Topics
    from hub.vocabulary import RULE_CODES
    from reconciliation.corrections import publish_corrections

    unknown = [r for r in rules if r not in RULE_CODES]
    if unknown:
        raise click.BadParameter(f"unknown rule {', '.join(unknown)}", param_hint="--rule")
    config = config_of()
    n = publish_corrections(config, sector, rules=rules, severities=severities)
    click.echo(
        f"published {n} corrections to {Topics(config.kafka.topic_prefix).corrections(sector)}"
    )


@click.group(cls=HubGroup)
@click.pass_context
def main(ctx: click.Context) -> None:
    """The reconciler's commands on their own (``hub reconcile`` is the usual entry)."""
    ctx.ensure_object(ConfigContext)


main.add_command(reconcile)
main.add_command(corrections)


if __name__ == "__main__":
    run_cli(main, "python -m reconciliation.cli")

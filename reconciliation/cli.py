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
    "--reset-offsets",
    type=click.Choice(["earliest", "latest"]),
    help="Rewrite the group's stored offsets to each partition's earliest or latest offset on "
    "the broker, then exit (after the broker lost its topics; see docs/operations.md).",
)
@click.option(
    "--topic",
    "reset_topics",
    multiple=True,
    metavar="TOPIC",
    help="With --reset-offsets: only this change topic (repeatable; default: all of them).",
)
@click.option("--yes", is_flag=True, help="With --reset-offsets: rewrite without asking.")
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
    reset_offsets: str | None,
    reset_topics: tuple[str, ...],
    yes: bool,
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

    if reset_offsets is None and (reset_topics or yes):
        flag = "--topic" if reset_topics else "--yes"
        raise click.UsageError(f"{flag} only goes with --reset-offsets earliest|latest")
    config = config_of()
    if reset_offsets is not None:
        _reset_offsets(config, group_id or config.reconciler.group_id, reset_offsets,
                       reset_topics, yes)  # fmt: skip
        return
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


def _reset_offsets(config, group_id: str, where: str, topics: tuple[str, ...], yes: bool) -> None:
    """``--reset-offsets``: show what changes and what it implies, ask, rewrite."""
    from hub.kafka import Topics
    from reconciliation.logends import RESET_MEANING, log_offsets
    from reconciliation.store.offsets import read_offsets, write_offsets
    from reconciliation.store.pg import connect

    names = Topics(config.kafka.topic_prefix)
    changes = [names.registry, *(names.sector(s) for s in config.sectors)]
    unknown = [t for t in topics if t not in changes]
    if unknown:
        raise click.BadParameter(
            f"{', '.join(unknown)} is not a change topic of this config (known: "
            f"{', '.join(changes)})",
            param_hint="--topic",
        )
    chosen = list(dict.fromkeys(topics)) or changes
    target = {
        (tp.topic, tp.partition): o for tp, o in log_offsets(config.kafka, chosen, where).items()
    }
    conn = connect(config.database.url)
    try:
        stored = read_offsets(conn, group_id, chosen)
        click.echo(f"group {group_id}: stored offsets → {where} offsets on the broker")
        for (topic, partition), offset in sorted(target.items()):
            old = stored.get((topic, partition))
            click.echo(f"  {topic}[{partition}]: {'-' if old is None else old} → {offset}")
        click.echo(f"{where}: {RESET_MEANING[where]}.")
        click.echo(
            "A running reconciler of the group resumes the partitions it holds because their "
            "offset was past the log end within seconds; for any other partition, stop the "
            "group's reconcilers first (they would keep their own positions)."
        )
        if not yes:
            click.confirm("rewrite these offsets?", abort=True)
        write_offsets(conn, group_id, target)
    finally:
        conn.close()
    click.echo(f"rewrote {len(target)} stored offsets of group {group_id} to {where}")


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

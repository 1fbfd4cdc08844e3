"""The ``hub connector …`` and ``hub dlq …`` command groups (SPEC §8)."""

from __future__ import annotations

import getpass
import json
import sys
from datetime import UTC, datetime
from typing import Any

import click

from hub.cliconfig import config_of, metrics_options
from hub.config import HubConfig
from hub.errors import EXIT_FAILURE, EXIT_USAGE, FatalError


def _config() -> HubConfig:
    """The config of the surrounding ``hub`` command (its ``--config``), else the default."""
    return config_of()


def _requester() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # noqa: BLE001 - no user name in some containers
        return "cli"


@click.group()
def connector() -> None:
    """Capture connectors (logical decoding, polling, snapshot)."""


@connector.command("run")
@click.argument("names", nargs=-1, metavar="NAME...")
@click.option("--all", "run_all", is_flag=True, help="Run every configured connector.")
@click.option("--once", is_flag=True, help="Exit once caught up (a snapshot run finished).")
@metrics_options("connector")
def run(
    names: tuple[str, ...], run_all: bool, once: bool, metrics_listen: str | None, no_metrics: bool
) -> None:
    """Run connectors until SIGTERM/Ctrl-C (the batch in hand is finished and acknowledged)."""
    import threading

    from connectors.runner import install_stop_handlers, run_connectors
    from hub.logs import setup_logging
    from hub.metrics import start_metrics

    config = _config()
    if run_all:
        names = tuple(config.sources())
    if not names:
        raise click.UsageError("name a connector or pass --all")
    for name in names:
        if name not in config.sources():
            raise click.BadParameter(
                f"{name!r} is not configured (known: {', '.join(config.sources()) or 'none'})",
                param_hint="NAME",
            )
    setup_logging(config.logging.level, config.logging.json_format)
    if not no_metrics:
        start_metrics(config.metrics, "connector", metrics_listen)
    stopping = threading.Event()
    install_stop_handlers(stopping)
    sys.exit(run_connectors(config, list(names), stopping=stopping, once=once))


@connector.command("check")
@click.argument("name")
def check_cmd(name: str) -> None:
    """Check a source before running it: reachable, privileges, wal_level, mapped columns
    and their types; the run's own statements (publication create or alter in a transaction
    rolled back, a temporary slot created and dropped); a sample of up to 1,000 rows mapped
    as the run maps them, every value that would dead-letter and a value map's gaps listed.
    One line each; exits 1 when something would stop the run or dead-letter rows."""
    from connectors.ops import check

    config = _config()
    if name not in config.sources():  # a usage error (2), not a problem found (1)
        raise click.BadParameter(
            f"{name!r} is not configured (known: {', '.join(config.sources()) or 'none'})",
            param_hint="NAME",
        )
    results = check(config, name)
    for r in results:
        click.echo(r.line())
    if not all(r.ok for r in results):
        sys.exit(EXIT_FAILURE)


@connector.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status_cmd(as_json: bool) -> None:
    """Every connector's state (``down`` when a running one's heartbeat stopped), snapshot
    progress (rows, percent, ETA), rows captured, lag (bytes and seconds), last event,
    position and last error."""
    from connectors.ops import status

    config = _config()
    rows = status(config)
    if as_json:
        click.echo(json.dumps(rows, default=str, indent=2))
        return
    now = datetime.now(UTC)
    click.echo(
        f"{'CONNECTOR':<14}{'CAPTURE':<10}{'STATE':<14}{'SNAPSHOT':<34}{'ROWS':>12}  "
        f"{'LAG':>10} {'LAG S':>8}  {'LAST EVENT':<11} POSITION"
    )
    for r in rows:
        click.echo(_status_line(r, now))
        if r.get("error"):
            click.echo(f"{'':<14}error: {r['error']}")
    _orphan_slot_lines(config)


def _orphan_slot_lines(config: HubConfig) -> None:
    """Below the connectors: each slot on a source database that no configured connector
    reads, and each source database whose slots could not be listed."""
    from connectors.logical.inventory import slot_inventory

    inventory = slot_inventory(config, timeout_s=3)
    for s in inventory.orphans:
        click.echo(f"orphan {s.orphan_line()}")
    for line in inventory.errors:
        click.echo(f"slots not listed: {line}")


def _status_line(r: dict[str, Any], now: datetime) -> str:
    """One connector's row of the text status."""
    from connectors.base import byte_size
    from connectors.progress import progress_text

    lag_s = r.get("lag_seconds")
    lag_b = r.get("lag_bytes")
    if r.get("snapshot_done"):
        snapshot = "done"
    elif r.get("snapshot_progress"):
        snapshot = progress_text(r["snapshot_progress"])
    else:
        snapshot = "-"
    last = r.get("last_event_at")
    last_text = f"{_ago((now - last).total_seconds())} ago" if last is not None else "-"
    return (
        f"{r['name']:<14}{r.get('capture') or '-':<10}{r['state']:<14}{snapshot:<34}"
        f"{r.get('rows_captured') or 0:>12}  "
        f"{byte_size(lag_b) if lag_b is not None else '-':>10} "
        f"{f'{lag_s:.1f}' if lag_s is not None else '-':>8}  {last_text:<11} "
        f"{r.get('position') or '-'}"
    )


def _ago(seconds: float) -> str:
    s = max(0, int(seconds))
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    if s < 172800:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


def _request(action: str):
    def command(name: str, wait: float) -> None:
        from connectors.ops import source_of
        from connectors.state import add_request, hub_engine

        config = _config()
        source_of(config, name)
        engine = hub_engine(config.database.url)
        rid = add_request(engine, name, action, _requester())
        click.echo(f"{action} of {name} requested (request {rid}); a running connector "
                   "handles it within seconds")  # fmt: skip
        if wait:
            _await_request(engine, name, action, rid, wait)

    return command


def _await_request(engine: Any, name: str, action: str, rid: int, wait: float) -> None:
    """Print how the connector handled request ``rid``; exit 1 when it was refused or
    nobody handled it within ``wait`` seconds."""
    import time

    from connectors.state import request_result

    deadline = time.monotonic() + wait
    while (handled := request_result(engine, rid))[0] is None:
        if time.monotonic() >= deadline:
            click.echo(f"{action} of {name}: not handled within {wait:g}s (is it running?)")
            sys.exit(EXIT_FAILURE)
        time.sleep(0.2)
    result = handled[1] or "done"
    click.echo(f"{action} of {name}: {result}")
    if result.startswith("refused"):
        sys.exit(EXIT_FAILURE)


for _action, _help in [
    ("pause", "Stop reading (a logical slot keeps the WAL meanwhile); survives restarts."),
    ("resume", "Resume reading after a pause."),
    (
        "restart",
        "Re-read the config file, reconnect to the source and the broker, then "
        "resume from the position.",
    ),
    ("resnapshot", "Re-read the config file, read the whole table again, then resume streaming."),
]:
    connector.command(_action, help=_help)(
        click.argument("name")(
            click.option("--wait", type=click.FloatRange(0, 3600), default=0, metavar="SECONDS",
                         help="Wait up to SECONDS for the connector to handle the request and "
                         "print how (a restart or re-snapshot re-reads the config file: "
                         "applied, unchanged or refused and why); exit 1 if refused.")(
                _request(_action)
            )
        )
    )  # fmt: skip


@connector.command("drop")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def drop_cmd(name: str, yes: bool) -> None:
    """Remove a connector from its source: drop its replication slot and publication, and
    forget its position and state. Running it again starts with a new snapshot.

    A publication only its owner may drop is named with the statement the owner must run;
    the rest is still done (exit 1 while something is left). Safe to run again."""
    from connectors.ops import drop

    config = _config()  # a bad config is reported before the question
    if not yes:
        click.confirm(f"drop the slot, publication and state of connector {name}?", abort=True)
    _outcome(drop(config, name))


@connector.command("forget")
@click.argument("name")
def forget_cmd(name: str) -> None:
    """Remove the status row, position and requests of a connector no longer in the config
    (shown `(not in config)` by status). A configured connector is dropped instead."""
    from connectors.ops import StillConfigured, forget

    try:
        outcome = forget(_config(), name)
    except StillConfigured as exc:
        click.echo(f"hub: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    _outcome(outcome)


def _outcome(outcome) -> None:
    """Print what a command did, then what is left (exit 1 when something is)."""
    for line in outcome.done:
        click.echo(line)
    for line in outcome.left:
        click.echo(f"left to do: {line}")
    if outcome.left:
        sys.exit(EXIT_FAILURE)


# ------------------------------------------------------------------ dead letters


@click.group()
def dlq() -> None:
    """The dead-letter topic (<prefix>.dlq)."""


@dlq.command("list")
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True,
              help="Show the newest N dead letters.")  # fmt: skip
@click.option("--connector", "source", help="Only those of this connector (or topic).")
@click.option("--unmask", is_flag=True, help="Show record keys in full.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def dlq_list(limit: int, source: str | None, unmask: bool, as_json: bool) -> None:
    """List dead letters, newest first: when, stage, source, record key, column, reason."""
    from connectors.dlq import read_dead_letters
    from hub.logs import mask_id

    letters = read_dead_letters(_config().kafka, limit=limit, source=source)
    for _, letter in letters:
        key = letter.get("record_key")
        shown = key if unmask or key is None else mask_id(key)
        when = datetime.fromtimestamp(letter["ts_ms"] / 1000, UTC).isoformat(timespec="seconds")
        if as_json:
            out: dict[str, Any] = {k: v for k, v in letter.items() if k != "payload"}
            out["record_key"] = shown
            click.echo(json.dumps(out, ensure_ascii=False, default=str))
        else:
            click.echo(
                f"{when}  {letter['stage']:<10} {letter['source']:<14} {shown or '-':<16} "
                f"{letter.get('column') or '-':<16} {letter['reason']}"
            )
    if not letters and not as_json:
        click.echo("no dead letters")


@dlq.command("replay")
@click.option("--connector", "source", help="Only dead letters of this connector.")
@click.option("--dry-run", is_flag=True, help="Map again and report, publish nothing.")
def dlq_replay(source: str | None, dry_run: bool) -> None:
    """Map the original change of each connector dead letter again with the current config
    (e.g. after adding a value to a value map) and publish the events that now map to the
    connector's change topic. Letters that still fail are reported and stay where they are.

    The topic is append-only: replayed letters stay listed, but each one replayed is
    recorded in the hub database and a second replay skips it (reported as already
    replayed); --dry-run records nothing. A replayed change reaches the topic after any later
    change of the same record: check with `dlq list` that the record did not change since,
    or request a re-snapshot instead. Reconciler dead letters cannot be replayed here.
    """
    from connectors.dlq import replay

    try:
        report = replay(_config(), source=source, dry_run=dry_run)
    except FatalError as exc:
        raise click.ClickException(str(exc)) from exc
    verb = "would publish" if dry_run else "published"
    click.echo(f"{verb} {report.published} change(s); {report.still_failing} still failing; "
               f"{report.skipped} not replayable; {report.replayed} letter(s) "
               f"{'to replay' if dry_run else 'replayed now'}, {report.already_replayed} "
               "skipped as already replayed")  # fmt: skip
    for reason, count in sorted(report.reasons.items(), key=lambda kv: -kv[1]):
        click.echo(f"  {count:>6}  {reason}")

"""``hub serve``, ``hub users …`` and ``hub mismatches list|export``: click objects for hub.cli.
They read the config from the root context object (``hub.cliconfig.ConfigContext``)."""

from __future__ import annotations

import contextlib
import getpass
import json
import sys
from collections.abc import Iterator
from typing import Any

import click

from hub.cliconfig import HostPort, config_of, metrics_options
from hub.config import HubConfig
from hub.db.models import ROLES
from hub.vocabulary import MISMATCH_STATUSES, RULE_CODES, SEVERITIES

# The item fields left out of the table of ``mismatches list`` (the JSON lines keep them).
_WIDE_FIELDS = frozenset(
    "resolution score province_code assignee last_seen_at resolved_at updated_at".split()
)


def _config(ctx: click.Context) -> HubConfig:
    return config_of(ctx)


def _engine(config: HubConfig):
    from hub.db import engine_for

    return engine_for(config.database.url, config.database.pool_size)


@contextlib.contextmanager
def _reported() -> Iterator[None]:
    """An :class:`~hub.api.errors.ApiError` (unknown user, bad filter) ends the command as a
    click error naming its reason, so ``hub`` exits 2 with that one line."""
    from hub.api.errors import ApiError

    try:
        yield
    except ApiError as exc:
        raise click.ClickException(exc.reason) from None


def _cli_actor() -> str:
    """Who the audit log names for a CLI action: the operating-system user."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


@click.command()
@click.option("--listen", type=HostPort(), metavar="HOST:PORT", help="Override api.listen.")
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Web server processes (uvicorn workers) on one socket; sessions are in the database.",
)
@metrics_options("serve")
@click.pass_context
def serve(
    ctx: click.Context,
    listen: str | None,
    workers: int,
    metrics_listen: str | None,
    no_metrics: bool,
) -> None:
    """Serve the REST API (/api/v1), the steward web UI, /healthz, /readyz and /metrics;
    the metrics also on their own address (metrics.listen.serve, default port 9466)."""
    from hub.api.server import check_schema
    from hub.api.server import serve as run
    from hub.logs import setup_logging
    from hub.metrics import start_metrics

    config = _config(ctx)
    setup_logging(config.logging.level, config.logging.json_format)
    check_schema(config)
    if not no_metrics:
        start_metrics(config.metrics, "serve", metrics_listen)
    run(config, listen, workers)


# ------------------------------------------------------------------------------------ users


@click.group()
def users() -> None:
    """Users of the web UI and API, and their tokens."""


@users.command("create")
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), required=True)
@click.option(
    "--password-stdin", is_flag=True, help="Read a UI login password from the first stdin line."
)
@click.option("--password-prompt", is_flag=True, help="Ask for a UI login password.")
@click.pass_context
def users_create(
    ctx: click.Context, name: str, role: str, password_stdin: bool, password_prompt: bool
) -> None:
    """Create a user and print their API token (shown once; only its hash is stored).
    Without a password the user can use the API but not log in to the UI."""
    from hub.api.users import create_user_recorded

    password = None
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif password_prompt:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    engine = _engine(_config(ctx))
    with _reported():
        info, token = create_user_recorded(engine, _cli_actor(), name, role, password)
    click.echo(f"created user {info.name} (role {info.role})", err=True)
    click.echo("API token (shown once, store it now):", err=True)
    click.echo(token)


@users.command("list")
@click.pass_context
def users_list(ctx: click.Context) -> None:
    """Every user with role, state and token count."""
    from hub.api.users import list_users

    rows = list_users(_engine(_config(ctx)))
    _table(
        ["name", "role", "state", "password", "tokens", "created"],
        [
            [
                u.name,
                u.role,
                "disabled" if u.disabled else "active",
                "set" if u.has_password else "-",
                str(u.tokens),
                u.created_at.strftime("%Y-%m-%d"),
            ]
            for u in rows
        ],
    )


def _set_disabled(ctx: click.Context, name: str, disabled: bool) -> None:
    from hub.api import audit
    from hub.api.users import set_disabled

    engine = _engine(_config(ctx))
    with _reported():
        set_disabled(engine, name, disabled)
    with engine.begin() as conn:
        action = "user_disable" if disabled else "user_enable"
        audit.record(conn, _cli_actor(), action, target_type="user", target_id=name)
    click.echo(f"{name} {'disabled' if disabled else 'enabled'}")


@users.command("disable")
@click.argument("name")
@click.pass_context
def users_disable(ctx: click.Context, name: str) -> None:
    """Disable a user: their sessions and tokens stop working at once."""
    _set_disabled(ctx, name, True)


@users.command("enable")
@click.argument("name")
@click.pass_context
def users_enable(ctx: click.Context, name: str) -> None:
    """Enable a disabled user again."""
    _set_disabled(ctx, name, False)


@users.command("token")
@click.argument("name")
@click.pass_context
def users_token(ctx: click.Context, name: str) -> None:
    """Issue another API token for a user (shown once)."""
    from hub.api import audit
    from hub.api.users import new_token_for

    engine = _engine(_config(ctx))
    with _reported():
        token = new_token_for(engine, name)
    with engine.begin() as conn:
        audit.record(conn, _cli_actor(), "token_create", target_type="user", target_id=name)
    click.echo(token)


# ------------------------------------------------------------------------------- mismatches


def _filter_options(f):
    options = [
        click.option("--sector", multiple=True, help="Sector (repeat for several)."),
        click.option("--rule", multiple=True, type=click.Choice(RULE_CODES)),
        click.option("--severity", multiple=True, type=click.Choice(SEVERITIES)),
        click.option(
            "--status",
            multiple=True,
            type=click.Choice(MISMATCH_STATUSES),
            help="Default: every status.",
        ),
        click.option("--province"),
        click.option("--min-age-days", type=click.IntRange(0, 36500)),
        click.option("--max-age-days", type=click.IntRange(0, 36500)),
        click.option("-q", "--search", "q", help="Prefix of the record key or citizen ID."),
        click.option("--assignee"),
        click.option(
            "--dismissal-code",
            multiple=True,
            help="Dismissed with this reason code (repeat for several; 'unspecified': none).",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _make_filter(kw: dict[str, Any]):
    from hub.api.queue.filters import MismatchFilter

    return MismatchFilter(
        sector=tuple(kw["sector"]),
        rule=tuple(kw["rule"]),
        severity=tuple(kw["severity"]),
        status=tuple(kw["status"]),
        province=kw["province"],
        min_age_days=kw["min_age_days"],
        max_age_days=kw["max_age_days"],
        q=kw["q"],
        assignee=kw["assignee"],
        dismissal_code=tuple(kw["dismissal_code"]),
    )


def _dismissal_codes(config: Any) -> list[str]:
    return [r.code for r in config.queue.dismissal_reasons]


@click.group()
def mismatches() -> None:
    """The mismatch queue."""


@mismatches.command("list")
@_filter_options
@click.option(
    "--sort",
    type=click.Choice(["id", "first_seen_at", "severity", "record_key"]),
    default="id",
    show_default=True,
)
@click.option("--order", type=click.Choice(["asc", "desc"]), default="desc", show_default=True)
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@click.option("--after", metavar="CURSOR", help="The next-page cursor a previous list printed.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_context
def mismatches_list(
    ctx: click.Context,
    sort: str,
    order: str,
    limit: int,
    after: str | None,
    as_json: bool,
    **kw: Any,
) -> None:
    """A page of mismatches as a table (or JSON lines), then the total and the next cursor."""
    from hub.api.queue import filters, pages

    config = _config(ctx)
    f = _make_filter(kw)
    with _reported():
        with _engine(config).connect() as conn:
            filters.check_filter(conn, f, list(config.sectors), _dismissal_codes(config))
            page = pages.list_page(conn, f, sort=sort, order=order, limit=limit, after=after)
    if as_json:
        for item in page.items:
            click.echo(json.dumps(item, default=str, ensure_ascii=False))
    else:
        cols = [f for f in filters.ITEM_FIELDS if f not in _WIDE_FIELDS]
        rows = []
        for item in page.items:
            row = dict(item)
            row["first_seen_at"] = item["first_seen_at"].strftime("%Y-%m-%d")
            rows.append(["" if row[c] is None else str(row[c]) for c in cols])
        _table(cols, rows)
    total = f"{page.total}" if page.total_exact else f"about {page.total}"
    click.echo(f"{total} matching", err=True)
    if page.next_cursor:
        click.echo(f"next page: --after {page.next_cursor}", err=True)


@mismatches.command("export")
@_filter_options
@click.option(
    "-o",
    "--out",
    "--output",
    "output",
    type=click.Path(dir_okay=False, allow_dash=True, resolve_path=True),
    default="-",
    show_default=True,
    help="File to write ('-' = stdout).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "xlsx"]),
    help='csv (UTF-8 with BOM, ID cells as ="…") or xlsx; default: from the --out '
    "file's extension, else csv.",
)
@click.pass_context
def mismatches_export(ctx: click.Context, output: str, fmt: str | None, **kw: Any) -> None:
    """Every mismatch matching the filters as CSV or XLSX (streamed; any number of rows)."""
    from hub.api import audit
    from hub.api.queue import export, filters

    if fmt is None:
        fmt = "xlsx" if output.lower().endswith(".xlsx") else "csv"
    if fmt == "xlsx" and output == "-" and sys.stdout.isatty():
        raise click.UsageError("--format xlsx writes a binary file: give --out FILE")
    config = _config(ctx)
    engine = _engine(config)
    f = _make_filter(kw)
    with _reported():
        with engine.begin() as conn:
            filters.check_filter(conn, f, list(config.sectors), _dismissal_codes(config))
            audit.record(conn, _cli_actor(), "export", target_type="mismatches", detail=f.params())
    try:
        out = sys.stdout.buffer if output == "-" else open(output, "wb")  # noqa: SIM115
    except OSError as exc:
        raise click.ClickException(f"--out {output}: {exc.strerror}") from None
    rows = 0

    def count(n: int) -> None:
        nonlocal rows
        rows += n

    try:
        for chunk in export.EXPORTERS[fmt](engine, f, on_rows=count):
            out.write(chunk)
    finally:
        if out is not sys.stdout.buffer:
            out.close()
        else:
            out.flush()
    if output != "-":
        click.echo(f"{rows} mismatches written to {output} ({fmt})", err=True)


def _table(header: list[str], rows: list[list[str]], max_width: int = 32) -> None:
    def cut(s: str) -> str:
        return s if len(s) <= max_width else s[: max_width - 1] + "…"

    rows = [[cut(c) for c in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]
    click.echo("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())

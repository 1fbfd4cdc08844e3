"""``--config`` before or after every subcommand (issue #18 item 6), and malformed config files
reported as exit 2 with one line naming the key, never a traceback (item 10)."""

from __future__ import annotations

import logging
import subprocess
import sys

import click
import pytest

import hub.cli
from hub.cli import cli

NO_CONFIG = {"demo", "schemas check", "bench", "bench-candidates", "bench-idle"}
"""Commands that read no config file: they accept --config like every other, and ignore it."""


def _leaves(cmd: click.Command, path: tuple[str, ...] = ()):
    if isinstance(cmd, click.Group):
        for name, sub in sorted(cmd.commands.items()):
            yield from _leaves(sub, (*path, name))
    else:
        yield path, cmd


def _required_args(cmd: click.Command) -> list[str]:
    """Placeholder values for a command's required arguments and options."""
    args: list[str] = []
    for p in cmd.params:
        if isinstance(p, click.Argument) and p.required:
            args.append("x")
        elif isinstance(p, click.Option) and p.required:
            choice = p.type.choices[0] if isinstance(p.type, click.Choice) else "x"
            args += [p.opts[0], str(choice)]
    return args


LEAVES = {" ".join(path): cmd for path, cmd in _leaves(cli)}
TAKES_CONFIG = sorted(set(LEAVES) - NO_CONFIG)


def run_main(monkeypatch, capsys, argv: list[str], env: dict[str, str] | None = None):
    """Run the real console entry point in-process; (exit code, stdout, stderr)."""
    # Handlers an earlier test's setup_logging bound to its (now closed) captured stderr.
    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    monkeypatch.delenv("HUB_CONFIG", raising=False)
    for k, v in (env or {}).items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(sys, "argv", ["hub", *argv])
    try:
        hub.cli.main()
        code = 0  # --help returns without sys.exit
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def test_the_tree_walk_sees_every_command_of_the_spec():
    for name in ["check", "db upgrade", "connector run", "reconcile", "serve", "run",
                 "users create", "mismatches list", "dlq list", "corrections publish"]:  # fmt: skip
        assert name in TAKES_CONFIG, name
    assert NO_CONFIG <= set(LEAVES), "a command of NO_CONFIG is gone: update the set"


@pytest.mark.parametrize("name", sorted(LEAVES))
def test_every_command_and_group_accepts_config_in_its_options(name):
    path = name.split()
    for depth in range(1, len(path) + 1):
        ctx = click.Context(cli)
        cmd = cli
        for part in path[:depth]:
            cmd = cmd.get_command(ctx, part)
        assert "--config" in [o for p in cmd.params for o in p.opts], " ".join(path[:depth])


@pytest.mark.parametrize("name", TAKES_CONFIG)
@pytest.mark.parametrize("position", ["before", "after"])
def test_config_is_read_before_or_after_the_subcommand(
    monkeypatch, capsys, tmp_path, name, position
):
    missing = str(tmp_path / f"{position}.yaml")
    path, extra = name.split(), _required_args(LEAVES[name])
    argv = (
        ["--config", missing, *path, *extra]
        if position == "before"
        else [*path, "--config", missing, *extra]
    )
    code, _out, err = run_main(monkeypatch, capsys, argv)
    assert code == 2, err
    assert f"{missing}: file not found" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("name", TAKES_CONFIG)
def test_the_subcommands_config_wins_over_the_groups_and_both_over_hub_config(
    monkeypatch, capsys, tmp_path, name
):
    group, sub, env = (str(tmp_path / f"{w}.yaml") for w in ("group", "sub", "env"))
    path, extra = name.split(), _required_args(LEAVES[name])
    code, _out, err = run_main(
        monkeypatch,
        capsys,
        ["--config", group, *path, "--config", sub, *extra],
        {"HUB_CONFIG": env},
    )
    assert code == 2 and f"{sub}: file not found" in err
    assert group not in err and env not in err
    code, _out, err = run_main(monkeypatch, capsys, [*path, *extra], {"HUB_CONFIG": env})
    assert code == 2 and f"{env}: file not found" in err


@pytest.mark.parametrize("name", sorted(NO_CONFIG))
@pytest.mark.parametrize("position", ["before", "after"])
def test_commands_without_a_config_accept_the_option_too(monkeypatch, capsys, name, position):
    path = name.split()
    argv = ["--config", "x.yaml", *path] if position == "before" else [*path, "--config", "x.yaml"]
    code, out, _err = run_main(monkeypatch, capsys, [*argv, "--help"])
    assert code == 0 and "Usage:" in out


def test_a_middle_group_takes_config_too(monkeypatch, capsys, tmp_path):
    missing = str(tmp_path / "mid.yaml")
    code, _out, err = run_main(monkeypatch, capsys, ["connector", "--config", missing, "status"])
    assert code == 2 and f"{missing}: file not found" in err


def test_reconciliation_module_takes_config_in_both_places(tmp_path):
    missing = str(tmp_path / "r.yaml")
    for argv in (["--config", missing, "reconcile"], ["reconcile", "--config", missing]):
        res = subprocess.run([sys.executable, "-m", "reconciliation.cli", *argv],
                             capture_output=True, text=True, timeout=120)  # fmt: skip
        assert res.returncode == 2 and f"{missing}: file not found" in res.stderr
        assert "Traceback" not in res.stderr


# ---------------------------------------------------------------- malformed config files

MALFORMED = [
    ("database.url", 'database: {url: "postgresql://hub:${HUB_PW@localhost/hub"}'),
    ("kafka.bootstrap_servers", 'kafka: {bootstrap_servers: "kafka://::::"}'),
    ("kafka.bootstrap_servers", 'kafka: {bootstrap_servers: "broker-1:9092,,broker-2:9092"}'),
    ("kafka.bootstrap_servers", 'kafka: {bootstrap_servers: "::1:9092"}'),
    ("kafka.bootstrap_servers", 'kafka: {bootstrap_servers: "broker:70000"}'),
    ("kafka.bootstrap_servers", 'kafka: {bootstrap_servers: ":9092"}'),
    ("kafka.bootstrap_servers", 'kafka: {bootstrap_servers: "broker"}'),
    ("api.listen", 'api: {listen: "[::1:8080"}'),
    ("api.listen", 'api: {listen: "0.0.0.0:http"}'),
    ("metrics.listen", 'metrics: {listen: "localhost:-1"}'),
    ("metrics.listen.reconciler", 'metrics: {listen: {reconciler: "[zz::1]:9465"}}'),
    ("metrics.listen.worker", 'metrics: {listen: {worker: "127.0.0.1:9467"}}'),
    ("database.url", 'database: {url: "postgresql://hub:${}@localhost/hub"}'),
    ("database.url", 'database: {url: "postgresql://hub:${HUB PW}@localhost/hub"}'),
    ("database.url", 'database: {url: "postgresql://hub:${1PW}@localhost/hub"}'),
    ("kafka.sasl_plain_password", "kafka: {sasl_plain_password: '${KAFKA_PW:-${OTHER}}'}"),
    (
        "sectors.tax.url",
        "sectors: {tax: {url: 'postgresql://r:${TAX_PW@h/t', table: t, key: k, "
        "columns: {citizen_id: c}}}",
    ),  # fmt: skip
]


@pytest.mark.parametrize(("key", "text"), MALFORMED, ids=[f"{k}-{i}" for i, (k, _) in
                                                          enumerate(MALFORMED)])  # fmt: skip
def test_a_malformed_config_is_exit_2_with_one_line_naming_the_key(
    monkeypatch, capsys, tmp_path, key, text
):
    path = tmp_path / "hub.yaml"
    path.write_text(text + "\n", encoding="utf-8")
    code, out, err = run_main(monkeypatch, capsys, ["check", "--config", str(path)])
    assert code == 2, out + err
    problems = [line.strip() for line in err.splitlines()[1:]]
    assert err.splitlines()[0] == f"hub: invalid config {path}:"
    assert len(problems) == 1 and problems[0].startswith(f"{key}: "), err
    assert "Traceback" not in err and "ok   config" not in out


def test_the_two_reported_configs_fail_at_load_in_a_real_process(tmp_path):
    for text, key in [
        ('database: {url: "postgresql://hub:${HUB_PW@localhost/hub"}', "database.url"),
        ('kafka: {bootstrap_servers: "kafka://::::"}', "kafka.bootstrap_servers"),
    ]:
        path = tmp_path / "hub.yaml"
        path.write_text(text + "\n")
        res = subprocess.run([sys.executable, "-m", "hub", "check", "--config", str(path)],
                             capture_output=True, text=True, timeout=120)  # fmt: skip
        assert res.returncode == 2, res.stdout + res.stderr
        assert len(res.stderr.splitlines()) == 2 and f"  {key}: " in res.stderr
        assert "Traceback" not in res.stderr


@pytest.mark.parametrize(
    ("argv", "flag"),
    [(["serve", "--listen", "nohost"], "--listen"),
     (["reconcile", "--metrics-listen", "[::1]"], "--metrics-listen"),
     (["connector", "run", "--all", "--metrics-listen", "h:99999"], "--metrics-listen"),
     (["run", "--metrics-listen", ":1"], "--metrics-listen")],
)  # fmt: skip
def test_a_malformed_address_flag_is_a_usage_error(monkeypatch, capsys, argv, flag):
    code, _out, err = run_main(monkeypatch, capsys, argv)
    assert code == 2
    assert f"Invalid value for '{flag}'" in err and "Traceback" not in err

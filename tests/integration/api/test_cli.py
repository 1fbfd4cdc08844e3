"""``hub users`` and ``hub mismatches`` commands against a real store."""

from __future__ import annotations

import csv
import io
import json
from types import SimpleNamespace

import click
from click.testing import CliRunner

from hub.api.cli import mismatches, serve, users


def cli_for(api) -> click.Group:
    root = click.Group("hub")
    for command in (serve, users, mismatches):
        root.add_command(command)
    return root


def run(api, *args: str, input: str | None = None):
    obj = SimpleNamespace(config=api.config)
    return CliRunner().invoke(cli_for(api), list(args), obj=obj, input=input)


def test_users_create_prints_a_working_token_once(api):
    result = run(api, "users", "create", "hoa.tran", "--role", "steward")
    assert result.exit_code == 0, result.output
    token = result.stdout.strip().splitlines()[-1]
    me = api.client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert me.json()["name"] == "hoa.tran" and me.json()["role"] == "steward"
    listed = run(api, "users", "list")
    assert "hoa.tran" in listed.stdout and token not in listed.stdout
    again = run(api, "users", "create", "hoa.tran", "--role", "viewer")
    assert again.exit_code != 0 and "already exists" in again.output


def test_users_create_with_password_from_stdin_can_log_in_to_the_ui(api):
    result = run(
        api, "users", "create", "minh", "--role", "viewer", "--password-stdin",
        input="mật khẩu dài\n",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    page = api.client.get("/login")
    csrf = page.text.split('name="csrf_token" value="')[1].split('"')[0]
    resp = api.client.post(
        "/login", data={"name": "minh", "password": "mật khẩu dài", "csrf_token": csrf}
    )
    assert resp.status_code == 303 and resp.headers["location"] == "/queue"


def test_users_create_refuses_an_unknown_role(api):
    result = run(api, "users", "create", "x", "--role", "root")
    assert result.exit_code == 2


def test_users_disable_and_token(api):
    assert run(api, "users", "disable", "viewer").exit_code == 0
    assert api.get("/api/v1/me", "viewer").status_code == 401
    assert run(api, "users", "enable", "viewer").exit_code == 0
    token = run(api, "users", "token", "viewer").stdout.strip()
    assert api.client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).is_success
    assert run(api, "users", "disable", "nobody").exit_code != 0


def test_mismatches_list_prints_a_table_filtered_like_the_api(api_ro):
    result = run(api_ro, "mismatches", "list", "--sector", "banking", "--status", "open")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["id", "sector", "record_key"]
    assert len(lines) == 3 and "أحمد علي" in result.stdout
    assert "2 matching" in result.stderr


def test_mismatches_list_pages_with_the_printed_cursor(api_ro):
    first = run(api_ro, "mismatches", "list", "--limit", "5", "--json")
    cursor = first.stderr.split("--after ")[1].strip()
    rest = run(api_ro, "mismatches", "list", "--limit", "5", "--json", "--after", cursor)
    assert len(first.stdout.splitlines()) + len(rest.stdout.splitlines()) == len(api_ro.ids)


def test_mismatches_list_reports_bad_filters(api_ro):
    result = run(api_ro, "mismatches", "list", "--sector", "fishing")
    assert result.exit_code != 0 and "unknown sector" in result.output


def test_mismatches_export_writes_csv_to_a_file(api_ro, tmp_path):
    out = tmp_path / "tax.csv"
    result = run(api_ro, "mismatches", "export", "--sector", "tax", "-o", str(out))
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8-sig"))))
    assert len(rows) == 5 and "5 mismatches written" in result.stderr
    assert {r["sector"] for r in rows} == {"tax"}


def test_mismatches_list_filters_on_dismissal_codes(api_ro):
    result = run(api_ro, "mismatches", "list", "--dismissal-code", "unspecified", "--json")
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["id"] for line in result.stdout.splitlines()] == [
        api_ro.ids["dismissed"]
    ]
    result = run(api_ro, "mismatches", "list", "--dismissal-code", "bogus")
    assert result.exit_code != 0 and "unknown dismissal_code" in result.output

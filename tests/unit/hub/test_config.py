"""Config loading: typed models, ${ENV} interpolation, one message per problem by key path."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from hub.config import (
    ColumnMapping,
    MetricsConfig,
    load_config,
    parse_config,
    parse_host_port,
    parse_host_port_list,
    redact_url,
)
from hub.errors import ConfigError
from hub.interpolation import InterpolationError, interpolate, interpolate_string

SPEC_EXAMPLE = """
kafka:
  bootstrap_servers: "localhost:9092"
  topic_prefix: hub
  partitions: 12
  security_protocol: PLAINTEXT
database:
  url: "postgresql+psycopg://hub:${HUB_DB_PASSWORD}@localhost:5432/hub"
id_scheme: vn
api:
  listen: "127.0.0.1:8080"
registry:
  url: "postgresql+psycopg://reader@registry-db/registry"
  table: public.citizens
  key: so_dinh_danh
  capture: logical
  columns:
    citizen_id: so_dinh_danh
    legacy_id: so_cmnd
    full_name: ho_ten
    date_of_birth: ngay_sinh
    sex: {column: gioi_tinh, map: {"Nam": M, "Nữ": F}}
    province_code: ma_tinh
    date_of_death: ngay_mat
sectors:
  tax:
    url: "postgresql+psycopg://reader@tax-db/tax"
    table: public.nguoi_nop_thue
    key: ma_so_thue
    capture: logical
    columns:
      citizen_id: so_cccd
      full_name: ten_nnt
      date_of_birth: {column: ngay_sinh, format: "%d/%m/%Y"}
      last_activity_date: ngay_nop_cuoi
      status: trang_thai
    rules:
      unique_citizen: true
      disabled: [PROVINCE_MISMATCH]
  banking:
    url: "postgresql+psycopg://reader@bank-db/bank"
    table: public.khach_hang
    key: id
    capture: poll
    poll: {timestamp_column: updated_at, incrementing_column: id, interval_s: 5}
    columns:
      citizen_id: so_giay_to
"""


def problems_of(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        parse_config(yaml.safe_load(text), env=env or {})
    return exc.value.problems


def test_spec_example_loads_into_typed_frozen_models():
    cfg = parse_config(yaml.safe_load(SPEC_EXAMPLE), env={"HUB_DB_PASSWORD": "s3cret"})
    assert cfg.kafka.partitions == 12
    assert cfg.database.url == "postgresql+psycopg://hub:s3cret@localhost:5432/hub"
    assert cfg.registry.mapping("sex") == ColumnMapping(
        column="gioi_tinh", map={"Nam": "M", "Nữ": "F"}
    )
    assert cfg.sectors["tax"].mapping("date_of_birth").format == "%d/%m/%Y"
    assert cfg.sectors["tax"].rules.unique_citizen is True
    assert cfg.sectors["banking"].poll.incrementing_column == "id"
    assert list(cfg.sources()) == ["registry", "tax", "banking"]
    with pytest.raises(ValidationError, match="frozen"):
        cfg.kafka.partitions = 3


def test_secrets_are_masked_when_printed():
    cfg = parse_config(yaml.safe_load(SPEC_EXAMPLE), env={"HUB_DB_PASSWORD": "s3cret"})
    assert "s3cret" not in str(cfg.redacted())
    assert "s3cret" not in repr(cfg.kafka)
    assert redact_url("postgresql://u:p@h/db") == "postgresql://u:***@h/db"


def test_missing_env_var_names_the_key_and_the_variable():
    assert problems_of(SPEC_EXAMPLE) == [
        "database.url: environment variable HUB_DB_PASSWORD is not set"
    ]


def test_env_default_syntax_is_used_when_unset():
    cfg = parse_config({"database": {"url": "postgresql://u:${PW:-dflt}@h/db"}}, env={})
    assert cfg.database.url == "postgresql://u:dflt@h/db"


def test_missing_citizen_id_mapping_is_reported_by_key_path():
    text = SPEC_EXAMPLE.replace("      citizen_id: so_cccd\n", "")
    assert problems_of(text, {"HUB_DB_PASSWORD": "x"}) == [
        "sectors.tax.columns.citizen_id: required"
    ]


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        (
            {"kafka": {"partitions": 0}},
            "kafka.partitions: Input should be greater than or equal to 1",
        ),
        ({"kafka": {"partitions": "many"}}, "kafka.partitions: Input should be a valid integer"),
        ({"kafka": {"security_protocol": "TLS"}}, "kafka.security_protocol:"),
        (
            {"kafka": {"security_protocol": "SASL_SSL"}},
            "kafka: security_protocol SASL_SSL needs sasl_mechanism",
        ),
        ({"kafka": {"bootstrap": "x"}}, "kafka.bootstrap: unknown key"),
        ({"id_scheme": "fr"}, "id_scheme:"),
        ({"api": {"listen": "localhost"}}, "api.listen: 'localhost' is not host:port"),
        ({"database": {"url": "not a url"}}, "database.url: not a database URL"),
        ({"sectors": {"Tax!": {}}}, "sectors: bad sector name 'Tax!'"),
    ],
)
def test_each_kind_of_error_names_its_key_path(patch, expected):
    problems = problems_of(yaml.safe_dump(patch))
    assert any(p.startswith(expected) or expected in p for p in problems), problems


def test_source_errors_name_the_sector_and_field():
    text = """
sectors:
  labour:
    url: "postgresql://r@h/l"
    table: t
    key: k
    capture: poll
    columns: {citizen_id: a, shoe_size: b, sex: {map: {"Nam": M}}}
    rules: {disabled: [NOPE], severities: {NAME_MISMATCH: extreme}}
"""
    problems = problems_of(text)
    assert any(
        p.startswith("sectors.labour.columns: unknown canonical field shoe_size") for p in problems
    )
    assert any(p.startswith("sectors.labour.columns.sex.column: required") for p in problems)
    assert any(p.startswith("sectors.labour.rules.disabled: unknown rule NOPE") for p in problems)
    assert any("NAME_MISMATCH: severity 'extreme'" in p for p in problems)
    assert any(p.startswith("sectors.labour: capture poll needs a poll:") for p in problems), (
        problems
    )


def test_env_overrides_select_external_servers():
    cfg = parse_config(
        {}, env={"HUB_DATABASE_URL": "postgresql://x@db/hub", "HUB_KAFKA_BOOTSTRAP": "k:9092"}
    )
    assert cfg.database.url == "postgresql://x@db/hub"
    assert cfg.kafka.bootstrap_servers == "k:9092"


def test_yaml_syntax_error_names_file_line_and_column(tmp_path):
    path = tmp_path / "hub.yaml"
    path.write_text("kafka:\n  partitions: [1, 2\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path, env={})
    assert exc.value.problems[0].startswith(f"{path}:3:")
    assert "YAML syntax error" in exc.value.problems[0]


def test_top_level_must_be_a_mapping():
    with pytest.raises(ConfigError) as exc:
        parse_config(["a", "b"], env={})
    assert exc.value.problems == [
        "<root>: expected a mapping of keys (kafka, database, sectors, …)"
    ]


def run_hub(*args: str, cwd=None, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hub", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
    )


def test_cli_reports_a_bad_file_with_exit_code_2_and_no_traceback(tmp_path):
    path = tmp_path / "hub.yaml"
    path.write_text(
        textwrap.dedent(
            """
            kafka: {partitions: -1}
            sectors:
              tax: {url: "postgresql://r@h/t", table: t, key: k, columns: {full_name: n}}
            """
        )
    )
    res = run_hub("--config", str(path), "check")
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert "kafka.partitions: Input should be greater than or equal to 1" in res.stderr
    assert "sectors.tax.columns.citizen_id: required" in res.stderr


def test_cli_missing_file_is_a_clear_message(tmp_path):
    res = run_hub("--config", str(tmp_path / "nope.yaml"), "check")
    assert res.returncode == 2
    assert "nope.yaml: file not found" in res.stderr
    assert "Traceback" not in res.stderr


def test_help_lists_every_subcommand_of_the_spec():
    res = run_hub("--help")
    assert res.returncode == 0
    for name in [
        "demo",
        "check",
        "db",
        "connector",
        "reconcile",
        "serve",
        "run",
        "mismatches",
        "users",
        "dlq",
        "schemas",
        "bench",
    ]:
        assert f"  {name} " in res.stdout, name


def test_schemas_check_passes_on_the_shipped_schemas():
    res = run_hub("schemas", "check")
    assert res.returncode == 0, res.stderr
    assert "backward compatible" in res.stdout


def test_log_lines_mask_citizen_ids(capsys):
    import logging

    from hub.logs import error_summary, mask_id, setup_logging

    setup_logging("INFO")
    logging.getLogger("t").warning("row 001234567889 and legacy 123456789 failed")
    err = capsys.readouterr().err
    assert "001234567889" not in err and "123456789 " not in err
    assert mask_id("001234567889") in err
    setup_logging("INFO", json_format=True)
    logging.getLogger("t").warning("id %s", "079188001234")
    assert "079188001234" not in capsys.readouterr().err
    assert error_summary(ValueError("Key (so_cccd)=(079188001234) exists\nDETAIL")) == (
        "ValueError: Key (so_cccd)=(0791******34) exists"
    )


@pytest.mark.parametrize(
    "args", [("db", "upgrade"), ("connector", "status"), ("mismatches", "list")]
)
def test_unreachable_database_is_one_clear_line_not_a_traceback(tmp_path, args):
    path = tmp_path / "hub.yaml"
    path.write_text('database:\n  url: "postgresql://u:secret@127.0.0.1:1/x"\n')
    res = run_hub("--config", str(path), *args)
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    assert "a server cannot be reached" in res.stderr
    assert "secret" not in res.stderr


# ------------------------------------------------- ${…} interpolation (issue #18, item 10)

env_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True)
literal_text = st.text(st.characters(blacklist_characters="$", codec="utf-8"), max_size=12)


@given(
    st.lists(
        st.tuples(literal_text, env_names, st.text(max_size=8), st.booleans(), literal_text),
        max_size=5,
    )
)
def test_references_expand_to_their_values_or_defaults(parts):
    env = {}
    for _before, name, value, set_it, _default in parts:
        if set_it:
            env.setdefault(name, value)
    text = "".join(f"{b}${{{n}:-{d.replace('}', '')}}}" for b, n, _v, _s, d in parts)
    expected = "".join(
        b + (env[n] if n in env else d.replace("}", "")) for b, n, _v, _s, d in parts
    )
    assert interpolate_string(text, env) == (expected, [])
    bare = "".join(f"{b}${{{n}}}" for b, n, _v, _s, _d in parts)
    unset = [n for _b, n, _v, _s, _d in parts if n not in env]
    assert interpolate_string(bare, env)[1] == unset


@given(st.text(max_size=40))
def test_escaped_text_comes_back_unchanged(text):
    escaped = text.replace("${", "$${")
    assert interpolate_string(escaped, {}) == (text, [])


@given(st.text(max_size=40), st.dictionaries(env_names, st.text(max_size=5), max_size=3))
def test_any_string_either_expands_or_names_its_key_never_crashes(text, env):
    out, problems = interpolate({"database": {"url": text}}, env)
    assert all(p.startswith("database.url: ") for p in problems)
    try:
        interpolate_string(text, env)
    except InterpolationError:
        assert problems and out == {"database": {"url": text}}


@given(st.from_regex(r"[A-Za-z0-9]{8,20}", fullmatch=True), st.sampled_from(["${", "${X", "${:-"]))
def test_a_malformed_reference_never_echoes_the_string(secret, broken):
    _, problems = interpolate({"database": {"url": f"postgresql://u:{secret}{broken}"}}, {})
    assert len(problems) == 1 and problems[0].startswith("database.url: ")
    assert secret not in problems[0]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("postgresql://u:${HUB_PW@h/db", "unterminated ${"),
        ("a${", "unterminated ${"),
        ("${}", "empty variable name"),
        ("${:-x}", "empty variable name"),
        ("${1PW}", "bad variable name"),
        ("${-PW}", "bad variable name"),
        ("${HUB PW}", "bad character ' '"),
        ("${HUB-PW}", "bad character '-'"),
        ("${HUB_PW:?required}", "bad character ':'"),
        ("${A:-${B}}", "nested ${…}"),
    ],
)
def test_malformed_references_are_errors(text, message):
    with pytest.raises(InterpolationError, match=re.escape(message)):
        interpolate_string(text, {"HUB_PW": "x", "A": "a", "B": "b"})


def test_a_lone_dollar_and_the_escape_are_literal():
    assert interpolate_string("pa$$w0rd$", {}) == ("pa$$w0rd$", [])
    assert interpolate_string("$${HOME} is ${H}", {"H": "/h"}) == ("${HOME} is /h", [])


# --------------------------------------------------------------------- host:port lists

hostnames = st.from_regex(
    r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?(\.[a-z0-9]{1,8}){0,3}", fullmatch=True
)
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)
ports = st.integers(1, 65535)


@given(st.one_of(hostnames, ipv4), ports)
def test_host_and_port_parse_back(host, port):
    assert parse_host_port(f"{host}:{port}") == (host, port)


@given(ipv6, ports)
def test_ipv6_parses_in_brackets_only(host, port):
    assert parse_host_port(f"[{host}]:{port}") == (host, port)
    with pytest.raises(ValueError, match="brackets|not host:port"):
        parse_host_port(f"{host}:{port}")


@given(st.one_of(hostnames, ipv4), st.one_of(st.integers(65536, 10**7), st.integers(-99, 0)))
def test_ports_outside_1_to_65535_are_refused(host, port):
    with pytest.raises(ValueError):
        parse_host_port(f"{host}:{port}")


@given(st.lists(st.tuples(st.one_of(hostnames, ipv4), ports), min_size=1, max_size=4))
def test_server_lists_parse_with_spaces_around_commas(servers):
    text = " , ".join(f"{h}:{p}" for h, p in servers)
    assert parse_host_port_list(text) == servers


@given(st.text(max_size=30))
def test_any_text_parses_or_raises_value_error(text):
    try:
        host, port = parse_host_port(text)
    except ValueError as exc:
        assert str(exc)
    else:
        assert host and 1 <= port <= 65535


@pytest.mark.parametrize(
    "value",
    [":9092", "kafka", "kafka:", "kafka:x", "kafka://broker:9092", "::1:9092", "[::1]9092",
     "[nope]:9092", "a b:1", "kafka:0", "kafka:65536", "kafka:+1", "kafka:١٢"],
)  # fmt: skip
def test_malformed_server_addresses_are_refused(value):
    with pytest.raises(ValueError):
        parse_host_port(value)


def test_listen_addresses_may_ask_for_any_port_servers_may_not():
    assert parse_host_port("127.0.0.1:0", allow_any_port=True) == ("127.0.0.1", 0)
    with pytest.raises(ValueError, match="outside 1–65535"):
        parse_host_port("127.0.0.1:0")
    with pytest.raises(ValueError, match="empty entry"):
        parse_host_port_list("a:1,,b:2")


# ---------------------------------------------------------- metrics address per role (#18.7)


def test_each_role_has_its_own_default_metrics_port():
    metrics = parse_config({}, env={}).metrics
    assert [metrics.address(r) for r in ("connector", "reconciler", "serve", "run")] == [
        "127.0.0.1:9464",
        "127.0.0.1:9465",
        "127.0.0.1:9466",
        "127.0.0.1:9464",
    ]
    assert metrics.key("reconciler") == "metrics.listen.reconciler"


def test_metrics_listen_takes_a_mapping_by_role_or_one_address_for_all():
    cfg = parse_config({"metrics": {"listen": {"serve": "0.0.0.0:9999"}}}, env={})
    assert cfg.metrics.address("serve") == "0.0.0.0:9999"
    assert cfg.metrics.address("reconciler") == "127.0.0.1:9465"
    one = parse_config({"metrics": {"listen": "0.0.0.0:9464"}}, env={}).metrics
    assert {one.address(r) for r in ("connector", "reconciler", "serve")} == {"0.0.0.0:9464"}
    assert one.key("serve") == "metrics.listen"
    assert MetricsConfig(listen="127.0.0.1:0").address("run") == "127.0.0.1:0"


def test_a_bad_override_from_the_environment_names_the_variable():
    with pytest.raises(ConfigError) as exc:
        parse_config({}, env={"HUB_KAFKA_BOOTSTRAP": "kafka://::::"})
    assert exc.value.problems == [
        "kafka.bootstrap_servers: 'kafka://::::' is not host:port (no scheme:// prefix) "
        "(value from HUB_KAFKA_BOOTSTRAP)"
    ]


def test_relative_tls_files_are_taken_from_the_config_files_folder(tmp_path, monkeypatch):
    from hub.config import load_config

    folder = tmp_path / "etc"
    folder.mkdir()
    path = folder / "hub.yaml"
    path.write_text(
        "kafka: {bootstrap_servers: 'localhost:9092', security_protocol: SSL,"
        " ssl_cafile: certs/ca.pem, ssl_certfile: /abs/cert.pem}\n"
        "database: {url: 'postgresql+psycopg://hub@localhost/hub'}\n"
        "registry: {url: 'postgresql+psycopg://r@h/r', table: t, key: k,"
        " columns: {citizen_id: c}}\n"
    )
    monkeypatch.chdir(tmp_path)
    config = load_config("etc/hub.yaml", env={})
    assert config.kafka.ssl_cafile == str(folder / "certs" / "ca.pem")
    assert config.kafka.ssl_certfile == "/abs/cert.pem"


def test_dismissal_reasons_default_to_four_codes_and_only_other_needs_words():
    config = parse_config(yaml.safe_load(SPEC_EXAMPLE), env={"HUB_DB_PASSWORD": "x"})
    reasons = config.queue.dismissal_reasons
    assert [r.code for r in reasons] == [
        "same_person_transliteration",
        "registry_wrong",
        "test_record",
        "other",
    ]
    assert [r.note_required for r in reasons] == [False, False, False, True]
    assert config.queue.dismissal_label("registry_wrong") == "Registry wrong"
    assert config.queue.dismissal_label(None) == "Unspecified"
    assert config.queue.dismissal_label("dropped_code") == "dropped_code"


def test_dismissal_reasons_are_configurable_and_checked():
    raw = yaml.safe_load(SPEC_EXAMPLE)
    raw["queue"] = {
        "dismissal_reasons": [
            {"code": "dup", "label": "Duplicate"},
            {"code": "other", "label": "Khác", "note_required": False},
        ]
    }
    config = parse_config(raw, env={"HUB_DB_PASSWORD": "x"})
    assert [(r.code, r.note_required) for r in config.queue.dismissal_reasons] == [
        ("dup", False),
        ("other", False),
    ]
    for reasons, words in (
        ([{"code": "dup", "label": "a"}, {"code": "dup", "label": "b"}], "duplicate code dup"),
        ([{"code": "Bad Code", "label": "a"}], "bad code"),
        ([{"code": "unspecified", "label": "a"}], "bad code"),
        ([{"code": "x", "label": ""}], "label"),
        ([], "dismissal_reasons"),
    ):
        raw["queue"] = {"dismissal_reasons": reasons}
        found = problems_of(yaml.safe_dump(raw), env={"HUB_DB_PASSWORD": "x"})
        assert any("queue.dismissal_reasons" in p and words in p for p in found), found

"""What a config reload applies to one connector, and what it refuses (connectors.reload)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from connectors.reload import APPLIED, REFUSED, UNCHANGED, changed_keys, plan, reload_source
from hub.config import load_config, parse_config, reload_config
from hub.errors import FatalError

BASE = {
    "database": {"url": "postgresql+psycopg://hub@db/hub"},
    "kafka": {"bootstrap_servers": "k:9092"},
    "sectors": {
        "tax": {
            "url": "postgresql://u:secret@src/tax",
            "table": "public.nnt",
            "key": "ma_so_thue",
            "logical": {"slot": "hub_tax"},
            "columns": {
                "citizen_id": "so_cccd",
                "sex": {"column": "gioi_tinh", "map": {"Nam": "M", "Nữ": "F"}},
            },
        },
        "health": {
            "url": "postgresql://u@src/health",
            "table": "patients",
            "key": "id",
            "columns": {"citizen_id": "cccd"},
        },
    },
}


def cfg(**changes):
    raw = copy.deepcopy(BASE)
    for path, value in changes.items():
        node = raw
        *parents, last = path.split("__")
        for p in parents:
            node = node[p]
        node[last] = value
    return parse_config(raw, env={})


def test_a_changed_value_map_is_applied_to_that_connector_only():
    current = cfg()
    fresh = cfg(
        sectors__tax__columns__sex={"column": "gioi_tinh", "map": {"Nam": "M", "Khác": None}}
    )
    tax = plan(current, fresh, "tax")
    assert tax.outcome == APPLIED and tax.result == "applied: columns.sex.map changed"
    assert tax.source("tax").mapping("sex").map == {"Nam": "M", "Khác": None}
    assert tax.config.sectors["health"] == current.sectors["health"]
    assert plan(current, fresh, "health").outcome == UNCHANGED


def test_short_and_long_column_forms_are_the_same_setting_and_rules_are_not_compared():
    current = cfg()
    fresh = cfg(
        sectors__health__columns={"citizen_id": {"column": "cccd"}},
        sectors__health__rules={"unique_citizen": True},
    )
    assert plan(current, fresh, "health").result == "unchanged"


def test_process_settings_are_kept_and_named_in_one_line():
    current = cfg()
    fresh = cfg(database={"url": "postgresql+psycopg://hub@other/hub"},
                kafka={"bootstrap_servers": "k2:9092"})  # fmt: skip
    r = plan(current, fresh, "tax")
    assert r.outcome == UNCHANGED
    assert r.result == (
        "unchanged; kafka, database changed: needs a process restart (running with the old "
        "settings)"
    )
    fresh = cfg(kafka={"bootstrap_servers": "k2:9092"}, sectors__tax__key="id")
    r = plan(current, fresh, "tax")
    assert r.outcome == APPLIED and r.config.kafka == current.kafka  # old kafka kept
    assert "kafka changed: needs a process restart" in r.result


def test_a_secret_change_counts_as_a_change_though_it_prints_alike():
    sasl = {"bootstrap_servers": "k:9092", "security_protocol": "SASL_SSL",
            "sasl_mechanism": "PLAIN", "sasl_plain_username": "u"}  # fmt: skip
    a = cfg(kafka={**sasl, "sasl_plain_password": "one"})
    b = cfg(kafka={**sasl, "sasl_plain_password": "two"})
    assert "kafka changed" in plan(a, b, "tax").result


@pytest.mark.parametrize(
    ("path", "value", "why"),
    [
        ("sectors__tax__capture", "snapshot", "capture changed: needs a process restart"),
        ("sectors__tax__logical", {"slot": "hub_tax2"}, "logical.slot changed: needs a process"),
    ],
)
def test_capture_and_slot_changes_need_a_process_restart(path, value, why):
    r = plan(cfg(), cfg(**{path: value}), "tax")
    assert r.outcome == REFUSED and why in r.result and r.config is None


def test_sighup_applies_mappings_but_not_what_is_read():
    current = cfg()
    fresh = cfg(sectors__tax__table="public.nnt2",
                sectors__tax__url="postgresql://u:other@src/tax")  # fmt: skip
    r = plan(current, fresh, "tax", on_signal=True)
    assert r.outcome == REFUSED
    assert r.result == (
        "refused: table, url changed: SIGHUP applies mappings only; apply it with "
        "`hub connector restart tax`"
    )
    assert "secret" not in r.result and "other" not in r.result  # never a value
    assert plan(current, fresh, "tax").outcome == APPLIED  # a request applies it


def test_a_connector_gone_from_the_file_is_refused():
    raw = copy.deepcopy(BASE)
    del raw["sectors"]["health"]
    r = plan(cfg(), parse_config(raw, env={}), "health")
    assert r.outcome == REFUSED and "no longer in the config file" in r.result


def write(path: Path, raw) -> Path:
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


def test_reload_reads_the_file_again_and_refuses_an_invalid_one(tmp_path):
    path = write(tmp_path / "hub.yaml", BASE)
    current = load_config(path)
    assert current.file == path.absolute()
    assert current.model_copy(update={"sectors": {}}).file == path.absolute()
    assert reload_source(current, "tax").outcome == UNCHANGED

    bad = copy.deepcopy(BASE)
    bad["sectors"]["tax"]["columns"]["sex"]["map"] = ["M", "F"]
    write(path, bad)
    r = reload_source(current, "tax")
    assert r.outcome == REFUSED
    assert r.result.startswith(f"refused: invalid config {path}: sectors.tax.columns.sex.map:")

    path.write_text("sectors: [\n", encoding="utf-8")
    assert "YAML syntax error" in reload_source(current, "tax").result
    path.unlink()
    assert "file not found" in reload_source(current, "tax").result


def test_a_config_built_in_code_is_not_re_read():
    with pytest.raises(FatalError, match="not loaded from a file"):
        reload_config(cfg())
    r = reload_source(cfg(), "tax")
    assert r.outcome == UNCHANGED and "not loaded from a file" in r.result


_values = st.recursive(
    st.none() | st.integers() | st.text(max_size=3),
    lambda inner: st.dictionaries(st.text("abc", max_size=2), inner, max_size=3),
    max_leaves=8,
)


@given(st.dictionaries(st.text("abc", min_size=1, max_size=2), _values, max_size=4),
       st.dictionaries(st.text("abc", min_size=1, max_size=2), _values, max_size=4))  # fmt: skip
def test_changed_keys_is_empty_exactly_when_equal_and_names_existing_paths(a, b):
    keys = changed_keys(a, b)
    assert (keys == []) == (a == b)
    for k in keys:
        assert k.split(".")[0] in set(a) | set(b)


def test_sighup_only_counts_and_each_runner_sees_the_count_move():
    import os
    import signal

    from connectors.runner import Hangups, install_reload_handler

    hangups = Hangups()
    old = signal.getsignal(signal.SIGHUP)
    try:
        install_reload_handler(hangups)
        os.kill(os.getpid(), signal.SIGHUP)
        os.kill(os.getpid(), signal.SIGHUP)
    finally:
        signal.signal(signal.SIGHUP, old)
    assert hangups.count == 2

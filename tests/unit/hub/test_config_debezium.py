"""``capture: debezium`` in the config file: ``url`` and ``table`` optional for it only,
its ``debezium:`` block validated, every problem named by its key."""

from __future__ import annotations

import pytest

from hub.config import parse_config
from hub.errors import ConfigError

COLUMNS = {"citizen_id": "cccd", "full_name": "ho_ten"}


def problems(sector: dict) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        parse_config({"sectors": {"tax": sector}}, env={})
    return exc.value.problems


def test_a_debezium_source_needs_no_url_or_table():
    cfg = parse_config({"sectors": {"tax": {"capture": "debezium", "key": "tin", "columns": COLUMNS,
                                            "debezium": {"topics": ["dbz.public.taxpayers"]}}}},
                       env={})  # fmt: skip
    src = cfg.sectors["tax"]
    assert (src.url, src.table, src.debezium.converter) == (None, None, "json")
    assert src.debezium.group_id is None and src.debezium.bootstrap_servers is None
    assert cfg.redacted()["sectors"]["tax"]["url"] is None  # printing it does not fail


def test_other_modes_still_need_url_and_table_named_by_key():
    assert problems({"key": "id", "columns": COLUMNS}) == [
        "sectors.tax.url: required",
        "sectors.tax.table: required",
    ]
    assert problems({"capture": "poll", "url": "postgresql://x@y/z", "key": "id", "columns": COLUMNS,
                     "poll": {"timestamp_column": "t", "incrementing_column": "i"}}) == [
        "sectors.tax.table: required"
    ]  # fmt: skip


def test_debezium_settings_are_validated_by_key():
    base = {"capture": "debezium", "key": "tin", "columns": COLUMNS}
    assert problems(base) == [
        "sectors.tax: capture debezium needs a debezium: {topics: [<Debezium change topic>, ...]}"
    ]
    assert any(p.startswith("sectors.tax.debezium.topics:") for p in
               problems({**base, "debezium": {"topics": []}}))  # fmt: skip
    assert problems({**base, "debezium": {"topics": ["t"], "converter": "avro"}}) == [
        "sectors.tax.debezium: converter avro needs schema_registry_url (a Confluent-compatible "
        "registry)"
    ]
    assert problems({**base, "debezium": {"topics": ["t"], "converter": "protobuf"}})[0].startswith(
        "sectors.tax.debezium.converter:"
    )
    assert problems({**base, "debezium": {"topics": ["t"], "bootstrap_servers": "kafka://x"}})[
        0
    ].startswith("sectors.tax.debezium.bootstrap_servers:")
    assert problems({**base, "debezium": {"topics": ["t"], "schema_registry_url": "registry"}})[
        0
    ].startswith("sectors.tax.debezium.schema_registry_url: 'registry' is not an http(s):// URL")
    assert problems({**base, "debezium": {"topics": ["t"], "topic": "x"}}) == [
        "sectors.tax.debezium.topic: unknown key"
    ]


def test_the_registry_url_may_come_from_the_environment():
    cfg = parse_config({"sectors": {"tax": {"capture": "debezium", "key": "tin", "columns": COLUMNS,
                        "debezium": {"topics": ["t"], "converter": "avro",
                                     "schema_registry_url": "${REGISTRY}"}}}},
                       env={"REGISTRY": "http://registry:8081"})  # fmt: skip
    assert cfg.sectors["tax"].debezium.schema_registry_url == "http://registry:8081"


def test_a_registry_password_is_masked_when_the_config_is_printed():
    cfg = parse_config({"sectors": {"tax": {"capture": "debezium", "key": "tin", "columns": COLUMNS,
                        "debezium": {"topics": ["t"], "converter": "avro",
                                     "schema_registry_url": "https://hub:pw@registry:8081"}}}},
                       env={})  # fmt: skip
    shown = cfg.redacted()["sectors"]["tax"]["debezium"]["schema_registry_url"]
    assert shown == "https://hub:***@registry:8081"

"""Any message value (hypothesis) becomes events or dead letters with a reason: no
exception escapes the Debezium mode's message mapping, and the batch goes on."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.debezium.changes import ChangeMapper
from connectors.debezium.converters import JsonConverter
from connectors.debezium.envelope import parse_envelope
from connectors.events import Batch
from connectors.mapping import RecordMapper
from hub.config import SourceConfig
from hub.idschemes import get_scheme
from tests.unit.connectors.debezium import records as rec

relaxed = settings(deadline=None)
"""No per-example deadline: example timings vary on a shared, loaded machine."""

SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
JSONISH = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
ROW = st.fixed_dictionaries(
    {},
    optional={c: JSONISH for c in ("tin", "cccd", "ho_ten", "ngay_sinh", "thu_nhap", "cap_nhat")},
)
ENVELOPE = st.fixed_dictionaries(
    {},
    optional={"op": st.sampled_from(["c", "u", "d", "r", "t", "m", "x"]) | JSONISH,
              "before": ROW | JSONISH, "after": ROW | JSONISH,
              "source": st.dictionaries(st.sampled_from(["ts_ms", "lsn", "table", "db", "snapshot",
                                                         "txId", "connector", "file", "pos"]),
                                        JSONISH) | JSONISH,
              "ts_ms": JSONISH, "transaction": JSONISH},
)  # fmt: skip

MAPPER = RecordMapper("tax", SourceConfig.model_validate(rec.source_config()), get_scheme("vn"))


@settings(max_examples=100, deadline=None)
@given(ENVELOPE, st.booleans())
def test_any_envelope_maps_or_dead_letters_with_a_reason(value, schemas):
    cm = ChangeMapper(MAPPER, JsonConverter())
    batch = Batch()
    data = json.dumps({"schema": rec.CONNECT_SCHEMA, "payload": value} if schemas else value)
    cm.add(batch, rec.TOPIC, 0, 5, data.encode())
    cm.add(batch, rec.TOPIC, 0, 6, rec.json_message(rec.envelope("c", None, rec.row(
        "MST1", "001090012345", "An", 7305)), schemas=True))  # fmt: skip
    assert batch.events, "the next message is still mapped"
    for letter in batch.dead_letters:
        assert letter.reason and letter.kind in ("undecodable_value", "unmappable_value",
                                                 "schema_mismatch", "truncate")  # fmt: skip
    assert len(batch.events) + len(batch.dead_letters) <= 2


@relaxed
@given(st.binary(max_size=64))
def test_any_bytes_map_or_dead_letter(data):
    batch = Batch()
    ChangeMapper(MAPPER, JsonConverter()).add(batch, rec.TOPIC, 1, 0, data)
    assert len(batch.events) + len(batch.dead_letters) <= 1


def test_rows_keep_only_the_columns_the_mapping_reads():
    value = rec.envelope("c", None, {**rec.row("MST1", "001090012345", "An", 1), "secret": "x"})
    change = parse_envelope(value, {}, MAPPER.columns, {})
    assert change is not None and "secret" not in change.after
    assert change.table == "public.taxpayers" and change.lsn == 0x16B3748
    assert change.source_position() == "lsn=0/16B3748"
    mysql = {**value, "source": {"file": "binlog.000003", "pos": 4711, "ts_ms": 5}}
    change = parse_envelope(mysql, {}, MAPPER.columns, {})
    assert change.source_position() == "binlog=binlog.000003:4711" and change.commit_ts_ms == 5

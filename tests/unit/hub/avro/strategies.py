"""Hypothesis strategies for the hub's Avro records, shared by the codec, writer and reader tests."""

from __future__ import annotations

from datetime import date

from hypothesis import strategies as st

texts = st.one_of(st.none(), st.text(max_size=80))
dates = st.one_of(st.none(), st.dates(min_value=date(1, 1, 1), max_value=date(9999, 12, 31)))
longs = st.integers(-(1 << 63), (1 << 63) - 1)

citizen_records = st.fixed_dictionaries(
    {
        "citizen_id": texts,
        "legacy_id": texts,
        "full_name": texts,
        "date_of_birth": dates,
        "sex": st.sampled_from([None, "M", "F"]),
        "province_code": texts,
        "address": texts,
        "date_of_death": dates,
        "status": texts,
        "last_activity_date": dates,
        "attributes": st.dictionaries(st.text(max_size=10), st.text(max_size=70), max_size=4),
    }
)
"""A ``hub.CitizenRecord`` with any optional field left empty (values up to 70 characters,
so some string lengths take two bytes)."""

change_events = st.fixed_dictionaries(
    {
        "op": st.sampled_from("cudr"),
        "before": st.one_of(st.none(), citizen_records),
        "after": st.one_of(st.none(), citizen_records),
        "record_key": st.text(max_size=300),
        "source": st.fixed_dictionaries(
            {
                "system": st.text(max_size=10),
                "connector": st.text(max_size=10),
                "database": st.text(max_size=10),
                "table": st.text(max_size=20),
                "position": st.text(max_size=20),
                "lsn": st.one_of(st.none(), longs),
                "txid": st.one_of(st.none(), longs),
                "commit_ts_ms": st.one_of(st.none(), longs),
                "snapshot": st.booleans(),
            }
        ),
        "ts_ms": longs,
    }
)
"""A ``hub.ChangeEvent`` of any op, with or without either image."""

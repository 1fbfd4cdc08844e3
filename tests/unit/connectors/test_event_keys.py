"""Every event of a record is keyed by the citizen ID the record carried (EventBuilder):
deletes by the ID before it (from a full before image, or from RecordIds when the image
holds only the key); an ID change is a delete on the old key and a create on the new one.
Hypothesis: any history of inserts, ID changes and deletes leaves, as the last event per
key, exactly each record's final state."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.events import Batch, EventBuilder, RecordIds
from connectors.mapping import RecordMapper
from hub.avro.codec import decode
from hub.config import SourceConfig
from hub.idschemes import get_scheme


class DictStore:
    """RecordIds' store in memory, counting its round trips."""

    def __init__(self) -> None:
        self.rows: dict[str, str] = {}
        self.loads = self.saves = 0

    def load(self, record_keys):
        self.loads += 1
        return {k: self.rows[k] for k in record_keys if k in self.rows}

    def save(self, changed):
        self.saves += 1
        for k, v in changed.items():
            if v is None:
                self.rows.pop(k, None)
            else:
                self.rows[k] = v


def builder(record_ids: RecordIds | None = None) -> EventBuilder:
    source = SourceConfig(url="postgresql://x@y/z", table="t", key="ma",
                          columns={"citizen_id": "so_cccd", "full_name": "ten"})  # fmt: skip
    mapper = RecordMapper("tax", source, get_scheme("vn"))
    return EventBuilder(mapper, system="postgresql", database="z", table="public.t",
                        record_ids=record_ids)  # fmt: skip


def cid(i: int) -> str:
    return f"0010900{i:05d}"


def row(key: str, i: int) -> dict:
    return {"ma": key, "so_cccd": cid(i), "ten": f"Nguyễn Văn {i}"}


def events(batch: Batch) -> list[tuple[str, str, str]]:
    return [(k.decode(), decode(v)[1]["op"], decode(v)[1]["record_key"]) for k, v in batch.events]


def test_a_delete_with_a_full_before_image_is_keyed_by_its_citizen_id():
    b, batch = builder(), Batch()
    b.add(batch, "d", row("M1", 1), None, position="0/1")
    assert events(batch) == [(cid(1), "d", "M1")]


def test_a_key_only_delete_is_keyed_by_the_id_the_connector_kept():
    store = DictStore()
    ids = RecordIds(store)
    b, batch = builder(ids), Batch()
    b.add(batch, "c", None, row("M1", 1), position="0/1")
    ids.commit(batch)
    assert store.rows == {"M1": cid(1)} and batch.record_ids == {"M1": cid(1)}

    fresh = RecordIds(store)  # a restarted connector: only the store remembers
    b, batch = builder(fresh), Batch()
    fresh.prefetch(["M1"])
    b.add(batch, "d", {"ma": "M1"}, None, position="0/2", before_partial=True)
    assert events(batch) == [(cid(1), "d", "M1")]
    fresh.commit(batch)
    assert store.rows == {}


def test_without_a_kept_id_a_key_only_delete_keeps_the_connector_key():
    b, batch = builder(), Batch()
    b.add(batch, "d", {"ma": "M1"}, None, position="0/1", before_partial=True)
    assert events(batch) == [("tax:M1", "d", "M1")]


def test_an_id_change_is_a_delete_on_the_old_key_and_a_create_on_the_new():
    b, batch = builder(), Batch()
    b.add(batch, "u", row("M1", 1), row("M1", 2), position="0/1")
    assert events(batch) == [(cid(1), "d", "M1"), (cid(2), "c", "M1")]
    assert batch.ops == {"d": 1, "c": 1}
    b.add(batch, "u", row("M1", 2), row("M1", 2) | {"ten": "x"}, position="0/2")
    assert events(batch)[2:] == [(cid(2), "u", "M1")]


def test_an_id_change_without_a_before_image_uses_the_kept_id():
    ids = RecordIds(DictStore())
    b, batch = builder(ids), Batch()
    b.add(batch, "r", None, row("M1", 1), position="0/1")
    b.add(batch, "u", None, row("M1", 2), position="0/2")
    assert events(batch)[1:] == [(cid(1), "d", "M1"), (cid(2), "c", "M1")]


def test_prefetch_reads_each_batch_once_and_only_what_is_not_cached():
    store = DictStore()
    store.rows = {"M1": cid(1), "M2": cid(2)}
    ids = RecordIds(store)
    ids.prefetch(["M1", "M2", "M3"])
    ids.prefetch(["M1", "M3"])
    assert store.loads == 1
    assert (ids.get("M1"), ids.get("M3")) == (cid(1), None)


# A step: (record index, its new citizen ID's index or None for a delete). Each record draws
# its IDs from a range of its own: two records sharing an ID would share its key, and the
# last event of a key then says only that the ID is carried by some record.
steps = st.lists(st.tuples(st.integers(0, 4), st.one_of(st.none(), st.integers(0, 3))),
                 max_size=40)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(steps=steps, full_images=st.booleans())
def test_the_last_event_per_key_is_each_records_final_state(steps, full_images):
    store = DictStore()
    ids = None if full_images else RecordIds(store)
    b = builder(ids)
    state: dict[str, int] = {}  # record key -> citizen index, as at the source
    last: dict[str, tuple[str, str]] = {}  # kafka key -> (op, record key)
    for n, (rec, new) in enumerate(steps):
        key = f"M{rec}"
        batch = Batch()
        old = state.get(key)
        if new is None and old is None:
            continue
        if ids is not None:
            ids.prefetch([key])
        before = None
        if old is not None:
            before = row(key, old) if full_images else {"ma": key}
        if new is None:
            b.add(batch, "d", before, None, position=f"0/{n}", before_partial=not full_images)
            del state[key]
        else:
            new += 10 * rec
            op = "c" if old is None else "u"
            b.add(batch, op, None if op == "c" else before, row(key, new), position=f"0/{n}",
                  before_partial=not full_images)  # fmt: skip
            state[key] = new
        if ids is not None:
            ids.commit(batch)
        for k, op, rk in events(batch):
            last[k] = (op, rk)
    assert {(k, rk) for k, (op, rk) in last.items() if op != "d"} == {
        (cid(i), rk) for rk, i in state.items()
    }


def test_a_full_cache_keeps_what_the_store_does_not_have_yet():
    store = DictStore()
    ids = RecordIds(store, cache_max=2)
    b, batch = builder(ids), Batch()
    b.add(batch, "c", None, row("M1", 1), position="0/1")  # not committed yet
    ids.prefetch(["M2", "M3", "M4"])  # over the limit: the cache is emptied
    assert ids.get("M1") == cid(1)
    ids.commit(batch)
    b.add(batch := Batch(), "u", None, row("M1", 1) | {"ten": "x"}, position="0/2")
    assert batch.record_ids == {}  # the ID did not change: nothing to write

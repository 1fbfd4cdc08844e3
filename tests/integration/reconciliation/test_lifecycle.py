"""The reconciler against the real PostgreSQL and broker: mismatches open, resolve by
themselves, stay dismissed, never duplicate; registry changes re-check sector records."""

from __future__ import annotations

import time
from datetime import date

import psycopg
import pytest
from kafka import TopicPartition

from hub.avro.codec import decode
from hub.idschemes.vn import make_id
from hub.kafka import make_consumer
from reconciliation.corrections import publish_corrections
from reconciliation.store.records import refresh_verified
from tests.integration.reconciliation.conftest import start
from tests.integration.reconciliation.feed import Feed, hub_config, person

pytestmark = pytest.mark.heavy(41)

A = make_id("079", 1985, "M", 1)
B = make_id("001", 1990, "F", 2)
DOB_A = date(1985, 3, 14)


@pytest.mark.parametrize("running", [False], indirect=True, ids=["group"])
@pytest.mark.tansu_smoke
def test_fixing_the_sector_row_resolves_the_mismatch_by_itself(running):
    feed = running.feed
    feed.put("registry", A, **person(A))
    feed.put("tax", "T1", **person(A, dob=date(1985, 4, 14), status="active"))
    running.settle()
    assert running.mismatches("tax") == {
        ("T1", "DOB_MISMATCH", "date_of_birth"): (
            "open",
            None,
            "medium",
            "1985-04-14",
            "1985-03-14",
        )
    }
    assert running.query("SELECT verified FROM sector_records WHERE record_key = 'T1'") == [
        (False,)
    ]

    feed.put("tax", "T1", **person(A, status="active"))
    running.settle()
    status, resolution, *_ = running.mismatches("tax")[("T1", "DOB_MISMATCH", "date_of_birth")]
    assert (status, resolution) == ("resolved", "fixed_at_source")
    assert [h[:4] for h in running.history("T1", "DOB_MISMATCH")] == [
        ("opened", None, "open", "reconciler"),
        ("resolved", "open", "resolved", "reconciler"),
    ]
    assert running.query("SELECT verified FROM sector_records WHERE record_key = 'T1'") == [(True,)]
    events = running.topic_messages(running.feed.topics.mismatches, 2)
    assert [(e["event"], e["rule"], e["status"]) for e in events] == [
        ("opened", "DOB_MISMATCH", "open"),
        ("resolved", "DOB_MISMATCH", "resolved"),
    ]
    assert {e["_key"] for e in events} == {A.encode()}


def test_fixing_the_registry_row_resolves_the_mismatch_by_itself(running):
    feed = running.feed
    feed.put("registry", A, **person(A, "Nguyễn Văn Bình"))
    feed.put("bank", "B1", **person(A, "NGUYEN VAN AN", status="ACTIVE"))
    running.settle()
    row = running.mismatches("bank")[("B1", "NAME_MISMATCH", "full_name")]
    assert row[:3] == ("open", None, "high")

    feed.put("registry", A, **person(A, "Nguyễn Văn An"))  # the registry corrects the name
    running.settle()
    row = running.mismatches("bank")[("B1", "NAME_MISMATCH", "full_name")]
    assert row[:2] == ("resolved", "fixed_at_source")


def test_deleting_the_sector_row_resolves_it_as_record_deleted(running):
    feed = running.feed
    feed.put("registry", A, **person(A))
    feed.put("tax", "T1", **person(A, sex="F", status="active"))
    running.settle()
    assert running.mismatches("tax")[("T1", "SEX_MISMATCH", "sex")][0] == "open"

    feed.delete("tax", "T1", A)
    running.settle()
    found = running.mismatches("tax")
    assert found[("T1", "SEX_MISMATCH", "sex")][:2] == ("resolved", "record_deleted")
    assert found[("T1", "ID_ATTRIBUTES_INCONSISTENT", "citizen_id")][:2] == (
        "resolved",
        "record_deleted",
    )
    assert running.query("SELECT count(*) FROM sector_records WHERE record_key = 'T1'") == [(0,)]

    # A re-delivered (older) insert does not bring the deleted record back.
    feed.send(feed.event("tax", "c", "T1", person(A, sex="F", status="active"), lsn=1))
    running.settle()
    assert running.query("SELECT count(*) FROM sector_records WHERE record_key = 'T1'") == [(0,)]
    assert running.mismatches("tax")[("T1", "SEX_MISMATCH", "sex")][0] == "resolved"


def _dismiss(running, record_key: str, rule: str) -> None:
    """What the steward API does: status dismissed, history row by the steward."""
    with psycopg.connect(running.db) as conn:
        (mid,) = conn.execute(
            "UPDATE mismatches SET status = 'dismissed', resolution = 'false_positive', "
            "dismissal_code = 'same_person_transliteration' "
            "WHERE record_key = %s AND rule = %s RETURNING id",
            (record_key, rule),
        ).fetchone()
        conn.execute(
            "INSERT INTO mismatch_history (mismatch_id, actor, action, from_status, to_status) "
            "VALUES (%s, 'steward', 'dismissed', 'open', 'dismissed')",
            (mid,),
        )
        refresh_verified(conn, [("tax", record_key)])


def test_a_dismissed_mismatch_stays_dismissed_until_its_values_change(running):
    feed = running.feed
    feed.put("registry", A, **person(A, "Nguyễn Văn An"))
    same = person(A, "Nguyễn Văn Anh", status="active")  # a typo
    feed.put("tax", "T1", **same)
    running.settle()
    _dismiss(running, "T1", "NAME_MISMATCH")
    assert running.query("SELECT verified FROM sector_records WHERE record_key = 'T1'") == [(True,)]

    message = feed.event("tax", "u", "T1", same)
    feed.send(message, message)  # the same change twice
    feed.put("tax", "T1", **same)  # and a newer change with the same values
    feed.put("registry", A, **person(A, "Nguyễn Văn An"))  # registry re-delivered
    running.settle()
    assert running.mismatches("tax")[("T1", "NAME_MISMATCH", "full_name")][0] == "dismissed"
    assert [h[0] for h in running.history("T1", "NAME_MISMATCH")] == ["opened", "dismissed"]
    code = (
        "SELECT dismissal_code FROM mismatches WHERE record_key = 'T1' AND rule = 'NAME_MISMATCH'"
    )
    assert running.query(code) == [("same_person_transliteration",)]  # kept while dismissed

    feed.put("tax", "T1", **person(A, "Nguyễn Văn Bảo", status="active"))  # another wrong name
    running.settle()
    status, resolution, _sev, sector_value, _ = running.mismatches("tax")[
        ("T1", "NAME_MISMATCH", "full_name")
    ]
    assert (status, resolution, sector_value) == ("open", None, "Nguyễn Văn Bảo")
    history = running.history("T1", "NAME_MISMATCH")
    assert [h[0] for h in history] == ["opened", "dismissed", "reopened"]
    assert history[-1][1:3] == ("dismissed", "open")
    assert running.query(code) == [(None,)]  # a reopened mismatch has no dismissal reason


def test_redelivery_never_duplicates_a_mismatch_or_its_history(running):
    feed = running.feed
    messages = [
        feed.event("registry", "r", A, person(A)),
        feed.event("registry", "r", B, person(B, "Trần Thị Bình", date(1990, 1, 2), sex="F")),
        feed.event("tax", "r", "T1", person(A, "Lê Văn An", status="active")),
        feed.event("tax", "r", "T2", person(None, status="active")),
        feed.event("bank", "r", "B1", person("0790850000", status="ACTIVE")),
    ]
    feed.send(*messages)
    running.settle()
    before = running.query("SELECT * FROM mismatches ORDER BY id")
    history = running.query("SELECT id, mismatch_id, action FROM mismatch_history ORDER BY id")
    assert {(r[2], r[3]) for r in before} == {
        ("T1", "NAME_MISMATCH"),
        ("T2", "ID_MISSING"),
        ("B1", "ID_INVALID"),
    }

    feed.send(*messages, *messages)  # a connector restarted twice and sent it all again
    running.settle()
    after = running.query("SELECT * FROM mismatches ORDER BY id")
    assert [r[:14] for r in after] == [r[:14] for r in before]
    assert running.query("SELECT id, mismatch_id, action FROM mismatch_history ORDER BY id") == (
        history
    )


def test_a_death_registered_later_rechecks_existing_sector_records(running):
    feed = running.feed
    feed.put("registry", A, **person(A))
    feed.put("tax", "T1", **person(A, status="active", last_activity_date=date(2024, 5, 1)))
    feed.put("bank", "B1", **person(A, status="closed", last_activity_date=date(2024, 6, 1)))
    feed.put("bank", "B2", **person(A, status="closed", last_activity_date=date(2023, 6, 1)))
    running.settle()
    assert running.mismatches() == {}

    feed.put("registry", A, **person(A, date_of_death=date(2024, 1, 1)))
    running.settle()
    found = running.mismatches()
    assert found[("T1", "DECEASED_ACTIVE", "status")][:3] == ("open", None, "critical")
    assert found[("B1", "DECEASED_ACTIVE", "status")][:3] == ("open", None, "critical")
    assert ("B2", "DECEASED_ACTIVE", "status") not in found  # closed, no activity after death

    feed.put("tax", "T1", **person(A, status="closed", last_activity_date=date(2023, 12, 1)))
    running.settle()
    assert running.mismatches()[("T1", "DECEASED_ACTIVE", "status")][:2] == (
        "resolved",
        "fixed_at_source",
    )


def test_a_citizen_added_to_the_registry_resolves_id_not_in_registry(running):
    feed = running.feed
    feed.put("registry", B, **person(B, "Trần Thị Bình", date(1990, 1, 2), sex="F"))
    feed.put("tax", "T1", **person(A, status="active"))
    feed.put("bank", "B9", **person(None, "TRAN THI BINH", date(1990, 1, 2), sex="F"))
    running.settle()
    assert running.mismatches()[("T1", "ID_NOT_IN_REGISTRY", "citizen_id")][0] == "open"
    (suggestions,) = running.query("SELECT suggestions FROM mismatches WHERE record_key = 'B9'")[0]
    assert [(s["citizen_id"], s["full_name"]) for s in suggestions] == [(B, "Trần Thị Bình")]
    assert suggestions[0]["score"] > 0.99
    assert suggestions[0]["parts"] == {
        "name": 1.0, "name_level": "equal", "birth_date": "equal", "sex": "same",
        "province": "same",
    }  # fmt: skip
    assert suggestions[0]["why"] == "name 1.00 · same birth date · same sex · same province"
    assert suggestions[0]["found_by"][0] == "birth_date"

    feed.put("registry", A, **person(A))
    running.settle()
    assert running.mismatches()[("T1", "ID_NOT_IN_REGISTRY", "citizen_id")][:2] == (
        "resolved",
        "fixed_at_source",
    )
    assert running.query("SELECT verified FROM sector_records WHERE record_key = 'T1'") == [(True,)]


def test_suggestions_are_found_again_only_when_what_they_are_found_by_changes(running):
    feed = running.feed
    born = date(1990, 1, 2)
    citizens = [make_id("001", 1990, "F", n) for n in (2, 3, 4)]

    def add_citizen(n: int) -> None:
        feed.put("registry", citizens[n], **person(citizens[n], "Trần Thị Bình", born, sex="F"))

    def bank(citizen_id: str | None, name: str = "TRAN THI BINH", **kw) -> None:
        feed.put("bank", "B9", **person(citizen_id, name, born, sex="F", **kw))
        running.settle()

    def suggested() -> list[str]:
        (found,) = running.query(
            "SELECT suggestions FROM mismatches WHERE record_key = 'B9' AND rule = 'ID_MISSING'"
        )[0]
        return [s["citizen_id"] for s in found]

    add_citizen(0)
    bank(None)
    assert suggested() == citizens[:1]

    # A citizen born the same day joins the registry: an update of the record's other
    # fields keeps the suggestions; a change of its name finds them again.
    add_citizen(1)
    bank(None, address="12 Lê Lợi")
    assert suggested() == citizens[:1]
    bank(None, "TRAN THI BINH A")
    assert suggested() == citizens[:2]

    # A reopened mismatch finds them again too.
    bank(citizens[0])
    assert running.mismatches("bank")[("B9", "ID_MISSING", "citizen_id")][0] == "resolved"
    add_citizen(2)
    bank(None)
    assert running.mismatches("bank")[("B9", "ID_MISSING", "citizen_id")][0] == "open"
    assert suggested() == citizens


def test_legacy_id_suggests_the_current_id(running):
    feed = running.feed
    feed.put("registry", A, **person(A, legacy_id="123456789"))
    feed.put("bank", "B1", **person("123 456 789", "NGUYEN VAN AN", status="ACTIVE"))
    running.settle()
    row = running.mismatches("bank")[("B1", "ID_LEGACY", "citizen_id")]
    assert row == ("open", None, "low", "123 456 789", A)
    (suggestions,) = running.query("SELECT suggestions FROM mismatches WHERE record_key = 'B1'")[0]
    assert (suggestions[0]["citizen_id"], suggestions[0]["full_name"]) == (A, "Nguyễn Văn An")
    assert suggestions[0]["score"] > 0.99 and suggestions[0]["found_by"] == ["legacy_id"]

    feed.put("bank", "B1", **person(A, "NGUYEN VAN AN", status="ACTIVE"))  # the bank updates it
    running.settle()
    assert running.mismatches("bank")[("B1", "ID_LEGACY", "citizen_id")][:2] == (
        "resolved",
        "fixed_at_source",
    )


def test_duplicate_id_flags_every_active_record_of_a_unique_sector(running):
    feed = running.feed
    feed.put("registry", A, **person(A))
    for key in ("T1", "T2", "T3"):
        feed.put("tax", key, **person(A, status="active"))
    feed.put("bank", "B1", **person(A, status="active"))  # bank allows several accounts
    feed.put("bank", "B2", **person(A, status="active"))
    running.settle()
    dup = {k: v[0] for k, v in running.mismatches().items() if k[1] == "DUPLICATE_ID"}
    assert dup == {(k, "DUPLICATE_ID", "citizen_id"): "open" for k in ("T1", "T2", "T3")}

    feed.put("tax", "T2", **person(A, status="closed"))
    running.settle()
    dup = {k[0]: v[0] for k, v in running.mismatches().items() if k[1] == "DUPLICATE_ID"}
    assert dup == {"T1": "open", "T2": "resolved", "T3": "open"}

    feed.delete("tax", "T3", A)
    running.settle()
    dup = {k[0]: v[:2] for k, v in running.mismatches().items() if k[1] == "DUPLICATE_ID"}
    assert dup == {
        "T1": ("resolved", "fixed_at_source"),
        "T2": ("resolved", "fixed_at_source"),
        "T3": ("resolved", "record_deleted"),
    }


def test_a_large_duplicate_group_is_judged_once_per_batch(hub_db, kafka_config):
    """1,500 active tax records carrying one ID (a placeholder number, say), waiting on the
    topic when the reconciler starts, so one batch holds them all: each is judged once,
    against the group as the batch leaves it — one ``opened`` each and no intermediate
    updates — and the batch takes seconds, not the cube of the group's size."""
    feed = Feed(hub_config(hub_db, kafka_config))
    n = 1500
    keys = [f"P{i:04d}" for i in range(n)]
    feed.put("registry", A, **person(A))
    feed.send(*(feed.event("tax", "c", k, person(A, status="active")) for k in keys))
    started = time.monotonic()
    running = start(feed.config, feed, assign_all=True)
    try:
        running.settle(timeout=120)
        assert time.monotonic() - started < 60
        dup = {k[0]: v[0] for k, v in running.mismatches("tax").items() if k[1] == "DUPLICATE_ID"}
        assert dup == dict.fromkeys(keys, "open")
        history = running.query(
            "SELECT h.action, count(*) FROM mismatch_history h JOIN mismatches m"
            " ON m.id = h.mismatch_id WHERE m.rule = 'DUPLICATE_ID' GROUP BY h.action"
        )
        assert dict(history) == {"opened": n}

        feed.put("tax", keys[0], **person(A, status="closed"))
        running.settle()
        dup = {k[0]: v[0] for k, v in running.mismatches("tax").items() if k[1] == "DUPLICATE_ID"}
        assert dup == {keys[0]: "resolved", **dict.fromkeys(keys[1:], "open")}
        # The others' group changed once: one update each (their list of other records).
        assert [h[0] for h in running.history(keys[1], "DUPLICATE_ID")] == ["opened", "updated"]
    finally:
        running.reconciler.stop()
        running.thread.join(30)
        feed.close()


def test_an_older_change_does_not_overwrite_a_newer_one(running):
    feed = running.feed
    feed.put("registry", A, **person(A))
    new = feed.event("tax", "u", "T1", person(A, status="active"), lsn=5_000_000)
    old = feed.event("tax", "u", "T1", person(A, "Lê Văn An", status="active"), lsn=4_000_000)
    feed.send(new, old)
    running.settle()
    assert running.query("SELECT full_name FROM sector_records WHERE record_key = 'T1'") == [
        ("Nguyễn Văn An",)
    ]
    assert running.mismatches() == {}
    assert running.reconciler.totals.stale == 1


def test_undecodable_and_impossible_messages_go_to_the_dead_letter_topic(running):
    feed = running.feed
    topic = feed.topics.sector("tax")
    feed.send(
        (topic, b"x", b"not avro at all"),
        feed.event("tax", "u", "T1", None),  # an update without an after image
        feed.event("tax", "u", "T2", person(A, sex="X", status="active")),
        feed.event("tax", "u", "T4", person(A, "Lê\x00Văn An", status="active")),
    )
    feed.put("registry", A, **person(A))
    feed.put("tax", "T3", **person(A, "Lê Văn An", status="active"))
    running.settle()
    assert set(running.mismatches()) == {("T3", "NAME_MISMATCH", "full_name")}
    letters = running.topic_messages(feed.topics.dlq, 4)
    assert sorted((d["stage"], d["record_key"] or "", d["column"] or "") for d in letters) == [
        ("reconciler", "", ""),
        ("reconciler", "T1", ""),
        ("reconciler", "T2", "sex"),
        ("reconciler", "T4", "full_name"),
    ]
    reasons = {d["record_key"]: d["reason"] for d in letters}
    assert "not an Avro single-object message" in reasons[None]
    assert reasons["T1"] == "op u without an after image"
    assert all(d["topic"] == topic and d["payload"] for d in letters)


def test_open_mismatches_are_published_to_the_corrections_feed(running):
    feed = running.feed
    feed.put("registry", A, **person(A, legacy_id="123456789"))
    feed.put("tax", "T1", **person("123456789", status="active"))
    feed.put("tax", "T2", **person(A, "Lê Văn An", status="active"))
    feed.put("bank", "B1", **person(A, sex="F", status="ACTIVE"))
    running.settle()
    assert publish_corrections(running.config, "tax") == 2
    topic = feed.topics.corrections("tax")
    consumer = make_consumer(running.config.kafka)
    parts = [TopicPartition(topic, p) for p in range(running.config.kafka.partitions)]
    consumer.assign(parts)
    got = []
    for _ in range(50):
        for records in consumer.poll(timeout_ms=200).values():
            got += [decode(r.value)[1] for r in records]
        if len(got) >= 2:
            break
    consumer.close()
    by_rule = {c["rule"]: c for c in got}
    assert by_rule["ID_LEGACY"]["current_value"] == "123456789"
    assert by_rule["ID_LEGACY"]["suggested_value"] == A
    assert by_rule["NAME_MISMATCH"]["suggested_value"] == "Nguyễn Văn An"
    assert {c["sector"] for c in got} == {"tax"}


def test_metrics_count_events_and_open_mismatches(running):
    from prometheus_client import REGISTRY

    def sample(name, **labels):
        return REGISTRY.get_sample_value(name, labels) or 0.0

    before = sample("hub_reconciler_events_total", sector="tax", outcome="applied")
    feed = running.feed
    feed.put("registry", A, **person(A))
    feed.put("tax", "T1", **person(A, "Lê Văn An", status="active"))
    running.settle()
    assert sample("hub_reconciler_events_total", sector="tax", outcome="applied") == before + 1
    running.reconciler.refresh_figures()
    assert sample("hub_mismatches_open", sector="tax", rule="NAME_MISMATCH", severity="high") >= 1
    assert sample("hub_records_verified_ratio", sector="tax") == 0.0
    assert sample("hub_reconcile_latency_seconds_count", sector="tax") >= 1


def test_snapshot_reads_do_not_move_the_latency_histogram(running):
    from prometheus_client import REGISTRY

    def sample(name, **labels):
        return REGISTRY.get_sample_value(name, labels) or 0.0

    count0 = sample("hub_reconcile_latency_seconds_count", sector="tax")
    reads0 = sample("hub_reconciler_snapshot_reads_total", sector="tax")
    feed = running.feed
    ten_days_ago = int((time.time() - 10 * 86400) * 1000)
    feed.send(
        feed.event("registry", "r", A, person(A), commit_ts_ms=ten_days_ago),
        feed.event("tax", "r", "T1", person(A, status="active"), commit_ts_ms=ten_days_ago),
    )
    running.settle()
    assert sample("hub_reconcile_latency_seconds_count", sector="tax") == count0
    assert sample("hub_reconciler_snapshot_reads_total", sector="tax") == reads0 + 1

    sum0 = sample("hub_reconcile_latency_seconds_sum", sector="tax")
    feed.put("tax", "T2", **person(A, status="active"))  # a streamed change, committed now
    running.settle()
    assert sample("hub_reconcile_latency_seconds_count", sector="tax") == count0 + 1
    assert sample("hub_reconcile_latency_seconds_sum", sector="tax") - sum0 < 60


def test_corrections_publish_command(running, tmp_path):
    import yaml
    from click.testing import CliRunner

    from reconciliation.cli import main
    from tests.integration.reconciliation.feed import config_data

    running.feed.put("registry", A, **person(A))
    running.feed.put("tax", "T1", **person(A, "Lê Văn An", status="active"))
    running.settle()
    kafka = running.config.kafka
    path = tmp_path / "hub.yaml"
    path.write_text(yaml.safe_dump(config_data(running.config.database.url, kafka)))
    result = CliRunner().invoke(
        main, ["--config", str(path), "corrections", "publish", "tax", "--severity", "high"]
    )
    assert result.exit_code == 0, result.output
    assert f"published 1 corrections to {kafka.topic_prefix}.corrections.tax" in result.output
    result = CliRunner().invoke(main, ["--config", str(path), "corrections", "publish", "nope"])
    assert result.exit_code != 0


def test_a_lost_database_connection_mid_stream_loses_and_duplicates_nothing(running):
    """Batches are applied on a database thread while the next one is polled: a batch whose
    connection dies is rolled back, the batch polled meanwhile is dropped, and both are
    read again from the stored offsets once the reconciler has reconnected."""
    feed = running.feed
    feed.put("registry", A, **person(A))
    running.settle()
    killed = 0
    for i in range(40):
        messages = [
            feed.event("bank", "r", f"B{i}-{j}", person(A, f"Tên {i} {j}", status="ACTIVE"))
            for j in range(25)
        ]
        feed.send(*messages)
        if i % 10 == 5:
            killed += running.query(
                "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = 'hub-reconciler' AND pid <> pg_backend_pid()) t"
            )[0][0]
            time.sleep(0.05)
    running.settle(timeout=90)
    assert killed >= 1
    names = running.query(
        "SELECT record_key, count(*) FROM mismatches WHERE sector = 'bank' AND rule = %s"
        " GROUP BY record_key",
        "NAME_MISMATCH",
    )
    assert len(names) == 40 * 25 and {n for _, n in names} == {1}
    assert running.query(
        "SELECT count(*), count(DISTINCT mismatch_id) FROM mismatch_history h"
        " JOIN mismatches m ON m.id = h.mismatch_id WHERE m.sector = 'bank'"
    ) == [(1000, 1000)]
    assert running.thread.is_alive()

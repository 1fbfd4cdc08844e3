"""deploy/prometheus/alerts_test.yml has a promtool case for each fault of issue #25 (paused
connector, broker down, forgotten slot, new instance, stalled reconciler, offsets beyond the
end), each alert firing at one evaluation and quiet at another; the rules of the new gauges
keep to those gauges' labels."""

from __future__ import annotations

from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parents[3] / "deploy" / "prometheus"

FAULT_ALERTS = (
    "HubConnectorStalled",
    "HubConnectorLagHigh",
    "HubKafkaUnreachable",
    "HubSlotForgotten",
    "HubDeadLetters",
    "HubReconcilerStalled",
    "HubOffsetsBeyondEnd",
)


def _cases() -> list[tuple[set[str], dict]]:
    tests = yaml.safe_load((DEPLOY / "alerts_test.yml").read_text())["tests"]
    out = []
    for t in tests:
        series = {s["series"].split("{")[0] for s in t["input_series"]}
        out += [(series, case) for case in t.get("alert_rule_test", [])]
    return out


def test_each_fault_alert_has_a_firing_and_a_quiet_evaluation():
    cases = _cases()
    for name in FAULT_ALERTS:
        evals = [c for _s, c in cases if c["alertname"] == name]
        assert any(c["exp_alerts"] for c in evals), f"{name} never fires in alerts_test.yml"
        assert any(not c["exp_alerts"] for c in evals), f"{name} is never quiet"


def test_slot_lag_alerts_stay_quiet_beside_a_forgotten_slot():
    quiet = {
        c["alertname"]
        for series, c in _cases()
        if "hub_slot_retained_wal_bytes" in series and not c["exp_alerts"]
    }
    assert {"HubSlotLagHigh", "HubSlotLagCritical"} <= quiet


def test_a_new_instance_case_keeps_dead_letters_quiet():
    tests = yaml.safe_load((DEPLOY / "alerts_test.yml").read_text())["tests"]
    for t in tests:
        instances = {
            s["series"].split('instance="')[1].split('"')[0]
            for s in t["input_series"]
            if s["series"].startswith("hub_dead_letters_total{")
        }
        quiet = [
            c
            for c in t.get("alert_rule_test", [])
            if c["alertname"] == "HubDeadLetters" and not c["exp_alerts"]
        ]
        if len(instances) > 1 and quiet:
            return
    raise AssertionError("no case where dead letters of a new instance stay quiet")


def test_reconciler_stall_does_not_need_a_reconciler_series():
    rules = yaml.safe_load((DEPLOY / "alerts.yml").read_text())["groups"]
    (rule,) = [r for g in rules for r in g["rules"] if r.get("alert") == "HubReconcilerStalled"]
    # Counted from the connectors' side: no reconciler at all leaves the `unless` side empty.
    assert rule["expr"].lstrip().startswith("sum by (connector) (increase(hub_connector_events")
    assert "hub_consumer_lag_messages" not in rule["expr"]
    fired_without_reconciler = [
        c
        for series, c in _cases()
        if c["alertname"] == "HubReconcilerStalled"
        and c["exp_alerts"]
        and series == {"hub_connector_events_total", "hub_reconciler_events_total"}
    ]
    assert fired_without_reconciler


def test_the_guide_explains_every_alert_and_the_series_that_feed_the_new_ones():
    guide = (DEPLOY.parents[1] / "docs" / "operations.md").read_text()
    rows = {line.split("|")[1].strip().strip("`") for line in guide.splitlines()
            if line.startswith("| `Hub")}  # fmt: skip
    rules = yaml.safe_load((DEPLOY / "alerts.yml").read_text())["groups"]
    alerts = {r["alert"] for g in rules for r in g["rules"] if "alert" in r}
    assert rows == alerts, (sorted(alerts - rows), sorted(rows - alerts))
    for name in ("hub_kafka_up{role}", "hub_reconciler_offsets_beyond_end",
                 "hub_slot_retained_wal_bytes", "hub_process_info",
                 "hub_dead_letters_total{stage,connector,reason}"):  # fmt: skip
        assert name in guide, name

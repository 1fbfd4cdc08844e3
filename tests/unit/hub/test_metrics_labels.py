"""The labels of issue #25 item 6: dead letters by connector, latency by sector, each
process's hub_process_info, and series that exist at 0 before the first event."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from types import SimpleNamespace

from prometheus_client import REGISTRY

from hub import metrics
from hub.config import parse_config
from reconciliation.figures import LATENCY_SAMPLES, Figures


def _value(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_dead_letter_series_of_a_connector_exist_at_0_for_every_reason_of_its_stage():
    metrics.init_dead_letters("connector", "lbl_tax")
    for reason in metrics.DEAD_LETTER_REASONS["connector"]:
        labels = {"stage": "connector", "connector": "lbl_tax", "reason": reason}
        assert _value("hub_dead_letters_total", **labels) == 0.0, reason
    # Only its own stage's reasons: no reconciler reason under the connector stage.
    assert _value("hub_dead_letters_total", stage="connector", connector="lbl_tax",
                  reason="bad_shape") is None  # fmt: skip


def test_process_info_names_the_role():
    metrics.mark_process("serve")
    found = [
        s.labels
        for family in REGISTRY.collect()
        if family.name == "hub_process_info"
        for s in family.samples
        if s.labels["role"] == "serve"
    ]
    assert len(found) == 1 and found[0]["version"]


def _batch(commit_times: dict[str, list[int]]) -> SimpleNamespace:
    return SimpleNamespace(
        outcomes=Counter({(s, "applied"): len(t) for s, t in commit_times.items()}),
        commit_times=defaultdict(list, commit_times),
        snapshot_reads=Counter(),
    )


def test_latency_is_observed_per_sector_and_reconciler_events_start_at_0():
    config = parse_config({"sectors": {}}, env={})
    figures = Figures(config, 300.0)
    assert _value("hub_reconciler_events_total", sector="registry", outcome="stale") is not None

    def count(sector: str) -> float:
        return _value("hub_reconcile_latency_seconds_count", sector=sector) or 0.0

    now_ms = int(time.time() * 1000)
    before = {s: count(s) for s in ("lbl_a", "lbl_b")}
    figures.count(_batch({"lbl_a": [now_ms - 2000] * 3, "lbl_b": [now_ms]}), [], {})
    assert count("lbl_a") == before["lbl_a"] + 3
    assert count("lbl_b") == before["lbl_b"] + 1
    slow = _value("hub_reconcile_latency_seconds_bucket", sector="lbl_a", le="1.0")
    assert slow == 0.0  # 2 s old: above the 1 s bucket

    # At most LATENCY_SAMPLES observations of a sector per batch.
    figures.count(_batch({"lbl_a": [now_ms] * (LATENCY_SAMPLES * 4)}), [], {})
    assert count("lbl_a") == before["lbl_a"] + 3 + LATENCY_SAMPLES

"""What the specification names, for the tests that check the hub against it."""

# The metrics the hub must expose (checked on a running hub and in the deploy assets).
SPEC_METRICS = (
    "hub_connector_events_total",
    "hub_connector_lag_seconds",
    "hub_connector_slot_lag_bytes",
    "hub_reconciler_events_total",
    "hub_reconcile_latency_seconds_bucket",
    "hub_consumer_lag_messages",
    "hub_mismatches_open",
    "hub_records_verified_ratio",
    "hub_dead_letters_total",
)

"""``capture: debezium``: an existing Debezium connector's change topics as a source (its
envelope, logical types, JSON and Avro converters), re-keyed onto the hub's change topic."""

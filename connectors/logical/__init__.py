"""``logical`` capture: PostgreSQL logical decoding (pgoutput) through a replication slot and a
publication, read with SQL functions, after an initial snapshot consistent with the slot.

How the snapshot and the stream fit together, exactly once per change in effect:

1. The slot is created first; its consistent point S is where the stream starts.
2. The table is read in primary-key order in a ``REPEATABLE READ`` transaction whose
   snapshot (``pg_current_snapshot()``) and WAL insert position L are stored in
   ``connector_state.snapshot_progress`` *before* any row is emitted. Progress (the last
   key acknowledged by Kafka) is stored after every chunk, so a restart continues after
   it — in a new transaction: the table is then read as *segments*, each with its own
   snapshot, key range and L.
3. The stream replays every transaction committed after S. A transaction whose changes a
   segment's snapshot already saw (its xid is visible in that snapshot and its commit
   LSN is below the segment's L) is skipped for the keys of that segment. So each key
   gets its snapshot read, then exactly the changes made after it, in commit order.

Unchanged TOAST values never overwrite: under REPLICA IDENTITY FULL they are taken from
the old tuple; otherwise the field is null and listed in ``attributes["hub.unchanged"]``.

Modules: ``capture`` (the mode), ``slot`` (slot and publication), ``snapshot`` (the initial
read), ``stream`` (the slot's changes), ``overlap`` (what a snapshot already read),
``check`` (``hub connector check``), ``connections``, and the ``pgoutput`` decoder.
"""

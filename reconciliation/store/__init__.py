"""The reconciler's state in the hub database: one module per table family (registry
replica, sector records, offsets, outbox, figures), the session's staging tables, and
:class:`~reconciliation.store.pg.PgStore`, the batch's store over one connection."""

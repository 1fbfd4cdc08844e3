"""When a group member's join has stalled: the reconciler then leaves with a fresh consumer.

Seen on Apache Kafka 4.2 with kafka-python 3.0.12 (CI, 2026-12-02): after a second
rebalance the member stayed "rebalancing" for over a minute, every partition revoked, while
the broker had already dropped it (its LeaveGroup then failed with UNKNOWN_MEMBER_ID). The
client waits out its JoinGroup deadline (``max_poll_interval_ms`` + 5 s: over five minutes)
before it tries again. A healthy rebalance of this hub's members takes seconds (they poll
every 0.2 s and hand a revoked partition over after at most one batch), so a join still
unfinished after :data:`JOIN_STALL_S` is taken as stuck: the reconciler closes the consumer
and subscribes a new one (offsets live in the hub database, so nothing is lost or repeated).
The limit doubles after each such restart, up to :data:`JOIN_STALL_MAX_S`, so a group whose
rebalances are slow for a real reason (a member busy for long) is not kept rebalancing by it.
"""

from __future__ import annotations

JOIN_STALL_S = 30.0
JOIN_STALL_MAX_S = 300.0


class JoinStall:
    """Tells, from repeated observations of whether the member is rebalancing, when one
    rebalance has gone on for longer than the current limit."""

    def __init__(self, limit_s: float = JOIN_STALL_S, max_s: float = JOIN_STALL_MAX_S):
        self.limit_s = limit_s
        self.max_s = max_s
        self.since: float | None = None

    def stalled(self, rebalancing: bool, now: float) -> bool:
        """True once per stall: the member has been rebalancing for longer than the limit
        (which then doubles); False otherwise. A finished join resets the clock, not the
        limit."""
        if not rebalancing:
            self.since = None
            return False
        if self.since is None:
            self.since = now
            return False
        if now - self.since <= self.limit_s:
            return False
        self.since = None
        self.limit_s = min(self.limit_s * 2, self.max_s)
        return True

    def waited_s(self, now: float) -> float:
        return 0.0 if self.since is None else now - self.since


def rebalancing(consumer) -> bool:
    """Whether the consumer's group member is between a JoinGroup and the end of its
    SyncGroup (kafka-python's coordinator state; False for a consumer without a group)."""
    coordinator = getattr(consumer, "_coordinator", None)
    probe = getattr(coordinator, "rebalance_in_progress", None)
    return bool(probe()) if probe is not None else False

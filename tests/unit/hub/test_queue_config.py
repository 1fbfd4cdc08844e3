"""``queue:`` in the config: due days per severity, overridden per sector (issue #24)."""

from __future__ import annotations

import pytest

from hub.config import QueueConfig, parse_config
from hub.errors import ConfigError

SOURCE = {
    "url": "postgresql://reader@localhost/src",
    "table": "public.t",
    "key": "id",
    "columns": {"citizen_id": "cccd"},
}


def _config(queue: dict):
    return parse_config(
        {"registry": SOURCE, "sectors": {"tax": SOURCE, "banking": SOURCE}, "queue": queue},
        env={},
    )


def test_due_days_default_per_severity():
    q = QueueConfig()
    assert [q.days("tax", s) for s in ("critical", "high", "medium", "low")] == [3, 7, 14, 30]


def test_a_sector_overrides_some_severities_and_keeps_the_rest():
    q = _config({"due_days": {"low": 60}, "sector_due_days": {"tax": {"critical": 1}}}).queue
    assert q.days("tax", "critical") == 1
    assert q.days("tax", "low") == 60 and q.days("banking", "critical") == 3
    assert ("tax", "critical", 1) in q.due_table() and (None, "low", 60) in q.due_table()


@pytest.mark.parametrize(
    "queue",
    [
        {"due_days": {"critical": 0}},
        {"due_days": {"urgent": 2}},
        {"sector_due_days": {"nowhere": {"critical": 1}}},
        {"sector_due_days": {"tax": {"critical": -1}}},
    ],
)
def test_bad_due_days_are_refused(queue):
    with pytest.raises(ConfigError):
        _config(queue)

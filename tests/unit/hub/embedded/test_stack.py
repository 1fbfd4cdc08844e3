"""The embedded stack's broker choice: tansu by default, Apache Kafka by name, nothing else."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.embedded import EmbeddedStack
from hub.embedded import stack as embedded
from hub.errors import FatalError


@given(st.text(min_size=1, max_size=12).filter(lambda b: b not in embedded.BROKERS))
def test_an_unknown_broker_is_refused_by_name(broker):
    with pytest.raises(FatalError, match="choose one of tansu, kafka"):
        EmbeddedStack("/nonexistent", broker=broker)


def test_the_default_stack_runs_tansu_and_never_needs_java(tmp_path):
    assert isinstance(EmbeddedStack(tmp_path).broker, embedded.EmbeddedBroker)

"""The reconnect schedule: exponential, full jitter, capped, reset after a stable connection."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_broadcast.client.state import Backoff, ReconnectPolicy


def test_ceiling_doubles_up_to_the_cap() -> None:
    backoff = Backoff(ReconnectPolicy(initial=0.5, factor=2.0, cap=3.0), random.Random(1))
    ceilings = []
    for _ in range(6):
        ceilings.append(backoff.ceiling())
        backoff.next_delay()
    assert ceilings == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]


@given(st.integers(min_value=0, max_value=2**16), st.integers(min_value=0, max_value=200))
def test_every_delay_is_within_zero_and_the_ceiling(seed: int, attempts: int) -> None:
    backoff = Backoff(ReconnectPolicy(initial=0.1, cap=30.0), random.Random(seed))
    for _ in range(attempts):
        ceiling = backoff.ceiling()
        assert 0.0 <= backoff.next_delay() <= ceiling <= 30.0


def test_full_jitter_spreads_clients_that_dropped_together() -> None:
    delays = [
        Backoff(ReconnectPolicy(initial=1.0), random.Random(seed)).next_delay()
        for seed in range(1000)
    ]
    # Uniform over [0, 1]: every tenth of the interval gets some of the thousand clients.
    buckets = {min(int(delay * 10), 9) for delay in delays}
    assert buckets == set(range(10))


def test_a_stable_connection_resets_the_schedule_a_short_one_does_not() -> None:
    backoff = Backoff(ReconnectPolicy(initial=1.0, stable_after=5.0), random.Random(0))
    for _ in range(4):
        backoff.next_delay()
    backoff.connection_ended(lasted=1.0)
    assert backoff.ceiling() == 16.0
    backoff.connection_ended(lasted=5.0)
    assert backoff.ceiling() == 1.0


def test_max_attempts() -> None:
    assert not Backoff(ReconnectPolicy()).exhausted(10**6)
    limited = Backoff(ReconnectPolicy(max_attempts=3))
    assert not limited.exhausted(2)
    assert limited.exhausted(3)


def test_policy_is_validated() -> None:
    with pytest.raises(ValueError, match="initial"):
        ReconnectPolicy(initial=0)

"""The per-connection publish limit: a token bucket and a leaky count of refusals."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_broadcast.ratelimit import RateLimiter, TokenBucket, Verdict


def verdicts(limiter: RateLimiter, times: list[float]) -> list[Verdict]:
    return [limiter.check(now) for now in times]


ALLOW, REFUSE, ABUSE = Verdict.ALLOW, Verdict.REFUSE, Verdict.ABUSE


def test_a_full_bucket_allows_a_burst_then_refuses() -> None:
    limiter = RateLimiter(rate=1.0, burst=3, max_strikes=None)
    assert verdicts(limiter, [0.0] * 4) == [ALLOW, ALLOW, ALLOW, REFUSE]


def test_tokens_refill_at_the_rate() -> None:
    limiter = RateLimiter(rate=2.0, burst=1, max_strikes=None)
    assert verdicts(limiter, [0.0, 0.0]) == [ALLOW, REFUSE]
    assert limiter.check(0.25) is REFUSE  # half a token
    assert limiter.check(0.5) is ALLOW  # a whole one
    assert limiter.check(0.5) is REFUSE


def test_refill_never_exceeds_the_burst() -> None:
    limiter = RateLimiter(rate=10.0, burst=2, max_strikes=None)
    limiter.check(0.0)
    assert verdicts(limiter, [1000.0] * 3) == [ALLOW, ALLOW, REFUSE]


def test_time_going_backwards_neither_mints_nor_destroys_tokens() -> None:
    limiter = RateLimiter(rate=1.0, burst=1, max_strikes=None)
    assert limiter.check(10.0) is ALLOW
    assert limiter.check(5.0) is REFUSE
    assert limiter.check(6.0) is ALLOW  # one second after the last check


def test_refusals_beyond_max_strikes_are_abuse() -> None:
    limiter = RateLimiter(rate=1.0, burst=1, max_strikes=2)
    assert verdicts(limiter, [0.0] * 5) == [ALLOW, REFUSE, REFUSE, ABUSE, ABUSE]


def test_strikes_leak_one_per_second() -> None:
    limiter = RateLimiter(rate=0.01, burst=1, max_strikes=2)
    assert verdicts(limiter, [0.0, 0.0, 0.0]) == [ALLOW, REFUSE, REFUSE]  # two strikes
    # Two seconds later both strikes have leaked away: this refusal is the first again.
    assert limiter.check(2.0) is REFUSE
    assert limiter.check(2.0) is REFUSE
    assert limiter.check(2.0) is ABUSE


def test_strikes_that_have_not_leaked_yet_still_count() -> None:
    limiter = RateLimiter(rate=0.01, burst=1, max_strikes=2)
    assert verdicts(limiter, [0.0, 0.0, 0.0]) == [ALLOW, REFUSE, REFUSE]
    assert limiter.check(0.5) is ABUSE  # 2 - 0.5 + 1 = 2.5 strikes


def test_no_max_strikes_never_reports_abuse() -> None:
    limiter = RateLimiter(rate=1.0, burst=1, max_strikes=None)
    assert set(verdicts(limiter, [0.0] * 100)[1:]) == {REFUSE}


def test_no_rate_allows_everything() -> None:
    limiter = RateLimiter(rate=None, burst=1, max_strikes=1)
    assert set(verdicts(limiter, [0.0] * 1000)) == {ALLOW}


@given(
    rate=st.floats(min_value=0.1, max_value=100.0),
    burst=st.integers(min_value=1, max_value=50),
    gaps=st.lists(st.floats(min_value=0.0, max_value=2.0), max_size=200),
)
def test_allowed_publishes_never_exceed_burst_plus_refill(
    rate: float, burst: int, gaps: list[float]
) -> None:
    limiter = RateLimiter(rate=rate, burst=burst, max_strikes=None)
    now = 0.0
    allowed = 0
    for gap in gaps:
        now += gap
        if limiter.check(now) is ALLOW:
            allowed += 1
        assert allowed <= burst + rate * now + 1e-9


def test_token_bucket_says_how_long_until_the_next_token() -> None:
    bucket = TokenBucket(rate=2.0, burst=2)
    assert [bucket.take(0.0), bucket.take(0.0)] == [0.0, 0.0]
    assert bucket.take(0.0) == pytest.approx(0.5)  # nothing spent
    assert bucket.take(0.25) == pytest.approx(0.25)
    assert bucket.take(0.5) == 0.0
    bucket.refill(100.0)
    assert bucket.tokens == 2.0  # never more than the burst

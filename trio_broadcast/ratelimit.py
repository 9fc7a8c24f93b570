"""Rate limiting: a token bucket, and the server's per-connection limiter built on it (the
bucket plus a leaky count of refusals). The client's ``send`` paces itself with the same bucket.

Pure and clock-free: the caller passes ``now`` (seconds, any monotonic clock), so the tests drive
time by hand.
"""

from __future__ import annotations

import enum

import attrs


class Verdict(enum.Enum):
    ALLOW = "allow"  # publish it
    REFUSE = "refuse"  # drop it and tell the client ``rate_limited``
    ABUSE = "abuse"  # refused too often: close the connection with 1008


@attrs.define
class TokenBucket:
    """``burst`` tokens, refilled at ``rate`` per second."""

    rate: float  # tokens per second
    burst: float  # bucket size
    tokens: float = attrs.field(init=False)
    updated: float | None = attrs.field(init=False, default=None)  # when last refilled

    def __attrs_post_init__(self) -> None:
        self.tokens = float(self.burst)

    def refill(self, now: float) -> float:
        """Add what accrued since the last call; returns the seconds that passed."""
        elapsed = 0.0 if self.updated is None else max(0.0, now - self.updated)
        self.tokens = min(float(self.burst), self.tokens + elapsed * self.rate)
        self.updated = now
        return elapsed

    def take(self, now: float) -> float:
        """Spend a token if there is one: returns 0.0; else the seconds until there is one."""
        self.refill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


@attrs.define
class RateLimiter:
    """Token bucket of ``burst`` tokens refilled at ``rate`` per second.

    Each refusal adds a strike; strikes leak at one per second. More than ``max_strikes`` strikes
    is abuse. ``rate=None`` allows everything; ``max_strikes=None`` never reports abuse.
    """

    rate: float | None  # tokens per second
    burst: int  # bucket size
    max_strikes: int | None  # refusals (leaking 1/s) tolerated before ABUSE
    strikes: float = attrs.field(init=False, default=0.0)
    _bucket: TokenBucket | None = attrs.field(init=False, default=None)

    def __attrs_post_init__(self) -> None:
        if self.rate is not None:
            self._bucket = TokenBucket(self.rate, self.burst)

    @property
    def tokens(self) -> float:
        return self._bucket.tokens if self._bucket is not None else float(self.burst)

    def check(self, now: float) -> Verdict:
        """Spend a token if there is one, and say what to do with the message."""
        bucket = self._bucket
        if bucket is None:
            return Verdict.ALLOW
        self.strikes = max(0.0, self.strikes - bucket.refill(now))  # strikes leak 1/s
        if bucket.take(now) == 0.0:
            return Verdict.ALLOW
        self.strikes += 1.0
        if self.max_strikes is not None and self.strikes > self.max_strikes:
            return Verdict.ABUSE
        return Verdict.REFUSE

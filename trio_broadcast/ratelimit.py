"""Per-connection publish rate limiting: a token bucket plus a leaky count of refusals.

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
class RateLimiter:
    """Token bucket of ``burst`` tokens refilled at ``rate`` per second.

    Each refusal adds a strike; strikes leak at one per second. More than ``max_strikes`` strikes
    is abuse. ``rate=None`` allows everything; ``max_strikes=None`` never reports abuse.
    """

    rate: float | None  # tokens per second
    burst: int  # bucket size
    max_strikes: int | None  # refusals (leaking 1/s) tolerated before ABUSE
    tokens: float = attrs.field(init=False)
    strikes: float = attrs.field(init=False, default=0.0)
    updated: float | None = attrs.field(init=False, default=None)

    def __attrs_post_init__(self) -> None:
        self.tokens = float(self.burst)

    def check(self, now: float) -> Verdict:
        """Spend a token if there is one, and say what to do with the message."""
        if self.rate is None:
            return Verdict.ALLOW
        if self.updated is not None:
            elapsed = max(0.0, now - self.updated)
            self.tokens = min(float(self.burst), self.tokens + elapsed * self.rate)
            self.strikes = max(0.0, self.strikes - elapsed)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return Verdict.ALLOW
        self.strikes += 1.0
        if self.max_strikes is not None and self.strikes > self.max_strikes:
            return Verdict.ABUSE
        return Verdict.REFUSE

"""Stripe's rate and concurrency limiters, as the emulator applies them to `/v1` calls.

Token buckets refill continuously (no fixed windows, which admit twice the rate across a window
edge). `Limiter.admit` returns None when a call may proceed, or the reason Stripe would put in
`Stripe-Rate-Limited-Reason`; an admitted call must be matched by one `release`.

Checks run in Stripe's order of cost: concurrency first, then the global (per-mode) bucket, then
the endpoint's bucket. A call refused by a later check has still spent the earlier tokens, as
every call reaching Stripe counts against the global budget.
"""

from __future__ import annotations

import time
from collections import defaultdict
from enum import StrEnum

from stripe_emulator.config import LimitsConfig


class LimitReason(StrEnum):
    """Values of the `Stripe-Rate-Limited-Reason` header."""

    GLOBAL_RATE = "global-rate"
    ENDPOINT_RATE = "endpoint-rate"
    GLOBAL_CONCURRENCY = "global-concurrency"
    ENDPOINT_CONCURRENCY = "endpoint-concurrency"


class TokenBucket:
    """`rate` tokens a second, holding at most `capacity`; starts full."""

    __slots__ = ("_capacity", "_rate", "_stamp", "_tokens")

    def __init__(self, rate: float, capacity: float) -> None:
        self._rate = rate
        self._capacity = capacity
        self._tokens = capacity
        self._stamp = time.monotonic()

    def take(self) -> bool:
        """Spend one token if there is one."""
        now = time.monotonic()
        tokens = min(self._capacity, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        if tokens < 1.0:
            self._tokens = tokens
            return False
        self._tokens = tokens - 1.0
        return True


class Limiter:
    """All limiters of one emulator, built from one `LimitsConfig` (replace it to reconfigure)."""

    def __init__(self, config: LimitsConfig) -> None:
        self.config = config
        burst = config.burst_seconds
        self._global = {
            False: TokenBucket(config.global_rate_test, config.global_rate_test * burst),
            True: TokenBucket(config.global_rate_live, config.global_rate_live * burst),
        }
        rate = config.endpoint_rate
        self._endpoints: defaultdict[tuple[bool, str], TokenBucket] = defaultdict(
            lambda: TokenBucket(rate, rate * burst)
        )
        self._in_flight = 0
        self._in_flight_by_endpoint: defaultdict[str, int] = defaultdict(int)

    def admit(self, endpoint: str, livemode: bool) -> LimitReason | None:
        """None if the call may proceed (then call `release` when it ends), else the reason."""
        config = self.config
        if self._in_flight >= config.max_concurrency:
            return LimitReason.GLOBAL_CONCURRENCY
        cap = config.endpoint_max_concurrency
        if cap is not None and self._in_flight_by_endpoint[endpoint] >= cap:
            return LimitReason.ENDPOINT_CONCURRENCY
        if not self._global[livemode].take():
            return LimitReason.GLOBAL_RATE
        if not self._endpoints[livemode, endpoint].take():
            return LimitReason.ENDPOINT_RATE
        self._in_flight += 1
        self._in_flight_by_endpoint[endpoint] += 1
        return None

    def release(self, endpoint: str) -> None:
        """End an admitted call."""
        self._in_flight -= 1
        self._in_flight_by_endpoint[endpoint] -= 1

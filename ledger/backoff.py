"""Full-jitter exponential backoff: the one formula every retry loop of the service uses.

Attempt ``n`` (1-based) waits a uniform random time in ``[0, min(cap, base * 2^(n-1))]`` (AWS
architecture blog, "Exponential Backoff And Jitter"), so many clients retrying together spread
out instead of arriving in waves. Used by the worker's retry policy (Stripe calls), the rate
limiter while Redis is unreachable, the intake client, and the webhook consumer.
"""

from __future__ import annotations

import random


def full_jitter(
    attempt: int, *, base: float, cap: float, rng: random.Random | None = None
) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (see the module docstring)."""
    ceiling = min(cap, base * 2 ** min(max(attempt - 1, 0), 60))
    return (rng or random).uniform(0.0, ceiling)

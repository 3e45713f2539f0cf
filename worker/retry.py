"""Retry policy: full-jitter exponential backoff and the attempt budget (count and age)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from ledger.backoff import full_jitter


@dataclass(frozen=True)
class RetryPolicy:
    base_seconds: float
    cap_seconds: float
    max_attempts: int
    max_age_seconds: float

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based).

        Full jitter (AWS architecture blog): uniform in ``[0, min(cap, base * 2^(attempt-1))]``,
        so many workers retrying together spread out instead of hitting Stripe in waves.
        """
        return full_jitter(attempt, base=self.base_seconds, cap=self.cap_seconds, rng=rng)

    def exhausted(self, attempts: int, age_seconds: float) -> str | None:
        """Why the budget is spent (a message for the audit trail), or ``None`` if it is not."""
        if attempts >= self.max_attempts:
            return f"attempt budget spent: {attempts} of {self.max_attempts} attempts"
        if age_seconds >= self.max_age_seconds:
            return f"age budget spent: {age_seconds:.0f}s old, limit {self.max_age_seconds:.0f}s"
        return None

"""Disconnect-job dependencies for in-process tests: real Redis limiter, real Stripe client."""

from __future__ import annotations

import aiohttp
from pydantic import SecretStr

from ledger.store import Ledger
from stripe_emulator import DEFAULT_API_KEY
from worker.disconnect import DisconnectDeps
from worker.ratelimit import RateBudget, RateLimiter
from worker.retry import RetryPolicy
from worker.stripe_client import StripeClient

API_VERSION = "2026-06-24.dahlia"


def build_test_deps(
    ledger: Ledger,
    stripe_url: str,
    http: aiohttp.ClientSession,
    *,
    api_key: str = DEFAULT_API_KEY,
    max_attempts: int = 5,
    precheck_account: bool = False,
) -> DisconnectDeps:
    """Deps on the test's key prefix: a generous shared limiter and millisecond backoff."""
    return DisconnectDeps(
        ledger=ledger,
        stripe=StripeClient(http, stripe_url, SecretStr(api_key), API_VERSION),
        gate=RateLimiter(
            ledger.redis,
            RateBudget(dict.fromkeys(("disconnect", "retrieve", "list"), 500.0), 1000.0, 20),
            key_prefix=f"{ledger.prefix}rl:",
            pause_key=ledger.pause_key,
        ),
        policy=RetryPolicy(
            base_seconds=0.01, cap_seconds=0.05, max_attempts=max_attempts, max_age_seconds=60
        ),
        precheck_account=precheck_account,
    )

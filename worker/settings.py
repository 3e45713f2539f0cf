"""Settings of a worker process (``python -m worker``), on top of the shared ones."""

from __future__ import annotations

from pydantic import Field, SecretStr

from ledger.settings import BaseServiceSettings


class WorkerSettings(BaseServiceSettings):
    """Stripe access, concurrency and the retry policy of one worker process."""

    stripe_api_key: SecretStr = Field(description="Stripe secret key (sk_live_… / sk_test_…).")
    stripe_api_base: str = Field(
        default="https://api.stripe.com", description="Stripe API base URL."
    )
    stripe_api_version: str = Field(
        default="2026-06-24.dahlia", description="Pinned Stripe-Version header."
    )
    stripe_connect_timeout_seconds: float = Field(
        default=5.0, description="TCP/TLS connect timeout for Stripe calls."
    )
    stripe_timeout_seconds: float = Field(
        default=30.0, description="Total timeout of one Stripe call."
    )
    max_jobs: int = Field(default=20, description="Jobs one worker process runs at once.")
    max_attempts: int = Field(default=8, description="Stripe attempts before a request fails.")
    max_request_age_seconds: float = Field(
        default=7 * 86_400, description="Age after which a request stops retrying and fails."
    )
    retry_base_seconds: float = Field(
        default=1.0, description="Full-jitter backoff base: attempt n waits up to base * 2^(n-1)."
    )
    retry_cap_seconds: float = Field(default=600.0, description="Upper bound of one backoff.")
    precheck_account: bool = Field(
        default=True,
        description="Retrieve the account before posting, to tell already-disconnected and "
        "unknown accounts apart without a write.",
    )
    idempotency_refresh_seconds: float = Field(
        default=23 * 3600,
        description="After this long since the first attempt, retrieve the account and use a "
        "fresh Idempotency-Key (Stripe forgets keys after 24 h).",
    )
    job_timeout_seconds: float = Field(
        default=300.0,
        description="arq cancels a job after this long; the request is re-queued, attempt kept.",
    )

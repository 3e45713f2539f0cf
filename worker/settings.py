"""Settings of a worker process (``python -m worker``), on top of the shared ones."""

from __future__ import annotations

from pydantic import Field, SecretStr, model_validator

from ledger.settings import DEFAULT_STRIPE_API_VERSION, BaseServiceSettings
from worker.ratelimit import RateBudget


class WorkerSettings(BaseServiceSettings):
    """Stripe access, concurrency and the retry policy of one worker process."""

    stripe_api_key: SecretStr = Field(description="Stripe secret key (sk_live_… / sk_test_…).")
    stripe_api_base: str = Field(
        default="https://api.stripe.com", description="Stripe API base URL."
    )
    stripe_api_version: str = Field(
        default=DEFAULT_STRIPE_API_VERSION, description="Pinned Stripe-Version header."
    )
    stripe_connect_timeout_seconds: float = Field(
        default=5.0, description="TCP/TLS connect timeout for Stripe calls."
    )
    stripe_timeout_seconds: float = Field(
        default=30.0, description="Total timeout of one Stripe call."
    )
    max_jobs: int = Field(default=20, description="Jobs one worker process runs at once.")
    stripe_rate_limit: float = Field(
        default=20.0,
        gt=0,
        description="Disconnect calls/s across all workers (Stripe allows ~25/s per endpoint).",
    )
    stripe_read_rate_limit: float = Field(
        default=20.0, gt=0, description="Retrieve and list calls/s each, across all workers."
    )
    stripe_global_rate_limit: float | None = Field(
        default=None,
        gt=0,
        description="All calls/s across all workers; unset: 80 with an sk_live_ key (Stripe's 100 "
        "live, shared with the company's other services), 25 otherwise (a sandbox's whole budget).",
    )
    stripe_max_in_flight: int = Field(
        default=16, gt=0, description="Stripe calls in flight across all workers."
    )
    limiter_pacing_margin: float = Field(
        default=0.025,
        ge=0,
        lt=0.5,
        description="Grants are spaced for (1 - margin) x each rate, so network jitter cannot "
        "put more than the rate into any sliding second at Stripe.",
    )
    limiter_decrease_factor: float = Field(
        default=0.9,
        gt=0,
        lt=1,
        description="On a Stripe rate-limit 429 every worker's rate is multiplied by this.",
    )
    limiter_recovery_per_second: float = Field(
        default=0.01,
        ge=0,
        description="Fraction of the configured rate won back per second after a decrease.",
    )
    max_attempts: int = Field(default=8, description="Stripe attempts before a request fails.")
    max_request_age_seconds: float = Field(
        default=7 * 86_400,
        description="Time since the first attempt (a requeue resets it) after which a request "
        "stops retrying and fails.",
    )
    retry_base_seconds: float = Field(
        default=1.0, description="Full-jitter backoff base: attempt n waits up to base * 2^(n-1)."
    )
    retry_cap_seconds: float = Field(default=600.0, description="Upper bound of one backoff.")
    precheck_account: bool = Field(
        default=False,
        description="Force a retrieve before every post (the old default: two calls per "
        "disconnect). Off, a retrieve is made only where correctness needs one.",
    )
    idempotency_refresh_seconds: float = Field(
        default=23 * 3600,
        description="After this long since the first attempt, retrieve the account and use a "
        "fresh Idempotency-Key (Stripe forgets keys after 24 h).",
    )
    paused_recheck_seconds: float = Field(
        default=10.0, gt=0, description="While paused, how often a deferred job looks again."
    )
    job_timeout_seconds: float = Field(
        default=300.0,
        description="arq cancels a job after this long; the request is re-queued, attempt kept.",
    )
    sweep_timeout_seconds: float = Field(
        default=86_400.0,
        gt=0,
        description="Longest a retention sweep may run (arq job timeout, and the policy lock's "
        "lifetime if its worker dies).",
    )
    metrics_port: int = Field(
        default=9108,
        ge=0,
        lt=65536,
        description="Port of the worker's /metrics, /healthz and /readyz (0 turns them off).",
    )
    reconcile_interval_seconds: int = Field(
        default=60,
        description="How often the reconciler runs (once across all workers); a divisor of 60 "
        "below a minute, a whole number of minutes dividing 60 above; 0 turns it off.",
    )

    events_catchup_interval_seconds: int = Field(
        default=300,
        ge=0,
        description="How often the webhook catch-up reads Stripe's event list into the inbox "
        "(once across all workers; same form as the reconcile interval); 0 turns it off.",
    )
    events_catchup_lookback_seconds: float = Field(
        default=3 * 86_400,
        gt=0,
        le=30 * 86_400,
        description="How far back the first catch-up pass reads (Stripe keeps 30 days).",
    )
    events_catchup_overlap_seconds: float = Field(
        default=300.0,
        ge=0,
        description="Each catch-up pass re-reads this much before the newest event it saw "
        "(the inbox drops duplicates), for events listed late.",
    )
    webhook_consumer_idle_seconds: float = Field(
        default=3600.0,
        gt=0,
        description="The reconciler deletes a webhook-inbox consumer (an intake process's name) "
        "that owns no pending event and has been idle this long (a process that was killed).",
    )

    archive_interval_seconds: int = Field(
        default=300,
        ge=0,
        description="How often the archive job moves old terminal requests out of Redis (once "
        "across all workers; same form as the reconcile interval); 0 turns it off.",
    )

    @model_validator(mode="after")
    def _lease_outlives_an_attempt(self) -> WorkerSettings:
        """The reconciler treats an attempt older than the lease as lost; none may live longer."""
        if self.in_progress_lease_seconds <= self.job_timeout_seconds:
            raise ValueError(
                "FCD_IN_PROGRESS_LEASE_SECONDS must be longer than FCD_JOB_TIMEOUT_SECONDS "
                f"({self.in_progress_lease_seconds} <= {self.job_timeout_seconds})"
            )
        return self

    def rate_budget(self) -> RateBudget:
        """The shared limiter's budget from these settings (leases outlive the HTTP timeout)."""
        live = self.stripe_api_key.get_secret_value().startswith(("sk_live_", "rk_live_"))
        # Live: Stripe's 100/s is the company's, so leave a fifth to its other services. A
        # sandbox is a test bench: its whole 25/s (the pacing margin still applies), so one call
        # per disconnect can run at the 24/s a disconnect endpoint allows (issue 13).
        default_global = 80.0 if live else 25.0
        pace = 1.0 - self.limiter_pacing_margin
        return RateBudget(
            endpoint_rates={
                "disconnect": self.stripe_rate_limit * pace,
                "retrieve": self.stripe_read_rate_limit * pace,
                "list": self.stripe_read_rate_limit * pace,
            },
            global_rate=(self.stripe_global_rate_limit or default_global) * pace,
            max_in_flight=self.stripe_max_in_flight,
            lease_seconds=self.stripe_timeout_seconds + 10,
            decrease_factor=self.limiter_decrease_factor,
            recovery_per_second=self.limiter_recovery_per_second,
        )
